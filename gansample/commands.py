"""Bodies of the CLI commands, one function per command (named as the command): call
the Python API, report. Errors raised here name the API's arguments; gansample.cli maps
them to flags."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import GansampleError

log = logging.getLogger("gansample")
MAX_GENERATE = 100_000_000  # seeds in one local `generate` run


def _install_hint(extra: str, missing: str) -> GansampleError:
    return GansampleError(f"this command needs the '{extra}' extra ({missing} is not installed): "
                          f"pip install 'gansample[{extra}]'")


def _check_file_target(path: str | os.PathLike[str], arg: str) -> None:
    """The folder of an output file exists (created if missing) and can be written, before
    the work that makes the file."""
    from .files import ensure_outdir

    if Path(path).is_dir():
        raise GansampleError(f"{arg}: got {str(path)!r}; it is a folder, expected a file path", arg)
    ensure_outdir(Path(path).absolute().parent, arg, given=str(path))


def _verbose_device(g: Any, verbose: bool) -> None:
    if verbose:
        log.warning("device: %s", g.provider)


# --- generate ------------------------------------------------------------------------------
def generate(a: argparse.Namespace) -> int:
    from .generator import Generator
    from .output import ensure_outdir, write_samples

    t0 = time.perf_counter()
    if a.engine != "ray":  # options that only the Ray engine reads are not silently dropped
        for flag, value, given in (("address", a.address, a.address is not None),
                                   ("gpus_per_worker", a.gpus_per_worker, a.gpus_per_worker != 0)):
            if given:
                raise GansampleError(f"{flag}: got {value!r}; it applies to --engine ray only", flag)
    shards = a.format in ("webdataset", "parquet")
    if a.shard_size is not None and not shards:
        raise GansampleError(f"shard_size: got {a.shard_size}; it applies to --format webdataset or parquet, "
                             f"not {a.format}", "shard_size")
    if a.skip_existing and a.format not in ("png", "webdataset", "parquet"):
        raise GansampleError(f"format: got {a.format!r}; --skip-existing works on png files and shards "
                             "(npz and grid are written whole)", "format")
    g = Generator(a.model, device=a.device, variant=a.variant, threads=a.threads, batch_size=a.batch_size,
                  spinning=a.format not in ("png", "webdataset", "parquet"))
    psi = g.check_psi(a.trunc)
    if a.latents:
        return _generate_latents(a, g, psi)
    seeds = g.seed_list(a.seeds, a.n if a.n is not None else (None if a.seeds is not None else 64),
                        limit=MAX_GENERATE)
    g.labels_for([0], a.cls)  # validates --class before any output
    outdir = ensure_outdir(a.outdir or str(Path("out") / g.name))
    scores = None
    if a.filter:
        seeds, scores = _filtered_seeds(a, g, seeds, psi, outdir)
    _verbose_device(g, a.verbose)
    with _progress_bar(len(seeds), a.quiet or len(seeds) < 512) as update:
        rep = write_samples(g, seeds, outdir, a.format, psi, a.cls, a.skip_existing,
                            scores, a.workers, progress=update, shard_size=a.shard_size or 10_000,
                            command=["gansample", *sys.argv[1:]], engine=a.engine, address=a.address,
                            gpus_per_worker=a.gpus_per_worker)
    if not a.quiet:
        what = {"png": f"{rep.written} PNGs + grid.png", "npz": "images.npz", "grid": "grid.png"}.get(
            a.format, f"{a.format} shards + index.json")
        print(f"wrote {what} to {outdir}" + (f" (skipped {rep.skipped} existing)" if rep.skipped else "")
              + (f" in {time.perf_counter() - t0:.2f}s on {g.provider}" if a.verbose else ""))
    return 0


@contextlib.contextmanager
def _progress_bar(total: int, hidden: bool) -> Iterator[Callable[[int], Any]]:
    """tqdm's update on stderr, or nothing; tqdm is imported only when shown (it costs a
    tenth of a small run's start-up)."""
    if hidden:
        yield lambda n: None
        return
    from tqdm import tqdm
    with tqdm(total=total, unit="img", file=sys.stderr) as bar:
        yield bar.update


