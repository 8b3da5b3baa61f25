"""The code-grid grain of the realistic decoder: the RMS (gray levels, luma) of the 8 x 8 pattern repeated on
every cell of a decoded image (training/realism.py: grid_pattern), beside the original's, at R = 0 and R = 1,
levels 1-4. Usage: python experiments/probes/grid_grain.py FILES_LIST IMAGES_DIR [LIMIT]
(VQZ_MODEL_PATH picks the realistic synthesis to measure)."""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import vqz
from vqz.training.realism import grid_pattern


def grain(rgb: np.ndarray) -> float:
    h, w = rgb.shape[0] // 8 * 8, rgb.shape[1] // 8 * 8
    luma = (rgb[:h, :w].astype(np.float32) @ np.float32([0.299, 0.587, 0.114]))[None, None]
    return float(grid_pattern(torch.from_numpy(luma)).square().mean().sqrt())


names = [n.strip() for n in Path(sys.argv[1]).read_text().split() if n.strip()][: int(sys.argv[3]) if len(sys.argv) > 3 else None]
rows = {level: [] for level in (1, 2, 3, 4)}
for name in names:
    ref = np.asarray(Image.open(Path(sys.argv[2]) / name).convert("RGB"))
    for level in rows:
        data = vqz.encode(ref, quality=level)
        rows[level].append((grain(ref), grain(vqz.decode_array(data, realism=0.0)), grain(vqz.decode_array(data, realism=1.0))))
print(f"grid grain RMS (gray levels), mean over {len(names)} images: original / R=0 / R=1")
for level, values in rows.items():
    print(level, " / ".join(f"{v:.2f}" for v in np.mean(values, 0)))
