"""isoprobe: causal interpretability for multimodal biosignal transformers.

The top-level import stays light (no torch, no transformer-lens) so that the CLI starts
quickly; import subpackages for the heavy parts.
"""

from isoprobe.errors import ConfigError, DataFormatError, IsoprobeError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataFormatError", "IsoprobeError", "__version__"]
