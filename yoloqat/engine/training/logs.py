"""The run folder (its log.txt, metrics.jsonl and curves.png are written by the bundled
``log``, ``metrics`` and ``curves`` callbacks: yoloqat/plugins/writers)."""

from __future__ import annotations

import datetime as _dt
import itertools
from pathlib import Path

from yoloqat.core.atomic import check_writable
from yoloqat.core.errors import ConfigError


def make_run_dir(ckpt_path: str | Path, run_name: str | None = None, *, join: bool = False) -> Path:
    """Create a new run folder ``ckpt_path/<run_name or start time>`` and check it writable.

    The folder is created with an exclusive ``mkdir``, so two runs started at once never
    share one: when the name is taken, ``_2``, ``_3``, ... is appended. ``join``: use the
    folder as it is if it exists (resuming a run; the other ranks of a distributed run).
    """
    base = Path(ckpt_path)
    name = run_name or _dt.datetime.now().strftime("%Y-%m-%d_time_%H_%M_%S")
    try:
        check_writable(base, "ckpt_path")
        run_dir = base / name
        if join:
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            for index in itertools.count(2):
                try:
                    run_dir.mkdir()
                    break
                except FileExistsError:
                    run_dir = base / f"{name}_{index}"
        check_writable(run_dir, "run folder")
    except OSError as exc:
        raise ConfigError(
            f"ckpt_path {base} is not writable: {exc.strerror or exc}",
            hint="choose another --ckpt_path",
        ) from exc
    return run_dir
