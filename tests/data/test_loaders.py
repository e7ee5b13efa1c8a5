"""Loaders (DESIGN §2.1–2.2) and modality configurations (§2.4): what they read, and one clear error
naming the file and the field for every bad input."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from isoprobe.data import hdsemg, ninapro
from isoprobe.data.modalities import ModalityGroup, parse_modalities
from isoprobe.data.pipeline import DataConfig, prepare
from isoprobe.data.synth.writers import write_mat_v73
from tests.conftest import SMALL_DB2_SAMPLES
from isoprobe.errors import ConfigError, DataFormatError

DB2_CHANNELS = {"emg": 12, "acc": 36}
HD_CHANNELS = {"hdsemg": 128, "force": 5}
N_DB2 = SMALL_DB2_SAMPLES
N_HD = 3000


# ---------------------------------------------------------------------------------------------
# helpers


def save_v5(path: Path, variables: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), variables, format="5", oned_as="column")
    return path


def expect_error(error: pytest.ExceptionInfo, path: Path, field: str | None, *fragments: str) -> str:
    """The error names the file and (where one is at fault) the field, plus the given details."""
    message = str(error.value)
    assert error.value.path == path
    assert str(path) in message
    assert error.value.field == field
    if field is not None:
        assert f"field '{field}'" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.fixture(scope="module")
def db2_vars(db2_small_vars) -> dict[str, np.ndarray]:
    return db2_small_vars


@pytest.fixture
def db2_file(db2_vars, tmp_path):
    """write(**changes) saves an altered copy of the small DB2 file as tmp_path/S1_E1_A1.mat.
    A value of None removes the variable."""

    def write(**changes) -> Path:
        variables = {k: v.copy() for k, v in db2_vars.items()}
        for name, value in changes.items():
            if value is None:
                del variables[name]
            else:
                variables[name] = value
        return save_v5(tmp_path / "S1_E1_A1.mat", variables)

    return write


@pytest.fixture(scope="module")
def hd_vars(hd_redundant) -> dict[str, np.ndarray]:
    """The fixture's HD-sEMG variables in MATLAB axis order (samples first), all samples."""
    with h5py.File(hd_redundant / "s1.mat", "r") as file:
        return {name: np.asarray(file[name][()]).T for name in file}


@pytest.fixture
def hd_file(hd_vars, tmp_path):
    """write(**changes) saves the first N_HD samples, altered, as tmp_path/s1.mat (v7.3).
    A value of None removes the variable."""

    def write(**changes) -> Path:
        variables = {k: v[:N_HD].copy() for k, v in hd_vars.items()}
        for name, value in changes.items():
            if value is None:
                del variables[name]
            else:
                variables[name] = value
        path = tmp_path / "s1.mat"
        write_mat_v73(path, variables)
        return path

    return write


# ---------------------------------------------------------------------------------------------
# NinaPro DB2: what a valid file gives


def test_db2_small_file_reads_back(db2_vars, db2_file):
    emg, acc, labels, reps = ninapro.read_file(db2_file())
    assert emg.shape == (N_DB2, 12) and acc.shape == (N_DB2, 36)
    assert emg.dtype == acc.dtype == np.float32
    assert labels.dtype == reps.dtype == np.int32
    np.testing.assert_array_equal(emg, db2_vars["emg"])
    np.testing.assert_array_equal(labels, db2_vars["restimulus"][:, 0])
    np.testing.assert_array_equal(reps, db2_vars["rerepetition"][:, 0])
    assert set(np.unique(labels)) == {0, 1}


def test_db2_fixture_loads_all_exercises(db2_redundant):
    recording = ninapro.load_subject(db2_redundant, 1)
    assert recording.dataset == "ninapro-db2" and recording.sampling_rate == 2000.0
    assert recording.exercises == (1, 2, 3)
    assert [p.name for p in recording.sources] == ["S1_E1_A1.mat", "S1_E2_A1.mat", "S1_E3_A1.mat"]
    assert {m: recording.n_channels(m) for m in recording.modality_names} == DB2_CHANNELS
    assert recording.segment_starts[0] == 0 and len(recording.segment_starts) == 3
    labels = set(np.unique(recording.labels).tolist())
    assert 0 in labels and labels - {0} <= set(range(1, 50))
    assert {e for e, r in ninapro.EXERCISE_LABELS.items() if labels & set(r)} == {1, 2, 3}
    assert set(np.unique(recording.repetitions).tolist()) == {0, 1, 2, 3, 4, 5, 6}


