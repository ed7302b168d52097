"""The `gansample` command: argument parsing only. Every command body is in
``gansample.commands`` (one function per command, over the Python API); this module maps
the API's argument names back to the flags the user typed, configures logging and turns
errors and interrupts into exit codes. Imports neither numpy nor Pillow (``--version``
stays instant)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any, Callable, Mapping, Sequence

from .commands import MAX_GENERATE
from .files import CreatedFolders
from .errors import GansampleError

# Python argument names (what the library's errors name) -> the CLI flag for them.
FLAGS = {
    "psi": "--trunc", "batch_size": "--batch-size", "n": "-n", "seeds": "--seeds", "cls": "--class",
    "model": "--model", "device": "--device", "threads": "--threads", "walks": "--grid", "steps": "--steps",
    "method": "--method", "out": "--out", "outdir": "--outdir", "filter": "--filter", "format": "--format",
    "fps": "--fps", "scale": "--scale", "dataset": "--dataset", "features": "--features", "data": "--data",
    "workers": "--workers", "shard_size": "--shard-size", "engine": "--engine", "address": "--address",
    "gpus_per_worker": "--gpus-per-worker", "paths": "PATH", "checkpoint": "CHECKPOINT", "labels": "--class",
    "module": "--module", "weights": "--weights", "weights_key": "--weights-key", "arg": "--arg",
    "z_dim": "--z-dim", "latent_shape": "--latent-shape", "output_range": "--range", "layout": "--layout",
    "class_names": "--classes", "conditioning": "--conditioning", "truncation": "--truncation",
    "onnx_file": "FOREIGN.onnx", "popsize": "--popsize", "feature_weight": "--feature-weight",
    "d_weight": "--d-weight", "encoder": "--model", "direction": "--direction", "amount": "--amount",
    "variant": "--variant", "latents": "--latents", "images": "--images", "nearest": "--nearest", "k": "--k", "samples": "--samples", "discriminator": "--discriminator", "output_name": "--output", "resolution": "--resolution", "num_classes": "--classes",
    "seed": "--seed", "default": "--default", "data_dir": "--data-dir", "nearest_out": "--nearest-out",
}
# Where a command spells an argument differently.
COMMAND_FLAGS = {
    "evaluate": {"n": "--n", "model": "MODEL", "nearest_out": "--nearest-out"},
    "info": {"model": "MODEL"},
    "quantize": {"model": "MODEL"},
    "project": {"paths": "IMAGE", "out": "--out"},
    "train": {"nproc": "--nproc", "resume": "--resume", "steps": "--steps", "data": "--data", "data_dir": "--data-dir",
              "conditional": "--conditional", "resolution": "--resolution", "recipe": "--recipe", "seed": "--seed"},
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help shows its default ('none' and 'off' in words)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or "(none:" in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if action.default is None:
            return text + " (default: none)"
        if action.default is False:
            return text + " (default: off)"
        return text + " (default: %(default)s)"


class _SetNames(dict[str, str]):
    """The trainer's config fields without a flag of their own are given as --set KEY."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return key if key.startswith("-") else f"--set {key}"


def _int_in(name: str, lo: int = 1, hi: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}; expected an integer >= {lo}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"got {value}; expected an integer from {lo} to {hi}"
                                             if hi is not None else f"got {value}; expected an integer >= {lo}")
        return value
    parse.__name__ = name
    return parse


def _parser(sub: Any, name: str, **kw: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, formatter_class=_Formatter, **kw)
    return p


def _add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: CUDA if usable, else the CPU")
    p.add_argument("--threads", type=_int_in("threads", 1, 1024), default=None,
                   help="CPU threads for onnxruntime (none: all cores)")


def _add_variant_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", default="auto", choices=("auto", "fp32", "uint8", "int8", "fp16"),
                   help="which generator file runs (auto: fp16 on a GPU; on a CPU int8 where it passed "
                        "its quality gate and measured faster, else uint8; 'info' says which and why)")


def _add_sampling_args(p: argparse.ArgumentParser, class_help: str) -> None:
    """What picks the images besides the seeds: model, truncation, class (generate, interpolate)."""
    p.add_argument("--model", default=None, help="model name, folder or .onnx file (none: fashion-mnist)")
    p.add_argument("--trunc", type=float, default=1.0, metavar="PSI", help="truncation psi (1 = none)")
    p.add_argument("--class", dest="cls", default=None, help=class_help)


def _add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")


