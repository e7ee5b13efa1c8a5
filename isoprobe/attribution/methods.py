"""The attribution methods of `isoprobe attribute`, one registration each: the name `--method` takes,
what it attributes to, and where its configuration and its `attribute` function live (imported only
when the method runs: captum is slow to import). The CLI's choices, its help and its checks of which
options a method takes all read this registry.

A new method is a module with a configuration dataclass (isoprobe.options.Options) and
`attribute(model, windows, config, reference=None, device="cpu", progress=None)` returning a result
in `common.COLUMNS`, plus one `register_attribution(...)` call, here or in that module."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class AttributionMethod:
    """name: the `--method` value; attributes_to: one phrase for the help; module: where `attribute` and
    the configuration class `config` are; fixed: options the method sets itself (ig's own `method`);
    needs_attention: refused on models without attention (the MLP)."""

    name: str
    attributes_to: str
    module: str
    config: str
    fixed: dict[str, Any] = field(default_factory=dict)
    needs_attention: bool = False

    def load(self) -> tuple[type, Callable]:
        """(configuration class, attribute function)."""
        module = importlib.import_module(self.module)
        return getattr(module, self.config), module.attribute

    def options(self) -> frozenset[str]:
        """The configuration fields the user may set (the fixed ones excluded)."""
        return frozenset(f.name for f in dataclasses.fields(self.load()[0])) - set(self.fixed)


ATTRIBUTIONS: dict[str, AttributionMethod] = {}  # name -> method, in registration order


def register_attribution(method: AttributionMethod) -> AttributionMethod:
    ATTRIBUTIONS[method.name] = method
    return method


register_attribution(AttributionMethod("ig", "inputs", "isoprobe.attribution.ig", "IGConfig", {"method": "ig"}))
register_attribution(AttributionMethod("layer-ig", "token embeddings, encoder outputs", "isoprobe.attribution.ig",
                                       "IGConfig", {"method": "layer-ig"}))
register_attribution(AttributionMethod("attention", "Hao et al.: the attention patterns, per layer and pathway",
                                       "isoprobe.attribution.attention", "AttentionConfig", needs_attention=True))
