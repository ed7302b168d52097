"""gansample: fast GAN sampling, interpolation and scoring on ONNX Runtime (no torch).

>>> from gansample import Generator
>>> images = Generator("fashion-mnist").sample(seeds="0-15").images  # uint8 [16, 28, 28, 1]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names -> defining module. Imported on first use, so `import gansample` stays
# cheap (onnxruntime loads only when a model does).
_EXPORTS = {
    "Generator": "generator", "SampleResult": "generator",
    "Discriminator": "discriminator", "ScoreResult": "discriminator",
    "GansampleError": "errors", "ModelInfo": "metadata",
    "parse_seeds": "latents", "available_models": "registry",
    "interpolate": "interpolation", "Interpolation": "interpolation",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .discriminator import Discriminator, ScoreResult
    from .errors import GansampleError
    from .generator import Generator, SampleResult
    from .interpolation import Interpolation, interpolate
    from .latents import parse_seeds
    from .metadata import ModelInfo
    from .registry import available_models


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gansample' has no attribute {name!r}")