def _add_generate(sub: Any) -> None:
    p = _parser(sub, "generate", help="sample images from a generator",
                description="Sample images. Each image depends only on (model, seed, class, psi).")
    src = p.add_mutually_exclusive_group()
    src.add_argument("-n", type=_int_in("n", 1, MAX_GENERATE), default=None,
                     help="number of images, seeds 0..n-1 (none: 64, or the --seeds list)")
    src.add_argument("--seeds", default=None, help="seed list: 0-63, 1,5,9 or 0-9,100")
    src.add_argument("--latents", nargs="+", default=None, metavar="FILE.npz",
                     help="latent files (from `gansample project`, or .npy/.npz of [N, z_dim])")
    _add_sampling_args(p, "class index or name (conditional models; none: each seed's own)")
    p.add_argument("--batch-size", type=_int_in("batch-size", 1, 65_536), default=64, help="images per batch")
    p.add_argument("--format", choices=("png", "npz", "grid", "webdataset", "parquet"), default="png",
                   help="png: one file per seed + grid.png; npz: one images.npz; grid: grid.png only; "
                        "webdataset / parquet: shards + index.json (the 'shards' extra)")
    p.add_argument("--shard-size", type=_int_in("shard-size", 1, 10_000_000), default=None,
                   help="samples per shard (webdataset, parquet; none: 10000)")
    p.add_argument("--outdir", default=None, help="output folder (default: out/MODEL)")
    p.add_argument("--skip-existing", action="store_true", help="skip seeds whose PNG (or shard) already exists")
    p.add_argument("--filter", default=None, metavar="top:F|drs[:P]",
                   help="discriminator-guided: keep the best fraction F, or rejection-sample (DRS)")
    p.add_argument("--workers", type=_int_in("workers", 1, 4096), default=None,
                   help="PNG writer threads; with --engine ray, sampling actors (none: one per core)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: sample on Ray Data (the 'ray' extra; webdataset or parquet shards)")
    p.add_argument("--address", default=None, help="Ray cluster: auto or HOST:PORT (none: a local Ray instance)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor")
    _add_quiet(p)
    p.add_argument("-v", "--verbose", action="store_true", help="print the execution provider and timings")
    _add_device_args(p)
    _add_variant_arg(p)


def _add_interpolate(sub: Any) -> None:
    p = _parser(sub, "interpolate", help="latent walk between seeds or real images, as GIF, MP4 or PNG frames")
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--seeds", help="keyframe seeds, e.g. 3,17,42")
    keys.add_argument("--images", nargs="+", metavar="IMAGE", help="keyframe images, projected first (see project)")
    keys.add_argument("--latents", nargs="+", metavar="FILE.npz", help="keyframe latent files (from project)")
    p.add_argument("--steps", type=int, default=30, help="frames per transition")
    p.add_argument("--method", choices=("slerp", "lerp"), default="slerp", help="interpolation path")
    p.add_argument("--loop", action="store_true", help="return to the first keyframe")
    p.add_argument("--out", default="walk.gif", help="walk.gif, walk.mp4 or a folder/ for PNG frames")
    p.add_argument("--fps", type=float, default=24.0, help="frames per second")
    _add_sampling_args(p, "fix the class (none: each seed's own)")
    p.add_argument("--grid", type=int, default=1, metavar="N", help="N walks side by side (seeds +0..+N-1)")
    p.add_argument("--scale", type=int, default=1, help="integer upscaling of the frames")
    _add_quiet(p)
    _add_device_args(p)
    _add_variant_arg(p)


