"""Faults and careless use with real processes and signals (issue 11).

Concurrent runs, SIGINT/SIGTERM, bit flips, non-finite tensors, a full disk (a tmpfs in a
private mount namespace, where the machine allows it), unwritable outputs, and the smaller
mistakes: unreadable datasets, non-image files, folders given as checkpoints, resuming with
other flags.

Where the process is the point (concurrent runs, signals, exit code 130, the full disk)
the real ``python -m yoloqat`` runs in a subprocess; the one-line errors and their exit
codes are checked in-process (Typer's runner, ``tiny.cli``), the same command code without
an interpreter start each.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny import cli

from yoloqat.data.synth import make_synthetic_coco

pytestmark = pytest.mark.slow

BASE = [sys.executable, "-m", "yoloqat"]
TINY = [
    "--config", "synth_tiny", "--per_batch_size", "4", "--training_shape", "64",
    "--set", "model.num_classes=3", "--set", "model.backbone.width=0.0625",
    "--set", "model.head.width=0.0625", "--set", "train.log_interval=1",
    "--set", "model.backbone.blocks=[1, 1, 1, 1, 1]",
    "--set", "scheduler.warmup_epochs=0",
]  # fmt: skip


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_coco(out, train=16, val=4, size=64, seed=3, num_classes=3)
    return out


def train_args(synth: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [
        "train", *TINY, "--data_dir", str(synth), "--ckpt_path", str(out),
        "--max_epoch", str(epochs), "--set", f"scheduler.T_max={epochs}", *extra,
    ]  # fmt: skip


def train_cmd(synth: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [*BASE, *train_args(synth, out, epochs, *extra)]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


def step_losses(metrics: Path) -> dict[int, float]:
    """global step -> loss, from a run's metrics.jsonl (later records win)."""
    out = {}
    for line in metrics.read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "step":
            out[rec["global_step"]] = rec["loss"]
    return out


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory) -> Path:
    """A finished 2-epoch run (8 steps, a checkpoint every 2): its last checkpoint."""
    out = tmp_path_factory.mktemp("trained")
    res = cli(
        *train_args(synth, out, 2, "--ckpt_interval", "2", "--set", "train.keep_checkpoints=9")
    )
    assert res.returncode == 0, res.stderr[-2000:]
    last = Path(res.stdout.split("last checkpoint: ")[1].strip())
    assert sorted(p.name for p in last.parent.iterdir()) == [
        "0-1_2.ckpt", "0-1_4.ckpt", "0-2_6.ckpt", "0-2_8.ckpt", "last.ckpt"
    ]  # fmt: skip
    assert last.name == "last.ckpt" and last.samefile(last.parent / "0-2_8.ckpt")
    return last


def _run_dirs(base: Path) -> list[Path]:
    return sorted(p for p in base.iterdir() if p.is_dir())


def _wait_for(predicate, proc: subprocess.Popen, what: str) -> None:
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {what}")
        time.sleep(0.01)


