"""`isoprobe study`: recipes checked before any work, resumable steps, and numbers that depend on the
recipe alone (not on the number of workers, an interruption, or the executor)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from isoprobe.cli.app import app
from isoprobe.study import jobs as jobs_module
from isoprobe.study.recipe import RecipeError, configuration_kind, load_recipe
from isoprobe.study.runner import run_study

TINY = """
title = "tiny"
seeds = [0]
bootstrap = 50

[data]
dataset = "ninapro-db2"
subjects = [1, 2]
[data.synthetic]
preset = "mixed"
synergy_fraction = 0.5
gestures = 4
seconds_per_repetition = 0.6
rest_seconds = 0.3

[[models]]
arch = "hierarchical"
modalities = ["emg,acc", "emg"]
epochs = 2
d_model = 16
n_heads = 2
d_mlp = 32
n_layers = 2

[ablate]
layers = "1-2"
pathway = "cross,uni"

[shift]
layers = "1-2"
pathway = "cross"
interventions = "mask,mean"
permutations = 20
max_windows = 40
"""


def write_recipe(folder: Path, text: str = TINY, name: str = "recipe.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny study run once, uninterrupted, with one worker: (recipe, study folder)."""
    folder = tmp_path_factory.mktemp("study")
    recipe = write_recipe(folder)
    run_study(load_recipe(recipe), folder / "out", report=False)
    return recipe, folder / "out"


def tables(out: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_csv(p) for p in sorted((out / "tables").glob("*.csv"))}


def assert_same_tables(a: Path, b: Path) -> None:
    first, second = tables(a), tables(b)
    assert sorted(first) == sorted(second)
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name], check_exact=True, obj=name)


def test_tables_name_each_run_and_hold_every_analysis(finished):
    _, out = finished
    found = tables(out)
    assert {"runs", "curves", "confusion", "ablation", "shift", "planted"} <= set(found)
    runs = found["runs"]
    assert len(runs) == 4  # 2 subjects × 2 modality configurations × 1 seed
    assert set(runs.configuration) == {"multimodal", "unimodal"}
    assert ((runs.accuracy_ci_low <= runs.accuracy) & (runs.accuracy <= runs.accuracy_ci_high)).all()
    # analyses only on the model with two modality groups to cross
    assert set(found["ablation"].modalities) == {"emg,acc"}
    assert set(found["ablation"].subject) == {1, 2}
    assert len(found["ablation"]) == 2 * len(found["ablation"].drop_duplicates(["layers", "pathway"]))
    curves = found["curves"]
    assert sorted(curves.groupby("run").epoch.max().unique()) == [2]
    planted = found["planted"]  # synthetic data: the planted truth beside each run
    assert set(planted[planted.modalities == "emg"].check) == {"alone", "pair"}
    assert set(planted[planted.modalities == "emg,acc"].check) == {"synergy"}
    study = json.loads((out / "study.json").read_text())
    assert study["provenance"]["isoprobe"] and len(study["jobs"]) == 4


def test_the_run_folder_holds_what_the_single_commands_write(finished):
    _, out = finished
    run = out / "runs/synth-mixed-0.5/s1/hierarchical/emg+acc/seed0"
    for name in ("checkpoint.pt", "metrics.jsonl", "eval/metrics.json", "ablate/ablation.csv", "shift/shift.csv"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "ablate/ablation.json").read_text())["meta"]
    assert meta["provenance"]["checkpoint"]["sha256"]


def test_a_rerun_skips_every_finished_step(finished):
    recipe, out = finished
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    result = run_study(load_recipe(recipe), out, report=False)
    assert set(result.steps) == {"skipped"} and result.steps["skipped"] == 4 * 2 + 2 * 2
    after = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    assert before == after


