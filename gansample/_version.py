"""The version, defined once: pyproject.toml reads it, ``gansample.__version__`` re-exports it."""

__version__ = "0.2.0"