def _generate_latents(a: argparse.Namespace, g: Any, psi: float) -> int:
    """generate --latents FILE...: one PNG per latent (named after its file) + grid.png and
    manifest.csv, from latent files written by `project` (or any .npz/.npy of latents)."""
    import numpy as np

    from .images import make_grid
    from .output import ensure_outdir, save_png, write_csv
    from .projection import check_latent_files, load_latents

    if a.format not in ("png", "grid"):
        raise GansampleError(f"format: got {a.format!r}; with --latents: png or grid", "format")
    if a.filter:
        raise GansampleError(f"filter: got {a.filter!r}; --filter works on seeds, not with --latents", "filter")
    from .generator import MAX_SAMPLE_BYTES

    # Every image is held in memory: the total is checked from the files' headers first.
    check_latent_files(a.latents, max_rows=MAX_SAMPLE_BYTES // (g.info.img_resolution ** 2 * g.info.img_channels))
    names: list[str] = []
    parts = []
    taken: set[str] = set()
    for path in a.latents:
        z, y = load_latents(path, g.info.z_dim)
        parts.append((z, y))
        stem = _unique_stem(path, taken)  # two files of one name (in two folders) keep apart
        names += [f"{stem}.png"] if len(z) == 1 else [f"{stem}-{i:03d}.png" for i in range(len(z))]
    z = np.concatenate([p[0] for p in parts])
    ys = [p[1] for p in parts]
    labels = None
    if g.info.conditional and a.cls is None:
        if any(y is None for y in ys):
            raise GansampleError("latents: a file has no labels and this model is class-conditional; "
                                 "pass --class", "latents")
        labels = np.concatenate([y for y in ys if y is not None])
    res = g.sample(latents=z, labels=labels, cls=a.cls if labels is None else None, psi=psi)
    outdir = ensure_outdir(a.outdir or str(Path("out") / g.name))
    if a.format == "png":
        for img, name in zip(res.images, names):
            save_png(img, outdir / name)
    save_png(make_grid(res.images[:256]), outdir / "grid.png", compress_level=6)
    cls_names = g.class_names if g.info.conditional else []
    write_csv(outdir / "manifest.csv",
              ({"file": n if a.format == "png" else "", "class": cls_names[int(res.labels[i])] if res.labels is not None else "",
                "psi": psi} for i, n in enumerate(names)), ["file", "class", "psi"])
    if not a.quiet:
        print(f"wrote {len(names) if a.format == 'png' else 0} PNGs + grid.png from {len(a.latents)} latent file(s) "
              f"to {outdir}")
    return 0


def _filtered_seeds(a: argparse.Namespace, g: Any, seeds: Any, psi: float,
                    outdir: Path) -> tuple[list[int], dict[int, float]]:
    """Apply --filter: choose the seeds to keep by the discriminator's scores, write
    candidates.csv (every candidate, its score, kept or not) and report the acceptance."""
    from .discriminator import Discriminator, filter_seeds, parse_filter
    from .output import write_csv

    method, param = parse_filter(a.filter)
    d = Discriminator(a.model, device=a.device, threads=a.threads, batch_size=a.batch_size)
    given = a.seeds is not None
    fr = filter_seeds(g, d, method, param, n=None if given else len(seeds), seeds=seeds if given else None,
                      psi=psi, cls=a.cls)
    write_csv(outdir / "candidates.csv", ({"seed": s, "d_score": round(float(sc), 6), "kept": int(k)}
                                          for s, sc, k in zip(fr.candidates, fr.scores, fr.kept)),
              ["seed", "d_score", "kept"])
    log.info("filter %s: kept %d of %d candidates (acceptance rate %.3f)", fr.method, len(fr.seeds),
             len(fr.candidates), fr.acceptance_rate)
    kept_scores = {s: float(sc) for s, sc, k in zip(fr.candidates, fr.scores, fr.kept) if k}
    return fr.seeds, kept_scores


# --- interpolate -----------------------------------------------------------------------------
def interpolate(a: argparse.Namespace) -> int:
    from .generator import Generator
    from .errors import check_count
    from .interpolation import MAX_KEYFRAMES, MAX_STEPS, MAX_WALKS, check_output, check_walk, interpolate as walk, save

    kind = check_output(a.out, a.fps, a.scale)
    g = Generator(a.model, device=a.device, variant=a.variant, threads=a.threads, spinning=False)
    walks = check_count("walks", a.grid, 1, MAX_WALKS)
    steps = check_count("steps", a.steps, 2, MAX_STEPS)
    if a.seeds is not None:
        n_keys = len(g.seed_list(a.seeds, None, MAX_KEYFRAMES))
    else:
        if walks != 1:
            raise GansampleError(f"walks: got {walks}; 1 with --images or --latents (shifted walks need seeds)", "walks")
        if a.latents:  # a file may hold several keyframes: counted from its header first
            from .projection import load_latents
            keys = load_latents(a.latents, g.info.z_dim, max_rows=MAX_KEYFRAMES)
            n_keys = len(keys[0])
            what = f"latents: got {n_keys} latent(s) in {len(a.latents)} file(s)"
        else:
            n_keys = len(a.images)
            what = f"images: got {n_keys} image file(s)"
        if not 2 <= n_keys <= MAX_KEYFRAMES:
            raise GansampleError(f"{what}; a walk needs 2 to {MAX_KEYFRAMES} keyframes"
                                 + ("" if a.latents else ", one image file each"), "latents" if a.latents else "images")
    # The whole walk's size (upscaled frames included, for a GIF) is checked before sampling.
    check_walk(n_keys, steps, a.loop, walks, g.info.img_resolution * (a.scale if kind == ".gif" else 1),
               g.info.img_channels)
    if a.seeds is not None:
        result = walk(g, a.seeds, steps, a.method, a.loop, a.trunc, a.cls, walks)
    else:
        z, y = keys if a.latents else _keyframe_latents(a, g)
        if a.latents and not (g.info.conditional and a.cls is None):
            y = None
        result = walk(g, None, steps, a.method, a.loop, a.trunc, a.cls if y is None else None, latents=z, labels=y)
    path = save(result, a.out, a.fps, a.scale)
    if not a.quiet:
        print(f"wrote {len(result)} frames to {path}")
    return 0


def _keyframe_latents(a: argparse.Namespace, g: Any) -> tuple[Any, Any]:
    """--images: project each one (every image must be usable, since the walk's keyframes
    are in the order given)."""
    from .projection import features_for, load_targets, project as run_projection
    import numpy as np

    targets = load_targets(a.images, g.info.img_resolution, g.info.img_channels)
    bad = [t for t in targets if t.error]
    if bad:
        raise GansampleError(f"images: {bad[0].path}: {bad[0].error}", "images")
    if len(targets) != len(a.images):
        raise GansampleError(f"images: got {len(a.images)} arguments naming {len(targets)} images; give one image "
                             "file per keyframe", "images")
    for t in targets:
        for note in t.notes:
            log.info("%s: %s", t.path, note)
    p = run_projection(g, np.stack([t.image for t in targets if t.image is not None]), cls=a.cls,
                       features=features_for(g, None, a.device))
    for note in p.notes:
        log.info("interpolate: %s", note)
    log.info("interpolate: projected %d keyframe images (median pixel RMSE %.1f)", len(targets),
             float(np.median(p.pixel_rmse)))
    return p.latents, p.labels


# --- project / edit / directions / train-encoder -----------------------------------------------
def _unique_stem(path: str, taken: set[str]) -> str:
    stem = Path(path).stem or "image"
    name, i = stem, 2
    while name in taken:
        name, i = f"{stem}-{i}", i + 1
    taken.add(name)
    return name


def project(a: argparse.Namespace) -> int:
    import numpy as np

    from .files import ensure_outdir
    from .generator import Generator
    from .images import make_grid
    from .output import save_png, write_csv
    from .projection import (check_args, features_for, load_encoder, load_targets, project as run_projection,
                             save_latents)

    check_args(a.steps, a.popsize, a.feature_weight, a.d_weight, a.seed)
    g = Generator(a.model, device=a.device, variant=a.variant, threads=a.threads, spinning=False)
    if a.cls is not None:
        g.class_index(a.cls)  # validates --class before any work
    targets = load_targets(a.paths, g.info.img_resolution, g.info.img_channels)
    for t in targets:
        if t.error:
            print(f"{t.path}: skipped: {t.error}", file=sys.stderr)
    good = [t for t in targets if t.image is not None]
    if not good:
        raise GansampleError(f"paths: got {' '.join(a.paths)[:200]!r}; none of it is an image that can be "
                             "projected (see the messages above)", "paths")
    d = None
    if a.d_weight > 0:
        from .discriminator import Discriminator
        d = Discriminator(a.model, device=a.device, threads=a.threads)
    fx = features_for(g, a.features, a.device)
    # The encoder is opened (and its graph checked) once for the run, not once per image;
    # without one, project() gets what it was asked for and says why there is none.
    enc = load_encoder(g, False if a.no_encoder else None)[0]
    encoder = enc if enc is not None else (False if a.no_encoder else None)
    outdir = ensure_outdir(a.out, "out")
    taken: set[str] = set()
    rows: list[dict[str, Any]] = []
    for t in good:
        assert t.image is not None
        for note in t.notes:
            log.info("%s: %s", t.path, note)
        p = run_projection(g, t.image[None], cls=a.cls, steps=a.steps, popsize=a.popsize,
                           encoder=encoder, features=fx,
                           feature_weight=a.feature_weight, d=d, d_weight=a.d_weight, seed=a.seed)
        if not rows:
            for note in p.notes:
                log.info("project: %s", note)
        stem = _unique_stem(t.path, taken)
        save_latents(outdir / f"{stem}.npz", p.latents, p.labels)
        save_png(p.reconstructions[0], outdir / f"{stem}-reconstruction.png")
        # Side by side, input | reconstruction, enlarged (nearest neighbour) to at least 128 px.
        k = max(1, -(-128 // g.info.img_resolution))
        pair = make_grid(np.stack([t.image, p.reconstructions[0]]), cols=2).repeat(k, 0).repeat(k, 1)
        save_png(pair, outdir / f"{stem}-side-by-side.png")
        cls = "" if p.labels is None else g.class_names[int(p.labels[0])]
        fd = float(p.feature_distance[0])
        rows.append({"input": t.path, "name": stem, "class": cls, "pixel_rmse": round(float(p.pixel_rmse[0]), 3),
                     "feature_distance": "" if np.isnan(fd) else round(fd, 4),
                     "seconds": round(float(p.seconds[0]), 3), "start": p.start, "notes": "; ".join(t.notes)})
    write_csv(outdir / "summary.csv", rows, list(rows[0]))
    if not a.quiet:
        print(f"{'pixel RMSE':>10}  {'feature d':>9}  {'seconds':>7}  {'class':<12}  input")
        for r in rows:
            fdt = f"{r['feature_distance']:>9.4f}" if r["feature_distance"] != "" else f"{'-':>9}"
            print(f"{r['pixel_rmse']:>10.3f}  {fdt}  {r['seconds']:>7.3f}  {r['class']:<12}  {r['input']}")
        print(f"wrote {len(rows)} latents (.npz), reconstructions and side-by-sides + summary.csv to {outdir}")
    return 0


def edit(a: argparse.Namespace) -> int:
    import numpy as np

    from .directions import edit as run_edit, parse_amounts
    from .files import ensure_outdir
    from .generator import Generator
    from .output import save_png, write_csv

    parse_amounts(a.amount)
    g = Generator(a.model, device=a.device, variant=a.variant, threads=a.threads, spinning=False)
    psi = g.check_psi(a.trunc)
    res = run_edit(g, a.seeds, a.direction, a.amount, psi, a.cls)
    outdir = ensure_outdir(a.outdir or str(Path("out") / f"{g.name}-edits"))
    rows = []
    for i, seed in enumerate(res.seeds):
        # One strip per seed, frames side by side without padding: with one amount the
        # strip is that frame alone (amount 0: the very PNG `generate` writes for the seed).
        strip = np.concatenate(list(res.images[i]), axis=1)
        name = f"seed{seed:04d}-dir{res.direction:02d}.png"
        save_png(strip, outdir / name)
        rows.append({"file": name, "seed": seed, "direction": res.direction,
                     "amounts": " ".join(f"{x:g}" for x in res.amounts), "psi": psi,
                     "class": "" if res.labels is None else g.class_names[int(res.labels[i])]})
    write_csv(outdir / "edits.csv", rows, list(rows[0]))
    if not a.quiet:
        print(f"wrote {len(rows)} strips of {len(res.amounts)} frames (direction {res.direction}) to {outdir}")
    return 0


def directions(a: argparse.Namespace) -> int:
    from .directions import compute_directions, save_directions
    from .generator import Generator
    from .registry import DIRECTIONS_FILE

    g = Generator(a.model, device=a.device, threads=a.threads, spinning=False)
    out = Path(a.out) if a.out else g.files.folder / DIRECTIONS_FILE
    if out.suffix != ".npz":
        raise GansampleError(f"out: got {str(out)!r}; a .npz file path", "out")
    _check_file_target(out, "out")  # checked before the PCA, not after
    d = compute_directions(g, a.k, a.samples)
    save_directions(d, out)
    if not a.quiet:
        shares = ", ".join(f"{x:.3f}" for x in d.explained[:8])
        print(f"wrote {len(d)} directions (PCA of {d.layer!r}; variance shares {shares} ...) to {out}")
    return 0


def train_encoder(a: argparse.Namespace) -> int:
    try:
        from .training.encoder import main as run
    except ModuleNotFoundError as e:
        raise _install_hint("train", e.name or "torch") from None
    path = run(a.model, a.steps, a.batch_size, a.out, a.device, a.quiet)
    if not a.quiet:
        print(f"wrote {path}")
    return 0


# --- score ---------------------------------------------------------------------------------
def score(a: argparse.Namespace) -> int:
    from .discriminator import Discriminator
    from .generator import class_index

    d = Discriminator(a.model, device=a.device, threads=a.threads)
    cls = class_index(d.info, a.cls, "cls", d.name) if a.cls is not None else None
    res = d.score_files(a.paths, cls)
    for r in res.failed:
        print(f"{r.path}: skipped: {r.error}", file=sys.stderr)
    if not res.scored:
        raise GansampleError(f"paths: got {' '.join(a.paths)[:200]!r}; none of it could be scored "
                             "(see the messages above)", "paths")
    names = d.info.class_names
    rows = [{"rank": i + 1, "score": round(r.score or 0.0, 6), "path": r.path,
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
        for row in rows:
            cl = f"{str(row.get('class', '')):<12}  " if d.info.conditional else ""
            print(f"{row['rank']:>4}  {row['score']:>9.4f}  {cl}{row['path']}")
    return 0


# --- models ----------------------------------------------------------------------------------
def models(a: argparse.Namespace) -> int:
    """The models `--model NAME` finds: the bundled ones and those in $GANSAMPLE_MODELS, with
    what their metadata says. A folder whose files cannot be read is listed with the reason
    instead of ending the listing."""
    from .registry import DEFAULT_MODEL, ENV_MODELS, available_models, model_files_in
    from .session import Session

    rows: list[dict[str, Any]] = []
    for name, folder in available_models().items():
        # The folder found, not resolve_model(name): a folder of that name here would shadow it.
        row: dict[str, Any] = {"name": name, "default": name == DEFAULT_MODEL, "folder": str(folder)}
        try:
            files = model_files_in(folder, name)
            row.update(generators=sorted(files.generators), discriminator=files.discriminator is not None,
                       encoder=files.encoder is not None)
            source = files.generators.get("fp32") or next(iter(files.generators.values()), files.discriminator)
            if source is None:  # available_models lists only folders with one of them
                raise GansampleError("no generator or discriminator file", "model")
            m = Session(source, "cpu", threads=1, check=False).info
        except (GansampleError, OSError) as e:
            row["error"] = str(e)
        else:
            row.update(resolution=m.img_resolution, channels=m.img_channels, classes=m.class_names,
                       dataset=m.dataset, provenance=m.provenance)
        rows.append(row)
    if a.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no models found (bundled folder missing; add folders to ${ENV_MODELS})")
        return 0
    for r in rows:
        parts = [", ".join(r.get("generators", [])) or "no generator"]
        parts += [p for p in ("discriminator", "encoder") if r.get(p)]
        if "error" in r:
            what = f"unreadable: {r['error']}"
        else:
            colour = "grayscale" if r["channels"] == 1 else "RGB"
            classes = f"{len(r['classes'])} classes" if r["classes"] else "unconditional"
            what = f"{r['resolution']}x{r['resolution']} {colour}, {classes}, trained on {r['dataset'] or '?'}"
        print(f"{r['name']}{' (default)' if r['default'] else ''}: {what}")
        print(f"    files: {'; '.join(parts)}")
        print(f"    folder: {r['folder']}")
    return 0


# --- info ------------------------------------------------------------------------------------
def info(a: argparse.Namespace) -> int:
    import onnxruntime as ort

    from .registry import resolve_model
    from .session import Session, cuda_status, resolve_device

    files = resolve_model(a.model)
    device = resolve_device(a.device)
    entries = {f"generator ({v})": p for v, p in files.generators.items()}
    if files.discriminator:
        entries["discriminator"] = files.discriminator
    if files.encoder:
        entries["encoder"] = files.encoder
    if not entries:
        raise GansampleError(f"model: {a.model!r} has no ONNX files", "model")
    report: dict[str, Any] = {"model": files.name, "folder": str(files.folder),
                              "providers_available": ort.get_available_providers(),
                              "cuda_usable": cuda_status()[0], "cuda_note": cuda_status()[1], "files": {}}
    meta = None
    if files.generators:
        from .generator import Generator
        g = Generator(a.model, device=a.device, variant=a.variant, threads=a.threads)
        report["generator_in_use"] = {"file": g.session.path.name, "variant": g.info.variant,
                                      "why": g.variant_reason}
        if g.info.gate:
            from .reduced import describe
            report["generator_in_use"]["gate"] = describe(g.info.gate)
    for label, path in entries.items():
        s = Session(path, device)
        meta = meta or s.info
        d = s.describe()
        report["files"][label] = {"file": path.name, "size_mb": round(path.stat().st_size / 1e6, 3),
                                  "provider": d["provider"], "variant": s.info.variant, "output": s.info.output,
                                  **({"gate": s.info.gate} if s.info.gate else {}),
                                  "inputs": [f"{n} {t} {sh}" for n, t, sh in d["inputs"]],
                                  "outputs": [f"{n} {t} {sh}" for n, t, sh in d["outputs"]]}
    assert meta is not None
    report["metadata"] = {k: v for k, v in meta.__dict__.items() if k not in ("variant", "output", "gate")}
    from .registry import DIRECTIONS_FILE
    report["directions"] = (files.folder / DIRECTIONS_FILE).name if (files.folder / DIRECTIONS_FILE).is_file() else None
    if a.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    _print_info(report, files)
    return 0


def _print_info(report: dict[str, Any], files: Any) -> None:
    m = report["metadata"]
    print(f"model:      {files.name}  ({files.folder})")
    print(f"image:      {m['img_resolution']}x{m['img_resolution']}, {m['img_channels']} channel(s); z_dim {m['z_dim']}")
    if m["num_classes"]:
        print(f"classes:    {m['num_classes']}: " + ", ".join(f"{i}={n}" for i, n in enumerate(m["class_names"])))
    else:
        print("classes:    unconditional")
    print(f"trained:    {m['dataset'] or '?'}, {m['train_steps']} steps, commit {m['source_commit'] or '?'}"
          f"  (provenance: {m['provenance']})")
    print(f"truncation: in {m['truncation'].upper()}" + (" (the graph takes psi)" if m["truncation"] == "w" else
                                                          " (the runtime scales z by psi)"))
    print(f"seed rule:  {m['seed_rule']}")
    if m["metrics"]:
        print("metrics:    " + ", ".join(f"{k}={v}" for k, v in m["metrics"].items()))
    if report.get("directions"):
        print(f"directions: {report['directions']} (gansample edit, the Explore tab)")
    print(f"providers:  available {', '.join(report['providers_available'])}; "
          f"CUDA {'usable' if report['cuda_usable'] else 'not usable: ' + report['cuda_note']}")
    if "generator_in_use" in report:
        use = report["generator_in_use"]
        print(f"in use:     {use['file']}: {use['why']}")
    for label, f in report["files"].items():
        print(f"{label}: {f['file']} ({f['size_mb']} MB) on {f['provider']}")
        if f.get("gate"):
            from .reduced import describe
            print(f"    gate: {describe(f['gate'])}")
        print(f"    in:  {'; '.join(f['inputs'])}")
        # A discriminator's metadata "output" names the image layout it takes.
        layout = {"discriminator": f"raw logits; images in as {f['output']}",
                  "encoder": f"images in as {f['output']}"}.get(label, f["output"])
        print(f"    out: {'; '.join(f['outputs'])}  [{layout}]")


# --- evaluate ------------------------------------------------------------------------------
def evaluate(a: argparse.Namespace) -> int:
    from .evaluate import NEIGHBOURS, evaluate as run_evaluation
    from .generator import Generator

    if a.nearest and Path(a.nearest_out).suffix.lower() != ".png":
        raise GansampleError(f"nearest_out: got {a.nearest_out!r}; a .png file path", "nearest_out")
    if not a.nearest and a.nearest_out != "nearest.png":
        raise GansampleError(f"nearest_out: got {a.nearest_out!r}; it is the grid of --nearest K, which was not "
                             "given", "nearest_out")
    if a.data_dir is not None and not Path(a.data_dir).is_dir():
        raise GansampleError(f"data_dir: got {a.data_dir!r}; an existing folder with the dataset's files", "data_dir")
    if a.nearest:  # where the grid goes is checked before the minutes of work that make it
        _check_file_target(a.nearest_out, "nearest_out")
    g = Generator(a.model, device=a.device, variant=a.variant, threads=a.threads)
    rep = run_evaluation(g, n=a.n, psi=g.check_psi(a.trunc), features=a.features, dataset=a.dataset,
                         device=a.device, data_dir=a.data_dir).as_dict()
    near = _evaluate_nearest(a, g) if a.nearest else None
    if a.format == "json":
        print(json.dumps({"model": g.name, **rep, **({"nearest": near} if near else {})}, indent=2))
        return 0
    print(f"model {g.name}: {rep['n_fake']} samples vs {rep['n_real']} real test images")
    for k in ("frechet_distance", "precision", "recall", "density", "coverage", "class_accuracy"):
        if rep.get(k) is not None:
            print(f"  {k:<17} {rep[k]:.4f}")
    if rep["recognised_histogram"]:
        print(f"  recognised classes {rep['recognised_histogram']}")
    if near:
        print(f"model {g.name}: memorisation check, {near['n_fake']} samples vs {near['n_train']} training images")
        print(f"  real test images: median distance to the nearest training image {near['real_median']:.4f} "
              f"(1st percentile {near['real_p01']:.4f})")
        print(f"  samples nearer to a training image than that median: {near['share_closer']:.1%} "
              f"(near-copies, under the 1st percentile: {near['share_near_copies']:.1%})")
        print(f"  wrote {near['grid_file']}: the {len(near['shown'])} samples nearest to the training set, "
              f"each beside its {NEIGHBOURS} nearest training images")
    return 0


def _evaluate_nearest(a: argparse.Namespace, g: Any) -> dict[str, Any]:
    """evaluate --nearest K: the memorisation check; writes its grid to --nearest-out."""
    from .evaluate import nearest
    from .output import save_png

    out = Path(a.nearest_out)
    rep = nearest(g, a.nearest, n=a.n, psi=g.check_psi(a.trunc), features=a.features, dataset=a.dataset,
                  device=a.device, data_dir=a.data_dir)
    save_png(rep.grid, out, compress_level=6)
    return {**rep.as_dict(), "grid_file": str(out)}


# --- app ---------------------------------------------------------------------------------------
def app_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gansample app", description="Start the gansample web demo.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, default=7860, help="port to listen on")
    ap.add_argument("--model", action="append", default=[], help="extra model folder or .onnx (repeatable)")
    ap.add_argument("--default", default=None, help="model selected at start (none: fashion-mnist)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="execution device")
    ap.add_argument("--concurrency", type=int, default=2, help="requests processed at once")
    ap.add_argument("--queue-size", type=int, default=64, help="waiting requests before 'queue full'")
    return ap


def _check_listen(host: str, port: int) -> None:
    """The address resolves and the port can be bound on one of its addresses, checked before
    gradio starts (its own errors name neither option)."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise GansampleError(f"--host: got {host[:100]!r}; it does not resolve to an address here "
                             f"({getattr(e, 'strerror', None) or e})", "--host") from None
    failures: list[OSError] = []
    for family, kind, proto, _, addr in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(addr)
            return
        except OSError as e:
            failures.append(e)
    busy = next((e for e in failures if e.errno in (errno.EADDRINUSE, errno.EACCES)), None)
    if busy is not None:
        raise GansampleError(f"--port: got {port}; {host}:{port} cannot be listened on ({busy.strerror or busy}); "
                             "choose a free port", "--port")
    why = failures[0].strerror if failures else "no address"
    raise GansampleError(f"--host: got {host[:100]!r}; no address of it can be listened on here ({why}); "
                         "use an address of this machine, 127.0.0.1 or 0.0.0.0", "--host")


def app(a: argparse.Namespace) -> int:
    from .errors import check_count

    opts = app_parser().parse_args(a.args)  # --help and malformed values exit here, before gradio loads
    try:
        check_count("--concurrency", opts.concurrency, 1, 64)
        check_count("--queue-size", opts.queue_size, 1, 10_000)
        check_count("--port", opts.port, 1, 65535)
        _check_listen(opts.host, opts.port)
    except GansampleError as e:
        print(f"gansample app: error: {e}", file=sys.stderr)
        return 2
    try:
        import gradio  # noqa: F401
    except ModuleNotFoundError:
        raise _install_hint("app", "gradio") from None
    from .ui import serve
    return serve(opts)


# --- export ----------------------------------------------------------------------------------
def export(a: argparse.Namespace) -> int:
    if (a.checkpoint is None) == (a.module is None):
        raise GansampleError("export: give either CHECKPOINT (this trainer's) or --module FILE.py:NAME "
                             "(any PyTorch generator), not both or neither")
    try:
        from .training.export import export_checkpoint
    except ModuleNotFoundError as e:
        raise _install_hint("train", e.name or "torch") from None
    if a.module is not None:
        report = _export_module(a)
    else:
        report = export_checkpoint(a.checkpoint, a.out, name=a.name, fp16=not a.no_fp16, int8=not a.no_int8,
                                   features=a.features)
    for f, size in report["files"].items():
        used = report.get("exporter", {}).get(f)
        print(f"{a.out.rstrip('/')}/{f}  {size / 1e6:.2f} MB" + (f"  ({used} exporter)" if used else ""))
    d = report.get("discriminator_max_abs_diff")
    print(f"parity vs PyTorch: generator max |diff| {report['generator_max_abs_diff']:.2e}"
          + (f", discriminator max |diff| {d:.2e}" if d is not None else ""))
    _print_gate(report)
    return 0


def _print_gate(report: dict[str, Any]) -> None:
    if "int8_gate" in report:
        from .reduced import describe
        print(f"int8 quality gate: {describe(report['int8_gate'])}")


def quantize(a: argparse.Namespace) -> int:
    try:
        import onnx  # noqa: F401
    except ModuleNotFoundError:
        raise GansampleError("quantize needs the onnx package: pip install 'gansample[wrap]'") from None
    from .reduced import INT8_FILE, build_int8, describe, features_for
    from .registry import resolve_model
    files = resolve_model(a.model)
    if "uint8" not in files.generators:
        raise GansampleError(f"model: {a.model!r} has no generator_uint8.onnx to quantise", "model")
    feats = features_for(_dataset_of(files.generators["uint8"]), a.features)
    record = build_int8(files.folder, feats)
    if not a.quiet:
        print(f"{files.folder / INT8_FILE}")
        print(f"int8 quality gate: {describe(record)}")
    return 0


def _dataset_of(path: Path) -> str:
    from .session import Session
    return Session(path, "cpu", check=False).info.dataset


def contract_args(a: argparse.Namespace) -> dict[str, Any]:
    """--range, --layout, --classes, --conditioning as the library's arguments."""
    from .errors import bad_value
    try:
        lo, hi = (float(v) for v in a.output_range.split(","))
    except ValueError:
        raise bad_value("output_range", a.output_range, "-1,1 or 0,1") from None
    names: list[str] = []
    if a.classes:
        try:
            text = Path(a.classes).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise bad_value("class_names", a.classes, f"a readable UTF-8 text file ({e})") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if not names:
            raise bad_value("class_names", a.classes, "a file with one class name per line")
    conditioning = a.conditioning or ("index" if names else None)
    return {"output_range": (lo, hi), "layout": a.layout, "class_names": names or None,
            "num_classes": len(names), "conditioning": conditioning}


def _export_module(a: argparse.Namespace) -> dict[str, Any]:
    from .errors import bad_value
    from .training.byo import export_generator, load_module, load_weights, parse_args
    if a.weights is None:
        raise bad_value("weights", None, "the generator's weights file (--weights netG.pth)")
    shape = None
    if a.latent_shape:
        try:
            shape = tuple(int(v) for v in a.latent_shape.split(","))
        except ValueError:
            raise bad_value("latent_shape", a.latent_shape, "integers joined by commas, e.g. 100,1,1") from None
    if a.z_dim is None and shape is None:
        raise bad_value("z_dim", None, "the latent size (--z-dim 100) or --latent-shape")
    G = load_module(a.module, parse_args(a.module_args))
    load_weights(G, a.weights, a.weights_key)
    return export_generator(G, a.out, z_dim=a.z_dim, latent_shape=shape, name=a.name, fp16=not a.no_fp16,
                            truncation=a.truncation, source=a.module, int8=not a.no_int8, features=a.features,
                            **contract_args(a))


# --- wrap ----------------------------------------------------------------------------------------
def wrap(a: argparse.Namespace) -> int:
    try:
        import onnx  # noqa: F401
    except ModuleNotFoundError:
        raise GansampleError("wrap needs the onnx package: pip install 'gansample[wrap]'") from None
    from .wrap import wrap_onnx
    if a.z_dim is None:
        raise GansampleError("z_dim: give the latent size with --z-dim", "z_dim")
    report = wrap_onnx(a.onnx_file, a.out, z_dim=a.z_dim, name=a.name, output=a.output_name,
                       resolution=a.resolution, discriminator=a.discriminator, int8=not a.no_int8,
                       features=a.features, **contract_args(a))
    for f in report["files"]:
        print(f"{a.out.rstrip('/')}/{f}")
    print(f"smoke sample: {report['smoke_shape']} images, values in [{report['smoke_min']:.3f}, "
          f"{report['smoke_max']:.3f}] before conversion")
    _print_gate(report)
    return 0


# --- train -------------------------------------------------------------------------------
def train(a: argparse.Namespace) -> int:
    try:
        from .training.config import RESUMABLE, TrainConfig, apply_overrides  # no torch: checks come first
    except ModuleNotFoundError as e:
        raise _install_hint("train", e.name or "torch") from None
    if a.resume and (a.data or a.resolution or a.conditional or a.recipe):
        raise GansampleError("--resume: continues a run with its own config; only --steps may be "
                             "given with it (not --data, --resolution, --conditional or --recipe)")
    named = [o.split("=", 1)[0].strip().replace("-", "_") for o in a.overrides]  # keys given with --set
    if a.resume:
        fixed = [k for k in named if k not in RESUMABLE]
        if fixed:
            raise GansampleError(f"--set {fixed[0]}: cannot change when resuming; only these can: "
                                 f"{', '.join(RESUMABLE)}")
    cfg = TrainConfig()
    given = {"data": a.data, "data_dir": a.data_dir, "steps": a.steps, "resolution": a.resolution,
             "batch_size": a.batch_size, "seed": a.seed, "device": a.device, "recipe": a.recipe}
    for k, v in given.items():
        if v is not None:
            setattr(cfg, k, v)
    cfg.conditional = a.conditional
    cfg.download = a.download
    cfg = apply_overrides(cfg, a.overrides)  # --set wins over a flag
    if not a.resume:  # the settings as typed, checked before torch loads (seconds)
        cfg.validate()
    try:
        from .training.train import img_per_s, train as run_training
    except ModuleNotFoundError as e:
        raise _install_hint("train", e.name or "torch") from None
    if a.nproc > 1 and "RANK" not in os.environ:
        return _torchrun(a)
    run = run_training(cfg, a.outdir, resume=a.resume, progress=not a.quiet, steps=a.steps,
                       given=named + (["device"] if a.device else []))
    if os.environ.get("RANK", "0") == "0":
        print(f"run folder: {run}  ({img_per_s(run):.1f} img/s)")
    return 0


def _torchrun(a: argparse.Namespace) -> int:
    """``train --nproc N``: the same command under torchrun, N processes on this machine
    (one per GPU on CUDA, gloo processes on the CPU)."""
    import subprocess

    import torch
    from .errors import bad_value
    cuda = a.device in (None, "auto", "cuda") and torch.cuda.is_available()
    have = torch.cuda.device_count() if cuda else (os.cpu_count() or 1)
    if a.nproc > have:
        raise bad_value("nproc", a.nproc, f"at most {have}: the {'GPUs' if cuda else 'CPU cores'} on this machine")
    rest: list[str] = []
    skip = False
    for item in a.argv[1:]:
        if skip:
            skip = False
            continue
        if item == "--nproc":
            skip = True
            continue
        if not item.startswith("--nproc="):
            rest.append(item)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={a.nproc}",
           "-m", "gansample.training", *rest]
    return subprocess.run(cmd).returncode
