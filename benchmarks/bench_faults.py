"""Fault injection: kill -9s, SIGINTs, concurrent runs, bit flips and a full disk.

Trains a tiny YOLOv3 (1/16 width, 64 px, 16 synthetic images, a checkpoint every step) with
the real command line and injects faults, then checks what is left on disk. Prints one
JSON object:

- ``kill9``: N ``kill -9`` at random moments (every third one timed inside a checkpoint
  write: the moment a temporary appears), each followed by ``--resume`` from the newest
  checkpoint (or a fresh start when none was written yet), until the run finishes.
- ``sigint``: SIGINTs at random moments of training: exit code 130 and the one-line
  message, then ``--resume`` from the checkpoint it names.
- ``concurrent``: two runs started at once with one ``--ckpt_path`` and one run name.
- ``bit_flips``: checkpoints with random flipped bytes, read back (and one through
  ``yoloqat eval``).
- ``full_disk``: in a private mount namespace (``unshare -m``, root only), a small tmpfs:
  ``export`` onto it when full, and training into it until it fills; reported as not
  available where the machine does not allow it.
- ``files_written`` / ``corrupt_files`` (every ``*.ckpt`` under its final name read back
  with its CRC; every JSON parsed), ``stale_temporaries_left`` after the final resumes,
  ``max_loss_diff_after_resume`` (every logged loss of every interrupted-and-resumed
  process vs the uninterrupted run with the same seed: must be 0).

    python benchmarks/bench_faults.py [--kills 20] [--sigints 3] [--flips 5] [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BASE = [sys.executable, "-m", "yoloqat"]
CKPT = re.compile(r"^0-(\d+)_(\d+)\.ckpt$")
TEMP = re.compile(r"^\..+\.tmp(\.[^.]+)?$")


def train_cmd(data: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [
        *BASE, "train", "--config", "synth_tiny", "--data_dir", str(data),
        "--ckpt_path", str(out), "--max_epoch", str(epochs), "--per_batch_size", "4",
        "--training_shape", "64", "--ckpt_interval", "1",
        "--set", "model.num_classes=3", "--set", "model.backbone.width=0.0625",
        "--set", "model.head.width=0.0625", "--set", f"scheduler.T_max={epochs}",
        "--set", "scheduler.warmup_epochs=0", "--set", "train.keep_checkpoints=1000",
        "--set", "train.log_interval=1", *extra,
    ]  # fmt: skip


def step_records(folder: Path) -> list[tuple[int, float]]:
    """(global step, loss) of every step record under ``folder`` (torn lines skipped)."""
    out = []
    for metrics in folder.rglob("metrics.jsonl"):
        for line in metrics.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("kind") == "step":
                out.append((int(rec["global_step"]), float(rec["loss"])))
    return out


def newest_checkpoint(folder: Path) -> Path | None:
    found = [(int(m.group(2)), p) for p in folder.rglob("*.ckpt") if (m := CKPT.match(p.name))]
    return max(found)[1] if found else None


def temporaries(folder: Path, pid: int | None = None) -> list[Path]:
    """Unfinished files under ``folder`` (of process ``pid`` only, if given)."""
    from yoloqat.core.atomic import TEMP_PATTERN

    found = []
    for path in folder.rglob(".*"):
        match = TEMP_PATTERN.match(path.name)
        if match and path.is_file() and (pid is None or int(match.group(1)) == pid):
            found.append(path)
    return found


def steps_done(folder: Path) -> int:
    return len(step_records(folder))


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(proc: subprocess.Popen, predicate: Any, limit: float = 300.0) -> bool:
    """Poll until ``predicate()`` or the process ends; True if the predicate held."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    return False


