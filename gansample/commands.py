"""Bodies of the CLI commands: call the API, write files, report."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from .errors import GansampleError
from .generator import class_index
from .images import PngWriter, atomic_write, ensure_outdir, make_grid, save_png

GRID_MAX = 256  # grid.png shows at most this many images


def seed_filename(seed: int) -> str:
    return f"seed{seed:04d}.png"


def _write_manifest(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    fields = list(rows[0].keys()) if rows else ["seed", "file"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    text = buf.getvalue()
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    atomic_write(path, write)


def generate(a: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    with PngWriter(a.workers if a.format == "png" else 0) as writer:
        return _generate(a, writer, t0)


def _generate(a: argparse.Namespace, writer: PngWriter, t0: float) -> int:
    from tqdm import tqdm

    from .cli import _note_device
    from .generator import Generator

    g = Generator(a.model, device=a.device, threads=a.threads, batch_size=a.batch_size,
                  spinning=a.format != "png")
    psi = g.check_psi(a.trunc)
    seeds = g.seed_list(a.seeds, a.n if a.n is not None else (None if a.seeds else 64))
    scores: dict[int, float] = {}
    if a.filter:
        seeds, scores = _filtered_seeds(a, g, seeds, psi)
    _note_device(g, a.quiet, a.verbose)
    names = g.class_names if g.info.conditional else []
    labels = g.labels_for(seeds, a.cls)  # validates --class before any output
    outdir = ensure_outdir(a.outdir or str(Path("out") / g.name))
    todo = seeds
    if a.skip_existing and a.format == "png":
        todo = [s for s in seeds if not (outdir / seed_filename(s)).exists()]
    rows = [{"seed": s, "class": "" if labels is None else int(labels[i]),
             "class_name": names[int(labels[i])] if labels is not None else "", "psi": psi,
             "file": seed_filename(s) if a.format == "png" else ""} for i, s in enumerate(seeds)]
    if scores:
        for r in rows:
            r["d_score"] = round(scores[r["seed"]], 6)
    grid_imgs: list[np.ndarray] = []
    keep_all = a.format == "npz"
    all_imgs, all_z, all_y = [], [], []
    bar = tqdm(total=len(todo), unit="img", disable=a.quiet or len(todo) < 512, file=sys.stderr)
    for res in g.iter_samples(seeds=todo, psi=psi, cls=a.cls):
        if a.format == "png":
            writer.write(res.images, [outdir / seed_filename(s) for s in res.seeds or []])
        if len(grid_imgs) < GRID_MAX:
            grid_imgs.extend(res.images[: GRID_MAX - len(grid_imgs)])
        if keep_all:
            all_imgs.append(res.images)
            all_z.append(res.latents)
            if res.labels is not None:
                all_y.append(res.labels)
        bar.update(len(res))
    writer.close()  # every PNG is in place before the grid and the manifest name them
    bar.close()
    if a.format in ("png", "grid") and grid_imgs:
        save_png(make_grid(np.stack(grid_imgs)), outdir / "grid.png", compress_level=6)
    if keep_all and all_imgs:
        extra = {"labels": np.concatenate(all_y)} if all_y else {}
        _save_npz(outdir / "images.npz", images=np.concatenate(all_imgs),
                  seeds=np.asarray(todo, dtype=np.int64), latents=np.concatenate(all_z), **extra)
    _write_manifest(outdir / "manifest.csv", rows)
    dt = time.perf_counter() - t0
    if not a.quiet:
        what = {"png": f"{len(todo)} PNGs + grid.png", "npz": "images.npz", "grid": "grid.png"}[a.format]
        skipped = len(seeds) - len(todo)
        print(f"wrote {what} to {outdir}" + (f" (skipped {skipped} existing)" if skipped else "")
              + (f" in {dt:.2f}s on {g.provider}" if a.verbose else ""))
    return 0


def _filtered_seeds(a: argparse.Namespace, g, seeds: list[int], psi: float) -> tuple[list[int], dict[int, float]]:
    """Apply --filter: choose the seeds to keep by the discriminator's scores, write
    candidates.csv (every candidate, its score, kept or not) and report the acceptance."""

    from .discriminator import Discriminator, filter_seeds, parse_filter
    method, param = parse_filter(a.filter)
    d = Discriminator(a.model, device=a.device, threads=a.threads, batch_size=a.batch_size)
    g.labels_for(seeds[:1], a.cls)  # validate --class first
    fr = filter_seeds(g, d, method, param, n=None if a.seeds else len(seeds),
                      seeds=seeds if a.seeds else None, psi=psi, cls=a.cls)
    outdir = ensure_outdir(a.outdir or str(Path("out") / g.name))
    cand_rows = [{"seed": s, "d_score": round(float(sc), 6), "kept": int(k)}
                 for s, sc, k in zip(fr.candidates, fr.scores, fr.kept)]
    _write_manifest(outdir / "candidates.csv", cand_rows)
    if not a.quiet:
        print(f"filter {fr.method}: kept {len(fr.seeds)} of {len(fr.candidates)} candidates "
              f"(acceptance rate {fr.acceptance_rate:.3f})", file=sys.stderr)
    kept_scores = {s: float(sc) for s, sc, k in zip(fr.candidates, fr.scores, fr.kept) if k}
    return fr.seeds, kept_scores


def score(a: argparse.Namespace) -> int:
    from .discriminator import Discriminator
    d = Discriminator(a.model, device=a.device, threads=a.threads)
    cls = class_index(d.info, a.cls, "--class", d.name) if a.cls is not None else None
    res = d.score_files(a.paths, cls)
    for r in res.failed:
        print(f"{r.path}: skipped: {r.error}", file=sys.stderr)
    if not res.scored:
        raise GansampleError(f"PATH: got {' '.join(a.paths)!r}; none of it could be scored "
                             "(see the messages above)")
    names = d.info.class_names
    rows = [{"rank": i + 1, "score": round(r.score, 6), "path": r.path,
             **({"class": names[r.label] if r.label is not None and names else r.label} if d.info.conditional else {})}
            for i, r in enumerate(res.sorted())]
    if a.format == "json":
        print(json.dumps({"model": d.name, "scores": rows,
                          "skipped": [{"path": r.path, "error": r.error} for r in res.failed]}, indent=2))
    elif a.format == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0].keys()), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    else:
        print(f"{'rank':>4}  {'score':>9}  " + ("class         " if d.info.conditional else "") + "path")
        for r in rows:
            cl = f"{str(r.get('class', '')):<12}  " if d.info.conditional else ""
            print(f"{r['rank']:>4}  {r['score']:>9.4f}  {cl}{r['path']}")
    return 0


def info(a: argparse.Namespace) -> int:
    import onnxruntime as ort

    from .registry import resolve_model
    from .session import Session, cuda_status, resolve_device

    files = resolve_model(a.model)
    device = resolve_device(a.device)
    entries = {**{f"generator ({v})": p for v, p in files.generators.items()}}
    if files.discriminator:
        entries["discriminator"] = files.discriminator
    if not entries:
        raise GansampleError(f"--model: {a.model!r} has no ONNX files")
    report: dict = {"model": files.name, "folder": str(files.folder),
                    "providers_available": ort.get_available_providers(),
                    "cuda_usable": cuda_status()[0], "cuda_note": cuda_status()[1],
                    "files": {}}
    meta = None
    for label, path in entries.items():
        s = Session(path, device)
        meta = meta or s.info
        d = s.describe()
        report["files"][label] = {"file": path.name, "size_mb": round(path.stat().st_size / 1e6, 3),
                                  "provider": d["provider"], "variant": s.info.variant,
                                  "output": s.info.output,
                                  "inputs": [f"{n} {t} {sh}" for n, t, sh in d["inputs"]],
                                  "outputs": [f"{n} {t} {sh}" for n, t, sh in d["outputs"]]}
    assert meta is not None
    report["metadata"] = {k: v for k, v in meta.__dict__.items() if k not in ("variant", "output")}
    if a.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    m = report["metadata"]
    print(f"model:      {files.name}  ({files.folder})")
    print(f"image:      {m['img_resolution']}x{m['img_resolution']}, {m['img_channels']} channel(s); z_dim {m['z_dim']}")
    if m["num_classes"]:
        print(f"classes:    {m['num_classes']}: " + ", ".join(f"{i}={n}" for i, n in enumerate(m["class_names"])))
    else:
        print("classes:    unconditional")
    print(f"trained:    {m['dataset'] or '?'}, {m['train_steps']} steps, commit {m['source_commit'] or '?'}")
    print(f"seed rule:  {m['seed_rule']}")
    if m["metrics"]:
        print("metrics:    " + ", ".join(f"{k}={v}" for k, v in m["metrics"].items()))
    print(f"providers:  available {', '.join(report['providers_available'])}; "
          f"CUDA {'usable' if report['cuda_usable'] else 'not usable: ' + report['cuda_note']}")
    for label, f in report["files"].items():
        print(f"{label}: {f['file']} ({f['size_mb']} MB) on {f['provider']}")
        print(f"    in:  {'; '.join(f['inputs'])}")
        # A discriminator's metadata "output" names the image layout it takes.
        layout = f"raw logits; images in as {f['output']}" if label == "discriminator" else f["output"]
        print(f"    out: {'; '.join(f['outputs'])}  [{layout}]")
    return 0
