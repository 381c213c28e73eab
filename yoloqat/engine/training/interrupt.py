"""SIGINT/SIGTERM during training: stop at a step boundary with a checkpoint, or at once.

MindSpore's data engine installs its own SIGINT handler (which ends the process with
SIGTERM a moment later, saving nothing) whenever a dataset iterator starts, so
:meth:`StopGuard.install` is called again before every step. Before the first step has
finished (graph compilation, the first batches) there is no new state worth saving and
MindSpore's compiler turns an exception into pages of traceback, so a signal there prints
one line and ends the process at once (exit 130). Afterwards a signal only raises a flag:
the train loop finishes the step it is in, writes a checkpoint and raises
:class:`Interrupted`. A second signal while that happens ends the process at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from yoloqat.core import atomic
from yoloqat.core.errors import EXIT_INTERRUPT, Interrupted

__all__ = ["Interrupted", "StopGuard", "exit_now"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_now(message: str) -> None:
    """Print ``message`` on stderr, drop unfinished temporaries and exit 130 immediately."""
    atomic.discard_active()
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_INTERRUPT)


class StopGuard:
    """Turns SIGINT/SIGTERM into a stop request the train loop polls (see the module doc)."""

    def __init__(self, on_early_exit: Callable[[], None] | None = None) -> None:
        self.signum: int | None = None
        self.armed = False  # True once a step has finished: from then on, stop cleanly
        self.saving = False
        self.on_early_exit = on_early_exit
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "signal"

    def install(self) -> None:
        """(Re)install the handlers; a no-op outside the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if not self.armed:
            if os.environ.get("YOLOQAT_DEBUG") == "1":
                traceback.print_stack(_frame)
            if self.on_early_exit is not None:
                self.on_early_exit()
            exit_now(
                f"interrupted by {name} while starting (compiling the network or loading "
                "the first batches); nothing to save"
            )
        if self.requested:
            what = "while writing the checkpoint" if self.saving else "again"
            exit_now(f"interrupted by {name} {what}; stopped at once")
        self.signum = signum