def chain(
    data: Path, out: Path, epochs: int, faults: int, kind: str, rng: random.Random
) -> dict[str, Any]:
    """Start a run, inject ``faults`` faults (``kill9`` or ``sigint``), resume each time."""
    stats: dict[str, Any] = {"faults": 0, "resumes_continued": 0, "fresh_starts": 0}
    if kind == "kill9":
        stats["during_checkpoint_write"] = 0
    else:
        stats["exit_130_with_message"] = 0
    total = epochs * 4
    while True:
        ckpt = newest_checkpoint(out)
        if ckpt is None:
            cmd = train_cmd(data, out, epochs, "--run_name", "chain")
            stats["fresh_starts"] += 1
        else:
            cmd = [*BASE, "train", "--resume", str(ckpt)]  # the checkpoint's own config
        before = steps_done(out)
        proc = _start(cmd)
        if ckpt is not None:
            stats["resumes_continued"] += 1
        if stats["faults"] >= faults:
            _stdout, stderr = proc.communicate()
            stats["final_exit_code"] = proc.returncode
            if proc.returncode != 0:
                stats["final_error"] = stderr.strip().splitlines()[-1:]
            break
        if kind == "kill9" and stats["faults"] % 3 == 0:
            # inside a checkpoint write: the moment a temporary appears
            hit = _wait(proc, lambda pid=proc.pid: bool(temporaries(out, pid)))
        elif kind == "kill9" and stats["faults"] % 3 == 1:
            time.sleep(rng.uniform(0.0, 12.0))  # anywhere, start-up included
            hit = proc.poll() is None
        else:
            _wait(proc, lambda b=before: steps_done(out) > b)  # training has started
            time.sleep(rng.uniform(0.0, 0.8))
            hit = proc.poll() is None
        if not hit or proc.poll() is not None:  # finished before the fault: a last resume
            proc.communicate()
            if steps_done(out) >= total and newest_checkpoint(out) is not None:
                stats["final_exit_code"] = proc.returncode
                break
            continue
        if kind == "kill9":
            in_write = bool(temporaries(out, proc.pid))
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            stats["during_checkpoint_write"] += int(in_write)
        else:
            proc.send_signal(signal.SIGINT)
            _stdout, stderr = proc.communicate()
            last = (stderr.strip().splitlines() or [""])[-1]
            ok = proc.returncode == 130 and bool(
                re.fullmatch(r"interrupted (at epoch \d+ step \d+; saved \S+; continue with "
                             r"--resume \S+|by SIGINT while starting.*)", last)
            )  # fmt: skip
            stats["exit_130_with_message"] += int(ok)
        stats["faults"] += 1
    stats["steps_logged"] = steps_done(out)
    return stats


def concurrent(data: Path, out: Path) -> dict[str, Any]:
    from yoloqat.engine.checkpoints import read_checkpoint

    procs = [
        _start(train_cmd(data, out, 1, "--run_name", "same", "--seed", str(s))) for s in (1, 2)
    ]
    codes = [(p.communicate(), p.returncode)[1] for p in procs]
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    ckpts = [newest_checkpoint(f) for f in folders]
    differ = None
    if len(ckpts) == 2 and all(ckpts):
        a, b = (read_checkpoint(c)[0] for c in ckpts)
        name = "backbone.conv0.conv.weight"
        differ = bool((a[name].asnumpy() != b[name].asnumpy()).any())
    return {
        "exit_codes": codes,
        "folders": [f.name for f in folders],
        "checkpoints_differ": differ,
        "logs_with_one_run_each": all(
            (f / "log.txt").read_text().count("args: ") == 1 for f in folders
        ),
    }


def bit_flips(sources: list[Path], work: Path, count: int, rng: random.Random) -> dict[str, Any]:
    from yoloqat.core.errors import CheckpointError
    from yoloqat.engine.checkpoints import read_checkpoint

    work.mkdir(parents=True, exist_ok=True)
    refused, loaded, messages = 0, 0, set()
    flipped_files = []
    for i in range(count):
        src = rng.choice(sources)
        data = bytearray(src.read_bytes())
        for _ in range(rng.choice((1, 2))):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path = work / f"flip_{i}.ckpt"
        path.write_bytes(bytes(data))
        flipped_files.append(path)
        try:
            read_checkpoint(path)
            loaded += 1
        except CheckpointError as exc:
            refused += 1
            messages.add(re.sub(r"checkpoint \S+ ", "checkpoint FILE ", exc.message)[:90])
    cmd = [*BASE, "eval", "--pretrained", str(flipped_files[0]), "--output", str(work / "ev")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    return {
        "files": count,
        "refused": refused,
        "loaded_anyway": loaded,
        "messages": sorted(messages),
        "eval_exit_code": res.returncode,
        "eval_names_the_file": str(flipped_files[0]) in " ".join(res.stderr.split()),
    }


FULL_DISK = r"""
set -u
mount -t tmpfs -o size=8m yoloqat_bench "$DISK" || exit 99
cp "$WORK/model.onnx" "$DISK/model.onnx"
dd if=/dev/zero of="$DISK/filler" bs=64k 2>/dev/null
rm -f "$DISK/filler"
free=$(df -k --output=avail "$DISK" | tail -1)
dd if=/dev/zero of="$DISK/filler" bs=1k count=$(( free - 64 )) 2>/dev/null
$EXPORT > "$WORK/export.out" 2> "$WORK/export.err"; echo $? > "$WORK/export.rc"
cp "$DISK/model.onnx" "$WORK/after.onnx"
ls -a "$DISK" > "$WORK/export.listing"
rm -f "$DISK/filler" "$DISK/model.onnx"
$TRAIN > "$WORK/train.out" 2> "$WORK/train.err"; echo $? > "$WORK/train.rc"
mkdir -p "$WORK/train_disk" && cp -r "$DISK"/. "$WORK/train_disk/"
"""


def full_disk(ckpt: Path, data: Path, work: Path) -> dict[str, Any]:
    from yoloqat.core.errors import CheckpointError
    from yoloqat.engine.checkpoints import read_checkpoint

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return {"available": False, "reason": "needs root and unshare(1)"}
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m t /mnt"],
                           capture_output=True, text=True)  # fmt: skip
    if probe.returncode != 0:
        return {"available": False, "reason": f"unshare -m / mount tmpfs: {probe.stderr.strip()}"}
    work.mkdir(parents=True, exist_ok=True)
    disk = work / "disk"
    disk.mkdir()
    first = subprocess.run([*BASE, "export", "--checkpoint", str(ckpt), "--output",
                            str(work / "model.onnx")], capture_output=True, text=True)  # fmt: skip
    if first.returncode != 0:
        return {"available": True, "error": first.stderr.strip().splitlines()[-1:]}
    export = [*BASE, "export", "--checkpoint", str(ckpt), "--testing_shape", "64", "--output",
              str(disk / "model.onnx")]  # fmt: skip
    train = train_cmd(data, disk, 200)  # fills the 8 MiB disk with 2 MB checkpoints
    script = work / "full.sh"
    script.write_text(FULL_DISK)
    env = dict(os.environ, DISK=str(disk), WORK=str(work), EXPORT=" ".join(export),
               TRAIN=" ".join(train))  # fmt: skip
    subprocess.run(["unshare", "-m", "sh", str(script)], env=env, capture_output=True, text=True)
    corrupt = 0
    ckpts = list((work / "train_disk").rglob("*.ckpt"))
    for path in ckpts:
        try:
            read_checkpoint(path)
        except CheckpointError:
            corrupt += 1
    train_err = (work / "train.err").read_text().strip().splitlines()
    return {
        "available": True,
        "export_exit_code": int((work / "export.rc").read_text()),
        "export_message": (work / "export.err").read_text().strip().splitlines()[-2:],
        "previous_model_identical": (work / "after.onnx").read_bytes()
        == (work / "model.onnx").read_bytes(),
        "export_temporaries_left": [
            n for n in (work / "export.listing").read_text().split() if TEMP.match(n)
        ],
        "train_exit_code": int((work / "train.rc").read_text()),
        "train_message": [ln for ln in train_err if ln.startswith(("error", "hint"))][-2:],
        "train_checkpoints_on_full_disk": len(ckpts),
        "train_corrupt_checkpoints": corrupt,
        "train_temporaries_left": len(temporaries(work / "train_disk")),
    }


