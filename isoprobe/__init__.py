"""isoprobe: causal interpretability for multimodal biosignal transformers.

The top-level import stays light (no torch, no transformer-lens) so that the CLI starts
quickly: the Python API (`isoprobe.ablate`, `knockout`, `attribute`, `compare`, `shift`, `interact`, `emap`,
`pid`, `sanity`, `windows`, `figure`) and `isoprobe.hook` / `isoprobe.TokenLayout` are imported on first use.
"""

from isoprobe.errors import ConfigError, DataFormatError, IsoprobeError

__version__ = "0.1.0"

_API = ("ablate", "attribute", "compare", "emap", "figure", "interact", "knockout", "pid", "sanity", "shift", "windows")
_HOOK = ("hook", "TokenLayout", "HookedForeignModel")

__all__ = ["ConfigError", "DataFormatError", "IsoprobeError", "__version__", *_API, *_HOOK]


def __getattr__(name: str):
    # PEP 562: the heavy parts load when first asked for, not at `import isoprobe`. import_module, not an
    # import statement: the low layers read isoprobe.__version__, and a static import here would make them
    # (for import-linter) depend on the top ones.
    from importlib import import_module

    if name in _API:
        return getattr(import_module("isoprobe.api"), name)
    if name in _HOOK:
        hook_package = import_module("isoprobe.hook")  # the package, callable as the function hook (see there)
        return hook_package if name == "hook" else getattr(hook_package, name)
    raise AttributeError(f"module 'isoprobe' has no attribute {name!r}")