@pytest.mark.parametrize("shorten", ["labels", "signals"])
def test_db2_quirk_one_row_off_is_truncated(db2_vars, db2_file, caplog, shorten):
    if shorten == "labels":  # the known quirk: label vectors one row shorter than emg
        changes = {k: db2_vars[k][:-1] for k in ("restimulus", "rerepetition", "stimulus", "repetition")}
    else:
        changes = {k: db2_vars[k][:-1] for k in ("emg", "acc")}
    with caplog.at_level(logging.DEBUG, logger="isoprobe.data.ninapro"):
        emg, acc, labels, reps = ninapro.read_file(db2_file(**changes))
    assert len(emg) == len(acc) == len(labels) == len(reps) == N_DB2 - 1
    np.testing.assert_array_equal(emg, db2_vars["emg"][: N_DB2 - 1])
    np.testing.assert_array_equal(labels, db2_vars["restimulus"][: N_DB2 - 1, 0])
    assert any("truncating" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


def test_db2_full_length_file_does_not_log_truncation(db2_file, caplog):
    with caplog.at_level(logging.DEBUG, logger="isoprobe.data.ninapro"):
        ninapro.read_file(db2_file())
    assert not [r for r in caplog.records if r.name == "isoprobe.data.ninapro"]


def test_db2_falls_back_to_raw_stimulus_with_warning(db2_vars, db2_file, caplog, tmp_path):
    # The raw vectors differ from the relabelled ones (jittered boundaries), so the test can tell which was used.
    assert not np.array_equal(db2_vars["stimulus"], db2_vars["restimulus"])
    path = db2_file(restimulus=None, rerepetition=None)
    with caplog.at_level(logging.WARNING, logger="isoprobe.data.ninapro"):
        recording = ninapro.load_subject(tmp_path, 1, (1,))
    np.testing.assert_array_equal(recording.labels, db2_vars["stimulus"][:, 0])
    np.testing.assert_array_equal(recording.repetitions, db2_vars["repetition"][:, 0])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert str(path) in text and "'stimulus'" in text and "'repetition'" in text


def test_db2_flat_and_subject_folder_layouts_both_load(db2_redundant, tmp_path):
    nested = ninapro.load_subject(db2_redundant, 1, (1, 2))
    flat_root = tmp_path / "flat"
    flat_root.mkdir()
    for exercise in (1, 2):
        shutil.copy(db2_redundant / "DB2_s1" / f"S1_E{exercise}_A1.mat", flat_root)
    flat = ninapro.load_subject(flat_root, 1, (1, 2))
    assert [p.parent for p in flat.sources] == [flat_root, flat_root]
    assert [p.parent.name for p in nested.sources] == ["DB2_s1", "DB2_s1"]
    for name in ("emg", "acc"):
        np.testing.assert_array_equal(flat.signals[name], nested.signals[name])
    np.testing.assert_array_equal(flat.labels, nested.labels)
    assert ninapro.subjects_in(flat_root) == ninapro.subjects_in(db2_redundant) == [1]

    # One exercise flat, another in DB2_s1/: both are found.
    mixed_root = tmp_path / "mixed"
    (mixed_root / "DB2_s1").mkdir(parents=True)
    shutil.copy(db2_redundant / "DB2_s1" / "S1_E1_A1.mat", mixed_root)
    shutil.copy(db2_redundant / "DB2_s1" / "S1_E2_A1.mat", mixed_root / "DB2_s1")
    mixed = ninapro.load_subject(mixed_root, 1)
    assert mixed.exercises == (1, 2)
    assert mixed.sources == (mixed_root / "S1_E1_A1.mat", mixed_root / "DB2_s1" / "S1_E2_A1.mat")


def test_db2_exercise_selection(db2_redundant):
    e2 = ninapro.load_subject(db2_redundant, 1, (2,))
    assert e2.exercises == (2,) and [p.name for p in e2.sources] == ["S1_E2_A1.mat"]
    gestures = set(np.unique(e2.labels).tolist()) - {0}
    assert gestures and gestures <= set(range(18, 41))

    e1, e3 = ninapro.load_subject(db2_redundant, 1, (1,)), ninapro.load_subject(db2_redundant, 1, (3,))
    both = ninapro.load_subject(db2_redundant, 1, (3, 1))  # loaded in exercise order whatever the request
    assert both.exercises == (1, 3)
    assert both.segment_starts == (0, e1.n_samples)
    np.testing.assert_array_equal(both.signals["emg"], np.concatenate([e1.signals["emg"], e3.signals["emg"]]))
    np.testing.assert_array_equal(both.labels, np.concatenate([e1.labels, e3.labels]))


def test_db2_unknown_exercise_is_a_config_error(db2_redundant):
    with pytest.raises(ConfigError) as error:
        ninapro.load_subject(db2_redundant, 1, (1, 4))
    assert error.value.option == "exercises" and error.value.value == 4
    assert "1, 2 and 3" in str(error.value)


# ---------------------------------------------------------------------------------------------
# NinaPro DB2: bad files, one error each naming file and field


def _nan_at(array: np.ndarray, index: tuple[int, int], value: float = np.nan) -> np.ndarray:
    array = array.astype(np.float64)
    array[index] = value
    return array


DB2_BAD = {
    "missing acc": (lambda v: {"acc": None}, "acc", ["missing variable 'acc'", "emg"]),
    "missing emg": (lambda v: {"emg": None}, "emg", ["missing variable 'emg'"]),
    "emg with 10 columns": (lambda v: {"emg": v["emg"][:, :10]}, "emg", ["expected 12 columns", f"({N_DB2}, 10)"]),
    "emg 1-D": (lambda v: {"emg": v["emg"][:, 0]}, "emg", ["expected 12 columns", f"({N_DB2}, 1)"]),
    "emg 3-D": (lambda v: {"emg": v["emg"].reshape(N_DB2, 3, 4)}, "emg", ["2-D", f"({N_DB2}, 3, 4)"]),
    "acc with 35 columns": (lambda v: {"acc": v["acc"][:, :35]}, "acc", ["expected 36 columns"]),
    "emg and acc lengths differ": (lambda v: {"acc": v["acc"][:-100]}, "acc",
                                   [f"'emg' has {N_DB2} samples but 'acc' has {N_DB2 - 100}"]),
    "labels two rows short": (lambda v: {"restimulus": v["restimulus"][:-2]}, "restimulus",
                              ["more than one sample", f"'restimulus' {N_DB2 - 2}"]),
    "labels two rows long": (lambda v: {"restimulus": np.vstack([v["restimulus"], [[0], [0]]])}, "restimulus",
                             ["more than one sample", f"'restimulus' {N_DB2 + 2}"]),
    "repetitions two rows short": (lambda v: {"rerepetition": v["rerepetition"][:-2]}, "rerepetition",
                                   ["more than one sample", f"'rerepetition' {N_DB2 - 2}"]),
    "NaN in emg": (lambda v: {"emg": _nan_at(v["emg"], (1234, 5))}, "emg", ["1 NaN or infinite", "(1234, 5)"]),
    "inf in acc": (lambda v: {"acc": _nan_at(v["acc"], (7, 30), np.inf)}, "acc", ["NaN or infinite", "(7, 30)"]),
    "NaN in labels": (lambda v: {"restimulus": _nan_at(v["restimulus"], (10, 0))}, "restimulus", ["NaN"]),
    "fractional labels": (lambda v: {"restimulus": v["restimulus"] + 0.5}, "restimulus", ["whole numbers"]),
    "labels as a matrix": (lambda v: {"restimulus": np.hstack([v["restimulus"]] * 2)}, "restimulus",
                           ["expected a vector", f"({N_DB2}, 2)"]),
    "no labels at all": (lambda v: {"restimulus": None, "stimulus": None}, "restimulus",
                         ["'restimulus' or 'stimulus'", "variables present"]),
}


@pytest.mark.parametrize("case", DB2_BAD, ids=list(DB2_BAD))
def test_db2_bad_file_names_file_and_field(db2_vars, db2_file, case):
    mutate, field, fragments = DB2_BAD[case]
    path = db2_file(**mutate(db2_vars))
    with pytest.raises(DataFormatError) as error:
        ninapro.read_file(path)
    expect_error(error, path, field, *fragments)


def test_db2_bad_file_fails_the_same_way_through_load_subject(db2_file, tmp_path):
    path = db2_file(acc=None)
    with pytest.raises(DataFormatError) as error:
        ninapro.load_subject(tmp_path, 1, (1,))
    expect_error(error, path, "acc", "missing variable 'acc'")


def test_db2_labels_outside_the_exercise_range(db2_vars, db2_file, tmp_path):
    restimulus = db2_vars["restimulus"].copy()
    restimulus[restimulus == 1] = 20  # an exercise-2 label inside an exercise-1 file
    path = db2_file(restimulus=restimulus)
    with pytest.raises(DataFormatError) as error:
        ninapro.load_subject(tmp_path, 1, (1,))
    expect_error(error, path, "restimulus", "[20]", "exercise 1", "1–17")

    # Without the relabelled vectors the error names the vector actually read.
    stimulus = db2_vars["stimulus"].copy()
    stimulus[stimulus == 1] = 45
    path = db2_file(restimulus=None, rerepetition=None, stimulus=stimulus)
    with pytest.raises(DataFormatError) as error:
        ninapro.load_subject(tmp_path, 1, (1,))
    expect_error(error, path, "stimulus", "[45]")


def test_db2_exercise_file_with_another_exercises_labels(db2_redundant, tmp_path):
    # A valid E1 file saved under an E2 name: its labels 1–17 are outside exercise 2's 18–40.
    shutil.copy(db2_redundant / "DB2_s1" / "S1_E1_A1.mat", tmp_path / "S1_E2_A1.mat")
    with pytest.raises(DataFormatError) as error:
        ninapro.load_subject(tmp_path, 1, (2,))
    expect_error(error, tmp_path / "S1_E2_A1.mat", "restimulus", "exercise 2", "18–40")


def test_db2_empty_folder(tmp_path):
    with pytest.raises(DataFormatError) as error:
        ninapro.load_subject(tmp_path, 1)
    expect_error(error, tmp_path, None, "no NinaPro DB2 files for subject 1", "S1_E1_A1.mat", "DB2_s1/")


def test_db2_folder_with_only_another_subject(db2_redundant, tmp_path):
    shutil.copy(db2_redundant / "DB2_s1" / "S1_E1_A1.mat", tmp_path / "S2_E1_A1.mat")
    with pytest.raises(DataFormatError) as error:
        ninapro.load_subject(tmp_path, 1)
    expect_error(error, tmp_path, None, "subject 1")


def test_db2_missing_folder(tmp_path):
    with pytest.raises(DataFormatError) as error:
        ninapro.load_subject(tmp_path / "nowhere", 1)
    expect_error(error, tmp_path / "nowhere", None, "not found")


def test_db2_reader_given_a_v73_file(db2_vars, tmp_path):
    path = tmp_path / "S1_E1_A1.mat"
    write_mat_v73(path, {k: db2_vars[k] for k in ("emg", "acc", "restimulus", "rerepetition")})
    for read in (lambda: ninapro.read_file(path), lambda: ninapro.load_subject(tmp_path, 1, (1,))):
        with pytest.raises(DataFormatError) as error:
            read()
        expect_error(error, path, None, "MATLAB v7.3", "MATLAB v5", "hdsemg65")


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "not a MATLAB .mat file"),
        (b"emg,acc\n1,2\n", "not a MATLAB .mat file"),
        (b"sample,emg0,emg1,emg2\n" * 40, "not a MATLAB .mat file"),
    ],
    ids=["empty", "short text", "long text"],
)
def test_db2_reader_given_a_non_mat_file(tmp_path, content, fragment):
    path = tmp_path / "S1_E1_A1.mat"
    path.write_bytes(content)
    with pytest.raises(DataFormatError) as error:
        ninapro.read_file(path)
    expect_error(error, path, None, fragment)


