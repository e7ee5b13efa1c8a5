"""The three IsoNet architectures as TransformerLens HookedRootModules (DESIGN §3)."""

from __future__ import annotations

from isoprobe.models.config import ARCHITECTURES, CONFIGS, GroupSpec, HierarchicalConfig, MLPConfig, MMTConfig, ModelConfig


def build_model(config: ModelConfig):
    """The model for a configuration (an `nn.Module`/`HookedRootModule`)."""
    from isoprobe.models.hierarchical import HierarchicalTransformer
    from isoprobe.models.mlp import MultimodalMLP
    from isoprobe.models.mmt import MultimodalTransformer

    classes = {"hierarchical": HierarchicalTransformer, "mmt": MultimodalTransformer, "mlp": MultimodalMLP}
    return classes[config.arch](config)


__all__ = ["ARCHITECTURES", "CONFIGS", "GroupSpec", "HierarchicalConfig", "MLPConfig", "MMTConfig", "ModelConfig", "build_model"]