def _add_score(sub: Any) -> None:
    p = _parser(sub, "score", help="score images with the discriminator (higher = more real)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or globs")
    p.add_argument("--model", default=None, help="model name or folder (none: fashion-mnist)")
    p.add_argument("--class", dest="cls", default=None,
                   help="class to score under (conditional models; none: the best-scoring class)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    _add_device_args(p)


def _add_info(sub: Any) -> None:
    p = _parser(sub, "info", help="show a model's metadata, variants and providers")
    p.add_argument("model", nargs="?", default=None, help="model name, folder or .onnx file")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    _add_device_args(p)
    _add_variant_arg(p)


def _add_models(sub: Any) -> None:
    p = _parser(sub, "models", help="list the models --model finds (bundled and $GANSAMPLE_MODELS)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format")


def _add_evaluate(sub: Any) -> None:
    p = _parser(sub, "evaluate", help="quality metrics against the real test split",
                description="Frechet distance, precision, recall, density and coverage in the "
                            "feature space of a classifier trained on the dataset.")
    p.add_argument("model", nargs="?", default=None, help="model name, folder or .onnx file")
    p.add_argument("--n", type=_int_in("n", 1, 1_000_000), default=10_000, help="generated samples")
    p.add_argument("--trunc", type=float, default=1.0, metavar="PSI", help="truncation psi")
    p.add_argument("--dataset", default=None, help="real data to compare with (none: the model's)")
    p.add_argument("--data-dir", default=None, help="where to look for the dataset")
    p.add_argument("--features", default=None, help="feature extractor .onnx (none: the bundled one)")
    p.add_argument("--nearest", type=_int_in("nearest", 1, 256), default=None, metavar="K",
                   help="memorisation check: grid of the K samples nearest to training images, beside them")
    p.add_argument("--nearest-out", default="nearest.png", help="where --nearest writes its grid")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    _add_device_args(p)
    _add_variant_arg(p)


def _add_app(sub: Any) -> None:
    p = _parser(sub, "app", help="start the web demo (needs the 'app' extra)", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER, help="options of the demo (--host, --port, --model ...)")


def _add_model_folder(p: argparse.ArgumentParser) -> None:
    """Where an exported or wrapped model goes, and its name."""
    p.add_argument("--out", required=True, help="output folder, e.g. exported/NAME/ (required)")
    p.add_argument("--name", default=None, help="model name in the metadata (none: the folder name)")


def _add_contract_args(p: argparse.ArgumentParser) -> None:
    """What a model from elsewhere must declare (export --module, wrap)."""
    p.add_argument("--z-dim", type=_int_in("z-dim", 1, 1 << 20), default=None, help="latent size")
    p.add_argument("--range", dest="output_range", default="-1,1", help="output range: -1,1 or 0,1")
    p.add_argument("--layout", default="NCHW", choices=("NCHW", "NHWC"), help="layout of the output images")
    p.add_argument("--classes", default=None, metavar="NAMES.txt",
                   help="class names, one per line (conditional generators)")
    p.add_argument("--conditioning", default=None, choices=("index", "onehot"),
                   help="how labels enter the generator (none: index when --classes is given)")


def _add_export(sub: Any) -> None:
    p = _parser(sub, "export", help="export a checkpoint or any PyTorch generator to ONNX (needs 'train')",
                description="Export to a model folder with the contract. Either CHECKPOINT (this "
                            "trainer's), or --module FILE.py:NAME with --weights (any nn.Module).")
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="checkpoint file or run folder (its latest checkpoint)")
    _add_model_folder(p)
    p.add_argument("--no-fp16", action="store_true", help="skip the fp16 GPU variant")
    _add_int8_args(p)
    p.add_argument("--module", default=None, metavar="FILE.py:NAME",
                   help="a generator class or factory in a Python file")
    p.add_argument("--weights", default=None, help="its weights (torch.save of a state dict; weights_only)")
    p.add_argument("--weights-key", default=None, help="the key holding the state dict, if nested")
    p.add_argument("--arg", dest="module_args", action="append", default=[], metavar="KEY=VALUE",
                   help="constructor argument (repeatable)")
    p.add_argument("--latent-shape", default=None, metavar="Z[,1,1]",
                   help="the latent shape without the batch, e.g. 100,1,1 (none: found by trying)")
    p.add_argument("--truncation", default="z", choices=("z", "w"),
                   help="w: a style-based G with .mapping, .synthesis and .w_avg, truncated in W")
    _add_contract_args(p)


def _add_wrap(sub: Any) -> None:
    p = _parser(sub, "wrap", help="bring an ONNX generator from elsewhere into the contract (needs onnx)",
                description="Check FOREIGN.onnx against what you declare, write the contract into a "
                            "model folder, add the uint8 variant, and run a smoke sample.")
    p.add_argument("onnx_file", metavar="FOREIGN.onnx", help="an ONNX generator")
    _add_model_folder(p)
    p.add_argument("--output", dest="output_name", default=None,
                   help="which graph output is the image (when there are several)")
    p.add_argument("--resolution", type=_int_in("resolution", 1, 4096), default=None,
                   help="expected image size, checked against the graph (none: the graph's)")
    p.add_argument("--discriminator", default=None, metavar="D.onnx",
                   help="its discriminator (images in the same range and layout)")
    _add_int8_args(p)
    _add_contract_args(p)


