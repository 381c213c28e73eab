"""On CPU the commands launch MindSpore's ops blocking (``init_device``), unless the user
set ``MS_DEV_LAUNCH_BLOCKING``: each case in a fresh interpreter, since a process cannot
switch back (``benchmarks/bench_launch_blocking.py`` measures why)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = (
    "import os\n"
    "from yoloqat.core.device import init_device\n"
    "init_device({target!r})\n"
    "from mindspore._c_expression import RuntimeConf\n"
    "print(RuntimeConf.get_instance().is_launch_blocking(), "
    "os.environ.get('MS_DEV_LAUNCH_BLOCKING'))\n"
)


def _probe(target: str, value: str | None) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "GLOG_v": "3"}
    env.pop("MS_DEV_LAUNCH_BLOCKING", None)
    if value is not None:
        env["MS_DEV_LAUNCH_BLOCKING"] = value
    code = PROBE.format(target=target)
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("value", "want"),
    [(None, "True 1"), ("0", "False 0")],  # unset: blocking (and children inherit it)
)
def test_cpu_launches_blocking_unless_the_user_chose(value: str | None, want: str) -> None:
    assert _probe("CPU", value) == want
