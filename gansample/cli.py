"""The `gansample` command: one thin function per subcommand over the Python API."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from .errors import GansampleError

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
    cfg = TrainConfig()
    given = {"data": a.data, "data_dir": a.data_dir, "steps": a.steps, "resolution": a.resolution,
             "batch_size": a.batch_size, "seed": a.seed, "device": a.device, "recipe": a.recipe}
    for k, v in given.items():
        if v is not None:
            setattr(cfg, k, v)
    cfg.conditional = a.conditional
    cfg.download = a.download
    cfg = apply_overrides(cfg, a.overrides)
    run = train(cfg, a.outdir, resume=a.resume, progress=not a.quiet, steps=a.steps)
    print(f"run folder: {run}  ({img_per_s(run):.1f} img/s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(prog="gansample", description="Sample, explore and score GANs exported to ONNX.")
    parser.add_argument("--version", action="version", version=f"gansample {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


_COMMANDS = [_add_train]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
