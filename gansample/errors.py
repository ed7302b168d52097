"""User-facing errors: the CLI prints these in one line and exits with code 2."""

from __future__ import annotations

from typing import Any


class GansampleError(ValueError):
    """A mistake in the user's input. The message names the argument, echoes the value
    and says what is valid."""


def bad_value(name: str, value: Any, valid: str) -> GansampleError:
    """Build the standard message: ``--n: got 0; expected an integer >= 1``."""
    return GansampleError(f"{name}: got {value!r}; {valid}")
