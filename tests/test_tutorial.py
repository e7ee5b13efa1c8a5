"""The tutorial notebook examples/bring_your_own_model.ipynb runs from top to bottom on a fresh machine
and says what it should: the hooked model is the model, the ablation grid has a row per layer and
pathway, compare has its methods, and the figures are drawn. The notebook is generated from its source,
examples/bring_your_own_model.py (jupytext's percent format); a test checks that the two agree.

    python tests/test_tutorial.py    # rewrite the notebook from the .py after editing it
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SOURCE = EXAMPLES / "bring_your_own_model.py"
NOTEBOOK = EXAMPLES / "bring_your_own_model.ipynb"
CELL_TIMEOUT_S = 120  # the slowest cell (compare) takes a few seconds on two cores

# Run after the notebook, in its kernel: what the assertions read, as one JSON line.
PROBE = """
import json
print(json.dumps({
    "delta": delta,
    "delta_explicit": delta_explicit,
    "test_accuracy": accuracy(model, test),
    "chance": 1 / data.n_classes,
    "ablation": result.table[["layers", "pathway", "drop", "drop_ci_low", "drop_ci_high",
                              "null_by_construction"]].to_dict("records"),
    "loader_same": bool(same),
    "methods": sorted(set(compared.table.method)),
}))
"""


def cells_of(source: str) -> list[tuple[str, str]]:
    """(cell type, source) of each cell of a jupytext percent script: `# %%` opens a code cell,
    `# %% [markdown]` a markdown cell whose lines drop their leading `# `; in code cells a commented
    magic (`# %matplotlib inline`) is the magic, as jupytext writes it; the YAML header is skipped."""
    lines = source.splitlines()
    if lines and lines[0] == "# ---":
        lines = lines[lines.index("# ---", 1) + 1:]
    cells: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            kind, body = cells[-1]
            body.append(re.sub(r"^# ?", "", line) if kind == "markdown" else re.sub(r"^# (%\w)", r"\1", line))
        elif line.strip():
            raise ValueError(f"{SOURCE.name}: text before the first '# %%' cell marker: {line!r}")
    return [(kind, "\n".join(body).strip("\n")) for kind, body in cells]


def notebook_from(source: str):
    import nbformat

    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
    notebook = nbformat.v4.new_notebook(cells=[make[kind](text) for kind, text in cells_of(source)])
    notebook.metadata.update(kernelspec={"display_name": "Python 3", "language": "python", "name": "python3"},
                             language_info={"name": "python"},
                             jupytext={"formats": "ipynb,py:percent"})
    for index, cell in enumerate(notebook.cells):  # stable ids: regenerating changes nothing
        cell.id = f"cell-{index}"
    return notebook


def write_notebook() -> None:
    import nbformat

    nbformat.write(notebook_from(SOURCE.read_text(encoding="utf-8")), NOTEBOOK)


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """A python3 kernel spec that starts this interpreter, first on the search path: a fresh CI machine
    with only `pip install -e '.[test]'` may have none, or one that starts another Python."""
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager

    prefix = tmp_path / "jupyter-prefix"
    install(kernel_name="python3", prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert Path(spec.resource_dir).is_relative_to(prefix) and spec.argv[0] == sys.executable
    return "python3"


def test_notebook_agrees_with_its_source():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    expected = cells_of(SOURCE.read_text(encoding="utf-8"))
    found = [(cell.cell_type, cell.source) for cell in notebook.cells]
    assert found == expected, f"{NOTEBOOK.name} is out of date: run `python tests/test_tutorial.py`"
    assert not any(cell.get("outputs") for cell in notebook.cells), "commit the notebook without outputs"


def test_notebook_runs(kernel, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    workdir = tmp_path / "run"
    workdir.mkdir()
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name=kernel,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails

    probe = json.loads(_text(notebook.cells[-1]).strip().splitlines()[-1])
    assert probe["delta"] <= 1e-5  # no intervention attached: the hooked model is the model
    assert probe["delta_explicit"] <= 1e-5  # an identity hook: the adapter's explicit attention is the model's
    assert probe["test_accuracy"] >= 2 * probe["chance"]  # trained: there is accuracy to ablate

    # layers="all" on three layers: each layer alone, then all three at once; uni and cross in each
    rows = {(row["layers"], row["pathway"]): row for row in probe["ablation"]}
    assert list(rows) == [(layers, pathway) for layers in ("L1", "L2", "L3", "L1-L3") for pathway in ("uni", "cross")]
    # in the last layer only CLS reaches the head, and CLS's edges are neither uni nor cross
    assert rows["L3", "uni"]["null_by_construction"] and rows["L3", "cross"]["null_by_construction"]
    for row in rows.values():
        if not row["null_by_construction"]:
            assert row["drop_ci_low"] <= row["drop"] <= row["drop_ci_high"]
    assert probe["loader_same"]
    assert {"mask (IsoNet)", "mean ablation", "attribution patching", "interaction index"} <= set(probe["methods"])

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    printed = "\n".join(_text(cell) for cell in code)
    assert "max |Δ| between model and hooked outputs" in printed and "test accuracy" in printed
    tables = [cell for cell in code if any("text/html" in out.get("data", {}) for out in cell.outputs)]
    assert len(tables) >= 2  # the ablation and compare tables, displayed
    figures = [cell for cell in code if any("image/png" in out.get("data", {}) for out in cell.outputs)]
    assert len(figures) == 2  # the per-layer drops and the compare figure, drawn inline


def _text(cell) -> str:
    """What a code cell printed (its stream outputs)."""
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.output_type == "stream")


if __name__ == "__main__":
    write_notebook()
    print(f"wrote {NOTEBOOK}", file=sys.stderr)