def test_db2_reader_given_a_truncated_v5_file(db2_file):
    path = db2_file()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataFormatError) as error:
        ninapro.read_file(path)
    expect_error(error, path, None, "could not be read as a MATLAB v5 file")


# ---------------------------------------------------------------------------------------------
# HD-sEMG 65 gestures


def test_hd_fixture_loads(hd_redundant, hd_vars):
    recording = hdsemg.load_subject(hd_redundant, 1)
    n = len(hd_vars["adjusted_class"])
    assert recording.dataset == "hdsemg65" and recording.sampling_rate == 2048.0
    assert recording.signals["hdsemg"].shape == (n, 128) and recording.signals["force"].shape == (n, 5)
    assert recording.signals["hdsemg"].dtype == recording.signals["force"].dtype == np.float32
    assert set(np.unique(recording.labels).tolist()) == {0, 1, 2, 3, 4}
    assert set(np.unique(recording.repetitions).tolist()) == {0, 1, 2, 3, 4, 5}
    # Channels 0–63 are the flexor grid and 64–127 the extensor grid, each row-major: channel 8·row + col.
    flexors, extensors = hd_vars["emg_flexors"], hd_vars["emg_extensors"]  # MATLAB order [time, row, col]
    assert flexors.shape == (n, 8, 8)
    np.testing.assert_array_equal(recording.signals["hdsemg"][:, 8 * 2 + 5], flexors[:, 2, 5])
    np.testing.assert_array_equal(recording.signals["hdsemg"][:, 64 + 8 * 7 + 1], extensors[:, 7, 1])
    np.testing.assert_array_equal(recording.signals["hdsemg"], np.concatenate(
        [flexors.reshape(n, 64), extensors.reshape(n, 64)], axis=1))
    np.testing.assert_array_equal(recording.signals["force"], hd_vars["force"])
    np.testing.assert_array_equal(recording.labels, hd_vars["adjusted_class"][:, 0])
    flexor_grid, extensor_grid = recording.grids["hdsemg"]
    assert (flexor_grid.name, flexor_grid.shape, flexor_grid.channels) == ("flexors", (8, 8), tuple(range(64)))
    assert (extensor_grid.name, extensor_grid.channels) == ("extensors", tuple(range(64, 128)))
    assert hdsemg.subjects_in(hd_redundant) == [1]
    # A file path works as well as its folder.
    np.testing.assert_array_equal(hdsemg.load_subject(hd_redundant / "s1.mat", 1).labels, recording.labels)


