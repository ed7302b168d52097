"""Runtime benchmark: gansample (onnxruntime) vs PyTorch eager vs torch.compile.

For each architecture (the bundled model's, and a 64x64 RGB reference generator) the
script builds one set of weights, exports it with the project's exporter, and measures
model-only throughput of every backend in its own process with the same thread count.
Then it measures end-to-end `gansample generate -n N` to PNG files, the PNG-encode rate
on all cores, the cold start of `gansample generate -n 64`, and peak RSS against n.

    python benchmarks/bench_runtime.py --threads 2            # CPU table
    python benchmarks/bench_runtime.py --device cuda          # the same on a GPU
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# --- workers (each runs in its own process) ----------------------------------------------
def worker(a: argparse.Namespace) -> None:
    z = np.random.RandomState(0).randn(a.batch, a.z_dim).astype(np.float32)
    y = (np.arange(a.batch) % max(a.num_classes, 1)).astype(np.int64)
    if a.backend.startswith("ort"):
        from gansample.session import Session
        s = Session(a.model_file, a.device, threads=a.threads, spinning=a.spinning, io_binding=not a.no_iobinding)
        feeds = {"z": z, "label": y}
        step = lambda: s.run(feeds)  # noqa: E731
        provider = s.provider
    else:
        import torch
        from gansample.training import checkpoint as ckpt
        from gansample.training.models import Generator
        torch.set_num_threads(a.threads)
        state = ckpt.load(a.checkpoint)
        dev = torch.device("cuda" if a.device == "cuda" else "cpu")
        G = Generator(**state["g_args"]).eval().to(dev)
        G.load_state_dict(state["G_ema"])
        dtype = torch.float16 if a.fp16 else torch.float32
        G = G.to(dtype)
        if a.backend == "torch-compile":
            G = torch.compile(G)
        zt, yt = torch.from_numpy(z).to(dev, dtype), torch.from_numpy(y).to(dev)
        args = (zt, yt) if a.num_classes else (zt,)

        def step():
            with torch.inference_mode():
                # Images end in host memory, as the runtime returns them.
                return G(*args).cpu()
        provider = f"torch {torch.__version__} ({dev.type}, {dtype})"
    for _ in range(3):  # warm-up (and compilation)
        step()
    times = []
    t_end = time.perf_counter() + a.seconds
    while time.perf_counter() < t_end or len(times) < 5:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    print(json.dumps({"img_per_s": a.batch / statistics.median(times), "provider": provider}))


def run_worker(backend: str, spec: dict, a: argparse.Namespace, model_file: str = "", fp16: bool = False,
               spinning: bool = False, no_iobinding: bool = False) -> dict:
    """One measurement in a fresh process; returns {"img_per_s", "provider"}."""
    cmd = [sys.executable, __file__, "--worker", backend, "--checkpoint", spec["checkpoint"],
           "--model-file", model_file, "--z-dim", str(spec["z_dim"]), "--num-classes", str(spec["num_classes"]),
           "--threads", str(a.threads), "--batch", str(a.batch), "--seconds", str(a.seconds),
           "--device", a.device] + (["--fp16"] if fp16 else []) + (["--spinning"] if spinning else []) \
        + (["--no-iobinding"] if no_iobinding else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        return {"img_per_s": float("nan"), "provider": "failed: " + out.stderr.strip().splitlines()[-1][:80]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- model preparation --------------------------------------------------------------------
def make_model(name: str, g_args: dict, workdir: Path) -> dict:
    """One set of weights for every backend: a checkpoint for torch, its export for ORT."""
    import torch
    from gansample.training import checkpoint as ckpt
    from gansample.training.export import export_checkpoint
    from gansample.training.models import Discriminator, Generator
    torch.manual_seed(0)
    G = Generator(**g_args)
    # Non-trivial BatchNorm statistics, as a trained model has.
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    d_args = {k: g_args[k] for k in ("resolution", "channels", "num_classes", "width")}
    D = Discriminator(**d_args)
    folder = workdir / name
    folder.mkdir(parents=True)
    path = folder / "checkpoint-00000000.pt"
    ckpt.save({"step": 0, "g_args": g_args, "d_args": d_args, "G_ema": G.state_dict(), "D": D.state_dict(),
               "config": {}, "class_names": [str(i) for i in range(g_args["num_classes"])], "dataset": name},
              path)
    export_checkpoint(str(path), folder / "onnx", name=name)
    plain = export_plain(G, folder / "onnx" / "generator_uint8.onnx", folder / "plain.onnx")
    return {"name": name, "checkpoint": str(path), "onnx": folder / "onnx", "plain": plain, **g_args}


def export_plain(G, exported_uint8: Path, out: Path) -> Path:
    """The same weights as ``exported_uint8`` without the graph rewrite of
    training/fastgraph.py (plain ConvTranspose nodes), with the same metadata."""
    import onnx
    import torch
    from gansample import metadata as md
    from gansample.training.export import Uint8Output, _to_onnx, fold_generator, generator_inputs
    z = torch.randn(2, G.z_dim)
    args, names = generator_inputs(z, torch.zeros(2, dtype=torch.long) if G.num_classes else None)
    with torch.no_grad():
        model = _to_onnx(Uint8Output(fold_generator(G.eval())), args, names, "images")
    md.write(model, md.read_onnx(onnx.load(exported_uint8)))
    onnx.save(model, out)
    return out


def multiply_adds(spec: dict) -> int:
    """Multiply-adds of one generator forward pass per image (linear and conv layers)."""
    import torch
    from gansample.training.models import Generator
    G = Generator(**{k: spec[k] for k in ("z_dim", "resolution", "channels", "num_classes", "width")}).eval()
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, torch.nn.Linear):
            total += m.in_features * m.out_features
        elif isinstance(m, torch.nn.ConvTranspose2d):  # each input pixel meets the whole kernel
            total += inp[0][0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
        elif isinstance(m, torch.nn.Conv2d):  # each output pixel meets the whole kernel
            total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
    handles = [m.register_forward_hook(hook) for m in G.modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.no_grad():
        G(torch.zeros(1, G.z_dim), torch.zeros(1, dtype=torch.long) if G.num_classes else None)
    for h in handles:
        h.remove()
    return total


def bundled_args() -> dict:
    from gansample.generator import Generator
    info = Generator("fashion-mnist", device="cpu").info
    if not info.architecture:
        raise SystemExit("the bundled model records no architecture; re-export it")
    return dict(info.architecture)


# --- end-to-end measurements --------------------------------------------------------------
def cli(*args: str, env: dict | None = None) -> float:
    exe = str(Path(sys.executable).parent / "gansample")
    t = time.perf_counter()
    subprocess.run([exe, *args], check=True, capture_output=True, env=env)
    return time.perf_counter() - t


def encode_rate(n: int = 2048) -> float:
    """PNG files per second with the writer `generate` uses (one thread per core), in
    batches of 64 like the generator's output."""
    from gansample.output import PngWriter
    imgs = np.random.RandomState(0).randint(0, 255, (n, 28, 28, 1)).astype(np.uint8)
    with tempfile.TemporaryDirectory() as d, PngWriter() as w:
        t = time.perf_counter()
        for i in range(0, n, 64):
            w.write(imgs[i:i + 64], [Path(d) / f"seed{j:04d}.png" for j in range(i, min(i + 64, n))])
        w.close()
        return n / (time.perf_counter() - t)


