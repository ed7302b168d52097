"""User-facing errors: the CLI prints these in one line and exits with code 2 (1 for
write failures such as a full disk)."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence


class GansampleError(ValueError):
    """A mistake in the user's input. The message names the argument, echoes the value
    and says what is valid.

    ``arg`` is the Python name of the argument (``psi``, ``batch_size``, ``n``); the CLI
    renames it to the flag the user typed (``--trunc``, ``--batch-size``, ``-n``) with
    :meth:`renamed`, so the library never needs to know about flags.
    """

    exit_code = 2

    def __init__(self, message: str, arg: str | None = None, refs: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.arg = arg
        self.refs = tuple(refs)  # other arguments the message names, by their Python names

    def renamed(self, names: Mapping[str, str]) -> str:
        """The message with its leading argument name, and each of ``refs`` wherever it
        stands as a word, replaced through ``names``."""
        text = str(self)
        if self.arg and self.arg in names and text.startswith(self.arg) and text[len(self.arg):][:1] in (":", " "):
            text = names[self.arg] + text[len(self.arg):]
        for ref in self.refs:
            if ref in names:
                text = re.sub(rf"(?<![\w-]){re.escape(ref)}(?![\w-])", names[ref].replace("\\", "\\\\"), text)
        return text


class WriteError(GansampleError):
    """A file could not be written (disk full, read-only folder, name too long ...).
    Nothing is left under the final name."""

    exit_code = 1


def first_line(e: BaseException, limit: int = 200, default: str | None = None) -> str:
    """An exception's first line of text, cut to ``limit`` characters, for one-line
    messages that quote a library's error (``default``, else the type's name, when it
    has no text)."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else (type(e).__name__ if default is None else default)


def bad_value(name: str, value: Any, valid: str) -> GansampleError:
    """Build the standard message: ``n: got 0; expected an integer >= 1``."""
    shown = value if not isinstance(value, str) or len(value) <= 200 else value[:200] + "..."
    return GansampleError(f"{name}: got {shown!r}; {valid}", arg=name)


def check_count(name: str, value: Any, lo: int = 1, hi: int | None = None, what: str = "an integer") -> int:
    """An integer in [lo, hi] from user input (bools, floats with a fraction, NaN and
    strings that are not integers are refused), or a GansampleError naming ``name``."""
    valid = f"{what} from {lo} to {hi}" if hi is not None else f"{what} >= {lo}"
    if isinstance(value, bool):
        raise bad_value(name, value, valid)
    try:
        as_float = float(value)
        number = int(as_float) if isinstance(value, float) else int(value)
    except (TypeError, ValueError, OverflowError):
        raise bad_value(name, value, valid) from None
    if isinstance(value, float) and number != as_float:
        raise bad_value(name, value, valid)
    if number < lo or (hi is not None and number > hi):
        raise bad_value(name, value, valid)
    return number