def test_hd_time_axis_is_found_by_length(hd_redundant, hd_vars, tmp_path):
    """Grids written in other axis orders (MATLAB 8×8×N, 8×N×8) and force as fingers × samples
    load to exactly the arrays of the normal file."""
    reference = hdsemg.load_subject(hd_redundant, 1)
    variables = dict(hd_vars)
    variables["emg_flexors"] = np.moveaxis(hd_vars["emg_flexors"], 0, -1)  # 8 × 8 × N
    variables["emg_extensors"] = np.moveaxis(hd_vars["emg_extensors"], 0, 1)  # 8 × N × 8
    variables["force"] = hd_vars["force"].T  # 5 × N
    variables["adjusted_class"] = hd_vars["adjusted_class"].T  # row vectors
    variables["adjusted_repetition"] = hd_vars["adjusted_repetition"].T
    assert variables["emg_flexors"].shape[:2] == (8, 8)
    write_mat_v73(tmp_path / "s1.mat", variables)
    with h5py.File(tmp_path / "s1.mat", "r") as file:  # h5py sees them the other way round
        assert file["emg_flexors"].shape[0] == len(hd_vars["force"])
    permuted = hdsemg.load_subject(tmp_path, 1)
    for name in ("hdsemg", "force"):
        np.testing.assert_array_equal(permuted.signals[name], reference.signals[name])
    np.testing.assert_array_equal(permuted.labels, reference.labels)
    np.testing.assert_array_equal(permuted.repetitions, reference.repetitions)


