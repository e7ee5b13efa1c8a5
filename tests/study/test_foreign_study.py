"""A study recipe naming a model isoprobe did not build (`model = "package.module:function"`): refused
without --trust-code, before anything is imported or written; with it, the model is evaluated and
analysed on every subject like a trained one (no training step), and the study ends in a report."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from isoprobe.study.recipe import RecipeError, load_recipe
from isoprobe.study.runner import run_study
from tests.cli_helpers import assert_user_error, invoke
from tests.hook.test_cli_model import USER_MODULE
from tests.study.test_study import TINY, write_recipe

# the tiny study's data (two synthetic subjects), its seeds doubled, and the user's model in place of its own
RECIPE = TINY.split("[[models]]")[0].replace('title = "tiny"', 'title = "foreign"').replace("seeds = [0]", "seeds = [0, 1]") + """
[[models]]
name = "mine"
model = "study_models:build"
modalities = ["emg,acc"]

[ablate]
layers = "all"
pathway = "cross,uni"
permutations = 99
"""

# importing the module leaves a mark, so a test can tell whether it was imported
MARKING = 'import pathlib; pathlib.Path(__file__).with_name("imported").write_text("yes")\n'


@pytest.fixture()
def recipe(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "study_models", raising=False)  # each test imports its own folder's
    folder = tmp_path / "study"
    path = write_recipe(folder, RECIPE)
    (folder / "study_models.py").write_text(MARKING + USER_MODULE)
    return path


def test_a_recipe_naming_code_is_refused_without_trust_code(recipe):
    with pytest.raises(RecipeError, match=r"models\[0\]\.model: names code to import .*--trust-code"):
        load_recipe(recipe)
    out = recipe.parent / "out"
    assert_user_error(invoke("study", recipe, "--out", out), "models[0].model", "--trust-code")
    assert not (recipe.parent / "imported").exists() and not out.exists()


@pytest.mark.parametrize("edit, key", [('model = "study_models:build"', 'model = "study_models:nothere"'),
                                       ('name = "mine"', 'name = "mine"\nepochs = 3')])
def test_a_foreign_table_is_checked_naming_the_key(recipe, edit, key):
    recipe.write_text(recipe.read_text().replace(edit, key))
    field = "models[0].model" if "nothere" in key else "models[0].epochs"
    with pytest.raises(RecipeError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_recipe(recipe, trust_code=True)


def test_a_trusted_foreign_model_is_evaluated_and_analysed_on_every_subject(recipe):
    out = recipe.parent / "out"
    result = run_study(load_recipe(recipe, trust_code=True), out, report=True)
    runs = pd.read_csv(out / "tables" / "runs.csv")
    # one run per subject, not per seed: the model is trained already
    assert sorted(runs.subject) == [1, 2] and set(runs.arch) == {"foreign"} and set(runs.seed) == {0}
    assert not any((out / run / "steps" / "train.json").exists() for run in runs.run)
    ablation = pd.read_csv(out / "tables" / "ablation.csv")
    assert set(ablation.subject) == {1, 2} and {"cross", "uni"} <= set(ablation.pathway)
    meta = json.loads((out / runs.run[0] / "ablate" / "ablation.json").read_text())
    assert meta["meta"]["provenance"]["checkpoint"] is None
    assert result.report is not None and (result.report / "index.html").is_file()
    # a rerun does nothing; an edited model file reruns its steps
    again = run_study(load_recipe(recipe, trust_code=True), out, report=False)
    assert set(again.steps) == {"skipped"}
    module = recipe.parent / "study_models.py"
    module.write_text(module.read_text() + "\n# edited\n")
    assert "done" in run_study(load_recipe(recipe, trust_code=True), out, report=False).steps
