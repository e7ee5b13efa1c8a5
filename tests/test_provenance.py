"""Provenance: the checkpoint hash against hashlib, the commit against git, versions against the installed
metadata, the data fingerprint against the window cache's own key, and the record that training and the
CLI write beside their outputs."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import isoprobe
from isoprobe.data.pipeline import DataConfig, data_fingerprint, prepare
from isoprobe.models import build_model
from isoprobe.models.sizing import model_config_for
from isoprobe.provenance import PACKAGES, file_sha256, git_commit, package_version, provenance
from isoprobe.training.checkpoint import load_checkpoint
from isoprobe.training.trainer import TrainConfig, train
from tests.cli_helpers import assert_ok, invoke

TINY = dict(d_model=16, n_layers=1, n_encoder_layers=1, n_heads=2, d_mlp=32, dropout=0.0)


@pytest.fixture(scope="module")
def run(db2_redundant, tmp_path_factory):
    """One epoch of a tiny hierarchical model on exercise 1 alone: (its prepared data, the run folder)."""
    data = prepare(DataConfig(root=str(db2_redundant), exercises=(1,)), cache_dir=None)
    torch.manual_seed(0)
    model = build_model(model_config_for(data, "hierarchical", **TINY))
    out = tmp_path_factory.mktemp("provenance_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(model, data, TrainConfig(epochs=1, device="cpu", seed=3), out, progress=False, command=["isoprobe", "train"])
    finally:
        torch.set_num_threads(threads)
    return data, out


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_checkpoint_hash_is_the_files_sha256_and_follows_changes(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(bytes(range(256)) * 5000)  # over one read chunk
    record = provenance(checkpoint=path)["checkpoint"]
    assert record == {"path": str(path.resolve()), "sha256": sha256_of(path)}
    path.write_bytes(b"changed")
    assert file_sha256(path) == sha256_of(path) == hashlib.sha256(b"changed").hexdigest()
    assert provenance(checkpoint=path)["checkpoint"]["sha256"] != record["sha256"]


def test_commit_is_the_checkouts_head():
    record = provenance()
    top = Path(isoprobe.__file__).resolve().parent.parent
    if shutil.which("git") is None or not (top / ".git").exists():  # no git, or an installed copy
        assert record["commit"] is None and record["dirty"] is None
        return
    head = subprocess.run(["git", "-C", str(top), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert record["commit"] == head.stdout.strip()
    assert isinstance(record["dirty"], bool)


def test_without_git_the_commit_is_none(monkeypatch):
    monkeypatch.setenv("PATH", "")  # git cannot be found: recorded as unknown, never an error
    assert git_commit.__wrapped__() == {"commit": None, "dirty": None}


def test_versions_are_the_installed_ones():
    record = provenance()
    assert record["isoprobe"] == importlib.metadata.version("isoprobe")
    assert record["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    for name in PACKAGES:
        try:
            expected = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            expected = None
        assert record["versions"][name] == expected, name
    assert record["versions"]["torch"] is not None and record["versions"]["numpy"] is not None
    assert package_version("isoprobe-no-such-package") is None


def test_versions_are_read_without_importing_the_slow_packages():
    code = ("import sys; from isoprobe.provenance import provenance; provenance(device='cpu'); "
            "print(sorted(m for m in ('torch', 'transformer_lens', 'captum', 'shapiq') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_data_fingerprint_is_the_pipelines_cache_key(db2_redundant, tmp_path):
    config = DataConfig(root=str(db2_redundant))
    prepared = prepare(config, cache_dir=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [data_fingerprint(config)]  # the entry's folder name
    assert prepared.fingerprint == data_fingerprint(config)
    assert provenance(data=config)["data"] == {"fingerprint": prepared.fingerprint, "config": json.loads(json.dumps(config.to_dict()))}
    assert provenance(data=prepared)["data"]["fingerprint"] == prepared.fingerprint
    # Modalities and splits are chosen after the cache: the same windows, the same fingerprint.
    assert data_fingerprint(DataConfig(root=str(db2_redundant), modalities="emg")) == prepared.fingerprint


def test_data_fingerprint_changes_with_a_data_file(db2_redundant, tmp_path):
    root = shutil.copytree(db2_redundant, tmp_path / "copy")
    config = DataConfig(root=str(root))
    before = data_fingerprint(config)
    assert data_fingerprint(config) == before
    source = next(root.rglob("S1_E1_A1.mat"))
    source.write_bytes(source.read_bytes() + b"\0")
    assert data_fingerprint(config) != before


def test_missing_data_still_records_the_configuration(tmp_path):
    config = DataConfig(root=str(tmp_path / "gone"))
    assert provenance(data=config)["data"] == {"fingerprint": None, "config": json.loads(json.dumps(config.to_dict()))}


def test_training_records_provenance_in_the_run_folder_and_checkpoint(run):
    data, out = run
    written = json.loads((out / "provenance.json").read_text())
    assert written["data"]["fingerprint"] == data.fingerprint is not None
    assert written["device"] == "cpu" and written["seeds"] == {"seed": 3}
    assert written["command"] == ["isoprobe", "train"] and written["recipe"]["train_config"]["seed"] == 3
    payload = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)  # plain values only
    assert payload["provenance"] == written
    assert load_checkpoint(out / "checkpoint.pt").provenance == written


def test_cli_tables_carry_the_checkpoints_hash(run, tmp_path):
    data, out = run
    checkpoint = out / "checkpoint.pt"
    result = invoke("ablate", checkpoint, "--layers", "1", "--pathway", "cross", "--bootstrap", 20, "--permutations", 20,
                    "--seed", 7, "--out", tmp_path / "ablate")
    assert_ok(result)
    made_by = json.loads((tmp_path / "ablate" / "ablation.json").read_text())["meta"]["provenance"]
    assert made_by["checkpoint"] == {"path": str(checkpoint.resolve()), "sha256": sha256_of(checkpoint)}
    assert made_by["data"]["fingerprint"] == data.fingerprint
    assert made_by["seeds"] == {"seed": 7} and made_by["device"] == "cpu" and made_by["command"] == sys.argv
    assert made_by["isoprobe"] == importlib.metadata.version("isoprobe")

    assert_ok(invoke("eval", checkpoint, "--out", tmp_path / "eval"))
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["meta"]["provenance"]["checkpoint"]["sha256"] == sha256_of(checkpoint)
    assert metrics["meta"]["provenance"]["data"]["fingerprint"] == data.fingerprint
