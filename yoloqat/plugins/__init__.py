"""Bundled plugins. Each sub-package is a cheap manifest; model code is imported lazily."""