def _add_train(sub: Any) -> None:
    p = _parser(sub, "train", help="train a GAN (needs the 'train' extra)",
                description="Train a generator/discriminator pair. Other config fields: "
                            "--set KEY=VALUE (repeatable); see gansample/training/config.py.")
    p.add_argument("--data", default=None, help="folder of images, IDX images file, or fashion-mnist | mnist "
                                                "(none: fashion-mnist)")
    p.add_argument("--data-dir", default=None, help="where to look for standard datasets")
    p.add_argument("--download", action="store_true", help="download a standard dataset if not found")
    p.add_argument("--steps", type=int, default=None, help="total training steps (none: 10000)")
    p.add_argument("--outdir", default="runs", help="parent folder for run folders")
    p.add_argument("--resume", default=None, metavar="RUN_OR_CHECKPOINT", help="continue a run")
    p.add_argument("--resolution", type=int, default=None, help="28, 32, 64 or 128 (none: the data's)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (none: 64)")
    p.add_argument("--conditional", action="store_true", help="class-conditional (labels from the dataset)")
    p.add_argument("--recipe", default=None, help="gansample or dcgan, the plain baseline (none: gansample)")
    p.add_argument("--seed", type=int, default=None, help="random seed (none: 0)")
    p.add_argument("--device", default=None, help="auto, cpu or cuda (none: auto)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any other config field (repeatable)")
    p.add_argument("--nproc", type=_int_in("nproc", 1, 1024), default=1,
                   help="processes on this machine (DistributedDataParallel through torchrun)")
    _add_quiet(p)


def _add_project(sub: Any) -> None:
    p = _parser(sub, "project", help="find the latent of real images (projection / inversion)",
                description="For each image: NAME.npz (its latent, for generate --latents), "
                            "NAME-reconstruction.png, NAME-side-by-side.png; summary.csv for the run. "
                            "Starts from the model's encoder.onnx when it has one, then refines by CMA-ES.")
    p.add_argument("paths", nargs="+", metavar="IMAGE", help="image files, folders or globs")
    p.add_argument("--model", default=None, help="model name, folder or .onnx file (none: fashion-mnist)")
    p.add_argument("--class", dest="cls", default=None, help="fix the class (none: the encoder's or the best)")
    p.add_argument("--out", default="projected", help="output folder")
    p.add_argument("--steps", type=int, default=40, help="CMA-ES generations per image")
    p.add_argument("--popsize", type=int, default=32, help="candidates per generation (one generator batch)")
    p.add_argument("--feature-weight", type=float, default=1.0, help="weight of the features-model term")
    p.add_argument("--d-weight", type=float, default=0.0, help="weight of the discriminator's realism term")
    p.add_argument("--features", default=None, help="features model .onnx (none: the bundled one for the dataset)")
    p.add_argument("--no-encoder", action="store_true", help="ignore encoder.onnx: random starts only")
    p.add_argument("--seed", type=int, default=0, help="random seed of the search")
    _add_quiet(p)
    _add_device_args(p)
    _add_variant_arg(p)


def _add_edit(sub: Any) -> None:
    p = _parser(sub, "edit", help="move seeds along a principal latent direction (writes strips)")
    p.add_argument("--seeds", required=True, help="seeds, e.g. 5 or 0-7 (required)")
    p.add_argument("--direction", type=_int_in("direction", 0, 63), default=0, help="direction index (0 = strongest)")
    p.add_argument("--amount", default="-3:3:7", help="START:STOP:COUNT, a list -2,0,2 or one number (in sd of z)")
    p.add_argument("--outdir", default=None, help="output folder (default: out/MODEL-edits)")
    _add_sampling_args(p, "fix the class (none: each seed's own)")
    _add_quiet(p)
    _add_device_args(p)
    _add_variant_arg(p)


def _add_directions(sub: Any) -> None:
    p = _parser(sub, "directions", help="compute a model's principal latent directions (needs onnx)")
    p.add_argument("--model", default=None, help="model name, folder or .onnx file (none: fashion-mnist)")
    p.add_argument("--k", type=_int_in("k", 1, 64), default=16, help="number of directions")
    p.add_argument("--samples", type=_int_in("samples", 64, 200_000), default=8192, help="latents sampled for the PCA")
    p.add_argument("--out", default=None, help="output .npz (none: directions.npz in the model folder)")
    _add_quiet(p)
    _add_device_args(p)


def _add_train_encoder(sub: Any) -> None:
    p = _parser(sub, "train-encoder", help="train an encoder (image -> z) for projection (needs 'train')",
                description="Train on the generator's own samples and write encoder.onnx.")
    p.add_argument("--model", default=None, help="model name, folder or .onnx file (none: fashion-mnist)")
    p.add_argument("--steps", type=int, default=3000, help="training steps")
    p.add_argument("--batch-size", type=int, default=128, help="samples per step")
    p.add_argument("--out", default=None, help="output folder or .onnx file (none: the model folder)")
    _add_quiet(p)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device for sampling")


