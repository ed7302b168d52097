"""The gansample trainer and exporters (PyTorch). Install with the `train` extra.

``export_generator`` brings any PyTorch generator into the model contract
(docs/bring-your-own.md); ``export_checkpoint`` exports this trainer's checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .byo import export_generator
    from .export import export_checkpoint

__all__ = ["export_generator", "export_checkpoint"]
_EXPORTS = {"export_generator": "byo", "export_checkpoint": "export"}


def __getattr__(name: str) -> Any:
    # Imported on first use: `gansample.training.config` stays light for the CLI.
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'gansample.training' has no attribute {name!r}")
