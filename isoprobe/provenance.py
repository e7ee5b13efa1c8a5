"""What made an output: software versions, commit, device, checkpoint hash, data fingerprint, recipe, seeds.

Every table's metadata, eval's metrics.json, every checkpoint and every run folder carry this record
(DESIGN §6), so that a report opened a year later says how to reproduce each number. Light to import:
versions are read from the installed packages' metadata, never by importing them (transformer-lens and
captum take seconds to import), and torch is imported only to name a CUDA device.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.metadata
import json
import logging
import platform
import subprocess
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

PACKAGES = ("torch", "numpy", "transformer-lens", "captum", "shapiq")
_CHUNK = 1 << 20
_GIT_TIMEOUT_S = 3.0
# (resolved path, size, mtime_ns) -> sha256: a command that writes several tables hashes its checkpoint once.
_sha256_seen: dict[tuple[str, int, int], str] = {}


def provenance(*, checkpoint: str | Path | None = None, data: Any = None, device: Any = None, recipe: Any = None,
               seeds: Any = None, command: Sequence[str] | None = None) -> dict:
    """The record of what made an output, as plain JSON values.

    checkpoint: the checkpoint file analysed (recorded with its sha256). data: a DataConfig, whose
    fingerprint is computed from the files now, or a PreparedData, whose fingerprint is the one its
    windows were read under. device: the torch device (or its name) the numbers were computed on.
    recipe, seeds: JSON-able descriptions of the options and seeds. command: the argv that ran.
    Unknowable fields (no git checkout, a package not installed) are None; nothing here raises for them.
    """
    device_name = None if device is None else str(device)
    record = {
        "isoprobe": isoprobe_version(),
        **git_commit(),
        "versions": {"python": platform.python_version(), **{name: package_version(name) for name in PACKAGES}},
        "device": device_name,
        "device_name": _cuda_name(device_name) if device_name and device_name.startswith("cuda") else None,
        "checkpoint": None if checkpoint is None else {"path": str(Path(checkpoint).resolve()), "sha256": file_sha256(checkpoint)},
        "data": None if data is None else _data(data),
        "recipe": recipe,
        "seeds": seeds,
        "command": None if command is None else [str(a) for a in command],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    # Round trip: tuples become lists and paths strings, so the record is plain wherever it is stored
    # (JSON files, and checkpoints read with torch.load(weights_only=True)).
    return json.loads(json.dumps(record, default=str))


def package_version(name: str) -> str | None:
    """The installed version of distribution `name`, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def isoprobe_version() -> str:
    import isoprobe

    return package_version("isoprobe") or isoprobe.__version__


@functools.lru_cache(maxsize=1)
def git_commit() -> dict:
    """{"commit": HEAD, "dirty": whether the package's files differ from it} when isoprobe is imported
    from a git checkout (the package folder's parent is the work tree's top), else both None."""
    import isoprobe

    package = Path(isoprobe.__file__).resolve().parent
    top = _git(package.parent, "rev-parse", "--show-toplevel", "HEAD")
    if top is None or len(top.splitlines()) != 2 or Path(top.splitlines()[0]).resolve() != package.parent:
        return {"commit": None, "dirty": None}  # not a checkout, or isoprobe installed inside another repository
    status = _git(package.parent, "status", "--porcelain", "--", package.name, "pyproject.toml")
    return {"commit": top.splitlines()[1], "dirty": None if status is None else bool(status.strip())}


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=_GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, streamed; remembered in-process while its size and mtime stay the same."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _sha256_seen:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
        _sha256_seen[key] = digest.hexdigest()
    return _sha256_seen[key]


def _cuda_name(device: str) -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    except Exception:  # no CUDA here, or a device index that does not exist: the name is unknowable
        return None


def _data(data) -> dict:
    """{"fingerprint": the window cache key, "config": the data configuration}."""
    from isoprobe.data.pipeline import DataConfig, PreparedData, data_fingerprint
    from isoprobe.errors import IsoprobeError

    if isinstance(data, PreparedData):
        return {"fingerprint": data.fingerprint, "config": data.config.to_dict()}
    if not isinstance(data, DataConfig):
        raise TypeError(f"provenance(data=...) takes a DataConfig or a PreparedData, not {type(data).__name__}")
    try:
        fingerprint = data_fingerprint(data)
    except (IsoprobeError, OSError) as exc:  # the files are gone: record the configuration all the same
        log.warning("no data fingerprint for %s: %s", data.root, exc)
        fingerprint = None
    return {"fingerprint": fingerprint, "config": data.to_dict()}
