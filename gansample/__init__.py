"""gansample: fast GAN sampling, interpolation and scoring on ONNX Runtime (no torch)."""

from __future__ import annotations

__version__ = "0.1.0"
