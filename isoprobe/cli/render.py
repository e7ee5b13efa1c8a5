"""Rich tables for the terminal; they only format results computed by the library."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from isoprobe.cli.common import console


def render_summary(summary) -> None:
    console.print(f"[bold]{escape(summary.path)}[/]: {summary.dataset}, {len(summary.subjects)} subject(s)")
    for s in summary.subjects:
        channels = ", ".join(f"{m} {n} ch" for m, n in s.channels.items())
        grids = "; ".join(f"{m}: {', '.join(g)}" for m, g in s.grids.items())
        console.print(
            f"\n[bold]subject {s.subject}[/]  {s.sampling_rate:g} Hz, {s.duration_s:.1f} s, {channels}"
            + (f" ({grids})" if grids else "")
            + (f", exercises {s.exercises}" if s.exercises else "")
            + f", repetitions {s.repetitions}"
        )
        table = Table("label", "class", "repetitions", "seconds", box=None, pad_edge=False)
        for c in s.classes:
            table.add_row(str(c.label), c.name, str(c.repetitions), f"{c.seconds:.1f}")
        console.print(table)
    truth = summary.ground_truth
    if truth:
        config = truth["config"]
        console.print(f"\n[bold]planted structure[/] (synthetic, seed {config['seed']}): preset {config['preset']}"
                      + (f", synergy fraction {config['synergy_fraction']}" if config.get("synergy_fraction") is not None else ""))
        table = Table("label", "needs", "informative alone", "synergy partner", box=None, pad_edge=False)
        for c in truth["classes"]:
            table.add_row(str(c["label"]), c["needs_modalities"], ", ".join(c["informative_alone"]) or "neither",
                          str(c["partner"]) if c["partner"] is not None else "")
        console.print(table)
    else:
        console.print("\nno isoprobe-synth.json sidecar: treated as real data (no planted structure)")


def render_windows(prepared) -> dict:
    """Print window counts per split and the group shapes; return them for the JSON summary."""
    counts = {split: len(ws) for split, ws in prepared.splits.items()}
    shapes = {g.name: list(prepared.splits["train"].x[g.name].shape[1:]) for g in prepared.groups}
    train, test, validation = prepared.config.repetitions()
    console.print(
        f"\n[bold]windows[/] subject {prepared.config.subject} ({'cache hit' if prepared.cache_hit else 'built'}): "
        f"train {counts['train']} (reps {list(train)}), validation {counts['validation']} (reps {list(validation)}), "
        f"test {counts['test']} (reps {list(test)}); {len(prepared.class_labels)} classes; "
        + ", ".join(f"{name} {shape[0]}×{shape[1]}" for name, shape in shapes.items())
    )
    return {"counts": counts, "shapes": shapes, "classes": list(prepared.class_names)}