def _med(values: list[float], fmt: str = ",.0f") -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--e2e-n", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (median reported)")
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=989.4,
                    help="the GPU's dense fp16 tensor peak (default: H100 SXM)")
    # worker mode
    ap.add_argument("--worker", default=None)
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--model-file", default="")
    ap.add_argument("--z-dim", type=int, default=0)
    ap.add_argument("--num-classes", type=int, default=0)
    ap.add_argument("--fp16", action="store_true")
    ap.add_argument("--spinning", action="store_true")
    ap.add_argument("--no-iobinding", action="store_true")
    return ap.parse_args()


def backends_for(spec: dict, a: argparse.Namespace) -> list[tuple[str, str, dict]]:
    """(label, worker backend, run_worker keyword arguments) for one model."""
    onnx_dir = spec["onnx"]
    backends: list[tuple[str, str, dict]] = [("torch eager", "torch-eager", {})]
    if not a.skip_compile:
        backends.append(("torch.compile", "torch-compile", {}))
    backends += [
        ("gansample fp32 (float out)", "ort", dict(model_file=str(onnx_dir / "generator.onnx"), spinning=True)),
        ("gansample uint8 (API default)", "ort",
         dict(model_file=str(onnx_dir / "generator_uint8.onnx"), spinning=True)),
        ("gansample uint8, no spinning (as `generate` to PNG)", "ort",
         dict(model_file=str(onnx_dir / "generator_uint8.onnx"))),
        ("plain export (ConvTranspose graph), uint8", "ort", dict(model_file=str(spec["plain"]), spinning=True)),
    ]
    if a.device == "cuda":
        fp16_file = str(onnx_dir / "generator_fp16.onnx")
        backends += [
            ("torch eager fp16", "torch-eager", dict(fp16=True)),
            ("gansample fp32 (float out), no IO binding", "ort",
             dict(model_file=str(onnx_dir / "generator.onnx"), no_iobinding=True)),
            ("gansample fp16 (API default on CUDA)", "ort", dict(model_file=fp16_file)),
            ("gansample fp16, no IO binding", "ort", dict(model_file=fp16_file, no_iobinding=True)),
        ]
    return backends


