"""Error hierarchy. Each class carries the process exit code the CLI maps it to."""

from __future__ import annotations


class YoloqatError(Exception):
    """Base class: a user-facing error with a one-line message and an optional hint."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class RuntimeFailure(YoloqatError):
    """Something failed while running (training diverged, a file vanished, ...)."""

    exit_code = 1


class UsageError(YoloqatError):
    """The command line is wrong (missing argument, conflicting flags)."""

    exit_code = 2


class ConfigError(YoloqatError):
    """A config value, component name or parameter is wrong."""

    exit_code = 3


class DataError(ConfigError):
    """A dataset path, annotation file or annotation is wrong (a config-class problem)."""


class CheckpointError(YoloqatError):
    """A checkpoint is missing, truncated, foreign or does not match the network."""

    exit_code = 1


class Interrupted(YoloqatError):
    """Stopped by SIGINT/SIGTERM; the message (printed as is) says what was saved."""

    exit_code = 130


class PluginError(YoloqatError):
    """A plugin failed to load, clashes with another, or is blocked."""

    exit_code = 4


EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_PLUGIN = 4
EXIT_INTERRUPT = 130