def _add_quantize(sub: Any) -> None:
    p = _parser(sub, "quantize", help="add the int8 CPU variant to a model folder, with its quality gate "
                                      "(needs onnx)",
                description="Write generator_int8.onnx from generator_uint8.onnx (onnxruntime static "
                            "QDQ, calibrated on latents) and measure it against fp32: pixels over 1,000 "
                            "seeds, Fréchet distance and recall within fp32's own noise band. Only a "
                            "variant that passes is ever picked automatically.")
    p.add_argument("model", help="model name or folder (written into)")
    _add_int8_args(p, flag=False)
    _add_quiet(p)


def _add_int8_args(p: argparse.ArgumentParser, flag: bool = True) -> None:
    if flag:
        p.add_argument("--no-int8", action="store_true", help="skip the int8 CPU variant")
    p.add_argument("--features", default=None, metavar="FEATURES.onnx",
                   help="features model for the int8 quality gate (none: the bundled one for the "
                        "model's dataset; without any the variant is never picked automatically)")


_COMMANDS = [_add_generate, _add_interpolate, _add_score, _add_info, _add_models, _add_evaluate, _add_app, _add_export,
             _add_wrap, _add_train, _add_project, _add_edit, _add_directions, _add_train_encoder, _add_quantize]


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__
    parser = argparse.ArgumentParser(prog="gansample", description="Sample, explore and score GANs exported to ONNX.",
                                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"gansample {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg, unused-ignore]
    """Writes to whatever sys.stderr is when a record arrives (not the one at set-up)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _configure_logging(quiet: bool) -> None:
    """Library notes (device fallback, trainer messages) go to stderr as one line each."""
    log = logging.getLogger("gansample")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("gansample: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)


_NEGATIVE_VALUED = ("--range", "--amount")


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--range -1,1`` as ``--range=-1,1`` (and ``--amount -3:3:7``): argparse would read
    a value that starts with '-' as an option."""
    out: list[str] = []
    it = iter(argv)
    for item in it:
        if item in _NEGATIVE_VALUED:
            value = next(it, None)
            out.append(item if value is None else f"{item}={value}")
        else:
            out.append(item)
    return out


def _empty_value(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """An error for an option or argument given as an empty string: every one of them names a
    path, a model, a list or a number, and "" would otherwise mean the current folder or
    the default (`--out ""` rewrote the bundled model's file)."""
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in subs.choices[args.command]._actions:
        value = getattr(args, action.dest, None)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and not v.strip() for v in values):
            name = max(action.option_strings, key=len) if action.option_strings else (action.metavar or action.dest)
            return f"{name}: got {next(v for v in values if isinstance(v, str) and not v.strip())!r}; expected a non-empty value"
    return None


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    if argv[:1] == ["app"]:
        # Everything after `app` belongs to the demo's own parser (--host, --port, --help ...).
        args = argparse.Namespace(command="app", args=argv[1:])
    else:
        parser = build_parser()
        args = parser.parse_args(argv)
        empty = _empty_value(parser, args)
        if empty:
            print(f"gansample {args.command}: error: {empty}", file=sys.stderr)
            return 2
    args.argv = argv  # as typed, for commands that start themselves again (train --nproc)
    _configure_logging(getattr(args, "quiet", False))
    names = {**FLAGS, **COMMAND_FLAGS.get(args.command, {})}
    if args.command == "train":  # every other config field is set with --set KEY=VALUE
        names = _SetNames(names)
    try:
        previous = signal.signal(signal.SIGTERM, _sigterm)  # a kill ends like Ctrl-C: cleaned up
    except ValueError:  # not the main thread
        previous = None
    created = CreatedFolders()
    rc = 1  # until a command returns: an uncaught error is a failure too
    try:
        rc = _run(args, names)
        return rc
    finally:
        if rc != 0:  # a failed command leaves no empty output folders behind
            created.remove_empty()
        created.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, names: Mapping[str, str]) -> int:
    """The command's exit code; user errors, interrupts and OS errors as one line each."""
    try:
        from . import commands
        run: Callable[[argparse.Namespace], int] = getattr(commands, args.command.replace("-", "_"))
        return run(args)
    except GansampleError as e:
        print(f"gansample {args.command}: error: {e.renamed(names)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"gansample {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except MemoryError:
        print(f"gansample {args.command}: error: out of memory", file=sys.stderr)
        return 1
    except OSError as e:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"gansample {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
