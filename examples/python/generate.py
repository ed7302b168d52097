"""Generate images from a gansample generator.onnx with numpy and onnxruntime only.

    python generate.py ../../exported/fashion-mnist/generator.onnx --seeds 0-7 --outdir out

Everything needed is in the file's metadata (docs/model-format.md): the latent size, the
classes, the output layout and the seed rule.
"""

import argparse
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort


def write_png(path, img):
    """uint8 [H, W, C] (C = 1 or 3) -> PNG, with the standard library's zlib."""
    h, w, c = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                           + chunk(b"IEND", b""))


def parse_seeds(text):
    seeds = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        seeds.extend(range(int(a), int(b or a) + 1))
    return seeds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--seeds", default="0-7")
    ap.add_argument("--outdir", default="out")
    a = ap.parse_args()
    try:
        sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    except Exception as e:
        sys.exit(f"error: {a.model}: cannot load as ONNX ({str(e).splitlines()[0][:200]})")
    meta = sess.get_modelmeta().custom_metadata_map
    if meta.get("gansample.role") != "generator":
        sys.exit(f"error: {a.model}: not a gansample generator (gansample.role is "
                 f"{meta.get('gansample.role', 'missing')!r})")
    z_dim = int(meta["gansample.z_dim"])
    num_classes = int(meta.get("gansample.num_classes", "0"))
    class_names = json.loads(meta.get("gansample.class_names", "[]"))
    seeds = parse_seeds(a.seeds)
    # The seed rule: one RandomState per seed; the class of seed s is s % num_classes.
    z = np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds]).astype(np.float32)
    feeds = {"z": z}
    if num_classes:
        feeds["label"] = np.array([s % num_classes for s in seeds], dtype=np.int64)
    if meta.get("gansample.truncation") == "w":  # truncation in W happens inside the graph
        feeds["psi"] = np.ones(len(seeds), dtype=np.float32)
    out = sess.run(None, feeds)[0]
    if meta["gansample.output"].startswith("float32 NCHW"):
        # uint8 = trunc(clip(x * 127.5 + 128, 0, 255)), NCHW -> NHWC
        out = np.clip(out * np.float32(127.5) + np.float32(128), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    Path(a.outdir).mkdir(parents=True, exist_ok=True)
    for s, img in zip(seeds, out):
        write_png(Path(a.outdir) / f"seed{s:04d}.png", img)
    label = f" ({', '.join(class_names[s % num_classes] for s in seeds[:3])}, ...)" if num_classes else ""
    print(f"wrote {len(seeds)} images to {a.outdir}{label}")


if __name__ == "__main__":
    main()
