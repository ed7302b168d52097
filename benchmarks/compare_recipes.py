"""Train the recipes on the same data for the same number of images and print their
evaluation side by side (the trainer's own evaluator: Frechet distance, precision, recall,
density, coverage in a features model's space). Each run is its own `gansample train`
process, one after the other.

    python benchmarks/compare_recipes.py --data data/emoji --resolution 32 --steps 800 \\
        --features exported/features/emoji.onnx --width 16 --outdir runs-compare
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RECIPES = ("dcgan", "gansample", "fastgan")
KEYS = ("frechet_distance", "precision", "recall", "density", "coverage", "class_accuracy")


def run(recipe: str, a: argparse.Namespace) -> tuple[dict, float, Path]:
    out = a.outdir / recipe
    cmd = [sys.executable, "-m", "gansample", "train", "--data", str(a.data), "--conditional", "--resolution",
           str(a.resolution), "--recipe", recipe, "--steps", str(a.steps), "--outdir", str(out), "--seed", str(a.seed),
           "--set", f"g_width={a.width}", "--set", f"d_width={a.width}", "--set", f"eval_every={a.eval_every or a.steps}",
           "--set", f"eval_n={a.eval_n}", "--set", f"sample_every={a.steps}", "--set", f"ckpt_every={a.steps}",
           "--set", f"features={a.features}", "--set", f"threads={a.threads}", "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    run_dir = sorted(out.iterdir())[-1]
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if '"eval"' in l]
    return rows[-1]["eval"], wall, run_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--eval-n", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: only at the end)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--outdir", type=Path, default=Path("runs-compare"))
    a = ap.parse_args()
    results = {r: run(r, a) for r in a.recipes.split(",")}
    print(f"\n{a.data.name}, {a.resolution} px, {a.steps} steps of 64 = {a.steps * 64:,} images per recipe, "
          f"width {a.width}, {a.eval_n} samples vs {results[next(iter(results))][0]['n_real']} real images")
    print("| recipe | " + " | ".join(k.replace("_", " ") for k in KEYS) + " | wall |")
    print("|---|" + "---|" * (len(KEYS) + 1))
    for r, (ev, wall, run_dir) in results.items():
        cells = " | ".join(f"{ev[k]:.4f}" if ev.get(k) is not None else "-" for k in KEYS)
        print(f"| {r} | {cells} | {wall / 60:.1f} min |  ")
    for r, (_, _, run_dir) in results.items():
        print(f"{r}: {run_dir}")


if __name__ == "__main__":
    main()
