"""Probe: int8 static quantization (ONNX Runtime, QDQ, per-channel) of the analysis transform's head (the strided
convolutions: most of the encoder's work). An encoder-side change: the decoder is untouched, the codes may move.

Measures, on 2-core CPU, one thread: head time on a 1024x1024 image, fp32 vs int8; on the held-out photos
(never Kodak), the share of stage-1 indices that change and the RD of stage-only files (q 1-4) encoded with
either head: bpp from the file bytes, PSNR of the decoded image.

Usage: python experiments/probes/analysis_int8.py  (needs runs/realism-codes from vqz train-realism / train-light)
"""
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from vqz.codec import pipeline
from vqz.codec.engine import graph_path
from vqz.codec.padding import to_input
from vqz.codec.registry import load_model
from vqz.codec.tiling import split_analysis, split_margins

OUT = Path("/tmp/q")
OUT.mkdir(exist_ok=True)
weights = load_model(None)
head_path = graph_path(weights.path, "analysis-head")
model = onnx.load(str(head_path), load_external_data=False)
# fill the external initializers from the loaded weights so the quantizer sees real values
from onnx import numpy_helper
for init in model.graph.initializer:
    if init.data_location == onnx.TensorProto.EXTERNAL:
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(weights.tensors[init.name]), init.name))
del model.metadata_props[:]
onnx.save(model, str(OUT / "head_fp32.onnx"))
name = model.graph.input[0].name
train = sorted(Path("runs/realism-codes/train").glob("*.npz"))[:24]
held = sorted(Path("runs/realism-codes/heldout").glob("*.npz"))


class Reader(CalibrationDataReader):
    def __init__(self):
        self.items = iter([{name: to_input(dict(np.load(p))["rgb"][:256, :256])} for p in train])

    def get_next(self):
        return next(self.items, None)


quantize_static(str(OUT / "head_fp32.onnx"), str(OUT / "head_int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)


def session(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


fp32, int8 = session(OUT / "head_fp32.onnx"), session(OUT / "head_int8.onnx")
x = to_input(np.tile(dict(np.load(held[0]))["rgb"], (3, 3, 1))[:1024, :1024])
for s, label in ((fp32, "fp32"), (int8, "int8")):
    s.run(None, {name: x})
    t = time.perf_counter()
    for _ in range(3):
        s.run(None, {name: x})
    print(f"{label} analysis head, 1024x1024, 1 thread: {(time.perf_counter() - t) / 3:.3f} s", flush=True)


class Head:
    def __init__(self, s):
        self.s = s

    def __call__(self, x):
        return self.s.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


split = weights.analysis.split


class Split:
    def __init__(self, head):
        self.head, self.tail = head, split.tail


def int8_latent(w, rgb):
    """pipeline.encode_latent with the int8 head (in split tiles)."""
    from vqz.codec.padding import pad_rgb
    d = w.config.downsampling
    padded = pad_rgb(rgb, d)
    z = split_analysis(Split(Head(int8)), padded, d, split_margins(w.config))
    return np.ascontiguousarray(z[0].transpose(1, 2, 0))


from vqz.benchmarks.metrics import psnr
fp32_latent = pipeline.encode_latent
rows = {q: [] for q in (1, 2, 3, 4)}
changed = []
for p in held:
    rgb = dict(np.load(p))["rgb"]
    for q in (1, 2, 3, 4):
        out = []
        for f in (fp32_latent, int8_latent):
            pipeline.encode_latent = f
            data = pipeline.encode_array(weights, rgb, q)[0]
            decoded = pipeline.decode_image(weights, data)[0]
            out.append((8 * len(data) / rgb.shape[0] / rgb.shape[1], psnr(rgb, decoded)))
        rows[q].append(out)
    pipeline.encode_latent = fp32_latent
print(f"{len(held)} held-out photos (max 0.6 MP each), stage-only levels, bpp from file bytes, PSNR of the decoded image:")
print("| q | bpp fp32 | bpp int8 | PSNR fp32 | PSNR int8 |")
print("|---|---|---|---|---|")
for q, r in rows.items():
    ba, bb = (np.mean([v[i][0] for v in r]) for i in (0, 1))
    pa, pb = (np.mean([v[i][1] for v in r]) for i in (0, 1))
    print(f"| {q} | {ba:.4f} | {bb:.4f} | {pa:.3f} | {pb:.3f} |")
