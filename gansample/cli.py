"""The `gansample` command: one thin function per subcommand over the Python API."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from .errors import GansampleError
from .images import ensure_outdir  # noqa: F401  (re-exported for the commands)

Handler = Callable[[argparse.Namespace], int]


def _positive_int(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}; expected an integer >= 1") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"got {value}; expected an integer >= 1")
        return value
    parse.__name__ = name
    return parse


def _install_hint(extra: str, missing: str) -> GansampleError:
    return GansampleError(f"this command needs the '{extra}' extra ({missing} is not installed): "
                          f"pip install 'gansample[{extra}]'")


# --- train -------------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a GAN (needs the 'train' extra)",
                       description="Train a generator/discriminator pair. Other config fields: "
                                   "--set KEY=VALUE (repeatable); see training/config.py.")
    p.add_argument("--data", default=None, help="folder of images, IDX images file, or fashion-mnist | mnist")
    p.add_argument("--data-dir", default=None, help="where to look for standard datasets")
    p.add_argument("--download", action="store_true", help="download a standard dataset if not found")
    p.add_argument("--steps", type=int, default=None, help="total training steps (default 10000)")
    p.add_argument("--outdir", default="runs", help="parent folder for run folders (default runs/)")
    p.add_argument("--resume", default=None, metavar="RUN_OR_CHECKPOINT", help="continue a run")
    p.add_argument("--resolution", type=int, default=None, help="28, 32, 64 or 128")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--conditional", action="store_true", help="class-conditional (labels from the dataset)")
    p.add_argument("--recipe", default=None, help="gansample (default) or dcgan (the plain baseline)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any other config field")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_train(a: argparse.Namespace) -> int:
    try:
        from training.config import TrainConfig, apply_overrides
        from training.train import img_per_s, train
    except ModuleNotFoundError as e:
        raise _install_hint("train", e.name or "torch") from None
    if a.resume and (a.data or a.resolution or a.conditional or a.recipe):
        raise GansampleError("--resume: continues a run with its own config; only --steps may be "
                             "given with it (not --data, --resolution, --conditional or --recipe)")
    named = [o.split("=", 1)[0].strip().replace("-", "_") for o in a.overrides]  # keys given with --set
    if a.resume:
        from training.config import RESUMABLE
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
    cfg = apply_overrides(cfg, a.overrides)
    run = train(cfg, a.outdir, resume=a.resume, progress=not a.quiet, steps=a.steps,
                given=named + (["device"] if a.device else []))
    print(f"run folder: {run}  ({img_per_s(run):.1f} img/s)")
    return 0


# --- shared helpers ----------------------------------------------------------------------
def _add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (default: CUDA if usable, else CPU), cpu, cuda")
    p.add_argument("--threads", type=_positive_int("threads"), default=None,
                   help="CPU threads for onnxruntime (default: all cores)")


def _add_sampling_args(p: argparse.ArgumentParser, class_help: str) -> None:
    """What picks the images besides the seeds: model, truncation, class (generate, interpolate)."""
    p.add_argument("--model", default=None, help="model name, folder or .onnx file (default: fashion-mnist)")
    p.add_argument("--trunc", type=float, default=1.0, metavar="PSI", help="truncation psi (default 1 = none)")
    p.add_argument("--class", dest="cls", default=None, help=class_help)


def _note_device(g: object, quiet: bool, verbose: bool) -> None:
    note = g.device.note  # type: ignore[attr-defined]
    if verbose or (note and not quiet):
        msg = f"device: {g.provider}"  # type: ignore[attr-defined]
        print(msg + (f" ({note})" if note else ""), file=sys.stderr)


# --- generate ------------------------------------------------------------------------------
def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="sample images from a generator",
                       description="Sample images. Each image depends only on (model, seed, class, psi).")
    src = p.add_mutually_exclusive_group()
    src.add_argument("-n", type=_positive_int("n"), default=None, help="number of images (seeds 0..n-1)")
    src.add_argument("--seeds", default=None, help="seed list: 0-63, 1,5,9 or 0-9,100")
    _add_sampling_args(p, "class index or name (conditional models)")
    p.add_argument("--batch-size", type=_positive_int("batch-size"), default=64)
    p.add_argument("--format", choices=("png", "npz", "grid"), default="png",
                   help="png: one file per seed + grid.png; npz: one images.npz; grid: grid.png only")
    p.add_argument("--outdir", default=None, help="output folder (default: out/MODEL)")
    p.add_argument("--skip-existing", action="store_true", help="skip seeds whose PNG already exists")
    p.add_argument("--filter", default=None, metavar="top:F|drs[:P]",
                   help="discriminator-guided: keep the best fraction F, or rejection-sample (DRS)")
    p.add_argument("--workers", type=_positive_int("workers"), default=None,
                   help="PNG writer threads (default: one per core)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="print the execution provider and timings")
    _add_device_args(p)
    p.set_defaults(func=_cmd_generate)


def _cmd_generate(a: argparse.Namespace) -> int:
    from .commands import generate
    return generate(a)


# --- interpolate -----------------------------------------------------------------------------
def _add_interpolate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("interpolate", help="latent walk between seeds, as GIF, MP4 or PNG frames")
    p.add_argument("--seeds", required=True, help="keyframe seeds, e.g. 3,17,42")
    p.add_argument("--steps", type=int, default=30, help="frames per transition (default 30)")
    p.add_argument("--method", choices=("slerp", "lerp"), default="slerp")
    p.add_argument("--loop", action="store_true", help="return to the first keyframe")
    p.add_argument("--out", default="walk.gif", help="walk.gif, walk.mp4 or a folder/ for PNG frames")
    p.add_argument("--fps", type=float, default=24.0)
    _add_sampling_args(p, "fix the class (default: each seed's own)")
    p.add_argument("--grid", type=int, default=1, metavar="N", help="N walks side by side (seeds +0..+N-1)")
    p.add_argument("--scale", type=int, default=1, help="integer upscaling of the frames (default 1)")
    p.add_argument("-q", "--quiet", action="store_true")
    _add_device_args(p)
    p.set_defaults(func=_cmd_interpolate)


def _cmd_interpolate(a: argparse.Namespace) -> int:
    from .generator import Generator
    from .interpolation import check_output, interpolate, save
    check_output(a.out)
    if not 1 <= a.scale <= 16:
        raise GansampleError(f"--scale: got {a.scale}; an integer from 1 to 16")
    if not 0 < a.fps <= 100:
        raise GansampleError(f"--fps: got {a.fps}; a number in (0, 100]")
    g = Generator(a.model, device=a.device, threads=a.threads)
    result = interpolate(g, a.seeds, a.steps, a.method, a.loop, a.trunc, a.cls, a.grid)
    path = save(result, a.out, a.fps, a.scale)
    if not a.quiet:
        print(f"wrote {len(result)} frames to {path}")
    return 0


# --- score ---------------------------------------------------------------------------------
def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score images with the discriminator (higher = more real)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or globs")
    p.add_argument("--model", default=None, help="model name or folder (default: fashion-mnist)")
    p.add_argument("--class", dest="cls", default=None,
                   help="class to score under (conditional models; default: the best-scoring class)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    _add_device_args(p)
    p.set_defaults(func=_cmd_score)


def _cmd_score(a: argparse.Namespace) -> int:
    from .commands import score
    return score(a)


# --- info ------------------------------------------------------------------------------------
def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a model's metadata, variants and providers")
    p.add_argument("model", nargs="?", default=None, help="model name, folder or .onnx file")
    p.add_argument("--format", choices=("text", "json"), default="text")
    _add_device_args(p)
    p.set_defaults(func=_cmd_info)


def _cmd_info(a: argparse.Namespace) -> int:
    from .commands import info
    return info(a)


# --- evaluate ------------------------------------------------------------------------------
def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="quality metrics against the real test split",
                       description="Frechet distance, precision, recall, density and coverage in the "
                                   "feature space of a classifier trained on the dataset.")
    p.add_argument("model", nargs="?", default=None, help="model name, folder or .onnx file")
    p.add_argument("--n", type=_positive_int("n"), default=10_000, help="generated samples (default 10000)")
    p.add_argument("--trunc", type=float, default=1.0, metavar="PSI")
    p.add_argument("--dataset", default=None, help="real data to compare with (default: the model's)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--features", default=None, help="feature extractor .onnx (default: the bundled one)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    _add_device_args(p)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(a: argparse.Namespace) -> int:
    import json

    from .evaluate import evaluate
    from .generator import Generator
    g = Generator(a.model, device=a.device, threads=a.threads)
    rep = evaluate(g, n=a.n, psi=g.check_psi(a.trunc), features=a.features, dataset=a.dataset,
                   device=a.device, data_dir=a.data_dir).as_dict()
    if a.format == "json":
        print(json.dumps({"model": g.name, **rep}, indent=2))
        return 0
    print(f"model {g.name}: {rep['n_fake']} samples vs {rep['n_real']} real test images")
    for k in ("frechet_distance", "precision", "recall", "density", "coverage", "class_accuracy"):
        if rep.get(k) is not None:
            print(f"  {k:<17} {rep[k]:.4f}")
    if rep["recognised_histogram"]:
        print(f"  recognised classes {rep['recognised_histogram']}")
    return 0


# --- app ---------------------------------------------------------------------------------------
def _add_app(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="start the web demo (needs the 'app' extra)", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER, help="options of app.py (--host, --port, --model ...)")
    p.set_defaults(func=_cmd_app)


def _cmd_app(a: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ModuleNotFoundError:
        raise _install_hint("app", "gradio") from None
    import app
    return app.main(a.args)


# --- export ----------------------------------------------------------------------------------
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (needs the 'train' extra)")
    p.add_argument("checkpoint", help="checkpoint file or run folder (its latest checkpoint)")
    p.add_argument("--out", required=True, help="output folder, e.g. exported/NAME/")
    p.add_argument("--name", default=None, help="model name in the metadata (default: the folder name)")
    p.add_argument("--no-fp16", action="store_true", help="skip the fp16 GPU variant")
    p.set_defaults(func=_cmd_export)


def _cmd_export(a: argparse.Namespace) -> int:
    try:
        from training.export import export_checkpoint
    except ModuleNotFoundError as e:
        raise _install_hint("train", e.name or "torch") from None
    report = export_checkpoint(a.checkpoint, a.out, name=a.name, fp16=not a.no_fp16)
    for f, size in report["files"].items():
        print(f"{a.out.rstrip('/')}/{f}  {size / 1e6:.2f} MB")
    print(f"parity vs PyTorch: generator max |diff| {report['generator_max_abs_diff']:.2e}, "
          f"discriminator max |diff| {report['discriminator_max_abs_diff']:.2e}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(prog="gansample", description="Sample, explore and score GANs exported to ONNX.")
    parser.add_argument("--version", action="version", version=f"gansample {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


_COMMANDS = [_add_generate, _add_interpolate, _add_score, _add_info, _add_evaluate, _add_app, _add_export,
             _add_train]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["app"]:
        # Everything after `app` belongs to app.py's own parser (--host, --port, --help ...).
        args = argparse.Namespace(command="app", func=_cmd_app, args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GansampleError as e:
        print(f"gansample {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