def test_interrupted_study_resumes_to_the_same_numbers(finished, tmp_path, monkeypatch):
    recipe, reference = finished
    out = tmp_path / "out"
    calls = {"n": 0}
    real = jobs_module.run_job

    def dies_in_the_third_job(study, recipe_, job, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(study, recipe_, job, *args, **kwargs)

    monkeypatch.setattr("isoprobe.study.runner.run_job", dies_in_the_third_job)
    with pytest.raises(KeyboardInterrupt):
        run_study(load_recipe(recipe), out, report=False)
    monkeypatch.setattr("isoprobe.study.runner.run_job", real)
    result = run_study(load_recipe(recipe), out, report=False)
    assert result.steps["skipped"] == 2 + 4  # the two finished jobs: train, eval (+ ablate, shift on the first)
    assert_same_tables(reference, out)


def test_two_workers_give_the_same_numbers(finished, tmp_path):
    recipe, reference = finished
    run_study(load_recipe(recipe), tmp_path / "out", jobs=2, report=False)
    assert_same_tables(reference, tmp_path / "out")


def test_a_changed_option_redoes_only_what_depends_on_it(finished, tmp_path):
    recipe, reference = finished
    out = tmp_path / "out"
    import shutil

    shutil.copytree(reference, out)
    changed = write_recipe(tmp_path, TINY.replace('interventions = "mask,mean"', 'interventions = "mask"'))
    result = run_study(load_recipe(changed), out, report=False)
    assert result.steps == {"skipped": 4 * 2 + 2, "done": 2}  # shift of the two multimodal runs
    assert set(pd.read_csv(out / "tables/shift.csv").intervention) == {"mask"}


@pytest.mark.parametrize("edit, key", [
    (("[data]", "[data]\nsmoothing = 3"), "data.smoothing"),
    (("d_model = 16", "d_modle = 16"), "models[0].d_modle"),
    (('modalities = ["emg,acc", "emg"]', 'modalities = ["emg,force"]'), "models[0].modalities"),
    (('arch = "hierarchical"', 'arch = "cnn"'), "models[0].arch"),
    (("epochs = 2", "epochs = 0"), "models[0].epochs"),
    (('pathway = "cross,uni"', 'pathway = "cross,uni"\nintervention = "zap"'), "ablate.intervention"),
    (("seeds = [0]", "seeds = [0, 0]"), "seeds"),
    (('[shift]', '[shift]\nwindows = 3'), "shift.windows"),
    (('layers = "1-2"\npathway = "cross,uni"', 'layers = "1-3"\npathway = "cross,uni"'), "ablate.layers"),
    (('pathway = "cross,uni"', 'pathway = "cross,emg->force"'), "ablate.pathway"),
    (("[shift]", "[report]\nbootstrap = 200\n[shift]"), "report.bootstrap"),
    (("[shift]", "[knockout]\nwindows = 3\n[shift]"), "knockout.windows"),
    (("[shift]", "[knockout]\nwindow = 3\nmode = \"joint\"\n[shift]"), "knockout.window"),
    (("[shift]", "[report]\nsubject_bootstrap = 10\n[shift]"), "report.subject_bootstrap"),
])
def test_bad_recipes_name_the_key_before_any_work(tmp_path, edit, key):
    recipe = write_recipe(tmp_path, TINY.replace(*edit))
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe)
    assert caught.value.key == key, str(caught.value)
    result = CliRunner().invoke(app, ["study", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert str(recipe) in result.output and key in result.output
    assert not (tmp_path / "out").exists()


def test_the_recipe_sets_the_report_options_under_their_own_names(finished, tmp_path):
    recipe, out = finished
    shutil.copytree(out, tmp_path / "out")
    text = recipe.read_text().replace("[shift]", "[report]\nsubject_bootstrap = 150\nseed = 3\nruns_shown = 1\n[shift]")
    result = run_study(load_recipe(write_recipe(tmp_path, text)), tmp_path / "out")
    assert result.steps.get("done", 0) == 0 and result.steps["skipped"] > 0  # they change no analysis
    options = json.loads((tmp_path / "out/report/report.json").read_text(encoding="utf-8"))["options"]
    assert options == {"subject_bootstrap": 150, "seed": 3, "runs_shown": 1}


def test_a_missing_data_folder_is_named(tmp_path):
    text = TINY.replace("[data.synthetic]", "root = \"nowhere\"\n[data.unused]").split("[data.unused]")[0]
    text += "\n[[models]]\narch = \"hierarchical\"\nepochs = 1\n"
    recipe = write_recipe(tmp_path, text)
    with pytest.raises(RecipeError, match="data.root: no such data folder"):
        load_recipe(recipe)
    result = CliRunner().invoke(app, ["study", str(recipe), "--out", str(tmp_path / "out"), "--data", str(tmp_path / "gone")])
    assert result.exit_code == 2 and "--data: no such data folder" in result.output


def test_analyses_need_a_model_with_attention_across_groups(tmp_path):
    text = TINY.replace('arch = "hierarchical"', 'arch = "mlp"').replace("n_heads = 2\nd_mlp = 32\nn_layers = 2\n", "")
    with pytest.raises(RecipeError) as caught:
        load_recipe(write_recipe(tmp_path, text))
    assert caught.value.key == "ablate" and "MLP" in str(caught.value)


@pytest.mark.parametrize("modalities, kind", [("emg", "unimodal"), ("acc[0:3]", "unimodal"), ("emg,acc", "multimodal"),
                                              ("emg[0:6],emg[6:12]", "equal-channel"), ("emg,acc[0:12]", "equal-channel"),
                                              ("emg,acc[0:6]", "multimodal"), ("acc[0:18],acc[18:36]", "equal-channel")])
def test_configuration_kinds(modalities, kind):
    assert configuration_kind(modalities, "ninapro-db2") == kind


def test_ray_executor_gives_the_local_numbers(tmp_path):
    """A two-job study on a local Ray instance against the same study run in this process."""
    text = TINY.replace("subjects = [1, 2]", "subjects = [1]").replace("[ablate]", "[unused]").split("[unused]")[0]
    recipe = load_recipe(write_recipe(tmp_path, text))
    run_study(recipe, tmp_path / "local", report=False)
    result = run_study(recipe, tmp_path / "ray", executor="ray", jobs=2, report=False)
    assert result.jobs == 2 and result.steps == {"done": 4}
    assert_same_tables(tmp_path / "local", tmp_path / "ray")


def test_several_data_tables_and_which_models_train_on_them(tmp_path):
    models = Path(__file__).resolve().parents[2] / "models"
    text = f"""
[[data]]
name = "db2-emg-only"
subjects = [1, 2]
synthetic = {{ preset = "emg-only" }}
[[data]]
name = "hd-synergy"
dataset = "hdsemg65"
synthetic = {{ preset = "synergy" }}

[[models]]
arch = "hierarchical"

[[models]]
name = "mlp-db2"
config = "{models / 'mlp-db2.toml'}"
epochs = 3
"""
    from isoprobe.study.jobs import jobs_for

    recipe = load_recipe(write_recipe(tmp_path, text))
    found = sorted((j.source.name, j.subject, j.model.name, j.modalities) for j in jobs_for(recipe))
    assert found == [("db2-emg-only", 1, "hierarchical", "emg,acc"), ("db2-emg-only", 1, "mlp-db2", "emg,acc"),
                     ("db2-emg-only", 2, "hierarchical", "emg,acc"), ("db2-emg-only", 2, "mlp-db2", "emg,acc"),
                     ("hd-synergy", 1, "hierarchical", "hdsemg,force")]
    assert recipe.models[1].model_spec("ninapro-db2", "emg,acc").training.epochs == 3
    wrong = text.replace('epochs = 3', 'epochs = 3\ndata = ["hd-synergy"]')
    with pytest.raises(RecipeError) as caught:
        load_recipe(write_recipe(tmp_path, wrong))
    assert caught.value.key == "models[1].data"


def test_recipes_in_analyses_load_with_their_data_named_on_the_command_line(tmp_path):
    """The shipped recipes parse; the real-data ones take their folders from --data NAME=FOLDER."""
    from isoprobe.data.synth.generate import SynthConfig, generate
    from isoprobe.study.jobs import jobs_for

    analyses = Path(__file__).resolve().parents[2] / "analyses"
    for layout in ("ninapro-db2", "hdsemg65"):
        generate(SynthConfig(layout=layout, gestures=2, subjects=2, seconds_per_repetition=0.3, rest_seconds=0.3),
                 tmp_path / layout)
    sweep = load_recipe(analyses / "channel-sweep.toml", {"hdsemg": tmp_path / "hdsemg65", "db2": tmp_path / "ninapro-db2"})
    assert [s.subjects for s in sweep.data] == [(1, 2), (1, 2)]  # subjects = "all": both found
    assert len(jobs_for(sweep)) == 2 * 10 + 2 * 8
    paper = load_recipe(analyses / "paper-ninapro.toml", tmp_path / "ninapro-db2")
    assert {j.identity()["configuration"] for j in jobs_for(paper)} == {"unimodal", "multimodal", "equal-channel"}
    for name in ("quick.toml", "validation.toml"):
        assert jobs_for(load_recipe(analyses / name))
    result = CliRunner().invoke(app, ["study", str(analyses / "channel-sweep.toml"), "--out", str(tmp_path / "out"),
                                      "--data", f"hd={tmp_path}"])
    assert result.exit_code == 2 and "--data: no [[data]] table named 'hd'" in result.output


def test_a_killed_study_rerun_ends_with_the_uninterrupted_numbers(finished, tmp_path):
    """SIGKILL in the middle of the first training (after its first epoch's last.pt), then a rerun."""
    import os
    import signal
    import subprocess
    import sys
    import time

    recipe, reference = finished
    out = tmp_path / "out"
    command = [sys.executable, "-m", "isoprobe", "study", str(recipe), "--out", str(out), "--jobs", "1", "--no-report"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    metrics = out / "runs/synth-mixed-0.5/s1/hierarchical/emg+acc/seed0/metrics.jsonl"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if metrics.is_file() and metrics.read_text().strip():
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "tables").exists()  # killed before the end
    result = CliRunner().invoke(app, ["study", str(recipe), "--out", str(out), "--jobs", "1", "--no-report"])
    assert result.exit_code == 0, result.output
    assert_same_tables(reference, out)
    # not a terminal (a CI log): one line per finished job, where a progress bar would draw nothing
    finished = [line for line in result.output.splitlines() if line.startswith("job ") and " done: runs/" in line]
    assert len(finished) == len({line.split(": ", 1)[1] for line in finished}) >= 1


def _spawned_workers_of(parent: int) -> set[int]:
    """Pids of the multiprocessing workers whose parent is `parent` (Linux /proc)."""
    workers = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            workers.add(int(stat.parent.name))
    return workers


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads the process table from Linux /proc")
def test_workers_end_when_the_study_process_is_killed(tmp_path):
    """SIGKILL to the study process alone (not its group): its workers must not train on as orphans."""
    import os
    import signal
    import subprocess
    import sys
    import time

    recipe = write_recipe(tmp_path, TINY.replace("epochs = 2", "epochs = 200"))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "isoprobe", "study", str(recipe), "--out", str(out), "--jobs", "2", "--no-report"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if len([p for p in out.glob("runs/**/metrics.jsonl") if p.read_text().strip()]) >= 2:
                break  # both workers are past their initializer and training
            time.sleep(0.05)
        workers = _spawned_workers_of(process.pid)
        assert len(workers) == 2
        process.kill()
        process.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)]
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of the group, on failure
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper (a container's init may never reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
