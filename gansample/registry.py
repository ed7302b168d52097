"""Named models: the bundled ones in exported/, folders and .onnx paths given by the user."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GansampleError, bad_value

DEFAULT_MODEL = "fashion-mnist"
ENV_MODELS = "GANSAMPLE_MODELS"  # extra folders of models, os.pathsep-separated
GENERATOR_FILES = {"fp32": "generator.onnx", "uint8": "generator_uint8.onnx", "fp16": "generator_fp16.onnx",
                   "int8": "generator_int8.onnx", "mix": "generator_mix.onnx"}
DISCRIMINATOR_FILE = "discriminator.onnx"
# What an export or a wrap writes: a new one replaces all of them, removing those it does not write.
MODEL_FILES = (*GENERATOR_FILES.values(), DISCRIMINATOR_FILE)
ENCODER_FILE = "encoder.onnx"  # image -> z (+ class logits), for projection
DIRECTIONS_FILE = "directions.npz"  # principal latent directions (gansample.directions)


@dataclass
class ModelFiles:
    name: str
    folder: Path
    generators: dict[str, Path] = field(default_factory=dict)  # variant -> file
    discriminator: Path | None = None
    encoder: Path | None = None


def bundled_dir() -> Path:
    """exported/ as shipped: inside the installed package, or beside it in a checkout."""
    here = Path(__file__).resolve().parent
    inside = here / "exported"
    return inside if inside.is_dir() else here.parent / "exported"


def search_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get(ENV_MODELS, "").split(os.pathsep) if p]
    return extra + [bundled_dir()]


def model_files_in(folder: Path, name: str) -> ModelFiles:
    gens = {v: folder / f for v, f in GENERATOR_FILES.items() if (folder / f).is_file()}
    disc, enc = folder / DISCRIMINATOR_FILE, folder / ENCODER_FILE
    return ModelFiles(name, folder, gens, disc if disc.is_file() else None, enc if enc.is_file() else None)


def available_models() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in search_dirs():
        if root.is_dir():
            for sub in sorted(root.iterdir()):
                if sub.is_dir() and any((sub / f).is_file() for f in (*GENERATOR_FILES.values(), DISCRIMINATOR_FILE)):
                    found.setdefault(sub.name, sub)
    return found


def resolve_model(spec: str | os.PathLike[str] | None) -> ModelFiles:
    """A bundled/known name, a model folder, or a single .onnx file."""
    spec = str(spec) if spec is not None else DEFAULT_MODEL
    try:
        return _resolve(spec)
    except OSError as e:  # a name too long for the file system, a folder that cannot be read ...
        raise bad_value("model", spec, f"a model name, folder or .onnx file that can be read ({e.strerror or e})") \
            from None


def _resolve(spec: str) -> ModelFiles:
    path = Path(spec)
    if path.is_file():
        if path.suffix != ".onnx":
            raise bad_value("model", spec, "a model name, a model folder or an .onnx file")
        files = model_files_in(path.parent, path.parent.name)
        if path.name == DISCRIMINATOR_FILE:
            return ModelFiles(files.name, path.parent, {}, path)
        files.generators = {"given": path}
        return files
    if path.is_dir():
        files = model_files_in(path, path.resolve().name)
        if files.generators or files.discriminator:
            return files
        found = available_models()
        if spec in found:  # a data folder named like a model (./fashion-mnist/) does not hide it
            return model_files_in(found[spec], spec)
        raise bad_value("model", spec, f"a model folder with {GENERATOR_FILES['fp32']} or "
                        f"{DISCRIMINATOR_FILE}; this folder has neither")
    models = available_models()
    if spec in models:
        return model_files_in(models[spec], spec)
    known = ", ".join(sorted(models)) or "none installed"
    raise GansampleError(f"model: unknown model {spec!r}; available: {known} "
                         "(or pass a model folder or an .onnx file)", "model")
