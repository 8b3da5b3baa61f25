"""The CompressAI pieces vqz uses, imported once with CompressAI's import-time noise silenced.

CompressAI pulls in torch_geometric, whose import calls the deprecated
``torch.jit.script`` and prints a FutureWarning that users of vqz cannot act on.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from compressai.layers import GDN, ResidualBlock
    from compressai.models.utils import conv, deconv
    from compressai.ops import compute_padding

__all__ = ["GDN", "ResidualBlock", "compute_padding", "conv", "deconv"]
