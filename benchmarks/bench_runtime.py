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
import contextlib
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
        # bf16 autocast: matmuls and convolutions in bfloat16 (the CPU's AMX / AVX-512 BF16
        # units where it has them), the rest in float32.
        autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if a.bf16 else contextlib.nullcontext())

        def step():
            with torch.inference_mode(), autocast:
                # Images end in host memory, as the runtime returns them.
                return G(*args).float().cpu()
        provider = f"torch {torch.__version__} ({dev.type}, {'bf16 autocast' if a.bf16 else dtype})"
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
               spinning: bool = False, no_iobinding: bool = False, bf16: bool = False) -> dict:
    """One measurement in a fresh process; returns {"img_per_s", "provider"}."""
    cmd = [sys.executable, __file__, "--worker", backend, "--checkpoint", spec["checkpoint"],
           "--model-file", model_file, "--z-dim", str(spec["z_dim"]), "--num-classes", str(spec["num_classes"]),
           "--threads", str(a.threads), "--batch", str(a.batch), "--seconds", str(a.seconds),
           "--device", a.device] + (["--fp16"] if fp16 else []) + (["--spinning"] if spinning else []) \
        + (["--no-iobinding"] if no_iobinding else []) + (["--bf16"] if bf16 else [])
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
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--quality-checkpoint", default=None,
                    help="a trained checkpoint for the equal-quality table (gate figures of int8 and of "
                         "torch's bf16 autocast against fp32)")
    ap.add_argument("--quality-features", default=None, help="its dataset's features model .onnx")
    ap.add_argument("--skip-e2e", action="store_true")
    return ap.parse_args()


