"""gansample: fast GAN sampling, interpolation and scoring on ONNX Runtime (no torch).

>>> from gansample import Generator
>>> images = Generator("fashion-mnist").sample(seeds="0-15").images  # uint8 [16, 28, 28, 1]
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ._version import __version__

# No telemetry from onnxruntime, whoever imports it later in this process (it reads this
# when it is imported); gansample.session also switches its telemetry events off.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# Public names -> defining module. Imported on first use, so `import gansample` stays
# cheap (onnxruntime loads only when a model does).
_EXPORTS = {
    "Generator": "generator", "SampleResult": "generator",
    "Discriminator": "discriminator", "ScoreResult": "discriminator",
    "GansampleError": "errors", "ModelInfo": "metadata",
    "parse_seeds": "latents", "available_models": "registry",
    "interpolate": "interpolation", "Interpolation": "interpolation",
    "write_samples": "output", "Seeds": "latents",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .discriminator import Discriminator, ScoreResult
    from .errors import GansampleError
    from .generator import Generator, SampleResult
    from .interpolation import Interpolation, interpolate
    from .latents import Seeds, parse_seeds
    from .output import write_samples
    from .metadata import ModelInfo
    from .registry import available_models


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gansample' has no attribute {name!r}")
