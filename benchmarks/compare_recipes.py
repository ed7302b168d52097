"""Train the recipes on the same data for the same number of images and print their
evaluation side by side (the trainer's own evaluator: Frechet distance, precision, recall,
density, coverage in a features model's space), at every evaluation step all runs reached.
Each run is its own `gansample train` process; --jobs runs several at once (on one GPU the
runs then share it: compare their quality, not their wall times).

    python benchmarks/compare_recipes.py --data data/emoji --resolution 32 --steps 800 \\
        --features exported/features/emoji.onnx --width 16 --outdir runs-compare

Runs: --runs takes recipe names separated by commas; --run (repeatable) takes one run as
LABEL=RECIPE[:KEY=VALUE...], e.g. `--runs dcgan,fastgan,gansample --run
before=gansample:augment=translation` compares the default recipe with and without its
colour augmentation (a value may hold commas: `--run c=gansample:augment=color,translation`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RECIPES = ("dcgan", "gansample", "fastgan")
KEYS = ("frechet_distance", "precision", "recall", "density", "coverage", "class_accuracy")


def parse_run(spec: str) -> tuple[str, str, list[str]]:
    """'LABEL=RECIPE:K=V:K=V' or 'RECIPE' -> (label, recipe, ['K=V', ...])."""
    label, rest = spec.split("=", 1) if "=" in spec.split(":")[0] else ("", spec)
    recipe, *settings = rest.split(":")
    if recipe not in RECIPES:
        raise SystemExit(f"--runs: got {spec!r}; a run is RECIPE or LABEL=RECIPE[:KEY=VALUE...], "
                         f"RECIPE one of {', '.join(RECIPES)}")
    return label or recipe, recipe, settings


def run(spec: tuple[str, str, list[str]], a: argparse.Namespace) -> tuple[list[dict], float, Path]:
    label, recipe, settings = spec
    out = a.outdir / label
    cmd = [sys.executable, "-m", "gansample", "train", "--data", str(a.data), "--conditional", "--resolution",
           str(a.resolution), "--recipe", recipe, "--steps", str(a.steps), "--outdir", str(out), "--seed", str(a.seed),
           "--set", f"g_width={a.width}", "--set", f"d_width={a.width}", "--set", f"batch_size={a.batch_size}",
           "--set", f"eval_every={a.eval_every or a.steps}",
           "--set", f"eval_n={a.eval_n}", "--set", f"sample_every={a.steps}", "--set", f"ckpt_every={a.steps}",
           "--set", f"features={a.features}", "--set", f"threads={a.threads}", "-q"]
    for kv in settings:
        cmd += ["--set", kv]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    run_dir = max(out.iterdir())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    return rows, wall, run_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--eval-n", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: only at the end)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", "--recipes", dest="runs", default=None, help="recipe names, comma-separated "
                    f"(default: {','.join(RECIPES)} unless --run is given)")
    ap.add_argument("--run", action="append", default=[], help="LABEL=RECIPE[:KEY=VALUE...] (repeatable)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once")
    ap.add_argument("--outdir", type=Path, default=Path("runs-compare"))
    a = ap.parse_args()
    names = a.runs.split(",") if a.runs is not None else ([] if a.run else list(RECIPES))
    specs = [parse_run(s) for s in names] + [parse_run(s) for s in a.run]
    labels = [s[0] for s in specs]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"--run: labels must differ (each run has its own folder); got {labels}")
    with ThreadPoolExecutor(max(1, a.jobs)) as pool:
        results = dict(zip(labels, pool.map(lambda s: run(s, a), specs)))
    first = next(iter(results.values()))[0]
    print(f"\n{a.data.name}, {a.resolution} px, width {a.width}, "
          f"{a.eval_n} samples vs {first[-1]['eval']['n_real']} real images")
    steps = sorted(set.intersection(*({r["step"] for r in rows} for rows, _, _ in results.values())))
    batch = {label: json.loads((run_dir / "config.json").read_text())["batch_size"]
             for label, (_, _, run_dir) in results.items()}
    print("| run | step | images | " + " | ".join(k.replace("_", " ") for k in KEYS) + " |")
    print("|---|---|---|" + "---|" * len(KEYS))
    for step in steps:
        for label, (rows, _, _) in results.items():
            ev = next(r["eval"] for r in rows if r["step"] == step)
            cells = " | ".join(f"{ev[k]:.4f}" if ev.get(k) is not None else "-" for k in KEYS)
            print(f"| {label} | {step} | {step * batch[label]:,} | {cells} |")
    for label, (_, wall, run_dir) in results.items():
        print(f"{label}: {run_dir} ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
