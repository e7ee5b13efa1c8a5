"""`isoprobe data synth` and `isoprobe data inspect` through typer's CliRunner: exit codes, messages,
no tracebacks for bad input, no partial files; and a light `isoprobe --help`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from isoprobe.data.pipeline import DataConfig, prepare
from tests.conftest import SMALL_DB2_SAMPLES
from tests.cli_helpers import invoke, assert_user_error

SMALL_SYNTH = ["--gestures", "3", "--seconds-per-repetition", "0.8", "--rest-seconds", "0.5", "--subjects", "1"]
N_SMALL = SMALL_DB2_SAMPLES


def partial_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".partial-" in p.name]


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "synth"
    result = invoke("data", "synth", "--out", out, *SMALL_SYNTH)
    return result, out


@pytest.fixture(scope="module")
def db2_small(db2_small_vars) -> dict[str, np.ndarray]:
    return db2_small_vars


@pytest.fixture
def bad_db2(db2_small, tmp_path):
    """write(**changes): a folder holding one altered S1_E1_A1.mat; None removes a variable."""

    def write(**changes) -> Path:
        variables = dict(db2_small) | changes
        folder = tmp_path / "bad"
        folder.mkdir(exist_ok=True)
        scipy.io.savemat(str(folder / "S1_E1_A1.mat"), {k: v for k, v in variables.items() if v is not None},
                         format="5", oned_as="column")
        return folder

    return write


# ---------------------------------------------------------------------------------------------
# data synth / data inspect on good data


def test_synth_writes_files_and_sidecar(synth_run):
    result, out = synth_run
    assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["DB2_s1/S1_E1_A1.mat", "DB2_s1/S1_E2_A1.mat", "DB2_s1/S1_E3_A1.mat", "isoprobe-synth.json"]
    assert "wrote 3 files for 1 subject(s)" in result.output and str(out) in result.output
    assert str(out / "isoprobe-synth.json") in result.output
    truth = json.loads((out / "isoprobe-synth.json").read_text())
    assert truth["config"]["gestures"] == 3 and truth["config"]["preset"] == "redundant"
    assert truth["config"]["seconds_per_repetition"] == 0.8 and truth["config"]["subjects"] == 1
    assert [c["label"] for c in truth["classes"]] == [1, 18, 41]
    assert truth["files"] == {"1": ["DB2_s1/S1_E1_A1.mat", "DB2_s1/S1_E2_A1.mat", "DB2_s1/S1_E3_A1.mat"]}
    assert not partial_files(out)


def test_synth_hd_layout(tmp_path):
    out = tmp_path / "hd"
    result = invoke("data", "synth", "--out", out, "--layout", "hdsemg65", "--gestures", "2", "--repetitions", "2",
                    "--seconds-per-repetition", "0.3", "--rest-seconds", "0.3", "--subjects", "1")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["isoprobe-synth.json", "s1.mat"]
    assert "wrote 1 files for 1 subject(s)" in result.output


def test_inspect_prints_subjects_classes_and_planted_structure(synth_run):
    _, out = synth_run
    result = invoke("data", "inspect", out)
    assert result.exit_code == 0, result.output
    text = result.output
    assert f"{out}: ninapro-db2, 1 subject(s)" in text
    assert "subject 1" in text and "2000 Hz" in text and "emg 12 ch, acc 36 ch" in text
    assert "exercises [1, 2, 3]" in text and "repetitions [1, 2, 3, 4, 5, 6]" in text
    for name in ("rest", "E1-01", "E2-18", "E3-41"):
        assert name in text
    assert "planted structure" in text and "preset redundant" in text and "emg or acc" in text
    assert "windows" not in text


def test_inspect_windows_json(synth_run, tmp_path):
    _, out = synth_run
    json_path = tmp_path / "reports" / "out.json"
    result = invoke("data", "inspect", out, "--windows", "--json", json_path)
    assert result.exit_code == 0, result.output
    assert "summary written to" in result.output and "train" in result.output
    payload = json.loads(json_path.read_text())
    assert payload["dataset"] == "ninapro-db2" and payload["path"] == str(out)
    [subject] = payload["subjects"]
    assert subject["subject"] == 1 and subject["channels"] == {"emg": 12, "acc": 36}
    assert [c["label"] for c in subject["classes"]] == [0, 1, 18, 41]
    assert payload["ground_truth"]["config"]["preset"] == "redundant"
    windows = payload["windows"]["1"]
    assert windows["classes"] == ["E1-01", "E2-18", "E3-41"]
    assert windows["shapes"] == {"emg": [400, 12], "acc": [400, 36]}
    expected = prepare(DataConfig(root=str(out)), cache_dir=None)
    assert windows["counts"] == {split: len(ws) for split, ws in expected.splits.items()}
    assert all(count > 0 for count in windows["counts"].values())
    assert not partial_files(tmp_path)


def test_inspect_windows_with_modality_groups(synth_run):
    _, out = synth_run
    result = invoke("data", "inspect", out, "--windows", "--modalities", "emg[0:6],emg[6:12]")
    assert result.exit_code == 0, result.output
    assert "emg[0:6] 400×6, emg[6:12] 400×6" in result.output


# ---------------------------------------------------------------------------------------------
# bad input: exit code 2, the file and field named, no traceback


def test_inspect_missing_variable(bad_db2):
    folder = bad_db2(acc=None)
    assert_user_error(invoke("data", "inspect", folder), str(folder / "S1_E1_A1.mat"), "field 'acc'",
                      "missing variable 'acc'")


def test_inspect_wrong_shape(bad_db2, db2_small):
    folder = bad_db2(emg=db2_small["emg"][:, :10])
    assert_user_error(invoke("data", "inspect", folder), str(folder / "S1_E1_A1.mat"), "field 'emg'",
                      "expected 12 columns", f"({N_SMALL}, 10)")


def test_inspect_nans(bad_db2, db2_small):
    emg = db2_small["emg"].astype(np.float64)
    emg[99, 4] = np.nan
    folder = bad_db2(emg=emg)
    assert_user_error(invoke("data", "inspect", folder), str(folder / "S1_E1_A1.mat"), "field 'emg'",
                      "NaN", "(99, 4)")


def test_inspect_one_bad_file_given_directly(bad_db2, db2_small):
    folder = bad_db2(restimulus=db2_small["restimulus"][:-5])
    path = folder / "S1_E1_A1.mat"
    assert_user_error(invoke("data", "inspect", path), str(path), "field 'restimulus'", "more than one sample")


def test_inspect_empty_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(invoke("data", "inspect", empty), str(empty), "holds no NinaPro DB2", "HD-sEMG")


def test_inspect_missing_folder(tmp_path):
    assert_user_error(invoke("data", "inspect", tmp_path / "nowhere"), str(tmp_path / "nowhere"), "no such file")


def test_inspect_v73_file_where_db2_expected(hd_redundant, tmp_path):
    folder = tmp_path / "renamed"
    folder.mkdir()
    shutil.copy(hd_redundant / "s1.mat", folder / "S1_E1_A1.mat")
    assert_user_error(invoke("data", "inspect", folder), str(folder / "S1_E1_A1.mat"), "MATLAB v7.3",
                      "--dataset hdsemg65")


def test_inspect_non_mat_file(tmp_path):
    folder = tmp_path / "text"
    folder.mkdir()
    (folder / "S1_E1_A1.mat").write_text("time,emg1,emg2\n" * 50)
    assert_user_error(invoke("data", "inspect", folder), str(folder / "S1_E1_A1.mat"), "not a MATLAB .mat file")


def test_inspect_hd_file_with_bad_grid(hd_redundant, tmp_path):
    import h5py

    from isoprobe.data.synth.writers import write_mat_v73

    with h5py.File(hd_redundant / "s1.mat", "r") as file:
        variables = {name: np.asarray(file[name][()]).T[:2000] for name in file}
    variables["emg_flexors"] = variables["emg_flexors"][:, :, :7]
    write_mat_v73(tmp_path / "s1.mat", variables)
    assert_user_error(invoke("data", "inspect", tmp_path), str(tmp_path / "s1.mat"), "field 'emg_flexors'", "8 × 8")


def test_inspect_unknown_modality(synth_run):
    _, out = synth_run
    result = invoke("data", "inspect", out, "--windows", "--modalities", "emg,foo")
    assert_user_error(result, "--modalities", "'foo'", "unknown modality", "emg, acc")
    assert "subject 1" not in result.output  # it failed before the slow part


@pytest.mark.parametrize(
    "spec, fragment",
    [("emg[12]", "channel 12 is out of range"), ("emg[a:b]", "a selector is a slice"), ("emg[/]", "a selector"),
     ("emg,emg", "a group appears twice")],
)
def test_inspect_bad_modality_selectors(synth_run, spec, fragment):
    _, out = synth_run
    result = invoke("data", "inspect", out, "--windows", "--modalities", spec)
    # The value is quoted as typed: brackets are not eaten as terminal markup.
    assert_user_error(result, "--modalities", fragment, repr(spec))


def test_inspect_unknown_dataset(synth_run):
    _, out = synth_run
    assert_user_error(invoke("data", "inspect", out, "--dataset", "db3"), "--dataset", "'db3'", "ninapro-db2, hdsemg65")


def test_paths_with_brackets_are_printed_verbatim(tmp_path):
    folder = tmp_path / "data[bold]" / "[/]x"
    folder.mkdir(parents=True)
    assert_user_error(invoke("data", "inspect", folder), str(folder))


@pytest.mark.parametrize(
    "options, fragments",
    [
        (["--layout", "db3"], ["--layout", "'db3'", "ninapro-db2, hdsemg65"]),
        (["--preset", "xor"], ["--preset", "'xor'", "redundant", "synergy", "mixed"]),
        (["--preset", "mixed"], ["--synergy-fraction", "mixed preset"]),
        (["--preset", "mixed", "--synergy-fraction", "1.5"], ["--synergy-fraction", "1.5", "[0, 1]"]),
        (["--preset", "redundant", "--synergy-fraction", "0.5"], ["--synergy-fraction", "only the mixed preset"]),
        (["--gestures", "50"], ["--gestures", "50", "1–49"]),
        (["--subjects", "0"], ["--subjects", "at least 1"]),
        (["--seconds-per-repetition", "0.1"], ["--seconds-per-repetition", "0.3 s"]),
    ],
    ids=["layout", "preset", "mixed-no-fraction", "fraction-range", "fraction-without-mixed", "gestures",
         "subjects", "duration"],
)
def test_synth_bad_options(tmp_path, options, fragments):
    out = tmp_path / "out"
    assert_user_error(invoke("data", "synth", "--out", out, *SMALL_SYNTH[2:], *options), *fragments)
    assert not out.exists() or not any(out.rglob("*"))


def test_synth_out_is_a_file(tmp_path):
    out = tmp_path / "taken"
    out.write_text("keep me")
    assert_user_error(invoke("data", "synth", "--out", out, *SMALL_SYNTH), "--out", str(out), "must be a folder")
    assert out.read_text() == "keep me"
    assert not partial_files(tmp_path)


# ---------------------------------------------------------------------------------------------
# no partial output


def test_failing_json_run_writes_nothing(bad_db2, tmp_path):
    folder = bad_db2(acc=None)
    json_path = tmp_path / "out.json"
    assert_user_error(invoke("data", "inspect", folder, "--json", json_path), "field 'acc'")
    assert not json_path.exists()
    assert not partial_files(tmp_path)


def test_json_run_failing_after_the_summary_keeps_the_old_file(synth_run, tmp_path):
    """The summary succeeds, windowing then fails: the JSON is written only at the very end."""
    _, out = synth_run
    json_path = tmp_path / "out.json"
    json_path.write_text('{"old": true}')
    result = invoke("data", "inspect", out, "--windows", "--modalities", "emg[12]", "--json", json_path)
    assert_user_error(result, "channel 12 is out of range")
    assert "subject 1" in result.output  # the summary was printed before the failure
    assert json_path.read_text() == '{"old": true}'
    assert not partial_files(tmp_path)


def test_synth_failing_mid_write_leaves_no_partial_files(tmp_path, monkeypatch):
    """The disk fills while the second file is written: the first file stays complete, the second and
    the sidecar are absent, and no temporary file is left behind."""
    calls = []
    real_savemat = scipy.io.savemat

    def savemat(target, variables, **options):
        calls.append(Path(target))
        if len(calls) == 2:
            Path(target).write_bytes(b"MATLAB 5.0 half a file")
            raise OSError(28, "No space left on device")
        return real_savemat(target, variables, **options)

    monkeypatch.setattr(scipy.io, "savemat", savemat)
    out = tmp_path / "out"
    result = invoke("data", "synth", "--out", out, *SMALL_SYNTH)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert len(calls) == 2 and ".partial-" in calls[1].name  # written to a temporary name first
    assert not partial_files(tmp_path)
    assert (out / "DB2_s1" / "S1_E1_A1.mat").is_file()
    assert not (out / "DB2_s1" / "S1_E2_A1.mat").exists()
    assert not (out / "isoprobe-synth.json").exists()


# ---------------------------------------------------------------------------------------------
# help and import weight


def test_help():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "Usage" in result.output and "data" in result.output
    result = invoke("data", "--help")
    assert result.exit_code == 0 and "synth" in result.output and "inspect" in result.output
    result = invoke("data", "synth", "--help")
    assert result.exit_code == 0 and "--synergy-fraction" in result.output
    result = invoke("--version")
    assert result.exit_code == 0 and "isoprobe 0.1.0" in result.output


def test_cli_import_is_light_and_module_help_runs():
    code = "import sys, isoprobe.cli.app; print('torch' in sys.modules, 'transformer_lens' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == ["False", "False"]
    helped = subprocess.run([sys.executable, "-m", "isoprobe", "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert "data" in helped.stdout and "Traceback" not in helped.stderr
