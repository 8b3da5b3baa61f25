"""A latent-conditioned patch discriminator for the realistic synthesis (training world only).

Input: an image (N, 3, H, W) in [0, 1] (H, W multiples of 8) and the quantized latent the decoder
synthesises it from (N, M, H/8, W/8). Three stride-2 4x4 convolutions take the image to the latent's
grid; the latent enters there (a 1x1 projection, concatenated, as in HiFiC's conditional
discriminator), two 3x3 convolutions follow. Output: one realness logit per 8x8 cell,
(N, 1, H/8, W/8). Spectral normalisation on every convolution, LeakyReLU 0.2, no normalisation
layers (batches on a CPU are small). The intermediate activations are returned too, for the
generator's feature-matching loss.

With ``classes`` > 1 the discriminator classifies each cell instead (MS-ILLM, Muckley et al. 2023): its
``classes`` = K + 1 logits per cell are the K codes of the model's first quantizer stage (the code of the
original image at that cell is the label of a real cell) and one "decoded" class (:func:`code_d_loss`,
:func:`code_g_loss`). The labels come free with a VQ model: no pretrained network is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    """``channels`` at the first (1/2-resolution) layer, doubling to at most ``4 * channels``."""

    def __init__(self, latent_dim: int, channels: int = 32, latent_channels: int = 32, classes: int = 1) -> None:
        super().__init__()
        c1, c2, c3 = channels, 2 * channels, 4 * channels
        self.down = nn.ModuleList([
            spectral_norm(nn.Conv2d(3, c1, 4, stride=2, padding=1)),
            spectral_norm(nn.Conv2d(c1, c2, 4, stride=2, padding=1)),
            spectral_norm(nn.Conv2d(c2, c3, 4, stride=2, padding=1)),
        ])
        self.latent = spectral_norm(nn.Conv2d(latent_dim, latent_channels, 1))
        self.head = nn.ModuleList([
            spectral_norm(nn.Conv2d(c3 + latent_channels, c3, 3, padding=1)),
            spectral_norm(nn.Conv2d(c3, classes, 3, padding=1)),
        ])

    def forward(self, image: Tensor, latent: Tensor) -> tuple[Tensor, list[Tensor]]:
        """-> (logits (N, classes, H/8, W/8), the hidden activations for feature matching)."""
        features = []
        h = image * 2 - 1
        for conv in self.down:
            h = F.leaky_relu(conv(h), 0.2)
            features.append(h)
        h = torch.cat([h, F.leaky_relu(self.latent(latent), 0.2)], 1)
        h = F.leaky_relu(self.head[0](h), 0.2)
        features.append(h)
        return self.head[1](h), features


def code_d_loss(real: Tensor, fake: Tensor, labels: Tensor) -> Tensor:
    """The code-classifying discriminator's loss: cross-entropy of the real cells against their codes
    ``labels`` (N, H/8, W/8) and of the decoded cells against the last class ("decoded")."""
    fake_class = torch.full_like(labels, fake.shape[1] - 1)
    return F.cross_entropy(real.float(), labels) + F.cross_entropy(fake.float(), fake_class)


def code_g_loss(fake: Tensor, labels: Tensor) -> Tensor:
    """(N,) the generator's adversarial loss against a code-classifying discriminator: the cross-entropy of its
    decoded cells against the codes of the original's cells (each decoded cell should pass for the real one)."""
    return F.cross_entropy(fake.float(), labels, reduction="none").mean((1, 2))