def audit(folder: Path) -> dict[str, int]:
    """Files under final names that do not read back (checkpoints with CRC, JSON, PNG)."""
    from yoloqat.core.errors import CheckpointError
    from yoloqat.engine.checkpoints import read_checkpoint

    written, corrupt = 0, 0
    for path in folder.rglob("*"):
        if not path.is_file() or path.name.startswith(".") or "flips" in path.parts:
            continue
        written += 1
        try:
            if path.suffix == ".ckpt":
                read_checkpoint(path)
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".png" and not path.read_bytes().endswith(b"IEND\xaeB`\x82"):
                corrupt += 1
        except (CheckpointError, json.JSONDecodeError):
            corrupt += 1
    return {"files_written": written, "corrupt_files": corrupt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--sigints", type=int, default=3)
    ap.add_argument("--flips", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=6, help="of 4 steps each")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.out or tempfile.mkdtemp(prefix="yoloqat_faults_"))
    start = time.perf_counter()

    from yoloqat.data.synth import make_synthetic_coco

    data = work / "data"
    make_synthetic_coco(data, train=16, val=4, size=64, seed=3, num_classes=3)
    ref = subprocess.run(train_cmd(data, work / "reference", args.epochs), capture_output=True,
                         text=True)  # fmt: skip
    if ref.returncode != 0:
        raise SystemExit(f"the reference run failed: {ref.stderr[-2000:]}")
    reference = dict(step_records(work / "reference"))

    report: dict[str, Any] = {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "reference_steps": len(reference),
    }
    report["kill9"] = chain(data, work / "kill9", args.epochs, args.kills, "kill9", rng)
    report["sigint"] = chain(data, work / "sigint", args.epochs, args.sigints, "sigint", rng)
    report["concurrent"] = concurrent(data, work / "concurrent")
    sources = [p for p in (work / "kill9").rglob("*.ckpt")][:20]
    report["bit_flips"] = bit_flips(sources, work / "flips", args.flips, rng)
    report["full_disk"] = full_disk(newest_checkpoint(work / "reference"), data, work / "disk")

    diffs = [
        abs(loss - reference[step])
        for chain_dir in ("kill9", "sigint")
        for step, loss in step_records(work / chain_dir)
    ]
    for chain_dir in ("kill9", "sigint"):
        done = {s for s, _ in step_records(work / chain_dir)}
        report[chain_dir]["all_steps_logged"] = done == set(reference)
    report["max_loss_diff_after_resume"] = max(diffs) if diffs else None
    report.update(audit(work))
    report["stale_temporaries_left"] = len(
        temporaries(work / "kill9") + temporaries(work / "sigint")
    )
    report["minutes"] = round((time.perf_counter() - start) / 60, 2)
    report["work_folder"] = str(work)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