# -- 1. concurrent runs ------------------------------------------------------------------
def test_two_concurrent_runs_with_one_ckpt_path_get_two_folders(synth, tmp_path) -> None:
    from yoloqat.engine.checkpoints import read_checkpoint

    # the same run name forces the collision two runs started in one second have
    procs = [
        subprocess.Popen(
            train_cmd(synth, tmp_path, 1, "--run_name", "same", "--seed", str(seed)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    folders = _run_dirs(tmp_path)
    assert [f.name for f in folders] == ["same", "same_2"]
    ckpts = [next((f / "ckpt_0").glob("*.ckpt")) for f in folders]
    weights = [read_checkpoint(c)[0] for c in ckpts]
    name = "backbone.conv0.conv.weight"
    assert not np.array_equal(weights[0][name].asnumpy(), weights[1][name].asnumpy())
    for folder in folders:  # each log holds one run, not both interleaved
        assert (folder / "log.txt").read_text().count("args: ") == 1
        assert len(step_losses(folder / "metrics.jsonl")) == 4
    seeds = sorted(read_checkpoint(c)[1]["config"]["train"]["seed"] for c in ckpts)
    assert seeds == [1, 2]


# -- 2. SIGINT / SIGTERM -----------------------------------------------------------------
def test_sigint_mid_training_saves_and_resume_gives_the_same_losses(synth, tmp_path) -> None:
    epochs, extra = 5, ["--ckpt_interval", "1", "--set", "train.keep_checkpoints=2"]
    ref = run(train_cmd(synth, tmp_path / "ref", epochs, *extra))
    assert ref.returncode == 0, ref.stderr[-2000:]
    reference = step_losses(next((tmp_path / "ref").iterdir()) / "metrics.jsonl")
    assert len(reference) == epochs * 4

    out = tmp_path / "int"
    proc = subprocess.Popen(
        train_cmd(synth, out, epochs, *extra),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def some_steps_done() -> bool:
        metrics = list(out.glob("*/metrics.jsonl"))
        return bool(metrics) and metrics[0].read_text().count('"kind": "step"') >= 3

    _wait_for(some_steps_done, proc, "three steps were done")
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    match = re.fullmatch(
        r"interrupted at epoch (\d+) step (\d+); saved (\S+); continue with --resume (\S+)", last
    )
    assert match, last
    ckpt = Path(match.group(3))
    assert match.group(4) == str(ckpt) and ckpt.is_file()
    run_dir = ckpt.parent.parent
    stopped_at = max(step_losses(run_dir / "metrics.jsonl"))
    assert stopped_at < epochs * 4, "the run finished before the signal"
    assert ckpt.name.endswith(f"_{stopped_at}.ckpt")

    # a killed run's temporaries (dead pid) are removed when the run is resumed
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    stale = [ckpt.parent / f".0-9_99.ckpt.{dead}.0a1b2c3d.tmp.tmp",
             ckpt.parent / f".0-9_99.{dead}.tmp.ckpt"]  # fmt: skip
    for path in stale:
        path.write_bytes(b"torn")

    # no --config: the checkpoint's own config (tiny widths, 3 classes) is used
    res = run([*BASE, "train", "--resume", str(ckpt)])
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resumed from {ckpt}" in " ".join(res.stderr.split())
    resumed = step_losses(run_dir / "metrics.jsonl")
    after = [s for s in resumed if s > stopped_at]
    assert after == list(range(stopped_at + 1, epochs * 4 + 1))
    np.testing.assert_array_equal([resumed[s] for s in after], [reference[s] for s in after])
    assert not any(p.exists() for p in stale)
    # keep_checkpoints=2 counts the whole run, across the resume; no temporaries remain
    # (last.ckpt beside them: the newest, uncounted)
    names = sorted(p.name for p in ckpt.parent.iterdir())
    assert names == ["0-5_19.ckpt", "0-5_20.ckpt", "last.ckpt"]
    assert (ckpt.parent / "last.ckpt").samefile(ckpt.parent / "0-5_20.ckpt")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_compilation_is_one_line_exit_130(synth, tmp_path, sig) -> None:
    proc = subprocess.Popen(
        train_cmd(synth, tmp_path, 2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for(lambda: bool(list(tmp_path.iterdir())), proc, "the run folder was made")
    time.sleep(1.0)  # building the network / compiling the graph
    proc.send_signal(sig)
    _stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "analyze_fail" not in stderr
    name = signal.Signals(sig).name
    assert stderr.strip().splitlines()[-1].startswith(f"interrupted by {name} while starting")
    assert not list(tmp_path.iterdir())  # a failed start leaves no run folder


# -- 3. bit flips and non-finite tensors ---------------------------------------------------
def test_flipped_bytes_are_refused_naming_the_file(trained, tmp_path) -> None:
    from yoloqat.engine.checkpoints import read_checkpoint

    data = bytearray(trained.read_bytes())
    # inside the largest tensor's values: a flip there leaves the file parseable (only the
    # CRC can tell), wherever the metadata and the other tensors put it in the file
    largest = max((v.asnumpy() for v in read_checkpoint(trained)[0].values()), key=np.size)
    start = bytes(data).find(largest.tobytes())
    assert start >= 0 and largest.nbytes > 200
    for offset in (start + largest.nbytes // 2, start + largest.nbytes // 2 + 101):
        data[offset] ^= 0x20
    bad = tmp_path / "flipped.ckpt"
    bad.write_bytes(bytes(data))
    res = cli("eval", "--pretrained", str(bad), "--output", str(tmp_path / "ev"))
    assert res.returncode == 1, res.stderr[-2000:]
    assert f"checkpoint {bad} failed its CRC check" in " ".join(res.stderr.split())
    assert "Average Precision" not in res.stdout


def test_non_finite_tensors_are_refused_naming_them(tmp_path) -> None:
    import mindspore as ms

    items = [
        {"name": "backbone.conv0.bn.moving_variance", "data": ms.Tensor(np.array([1.0, np.nan],
                                                                                  np.float32))},
        {"name": "head.x.weight", "data": ms.Tensor(np.ones(2, np.float32))},
    ]  # fmt: skip
    path = tmp_path / "nan.ckpt"
    ms.save_checkpoint(items, str(path))  # no CRC: only the value check can catch it
    res = cli("eval", "--pretrained", str(path), "--output", str(tmp_path / "ev"))
    assert res.returncode == 1, res.stderr[-2000:]
    text = " ".join(res.stderr.split())
    assert f"checkpoint {path} holds non-finite values (NaN or inf) in 1 tensor(s): " in text
    assert "backbone.conv0.bn.moving_variance" in text


# -- 4. full disk, unwritable outputs ----------------------------------------------------
def _private_tmpfs_possible() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m t /mnt"],
                           capture_output=True)  # fmt: skip
    return probe.returncode == 0


FULL_DISK = r"""
set -u
mount -t tmpfs -o size=6m yoloqat_full "$DISK"
cp "$KEEP/model.onnx" "$DISK/model.onnx"
# leave less free space than one more model needs
dd if=/dev/zero of="$DISK/filler" bs=64k 2>/dev/null
rm -f "$DISK/filler"
free=$(df -k --output=avail "$DISK" | tail -1)
dd if=/dev/zero of="$DISK/filler" bs=1k count=$(( free - 64 )) 2>/dev/null
"$@" > "$KEEP/stdout" 2> "$KEEP/stderr"
echo $? > "$KEEP/rc"
cp "$DISK/model.onnx" "$KEEP/after.onnx"
ls -a "$DISK" > "$KEEP/listing"
"""


@pytest.mark.skipif(not _private_tmpfs_possible(), reason="needs root and unshare -m (tmpfs)")
def test_export_onto_a_full_disk_keeps_the_previous_model(trained, tmp_path) -> None:
    first = tmp_path / "model.onnx"
    res = run([*BASE, "export", "--checkpoint", str(trained), "--output", str(first)])
    assert res.returncode == 0, res.stderr[-2000:]
    disk = tmp_path / "disk"
    disk.mkdir()
    env = dict(os.environ, DISK=str(disk), KEEP=str(tmp_path))
    script = tmp_path / "full.sh"
    script.write_text(FULL_DISK)
    export = [*BASE, "export", "--checkpoint", str(trained), "--testing_shape", "64",
              "--output", str(disk / "model.onnx")]  # fmt: skip
    sh = run(["unshare", "-m", "sh", str(script), *export], env=env)
    assert sh.returncode == 0, sh.stderr
    stderr = (tmp_path / "stderr").read_text()
    assert (tmp_path / "rc").read_text().strip() == "1", stderr
    assert "No space left on device (the previous file is unchanged)" in " ".join(stderr.split())
    assert (tmp_path / "after.onnx").read_bytes() == first.read_bytes()
    names = (tmp_path / "listing").read_text().split()
    assert sorted(names) == [".", "..", "filler", "model.onnx"]  # no temporary left behind


def test_eval_into_an_unwritable_folder_fails_before_evaluating(trained, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = cli("eval", "--pretrained", str(trained), "--output", str(blocker / "ev"))
    assert res.returncode == 3, res.stderr[-2000:]
    assert f"--output {blocker / 'ev'} is not writable" in " ".join(res.stderr.split())
    assert "Average Precision" not in res.stdout


# -- 6. smaller mistakes -----------------------------------------------------------------
def test_eval_over_only_unreadable_images_is_an_error(trained, synth, tmp_path) -> None:
    images = tmp_path / "val"
    shutil.copytree(synth / "val", images)
    for path in images.iterdir():
        path.write_bytes(b"not a jpeg")
    ann = synth / "annotations" / "instances_val.json"
    res = cli("eval", "--pretrained", str(trained), "--images", str(images),
              "--annotations", str(ann), "--output", str(tmp_path / "ev"))  # fmt: skip
    assert res.returncode == 3, res.stderr[-2000:]
    assert "none of the 4 image(s) to evaluate could be read; no AP to report" in res.stderr
    assert "Average Precision" not in res.stdout
    assert not list((tmp_path / "ev").glob("*.json"))


def test_predict_on_a_single_non_image_file_is_an_error(trained, tmp_path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    res = cli("predict", str(notes), "--checkpoint", str(trained),
              "--output", str(tmp_path / "pred"))  # fmt: skip
    assert res.returncode == 3, res.stderr[-2000:]
    assert f"{notes} is not a readable image" in " ".join(res.stderr.split())


def test_a_folder_given_as_checkpoint_says_so(trained, tmp_path) -> None:
    folder = trained.parent
    for cmd in (["eval", "--pretrained", str(folder)], ["train", "--resume", str(folder)]):
        res = cli(*cmd)
        assert res.returncode == 1, res.stderr[-2000:]
        text = " ".join(res.stderr.split())
        assert f"checkpoint {folder} is a folder, not a .ckpt file" in text
        assert f"hint: it holds 5 checkpoint(s), e.g. {trained}" in text


def test_resume_with_another_batch_size_says_what_differs(trained) -> None:
    mid = trained.parent / "0-2_6.ckpt"
    res = cli("train", "--resume", str(mid), "--per_batch_size", "2")
    assert res.returncode == 3, res.stderr[-2000:]
    text = " ".join(res.stderr.split())
    assert f"--resume {mid} was trained with train.per_batch_size=4 (this run: 2)" in text
    assert "learning_rate" not in text


def test_nan_after_a_resume_names_the_resumed_checkpoint(trained, tmp_path) -> None:
    # the run diverges right after the resume: the rebuilt schedule says lr 1e30 from here
    mid = tmp_path / "run" / "ckpt_0" / "0-2_6.ckpt"
    mid.parent.mkdir(parents=True)
    shutil.copy(trained.parent / "0-2_6.ckpt", mid)
    res = cli("train", "--resume", str(mid), "--lr", "1e30")
    assert res.returncode == 1, res.stderr[-2000:]
    text = " ".join(res.stderr.split())
    assert re.search(r"error: (loss became \S+|weights became non-finite) ", text), text
    assert f"hint: last good checkpoint: {mid}" in text
    assert "no checkpoint was written yet" not in text


def test_a_failed_start_leaves_no_run_folder(synth, tmp_path) -> None:
    res = cli(*train_args(synth, tmp_path / "out", 1, "--set", "dataset.data_dir=/nonexistent"))
    assert res.returncode == 3, res.stderr[-2000:]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_sigint_during_eval_start_up_is_one_line_exit_130(trained, tmp_path) -> None:
    proc = subprocess.Popen(
        [*BASE, "eval", "--pretrained", str(trained), "--output", str(tmp_path / "ev")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # importing MindSpore or building the network (eval takes far longer)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "interrupted by SIGINT"
    assert not list((tmp_path / "ev").glob("*.json"))


EVAL_FULL_DISK = r"""
set -u
mount -t tmpfs -o size=2m yoloqat_full "$DISK"
dd if=/dev/zero of="$DISK/filler" bs=64k 2>/dev/null
rm -f "$DISK/filler"
free=$(df -k --output=avail "$DISK" | tail -1)
dd if=/dev/zero of="$DISK/filler" bs=1k count=$(( free - 16 )) 2>/dev/null
"$@" > "$KEEP/stdout" 2> "$KEEP/stderr"
echo $? > "$KEEP/rc"
ls -a "$DISK" > "$KEEP/listing"
ls -a "$DISK/ev" > "$KEEP/ev_listing"
"""


@pytest.mark.skipif(not _private_tmpfs_possible(), reason="needs root and unshare -m (tmpfs)")
def test_eval_onto_a_full_disk_prints_the_ap_then_fails(trained, tmp_path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "full.sh"
    script.write_text(EVAL_FULL_DISK)
    env = dict(os.environ, DISK=str(disk), KEEP=str(tmp_path))
    # every candidate box kept: far more detections than the 16 KiB left on the disk
    cmd = [*BASE, "eval", "--pretrained", str(trained), "--ignore_threshold", "0.0",
           "--output", str(disk / "ev")]  # fmt: skip
    sh = run(["unshare", "-m", "sh", str(script), *cmd], env=env)
    assert sh.returncode == 0, sh.stderr
    stderr = " ".join((tmp_path / "stderr").read_text().split())
    assert (tmp_path / "rc").read_text().strip() == "1", stderr
    stdout = (tmp_path / "stdout").read_text()
    assert stdout.count(" Average Precision") == 6  # the numbers came out first
    assert "No space left on device" in stderr and "unexpected" not in stderr
    names = (tmp_path / "listing").read_text().split()
    assert sorted(names) == [".", "..", "ev", "filler"]
    # no 0-byte or torn predictions json, no temporary
    assert sorted((tmp_path / "ev_listing").read_text().split()) == [".", ".."]
