"""Model architecture configuration, frozen and validated up front.

The configuration is stored next to the weights (as JSON in the safetensors
metadata), so a checkpoint always rebuilds the exact network that produced it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from vqz.errors import ModelError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a vqz model.

    Attributes:
        channels: hidden channels ``N`` of the analysis / synthesis transforms.
        latent_dim: channels ``M`` of the latent (the dimension of each code vector).
        downsampling_log2: the latent grid is the image downsampled by ``2**downsampling_log2``
            in each direction (3 -> one code vector per 8x8 pixel block).
        num_stages: stages ``S`` of the residual vector quantizer. Quality level ``q``
            decodes the first ``q`` stages.
        codebook_size: codes ``K`` per stage (a power of two is not required).
        latent_blocks: extra residual blocks at the latent resolution in each transform
            (after the analysis transform's residual block, after the synthesis transform's
            first residual block). 0 is the original architecture; the field is absent from
            the JSON of models that predate it, which therefore still load.
    """

    channels: int = 128
    latent_dim: int = 32
    downsampling_log2: int = 3
    num_stages: int = 8
    codebook_size: int = 512
    latent_blocks: int = 0

    def __post_init__(self) -> None:
        checks = {
            "channels": (self.channels, 8, 1024),
            "latent_dim": (self.latent_dim, 1, 1024),
            "downsampling_log2": (self.downsampling_log2, 1, 6),
            "num_stages": (self.num_stages, 1, 32),
            "codebook_size": (self.codebook_size, 2, 65536),
            "latent_blocks": (self.latent_blocks, 0, 16),
        }
        for name, (value, low, high) in checks.items():
            if not isinstance(value, int) or not low <= value <= high:
                raise ModelError(f"`{name}` must be an integer in [{low}, {high}], got {value!r}")

    @property
    def downsampling(self) -> int:
        """Pixels per latent cell along each axis."""
        return 2**self.downsampling_log2

    def to_json(self) -> str:
        """JSON of the fields; ``latent_blocks`` is left out when 0, so the original
        architecture serialises exactly as it did before the field existed."""
        data = asdict(self)
        if not data["latent_blocks"]:
            del data["latent_blocks"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            data = json.loads(text)
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"invalid model configuration: {exc}") from None