def test_hd_falls_back_to_class_and_repetition(hd_vars, hd_file, tmp_path, caplog):
    raw = hd_vars["class"][:N_HD, 0]
    assert not np.array_equal(raw, hd_vars["adjusted_class"][:N_HD, 0])
    hd_file(adjusted_class=None, adjusted_repetition=None)
    with caplog.at_level(logging.WARNING, logger="isoprobe.data.hdsemg"):
        recording = hdsemg.load_subject(tmp_path, 1)
    assert any("'class'/'repetition'" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(recording.labels, raw)
    np.testing.assert_array_equal(recording.repetitions, hd_vars["repetition"][:N_HD, 0])
    assert recording.signals["hdsemg"].shape == (N_HD, 128)


def _nan_grid(grid: np.ndarray) -> np.ndarray:
    grid = grid.copy()
    grid[100, 3, 4] = np.nan
    return grid


HD_BAD = {
    "missing emg_flexors": (lambda v: {"emg_flexors": None}, "emg_flexors",
                            ["missing variable 'emg_flexors'", "emg_extensors"]),
    "missing force": (lambda v: {"force": None}, "force", ["missing variable 'force'"]),
    "no labels at all": (lambda v: {"adjusted_class": None, "class": None}, "adjusted_class",
                         ["'adjusted_class' or 'class'"]),
    "NaN in force": (lambda v: {"force": _nan_at(v["force"], (17, 2))}, "force", ["1 NaN or infinite", "(17, 2)"]),
    "NaN in a grid": (lambda v: {"emg_extensors": _nan_grid(v["emg_extensors"])}, "emg_extensors", ["NaN"]),
    "grid of 8 × 7": (lambda v: {"emg_extensors": v["emg_extensors"][:, :, :7]}, "emg_extensors",
                      ["8 × 8", f"({N_HD}, 8, 7)"]),
    "grid of 16 × 4": (lambda v: {"emg_flexors": v["emg_flexors"].reshape(N_HD, 16, 4)}, "emg_flexors", ["8 × 8"]),
    "grid flattened to 2-D": (lambda v: {"emg_flexors": v["emg_flexors"].reshape(N_HD, 64)}, "emg_flexors",
                              ["3-D", f"({N_HD}, 64)"]),
    "grid shorter than labels": (lambda v: {"emg_flexors": v["emg_flexors"][:-10]}, "emg_flexors",
                                 ["cannot find the time axis", str(N_HD)]),
    "force shorter than labels": (lambda v: {"force": v["force"][:-10]}, "force", ["cannot find the time axis"]),
    "repetitions shorter than labels": (lambda v: {"adjusted_repetition": v["adjusted_repetition"][:-10]},
                                        "adjusted_repetition", [f"{N_HD} labels but {N_HD - 10}"]),
    "label out of range": (lambda v: {"adjusted_class": np.where(v["adjusted_class"] == 1, 66.0, v["adjusted_class"])},
                           "adjusted_class", ["0–65", "66"]),
}


@pytest.mark.parametrize("case", HD_BAD, ids=list(HD_BAD))
def test_hd_bad_file_names_file_and_field(hd_vars, hd_file, tmp_path, case):
    mutate, field, fragments = HD_BAD[case]
    path = hd_file(**mutate({k: v[:N_HD] for k, v in hd_vars.items()}))
    with pytest.raises(DataFormatError) as error:
        hdsemg.load_subject(tmp_path, 1)
    expect_error(error, path, field, *fragments)


def test_hd_reader_given_a_v5_file(hd_vars, tmp_path):
    path = save_v5(tmp_path / "s1.mat", {k: v[:N_HD] for k, v in hd_vars.items()
                                         if k in ("force", "adjusted_class", "adjusted_repetition")})
    with pytest.raises(DataFormatError) as error:
        hdsemg.load_subject(tmp_path, 1)
    expect_error(error, path, None, "MATLAB v5", "v7.3")


def test_hd_reader_given_a_fake_v73_file(db2_file, tmp_path):
    """A MATLAB v7.3 header in front of something that is not HDF5."""
    header = db2_file().read_bytes()[:124] + b"\x00\x02IM"
    path = tmp_path / "s1.mat"
    path.write_bytes(header + b"not hdf5 " * 100)
    with pytest.raises(DataFormatError) as error:
        hdsemg.load_subject(tmp_path, 1)
    expect_error(error, path, None, "could not be opened as HDF5")


def test_hd_missing_subject_file(tmp_path):
    with pytest.raises(DataFormatError) as error:
        hdsemg.load_subject(tmp_path, 3)
    expect_error(error, tmp_path, None, "s3.mat", "subject 3")


# ---------------------------------------------------------------------------------------------
# Modality configurations


@pytest.mark.parametrize(
    "spec, available, expected",
    [
        ("emg,acc", DB2_CHANNELS, [("emg", "emg", tuple(range(12))), ("acc", "acc", tuple(range(36)))]),
        ("emg[0:6],emg[6:12]", DB2_CHANNELS,
         [("emg[0:6]", "emg", (0, 1, 2, 3, 4, 5)), ("emg[6:12]", "emg", (6, 7, 8, 9, 10, 11))]),
        ("hdsemg[::4],force", HD_CHANNELS,
         [("hdsemg[::4]", "hdsemg", tuple(range(0, 128, 4))), ("force", "force", (0, 1, 2, 3, 4))]),
        ("acc[0,3,6]", DB2_CHANNELS, [("acc[0,3,6]", "acc", (0, 3, 6))]),
        ("emg[-1],acc[34:]", DB2_CHANNELS, [("emg[-1]", "emg", (11,)), ("acc[34:]", "acc", (34, 35))]),
        (" emg [ 0 : 2 ] , acc ", DB2_CHANNELS, [("emg[0:2]", "emg", (0, 1)), ("acc", "acc", tuple(range(36)))]),
        ("force", HD_CHANNELS, [("force", "force", (0, 1, 2, 3, 4))]),
    ],
)
def test_valid_modality_configurations(spec, available, expected):
    groups = parse_modalities(spec, available)
    assert all(isinstance(g, ModalityGroup) for g in groups)
    assert [(g.name, g.source, g.channels) for g in groups] == expected
    assert len(groups[0].channels) == len(expected[0][2])


@pytest.mark.parametrize("spec", ["emg,foo", "foo", "emg,acc,hdsemg", "EMG"])
def test_unknown_modality_lists_valid_names(spec):
    with pytest.raises(ConfigError) as error:
        parse_modalities(spec, DB2_CHANNELS)
    assert error.value.option == "modalities"
    assert "unknown modality" in str(error.value) and "emg, acc" in str(error.value)


def test_unknown_modality_in_the_data_config(db2_redundant):
    with pytest.raises(ConfigError) as error:
        DataConfig(root=str(db2_redundant), modalities="emg,foo")
    assert error.value.option == "modalities" and error.value.value == "foo"
    assert "emg, acc" in str(error.value)
    with pytest.raises(ConfigError) as error:
        DataConfig(root=str(db2_redundant), dataset="hdsemg65", modalities="emg")
    assert error.value.value == "emg" and "hdsemg, force" in str(error.value)
    # The valid syntaxes are accepted.
    for spec in ("emg,acc", "emg[0:6],emg[6:12]"):
        assert DataConfig(root=str(db2_redundant), modalities=spec).modalities == spec
    DataConfig(root=str(db2_redundant), dataset="hdsemg65", modalities="hdsemg[::4],force")


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("emg[a:b]", "a selector is a slice"),
        ("emg[0:6:1:2]", "a selector is a slice"),
        ("emg[1.5]", "a selector is a slice"),
        ("emg[]", "a selector is a slice"),
        ("emg[::0]", "a selector is a slice"),
        ("emg[0:6", "cannot read group"),
        ("emg[0:6]x", "cannot read group"),
        ("emg,,acc", "cannot read group"),
        ("", "cannot read group"),
        ("emg[6:6]", "selects no channels"),
        ("emg[0,0]", "selects a channel twice"),
        ("emg[0,-12]", "selects a channel twice"),
    ],
)
def test_bad_selectors(spec, fragment):
    with pytest.raises(ConfigError) as error:
        parse_modalities(spec, DB2_CHANNELS)
    assert error.value.option == "modalities"
    assert fragment in str(error.value)


