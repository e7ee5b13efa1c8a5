"""Float tolerances that hold on any CPU.

Two float32 computations of one value that sum in another order (fused against explicit attention,
another batch size, a float64 reference, another CPU's BLAS kernels or thread count) differ by a few
units in the last place of the largest terms summed, not by a fixed amount: on logits of size 5 an
absolute 1e-6 is about 10 float32 ulps, at the edge of that rounding. So the absolute tolerance here
is scaled to the magnitude of the values compared, `rel · max(1, max |expected|)`: 1e-5 for float32
is ~100 ulps of the largest value, while a wrong edge masked or a wrong layer hooked moves logits by
≫ 1e-3 (every test that uses these keeps a negative control of that size).
"""

from __future__ import annotations

import numpy as np
import torch

FLOAT32 = 1e-5  # ~100 float32 ulps of the largest value compared
FLOAT64 = 1e-12  # ~5,000 float64 ulps: for float64 computations that sum in another order


def scaled_atol(expected, rel: float = FLOAT32) -> float:
    """rel · max(1, max |expected|): an absolute tolerance in units of the values' magnitude."""
    values = expected.detach().double().cpu().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected, float)
    finite = np.abs(values[np.isfinite(values)])
    return rel * max(1.0, float(finite.max()) if finite.size else 1.0)


def assert_close(actual, expected, rel: float = FLOAT32, msg=None) -> None:
    """|actual − expected| ≤ scaled_atol(expected, rel) everywhere (tensors or arrays, any shape).
    A float32 result compared to a float64 reference is compared in float64."""
    atol = scaled_atol(expected, rel)
    if isinstance(actual, torch.Tensor) or isinstance(expected, torch.Tensor):
        actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
        if actual.dtype != expected.dtype:
            actual, expected = actual.double(), expected.double()
        torch.testing.assert_close(actual, expected, atol=atol, rtol=0, msg=msg)
    else:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=atol, err_msg=msg or "")
