"""Training data: random crops of a folder of photos held in memory, split into train and validation
by :func:`vqz.codec.photos.is_validation` (re-exported here with the folder helpers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vqz.codec.photos import IMAGE_SUFFIXES, is_validation, list_images, load_rgb  # noqa: F401 (re-exported)


class CropSampler:
    """Random square crops with random flips from images held in memory.

    ``sample(batch)`` returns a (batch, 3, crop, crop) float32 tensor in [0, 1].
    Images smaller than the crop are skipped at load time.
    """

    def __init__(self, images: list[np.ndarray], crop: int, seed: int) -> None:
        self.images = [im for im in images if min(im.shape[:2]) >= crop]
        if not self.images:
            raise ValueError(f"no training image is at least {crop}x{crop} pixels")
        self.crop = crop
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int, part: range | None = None, device: torch.device | None = None) -> torch.Tensor:
        """Draw the random choices of ``batch`` crops; return the crops whose positions are in
        ``part`` (default: all of them).

        Every data-parallel rank draws the choices of the whole global batch from the same
        stream and cuts out its own share, so the global batch of a step is the same for any
        number of processes, and one process draws exactly the stream it always did.
        ``device``: where the crops go; they travel as uint8 and become float32 there.
        """
        wanted = range(batch) if part is None else part
        out = np.empty((len(wanted), self.crop, self.crop, 3), dtype=np.uint8)
        for i in range(batch):
            image = self.images[self.rng.integers(len(self.images))]
            y = self.rng.integers(image.shape[0] - self.crop + 1)
            x = self.rng.integers(image.shape[1] - self.crop + 1)
            flip = self.rng.random() < 0.5
            if i not in wanted:
                continue
            patch = image[y : y + self.crop, x : x + self.crop]
            out[i - wanted.start] = patch[:, ::-1] if flip else patch
        return torch.from_numpy(out).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def load_split(folder: Path, validation_fraction: float) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Decode every image of ``folder``; returns (train images, validation images, validation names)."""
    train, validation, names = [], [], []
    for path in list_images(folder):
        if is_validation(path.name, validation_fraction):
            validation.append(load_rgb(path))
            names.append(path.name)
        else:
            train.append(load_rgb(path))
    return train, validation, names


def split_paths(folder: Path, fraction: float, images: int, heldout: int, seed: int) -> tuple[list[Path], list[Path]]:
    """The photos of ``folder`` a trainer of decoder parts codes: up to ``images`` of the training split (a
    random subset, ``seed``) and ``heldout`` of the held-out split of ``fraction``, evenly spaced by name."""
    files = list_images(Path(folder))
    train = [p for p in files if not is_validation(p.name, fraction)]
    held = [p for p in files if is_validation(p.name, fraction)]
    rng = np.random.default_rng(seed)
    train = [train[i] for i in rng.permutation(len(train))[:images]]
    held = [held[i] for i in np.linspace(0, len(held) - 1, min(heldout, len(held))).astype(int)]
    return train, held