def backends_for(spec: dict, a: argparse.Namespace) -> list[tuple[str, str, dict]]:
    """(label, worker backend, run_worker keyword arguments) for one model."""
    onnx_dir = spec["onnx"]
    backends: list[tuple[str, str, dict]] = [("torch eager", "torch-eager", {})]
    if not a.skip_compile:
        backends.append(("torch.compile", "torch-compile", {}))
    if a.device == "cpu":
        backends.append(("torch eager bf16 autocast", "torch-eager", dict(bf16=True)))
        if not a.skip_compile:
            backends.append(("torch.compile bf16 autocast", "torch-compile", dict(bf16=True)))
    backends += [
        ("gansample fp32 (float out)", "ort", dict(model_file=str(onnx_dir / "generator.onnx"), spinning=True)),
        ("gansample uint8 (fp32 compute, uint8 out)", "ort",
         dict(model_file=str(onnx_dir / "generator_uint8.onnx"), spinning=True)),
        ("gansample int8 (reduced precision)", "ort",
         dict(model_file=str(onnx_dir / "generator_int8.onnx"), spinning=True)),
        ("gansample uint8, no spinning (as `generate` to PNG)", "ort",
         dict(model_file=str(onnx_dir / "generator_uint8.onnx"))),
        ("plain export (ConvTranspose graph), uint8", "ort", dict(model_file=str(spec["plain"]), spinning=True)),
    ]
    if a.device == "cuda":
        fp16_file = str(onnx_dir / "generator_fp16.onnx")
        backends += [
            ("torch eager fp16", "torch-eager", dict(fp16=True)),
            ("torch.compile fp16", "torch-compile", dict(fp16=True)),
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
    print(f"| model | backend | img/s | range over rounds | vs eager | vs compile "
          f"{'bf16 autocast' if a.device == 'cpu' else 'fp16'} |")
    print("|---|---|---|---|---|---|")
    for spec in specs:
        backends = backends_for(spec, a)
        rates: dict[str, list[float]] = {label: [] for label, _, _ in backends}
        for _ in range(a.rounds):
            for label, backend, kw in backends:
                rates[label].append(run_worker(backend, spec, a, **kw)["img_per_s"])
        med = {label: statistics.median(v) for label, v in rates.items()}
        eager = med["torch eager"]
        comp = med.get("torch.compile bf16 autocast" if a.device == "cpu" else "torch.compile fp16",
                       med.get("torch.compile", float("nan")))
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


def torch_images(checkpoint: str, seeds: range, bf16: bool) -> np.ndarray:
    """uint8 NHWC images of the checkpoint's G (EMA weights) for ``seeds`` by the seed rule,
    in float32 or under bf16 autocast, converted by the same rule as the ONNX graphs."""
    import torch
    from gansample import latents as lat
    from gansample.training import checkpoint as ckpt
    from gansample.training.export import generator_inputs, quantize
    from gansample.training.models import Generator
    state = ckpt.load(checkpoint)
    G = Generator(**state["g_args"]).eval()
    G.load_state_dict(state["G_ema"])
    z = torch.from_numpy(lat.latents_for_seeds(list(seeds), G.z_dim))
    y = torch.from_numpy(lat.labels_for_seeds(list(seeds), G.num_classes)) if G.num_classes else None
    args, _ = generator_inputs(z, y)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        return quantize(G(*args).float()).numpy()


def quality_table(specs: list[dict], a: argparse.Namespace, work: Path) -> None:
    """The quality gate's figures (gansample.reduced.judge) for every reduced-precision
    path, so that the speed table compares at equal quality: gansample's int8 variant and
    torch's bf16 autocast, each against the fp32 model on seeds 0-999."""
    from gansample import reduced
    from gansample.generator import Generator
    from gansample.training.export import export_checkpoint
    rows = [(spec, None) for spec in specs]
    if a.quality_checkpoint:
        folder = work / "quality"
        export_checkpoint(a.quality_checkpoint, folder, fp16=False, features=a.quality_features)
        rows.append(({"name": f"trained: {Path(a.quality_checkpoint).parent.name}", "onnx": folder,
                      "checkpoint": a.quality_checkpoint}, a.quality_features))
    print("# equal quality: each reduced-precision path against fp32, seeds 0-999 (gansample.reduced.judge)\n")
    print("| model | path | mean px diff | max px diff | FD (fp32 same seeds; fp32 over seed sets) | "
          "recall (fp32; band) | gate |")
    print("|---|---|---|---|---|---|---|")
    seeds = range(reduced.GATE_SEEDS)
    for spec, feats in rows:
        fp32 = spec["onnx"] / "generator_uint8.onnx"
        int8 = Generator(spec["onnx"] / reduced.INT8_FILE, device="cpu").sample(seeds=seeds).images
        paths = [("gansample int8", int8), ("torch fp32 (reference)", torch_images(spec["checkpoint"], seeds, False)),
                 ("torch bf16 autocast", torch_images(spec["checkpoint"], seeds, True))]
        for label, images in paths:
            r = reduced.judge(fp32, images, feats)
            fd = (f"{r['fd']:.4g} ({r['fd_fp32']:.4g}; {r['fd_band'][0]:.4g}-{r['fd_band'][1]:.4g})"
                  if "fd" in r else "–")
            rec = (f"{r['recall']:.3f} ({r['recall_fp32']:.3f}; {r['recall_band'][0]:.3f}-{r['recall_band'][1]:.3f})"
                   if "fd" in r else "–")
            verdict = "passed" if r["passed"] else ("pixels only" if "fd" not in r and
                                                    r["mean_pixel_diff"] <= r["bound_mean_pixel_diff"] else "failed")
            print(f"| {spec['name']} | {label} | {r['mean_pixel_diff']:.3f} | {r['max_pixel_diff']} | {fd} | {rec} | "
                  f"{verdict} |")
    print()


def end_to_end_table(spec: dict, a: argparse.Namespace, work: Path) -> None:
    from gansample.generator import Generator
    auto = Generator("fashion-mnist", device="cpu", threads=a.threads)
    chosen = str(auto.session.path)  # what `generate` runs on this CPU (the speed probe's choice)
    models, encs, e2es, shards, grids = [], [], [], {"webdataset": [], "parquet": []}, []
    for r in range(a.rounds):  # interleaved: the file system's speed drifts on this VM
        models.append(run_worker("ort", spec, a, chosen, spinning=True)["img_per_s"])
        encs.append(encode_rate())
        out = work / f"e2e{r}"
        common = ["-n", str(a.e2e_n), "--outdir", str(out), "-q", "--device", "cpu", "--threads", str(a.threads)]
        e2es.append(a.e2e_n / cli("generate", *common))
        shutil.rmtree(out, ignore_errors=True)
        for fmt in shards:
            shards[fmt].append(a.e2e_n / cli("generate", *common, "--format", fmt))
            shutil.rmtree(out, ignore_errors=True)
        grids.append(a.e2e_n / cli("generate", *common, "--format", "grid"))
        shutil.rmtree(out, ignore_errors=True)
    bounds = [1 / (1 / m + 1 / e) for m, e in zip(models, encs)]
    print("# end to end (bundled model)\n")
    print(f"| measure ({a.rounds} round(s): median, range; start-up included) | value |")
    print("|---|---|")
    print(f"| variant `generate` runs here | {auto.variant_reason} |")
    print(f"| model-only rate of that file, {a.threads} threads (API default) | {_med(models)} img/s |")
    print(f"| PNG encode + atomic write rate, all cores | {_med(encs)} img/s |")
    print(f"| serial bound 1/(1/model + 1/encode), per round | {_med(bounds)} img/s |")
    print(f"| `generate -n {a.e2e_n}` to PNG files | {_med(e2es)} img/s |")
    print(f"| PNG files / serial bound, per round | {_med([e / b for e, b in zip(e2es, bounds)], '.2f')} "
          f"(target >= 0.9) |")
    for fmt, rates in shards.items():
        print(f"| `--format {fmt}` (PNG-encoded samples in shards) | {_med(rates)} img/s = "
              f"{_med([r / m for r, m in zip(rates, models)], '.2f')} of model-only (target >= 0.8) |")
    print(f"| `--format grid` (one image: inference + start-up) | {_med(grids)} img/s |")
    colds = []
    for _ in range(7):
        shutil.rmtree(work / "cold", ignore_errors=True)
        colds.append(cli("generate", "-n", "64", "--outdir", str(work / "cold"), "-q"))
    print(f"| cold start `generate -n 64` (median, range of 7) | {_med(colds, '.3f')} s (target <= 0.5) |")


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
        if a.device == "cpu":
            quality_table(specs, a, work)
        model_table(specs, a)
        if a.device == "cpu" and not a.skip_e2e:
            end_to_end_table(specs[0], a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
