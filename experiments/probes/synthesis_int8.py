import time, numpy as np, onnx, onnxruntime as ort
from pathlib import Path
from onnxruntime.quantization import quantize_static, CalibrationDataReader, QuantType, QuantFormat
from vqz.codec.registry import load_model
from vqz.codec.vq import dequantize
W = Path("codec/weights")
m = onnx.load(str(W / "vqz-rvq16b-f8.synthesis.onnx"), load_external_data=True)
onnx.save(m, "/tmp/q/syn_fp32.onnx")
weights = load_model(None)
held = [dict(np.load(p)) for p in sorted(Path("runs/realism-codes/heldout").glob("*.npz"))[:46]]
def latent(item, k):
    z = dequantize(item["indices"][:k].astype(np.int64), weights.codebooks)
    return np.ascontiguousarray(z.transpose(2, 0, 1)[None].astype(np.float32))
name = m.graph.input[0].name
class Reader(CalibrationDataReader):
    def __init__(self):
        self.items = iter([{name: latent(it, k)} for it in held[:16] for k in (1, 2, 3, 4)])
    def get_next(self):
        return next(self.items, None)
import sys
fmt = sys.argv[1] if len(sys.argv) > 1 else "qdq"
quantize_static("/tmp/q/syn_fp32.onnx", f"/tmp/q/syn_int8.onnx", Reader(),
                quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
def sess(path):
    o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
a, b = sess("/tmp/q/syn_fp32.onnx"), sess("/tmp/q/syn_int8.onnx")
z = np.random.default_rng(0).standard_normal((1, 64, 64, 96)).astype(np.float32) * 0
z = latent(held[20], 4)
x = np.concatenate([latent(h, 4)[:, :, :40, :56] for h in held[:1]])
big = np.tile(latent(held[20], 4), (1, 1, 2, 2))[:, :, :64, :96]
for s, n in ((a, "fp32"), (b, "int8")):
    s.run(None, {name: big}); t = time.perf_counter()
    for _ in range(3): s.run(None, {name: big})
    print(n, "768x512 synthesis", (time.perf_counter() - t) / 3, "s")
ps = []
for it in held[16:46]:
    for k in (1, 4):
        z = latent(it, k)
        ya = np.clip(np.rint(a.run(None, {name: z})[0] * 255), 0, 255); yb = np.clip(np.rint(b.run(None, {name: z})[0] * 255), 0, 255)
        ref = it["rgb"].transpose(2, 0, 1)[None].astype(np.float64)
        h, w = min(ref.shape[2], ya.shape[2]), min(ref.shape[3], ya.shape[3])
        mse = lambda y: ((y[:, :, :h, :w] - ref[:, :, :h, :w]) ** 2).mean()
        ps.append((k, 10 * np.log10(255**2 / mse(ya)), 10 * np.log10(255**2 / mse(yb))))
for k in (1, 4):
    r = [p for p in ps if p[0] == k]
    print("k", k, "PSNR fp32 %.3f int8 %.3f" % (np.mean([p[1] for p in r]), np.mean([p[2] for p in r])))