@pytest.mark.parametrize("spec, index", [("emg[12]", 12), ("emg[0,13]", 13), ("emg[-13]", -13), ("acc[36]", 36)])
def test_out_of_range_channel(spec, index):
    with pytest.raises(ConfigError) as error:
        parse_modalities(spec, DB2_CHANNELS)
    message = str(error.value)
    assert f"channel {index} is out of range" in message
    assert spec in message  # names the group at fault


@pytest.mark.parametrize("spec", ["emg,emg", "emg[0:6],acc,emg[0:6]", "emg[0:6], emg[0:6]"])
def test_duplicate_group(spec):
    with pytest.raises(ConfigError) as error:
        parse_modalities(spec, DB2_CHANNELS)
    assert "a group appears twice" in str(error.value)


def test_modality_groups_select_the_windowed_channels(db2_redundant):
    config = DataConfig(root=str(db2_redundant), exercises=(1,), modalities="emg[0:6],emg[6:12]")
    prepared = prepare(config, cache_dir=None)
    assert [(g.name, g.channels) for g in prepared.groups] == [("emg[0:6]", tuple(range(6))),
                                                               ("emg[6:12]", tuple(range(6, 12)))]
    train = prepared.splits["train"].x
    assert set(train) == {"emg[0:6]", "emg[6:12]"}
    assert train["emg[0:6]"].shape[1:] == train["emg[6:12]"].shape[1:] == (400, 6)
    # Channel ranges are checked once the channel counts are known.
    with pytest.raises(ConfigError, match=r"channel 12 is out of range \(0–11\)"):
        prepare(DataConfig(root=str(db2_redundant), exercises=(1,), modalities="emg[12]"), cache_dir=None)
