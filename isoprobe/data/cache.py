"""Memory-mapped cache of windowed recordings, keyed by a hash of the source files and the options.

A second run with the same files and preprocessing skips parsing and filtering: the windows are
opened with `np.load(mmap_mode="r")`. Entries are written to a temporary folder and renamed, so an
interrupted run never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_FINGERPRINT_BYTES = 1 << 20


def default_cache_dir() -> Path:
    return Path(os.environ.get("ISOPROBE_CACHE", Path.home() / ".cache" / "isoprobe"))


def file_fingerprint(path: Path) -> dict:
    """Identity of a source file: name, size, modification time and a hash of its first and last MiB."""
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        digest.update(file.read(_FINGERPRINT_BYTES))
        if stat.st_size > _FINGERPRINT_BYTES:
            file.seek(max(stat.st_size - _FINGERPRINT_BYTES, _FINGERPRINT_BYTES))
            digest.update(file.read())
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_ends": digest.hexdigest()}


def cache_key(sources: list[Path], options: dict) -> str:
    payload = {"version": FORMAT_VERSION, "sources": [file_fingerprint(Path(p)) for p in sources], "options": options}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass
class CachedArrays:
    arrays: dict[str, np.ndarray]  # memory-mapped when read from the cache
    meta: dict
    hit: bool


def load_or_build(
    cache_dir: Path | None,
    key: str,
    build: Callable[[Callable[[str, tuple, np.dtype], np.ndarray]], dict],
) -> CachedArrays:
    """Return the entry `key`, building it first if absent.

    `build(allocate)` fills arrays obtained from `allocate(name, shape, dtype)` (memory-mapped files
    inside the entry, so large windows never need to fit in memory twice) and returns JSON metadata.
    With `cache_dir=None` the arrays live in memory and nothing is written.
    """
    if cache_dir is None:
        arrays: dict[str, np.ndarray] = {}

        def allocate_in_memory(name: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
            arrays[name] = np.empty(shape, dtype=dtype)
            return arrays[name]

        return CachedArrays(arrays, build(allocate_in_memory), hit=False)

    entry = Path(cache_dir) / key
    if (entry / "meta.json").is_file():
        meta = json.loads((entry / "meta.json").read_text())
        arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
        log.info("cache hit %s", entry)
        return CachedArrays(arrays, meta["meta"], hit=True)

    entry.parent.mkdir(parents=True, exist_ok=True)
    partial = entry.with_name(f".{key}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    names: list[str] = []

    def allocate_on_disk(name: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
        names.append(name)
        return np.lib.format.open_memmap(partial / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

    try:
        meta = build(allocate_on_disk)
        (partial / "meta.json").write_text(json.dumps({"arrays": names, "meta": meta}))
        try:
            os.replace(partial, entry)
        except OSError:  # another process finished the same entry first
            shutil.rmtree(partial, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("cache write %s", entry)
    arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in names}
    return CachedArrays(arrays, meta, hit=False)
