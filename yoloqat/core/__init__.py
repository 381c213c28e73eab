"""Core of yoloqat: hook specifications, errors, config, events and shared building blocks."""
