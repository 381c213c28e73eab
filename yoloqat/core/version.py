"""The package version (one place; ``yoloqat.__version__`` re-exports it)."""

__version__ = "0.2.0"
