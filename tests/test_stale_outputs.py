"""No leftovers, clear write errors (issue 22, items 4 and 5).

Every command that writes removes the hidden temporaries that killed runs of it left in its
output folder (those of live processes stay: a concurrent writer's), as training does; a
read-only current folder is one clear line (exit 3) for export's default output, eval and
synth, not "unexpected OSError".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import cli, tiny_cfg

from yoloqat.data.synth import make_synthetic_coco

BASE = [sys.executable, "-m", "yoloqat"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_coco(out, train=4, val=2, size=64, seed=3, num_classes=3)
    return out


@pytest.fixture(scope="module")
def checkpoint(synth, tmp_path_factory) -> Path:
    """An untrained tiny network's checkpoint with its config (what export and eval read)."""
    import mindspore as ms

    from yoloqat.engine.checkpoints import save_checkpoint
    from yoloqat.engine.pipeline import build_model

    out = tmp_path_factory.mktemp("ckpt")
    cfg = tiny_cfg(synth, out, "eval.testing_shape=64")
    ms.set_seed(1)
    return save_checkpoint(build_model(cfg), out / "tiny.ckpt", {"config": cfg})


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _plant(folder: Path, name: str) -> tuple[Path, Path]:
    """A temporary of a killed writer and one of a live process (this one) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = os.path.splitext(name)[1]
    dead = folder / f".{name}.{_dead_pid()}.0badf00d.tmp{suffix}"
    live = folder / f".{name}.{os.getpid()}.0000cafe.tmp{suffix}"
    dead.write_bytes(b"half a file")
    live.write_bytes(b"being written")
    return dead, live


def test_export_removes_the_temporaries_of_a_killed_export(
    checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "models"
    dead, live = _plant(out, "tiny.onnx")
    default_dead, default_live = _plant(tmp_path / "outputs" / "export", "tiny_64.onnx")
    res = cli("export", "--checkpoint", str(checkpoint), "--output", str(out / "tiny.onnx"))
    assert res.returncode == 0, res.stderr
    assert not dead.exists() and live.exists()
    assert f"removed 1 unfinished file(s) of a killed run in {out}" in " ".join(res.stderr.split())
    res = cli("export", "--checkpoint", str(checkpoint))  # the default output folder
    assert res.returncode == 0, res.stderr
    assert not default_dead.exists() and default_live.exists()
    assert (tmp_path / "outputs" / "export" / "tiny_64.onnx").is_file()


def test_eval_predict_and_synth_remove_them_too(
    checkpoint: Path, synth: Path, tmp_path: Path
) -> None:
    ev = tmp_path / "ev"
    dead, live = _plant(ev, "predict_2026-01-01_00_00_00.json")
    res = cli(
        "eval", "--pretrained", str(checkpoint), "--data_dir", str(synth), "--output", str(ev)
    )
    assert res.returncode == 0, res.stderr
    assert not dead.exists() and live.exists()

    preds = tmp_path / "preds"
    dead, live = _plant(preds, "detections.json")
    image = next((synth / "val").iterdir())
    res = cli("predict", str(image), "--checkpoint", str(checkpoint), "--output", str(preds))
    assert res.returncode == 0, res.stderr
    assert not dead.exists() and live.exists()

    data = tmp_path / "data"
    dead, live = _plant(data / "annotations", "instances_train.json")
    res = cli("synth", str(data), "--train", "2", "--val", "1", "--size", "64")
    assert res.returncode == 0, res.stderr
    assert not dead.exists() and live.exists()
    assert (data / "annotations" / "instances_train.json").is_file()


def _read_only_mount_possible() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount --bind /tmp /mnt && mount -o remount,bind,ro /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


READ_ONLY = r"""
set -u
mount --bind "$HERE" "$HERE" && mount -o remount,bind,ro "$HERE" || exit 99
cd "$HERE"
"$@"
"""


@pytest.mark.skipif(not _read_only_mount_possible(), reason="needs root and unshare -m")
@pytest.mark.parametrize(
    "command, message",
    [
        (["export", "--checkpoint", "{ckpt}"], "--output folder outputs/export is not writable"),
        (["synth", "data"], "OUT_DIR data is not writable"),
        (
            ["eval", "--pretrained", "{ckpt}", "--data_dir", "{synth}"],
            "--output outputs/eval is not writable",
        ),
    ],
    ids=["export", "synth", "eval"],
)
def test_a_read_only_current_folder_is_one_clear_line(
    checkpoint: Path, synth: Path, tmp_path: Path, command: list[str], message: str
) -> None:
    here = tmp_path / "ro"
    here.mkdir()
    script = tmp_path / "ro.sh"
    script.write_text(READ_ONLY)
    args = [a.format(ckpt=checkpoint, synth=synth) for a in command]
    env = dict(os.environ, HERE=str(here), PYTHONPATH=str(Path(__file__).parents[1]))
    res = subprocess.run(
        ["unshare", "-m", "sh", str(script), *BASE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    stderr = " ".join(res.stderr.split())
    assert res.returncode == 3, res.stderr
    assert f"error: {message}: Read-only file system" in stderr
    assert "unexpected" not in stderr and "Traceback" not in stderr
    assert not any(here.iterdir())
