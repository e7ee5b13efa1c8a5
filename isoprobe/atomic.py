"""Atomic file output: write to a temporary sibling, then rename, so a failed run leaves no partial file."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary sibling of `path` to write to: renamed to `path` when the block ends without an
    error, removed otherwise. It keeps the suffix, from which savefig and savemat take the format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """An empty temporary sibling folder of `path` to write into: it replaces `path` (a folder, kept
    untouched until then) when the block ends without an error, and is removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    temporary.chmod(0o755)  # mkdtemp's 0700 would make the result private, unlike any other output
    try:
        yield temporary
        if path.exists():
            # rename cannot replace a non-empty folder: move the old one aside, put the new one in place
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
            try:
                os.replace(temporary, path)
            except OSError:
                os.replace(old / path.name, path)  # should this fail too, the old folder stays in `old`
                old.rmdir()
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