def model_table(specs: list[dict], a: argparse.Namespace) -> None:
    print(f"# model-only throughput, batch {a.batch}, {a.threads} threads, device {a.device} "
          f"(img/s, median of {a.seconds:.0f}s per process; median of {a.rounds} round(s), each "
          f"backend in its own process, backends interleaved)\n")
    print("| model | backend | img/s | range over rounds | vs eager | vs compile |")
    print("|---|---|---|---|---|---|")
    for spec in specs:
        backends = backends_for(spec, a)
        rates: dict[str, list[float]] = {label: [] for label, _, _ in backends}
        for _ in range(a.rounds):
            for label, backend, kw in backends:
                rates[label].append(run_worker(backend, spec, a, **kw)["img_per_s"])
        med = {label: statistics.median(v) for label, v in rates.items()}
        eager = med["torch eager"]
        comp = med.get("torch.compile", float("nan"))
        for label, v in med.items():
            lo, hi = min(rates[label]), max(rates[label])
            print(f"| {spec['name']} | {label} | {v:,.0f} | {lo:,.0f}-{hi:,.0f} | {v / eager:.2f}x | "
                  f"{v / comp:.2f}x |")
        if a.device == "cuda":
            flops = 2 * multiply_adds(spec)
            best = max(v for label, v in med.items() if "gansample fp16" in label)
            print(f"| {spec['name']} | {flops / 1e6:.1f} MFLOP per image: best gansample fp16 rate = "
                  f"{best * flops / 1e12:.2f} TFLOP/s = {best * flops / (a.peak_tflops * 1e12):.2%} of "
                  f"{a.peak_tflops:g} TFLOP/s fp16 peak | | | | |")
    print()


def end_to_end_table(spec: dict, a: argparse.Namespace, work: Path) -> None:
    uint8 = str(spec["onnx"] / "generator_uint8.onnx")
    models, encs, e2es, grids = [], [], [], []
    for r in range(a.rounds):  # interleaved: the file system's speed drifts on this VM
        models.append(run_worker("ort", spec, a, uint8, spinning=True)["img_per_s"])
        encs.append(encode_rate())
        out = work / f"e2e{r}"
        e2es.append(a.e2e_n / cli("generate", "-n", str(a.e2e_n), "--outdir", str(out), "-q", "--device", "cpu"))
        shutil.rmtree(out, ignore_errors=True)
        grids.append(a.e2e_n / cli("generate", "-n", str(a.e2e_n), "--outdir", str(out), "-q",
                                   "--device", "cpu", "--format", "grid"))
        shutil.rmtree(out, ignore_errors=True)
    ratios = [e / min(m, c) for m, c, e in zip(models, encs, e2es)]
    print("# end to end (bundled model)\n")
    print(f"| measure ({a.rounds} round(s): median, range) | value |")
    print("|---|---|")
    print(f"| model-only rate, uint8, {a.threads} threads (API default) | {_med(models)} img/s |")
    print(f"| PNG encode + atomic write rate, all cores | {_med(encs)} img/s |")
    print(f"| `generate -n {a.e2e_n}` to PNG files, with start-up | {_med(e2es)} img/s |")
    print(f"| the same with `--format grid` (no PNG files: inference + start-up) | {_med(grids)} img/s |")
    print(f"| end-to-end / min(model, encode), per round | {_med(ratios, '.2f')} (target >= 0.8) |")
    colds = []
    for _ in range(5):
        shutil.rmtree(work / "cold", ignore_errors=True)
        colds.append(cli("generate", "-n", "64", "--outdir", str(work / "cold"), "-q"))
    print(f"| cold start `generate -n 64` (median of 5) | {statistics.median(colds):.3f} s (target <= 1.0) |")


def main() -> None:
    a = parse_args()
    if a.worker:
        a.backend = a.worker
        worker(a)
        return
    work = Path(tempfile.mkdtemp(prefix="gansample-bench-"))
    try:
        specs = [make_model("bundled-arch", bundled_args(), work),
                 make_model("ref-64px-rgb", dict(z_dim=128, resolution=64, channels=3, num_classes=0, width=64), work)]
        model_table(specs, a)
        if a.device == "cpu":
            end_to_end_table(specs[0], a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
