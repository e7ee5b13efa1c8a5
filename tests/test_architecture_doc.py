"""ARCHITECTURE.md names real files and registries: every path it quotes exists, and every name it
gives as the place to register something is defined where it says."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
PACKAGES = ("cli", "study", "reports", "attribution", "diagnostics", "training", "engine", "hook", "models", "data")


def quoted_paths() -> set[str]:
    """Backticked file names: `isoprobe/x/y.py`, `x/y.py` (relative to isoprobe/) or `y.py` after a package row;
    not the files outside the repository (`../shared/DESIGN.md`), which a clean clone lacks."""
    return {m for m in re.findall(r"`([\w./-]+\.(?:py|toml|md))`", TEXT) if not m.startswith("../")}


def resolve(name: str) -> list[Path]:
    candidates = [ROOT / name, ROOT / "isoprobe" / name]
    if "/" not in name:  # a module named inside its package's row: look in every package
        candidates += [ROOT / "isoprobe" / package / name for package in PACKAGES]
        candidates += [ROOT / "isoprobe" / "models" / "components" / name, ROOT / "isoprobe" / "data" / "synth" / name]
    return [path for path in candidates if path.is_file()]


def test_every_quoted_file_exists():
    names = quoted_paths()
    assert len(names) > 30  # the check reads the document's paths, not nothing
    missing = sorted(name for name in names if not resolve(name))
    assert missing == [], missing


def test_every_registration_point_is_defined_where_the_map_says():
    pairs = re.findall(r"`@?(\w+)(?:\([^`]*\))?` \(`([\w/]+)\.py`\)", TEXT)
    assert len(pairs) >= 4
    for name, module in pairs:
        files = resolve(module + ".py")
        assert files, module
        dotted = ".".join(files[0].relative_to(ROOT).with_suffix("").parts)
        assert hasattr(importlib.import_module(dotted), name), f"{name} is not defined in {files[0]}"
