"""Inputs nobody listed: malformed datasets, hostile paths, devices, bombs, leftovers, a dead rank.

The sibling of ``bench_faults.py`` (kills, signals, bit flips, full disk) for issue 22: each
case runs the real command line (``python -m yoloqat ...``) on a small synthetic dataset
made wrong in one way, and compares what happened with what should:

- ``ok``: the expected exit code and message (or, for a run that should go on, exit 0 with
  the expected warning);
- ``unclear``: it failed, but with another exit code or a message that does not say what
  the issue asks for (or left a temporary behind);
- ``silent-wrong``: it exited 0 where it should have refused (trained or scored the wrong
  thing);
- ``data-loss``: a file under its final name is torn or a previous one lost;
- ``security``: a file outside the dataset was read, or a device read without bound (the
  case ran out of time or of memory: each command runs with a 4 GiB heap limit,
  ``RLIMIT_DATA``, so that an unbounded read fails in the command, not on the machine).

Prints one line per case (expected, observed, verdict), a Markdown table, and a JSON line
with the counts.

    python benchmarks/bench_inputs.py [--only NAME,...] [--no-distributed] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BASE = [sys.executable, "-m", "yoloqat"]
TIMEOUT_S = 240
#: heap limit of each command (RLIMIT_DATA); the tiny model's commands use well under 2 GiB
MEMORY_LIMIT = 4 << 30
VERDICTS = ("ok", "unclear", "silent-wrong", "data-loss", "security")


@dataclass
class Case:
    name: str
    kind: str  # integrity, security, unclear, leftover, distributed
    expected: str  # for the table
    run: Callable[[Path], dict[str, Any]]  # returns observed facts
    judge: Callable[[dict[str, Any]], str]
    notes: list[str] = field(default_factory=list)


# -- fixtures ------------------------------------------------------------------------------


def make_base(work: Path) -> dict[str, Path]:
    """A 3-class synthetic COCO dataset, an untrained tiny checkpoint and its ONNX model."""
    from yoloqat.core.config import apply_overrides, load_config
    from yoloqat.data.synth import make_synthetic_coco

    data = work / "base"
    make_synthetic_coco(data, train=6, val=4, size=64, seed=3, num_classes=3)
    cfg = apply_overrides(
        load_config("synth_tiny"),
        [
            f"dataset.data_dir={data}",
            "model.num_classes=3",
            "model.backbone.width=0.0625",
            "model.backbone.blocks=[1, 1, 1, 1, 1]",
            "model.head.width=0.0625",
            "eval.testing_shape=64",
        ],
    )
    import mindspore as ms

    from yoloqat.engine.checkpoints import save_checkpoint
    from yoloqat.engine.pipeline import build_model

    ms.set_seed(1)
    ckpt = save_checkpoint(build_model(cfg), work / "tiny.ckpt", {"config": cfg})
    onnx = work / "tiny.onnx"
    res = subprocess.run(
        [*BASE, "export", "--checkpoint", str(ckpt), "--output", str(onnx)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise SystemExit(f"export of the tiny model failed: {res.stderr[-2000:]}")
    return {"data": data, "ckpt": ckpt, "onnx": onnx}


def _bounded_memory() -> None:
    """In the child: at most MEMORY_LIMIT of heap, so a command that reads a device without
    bound fails by itself instead of taking the machine's memory (and the OOM killer's
    choice of victim) with it."""
    import resource

    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))


def unbounded(obs: dict) -> bool:
    """Whether the case ran out of time or memory (or was killed for it)."""
    code = obs["code"]
    return code is None or code < 0 or "MemoryError" in obs.get("stderr", "")


def run(cmd: list[str], cwd: Path | None = None, timeout: float = TIMEOUT_S, **kw) -> dict:
    """Run a command; its exit code, last error line and whole stderr (None: timed out)."""
    start = time.monotonic()
    try:
        res = subprocess.run(
            cmd,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_bounded_memory,
            **kw,
        )
    except subprocess.TimeoutExpired:
        return {"code": None, "error": f"timed out after {timeout:.0f} s", "stderr": ""}
    stderr = " ".join(res.stderr.split())
    lines = res.stderr.splitlines()
    errors = [ln for ln in lines if ln.startswith("error:")]
    warned = [ln for ln in lines if ln.lower().startswith(("warning", "skipped"))]
    if res.returncode == 0 and warned:
        errors = warned[:1]
    return {
        "code": res.returncode,
        "error": (errors[-1] if errors else (lines or [""])[-1])[:300],
        "stderr": stderr,
        "stdout": res.stdout,
        "seconds": round(time.monotonic() - start, 1),
    }


def copy_data(base: dict[str, Path], work: Path, name: str) -> Path:
    root = work / name
    shutil.copytree(base["data"], root)
    return root


def edit_json(root: Path, split: str, change: Callable[[dict], Any]) -> Path:
    path = root / "annotations" / f"instances_{split}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def eval_onnx(base: dict[str, Path], root: Path, *extra: str, global_opts=()) -> list[str]:
    return [
        *BASE,
        *global_opts,
        "eval",
        "--onnx",
        str(base["onnx"]),
        "--images",
        str(root / "val"),
        "--annotations",
        str(root / "annotations" / "instances_val.json"),
        "--output",
        str(root / "eval_out"),
        *extra,
    ]


def train(root: Path, *extra: str, global_opts=()) -> list[str]:
    return [
        *BASE,
        *global_opts,
        "train",
        "--config",
        "synth_tiny",
        "--data_dir",
        str(root),
        "--ckpt_path",
        str(root / "runs"),
        "--per_batch_size",
        "2",
        "--training_shape",
        "64",
        "--max_epoch",
        "1",
        "--set",
        "model.num_classes=3",
        "--set",
        "model.backbone.width=0.0625",
        "--set",
        "model.head.width=0.0625",
        *extra,
    ]


def expect(code: int, pattern: str) -> Callable[[dict], str]:
    """ok when the exit code and the message match; exit 0 is silent-wrong."""

    def judge(obs: dict) -> str:
        if obs["code"] is None:
            return "unclear"
        if obs["code"] == 0:
            return "silent-wrong"
        if obs["code"] == code and re.search(pattern, obs["stderr"]):
            return "ok"
        return "unclear"

    return judge


def expect_secure(code: int, pattern: str) -> Callable[[dict], str]:
    """As :func:`expect`, but reading the file (exit 0) or hanging on it is a security hole."""
    inner = expect(code, pattern)

    def judge(obs: dict) -> str:
        if unbounded(obs) or obs["code"] == 0:
            return "security"
        return inner(obs)

    return judge


def expect_goes_on(pattern: str, *, bounded: bool = False) -> Callable[[dict], str]:
    """ok when it finishes (exit 0) and says ``pattern`` (a warning with the count)."""

    def judge(obs: dict) -> str:
        if bounded and unbounded(obs):
            return "security"
        if obs["code"] is None:
            return "unclear"
        if obs["code"] == 0 and re.search(pattern, obs["stderr"]):
            return "ok"
        if obs["code"] == 0 and "warning:" in obs["stderr"]:
            return "unclear"  # it went on and said something, not what was expected
        return "unclear" if obs["code"] else "silent-wrong"

    return judge


# -- the cases -------------------------------------------------------------------------------


def integrity_cases(base: dict[str, Path], work: Path) -> list[Case]:
    def dup_id(d):
        d["images"][1]["id"] = d["images"][0]["id"]

    def str_image_id(d):
        d["annotations"][0]["image_id"] = str(d["annotations"][0]["image_id"])

    def str_id(d):
        d["images"][0]["id"] = str(d["images"][0]["id"])

    def orphan(d):
        d["annotations"].append({**d["annotations"][0], "id": 10**6, "image_id": 10**6})

    def dup_file(d):
        d["images"][1]["file_name"] = d["images"][0]["file_name"]

    def field(where, key, value):
        def change(d):
            d[where][0][key] = value

        return change

    def dup_category(d):
        d["categories"].append(dict(d["categories"][0]))

    cases = []

    def add(name, split, change, expected, judge, *, opts=()):
        def go(w: Path, change=change, split=split) -> dict:
            root = copy_data(base, w, "data")
            edit_json(root, split, change)
            if split == "val":
                return run(eval_onnx(base, root, global_opts=opts))
            return run(train(root, global_opts=opts))

        cases.append(Case(name, "integrity", expected, go, judge))

    add(
        "coco: two images share an id (eval)",
        "val",
        dup_id,
        "exit 3, names both records",
        expect(3, r"images\[0\] .* and images\[1\] .* have the same id"),
    )
    add(
        "coco: two images share an id (train)",
        "train",
        dup_id,
        "exit 3, names both records",
        expect(3, r"have the same id"),
    )
    add(
        'coco: image_id "1" (a string)',
        "val",
        str_image_id,
        "exit 3, names the annotation and field",
        expect(3, r"'image_id' is '\d+' \(a string\), expected the integer id"),
    )
    add(
        'coco: image id "1" (a string)',
        "train",
        str_id,
        "exit 3",
        expect(3, r"images\[0\]: 'id' is '\d+' \(a string\), expected an integer"),
    )
    add(
        "coco: empty annotations (eval)",
        "val",
        lambda d: d.update(annotations=[]),
        "exit 3 naming the file, not twelve -1.000",
        expect(3, r"instances_val\.json has no annotations \(its 'annotations' list is empty\)"),
    )
    add(
        "coco: missing annotations (eval)",
        "val",
        lambda d: d.pop("annotations"),
        "exit 3 naming the file",
        expect(3, r"list is missing"),
    )
    add(
        "coco: empty annotations (train)",
        "train",
        lambda d: d.update(annotations=[]),
        "exit 3 naming the file",
        expect(3, r"instances_train\.json has no annotations"),
    )
    add(
        "coco: annotation naming no image (eval)",
        "val",
        orphan,
        "exit 0 with a warning and the count",
        expect_goes_on(r"1 annotation\(s\) name an image_id that no image has"),
    )
    add(
        "coco: annotation naming no image, --strict-data",
        "val",
        orphan,
        "exit 3",
        expect(3, r"name an image_id that no image has"),
        opts=("--strict-data",),
    )
    add(
        "coco: two images share a file_name",
        "val",
        dup_file,
        "exit 3",
        expect(3, r"name the same file_name"),
    )
    add(
        'coco: width "64" (a string)',
        "val",
        field("images", "width", "64"),
        "exit 3",
        expect(3, r"'width' is '64' \(a string\), expected a number of pixels"),
    )
    add(
        "coco: bbox with a string",
        "val",
        field("annotations", "bbox", ["1", 2, 3, 4]),
        "exit 3",
        expect(3, r"has no valid 'bbox'"),
    )
    add(
        "coco: bbox with null",
        "val",
        field("annotations", "bbox", [1, None, 3, 4]),
        "exit 3",
        expect(3, r"has no valid 'bbox'"),
    )
    add(
        "coco: unknown category_id",
        "val",
        field("annotations", "category_id", 99),
        "exit 3",
        expect(3, r"category_id 99, which is not in the file's categories"),
    )
    add(
        "coco: two categories share an id",
        "train",
        dup_category,
        "exit 3",
        expect(3, r"categories\[0\] and categories\[\d\] have the same id"),
    )
    add(
        "coco: iscrowd 2",
        "val",
        field("annotations", "iscrowd", 2),
        "exit 3",
        expect(3, r"'iscrowd' is 2 \(int\), expected 0 or 1"),
    )
    add(
        "coco: no usable training box (all 1 px)",
        "train",
        lambda d: [a.update(bbox=[1, 1, 1, 1]) for a in d["annotations"]],
        "exit 3 naming the file",
        expect(3, r"none of its \d+ images has a box wider"),
    )

    def top_list(w: Path) -> dict:
        root = copy_data(base, w, "top_list")
        (root / "annotations" / "instances_val.json").write_text("[1, 2]")
        return run(eval_onnx(base, root))

    cases.append(
        Case(
            "coco: the json is a list",
            "integrity",
            "exit 3",
            top_list,
            expect(3, r"not a COCO instances file: the top level is a list"),
        )
    )

    def not_json(w: Path) -> dict:
        root = copy_data(base, w, "not_json")
        (root / "annotations" / "instances_val.json").write_bytes(b"\xff\xfe{garbage")
        return run(eval_onnx(base, root))

    cases.append(
        Case(
            "coco: the json is binary garbage",
            "integrity",
            "exit 3",
            not_json,
            expect(3, r"not valid JSON"),
        )
    )

    def yolo_empty(w: Path) -> dict:
        root = w / "yolo_empty"
        (root / "images" / "val").mkdir(parents=True)
        (root / "labels" / "val").mkdir(parents=True)
        for img in sorted((base["data"] / "val").iterdir()):
            shutil.copy(img, root / "images" / "val" / img.name)
            (root / "labels" / "val" / f"{img.stem}.txt").write_text("")
        (root / "names.txt").write_text("a\nb\nc\n")
        return run(
            [
                *BASE,
                "eval",
                "--onnx",
                str(base["onnx"]),
                "--data_dir",
                str(root),
                "--output",
                str(root / "out"),
            ]
        )

    cases.append(
        Case(
            "yolo: no label file has a box",
            "integrity",
            "exit 3",
            yolo_empty,
            expect(3, r"has no boxes in any of its \d+ images"),
        )
    )
    return cases


def _png_bomb(path: Path, side: int = 30000) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + chunk(b"IEND", b"")
    )


def security_cases(base: dict[str, Path], work: Path) -> list[Case]:
    cases = []

    def file_name(name: str, value_of: Callable[[Path], str]) -> Callable[[Path], dict]:
        def go(w: Path) -> dict:
            root = copy_data(base, w, name)
            secret = w / f"{name}_outside.jpg"  # a real image outside: used silently before
            shutil.copy(next((root / "val").iterdir()), secret)
            edit_json(root, "val", lambda d: d["images"][0].update(file_name=value_of(secret)))
            return run(eval_onnx(base, root))

        return go

    for name, value_of, what in (
        ("traversal", lambda s: f"../../{s.name}", "file_name with ../"),
        ("absolute", lambda s: str(s), "absolute file_name"),
        ("devzero", lambda s: "/dev/zero", "file_name /dev/zero"),
    ):
        cases.append(
            Case(
                f"coco: {what}",
                "security",
                "exit 3, outside the image folder",
                file_name(name, value_of),
                expect_secure(3, r"points outside the image folder"),
            )
        )

    def in_folder(name: str, make: Callable[[Path], None], pattern: str) -> Case:
        def go(w: Path) -> dict:
            root = copy_data(base, w, name)
            target = root / "val" / next(iter(sorted(p.name for p in (root / "val").iterdir())))
            target.unlink()
            make(target)
            return run(eval_onnx(base, root))

        return Case(
            f"image folder: {name}",
            "security",
            "exit 0, skipped and counted",
            go,
            expect_goes_on(pattern, bounded=True),
        )

    cases.append(
        in_folder(
            "a link to /dev/zero",
            lambda p: p.symlink_to("/dev/zero"),
            r"skipped unreadable image: image .* is a device, not a regular",
        )
    )
    cases.append(
        in_folder(
            "a FIFO named .jpg",
            lambda p: os.mkfifo(p),
            r"skipped unreadable image: image .* is a pipe",
        )
    )
    cases.append(
        in_folder(
            "a 30000 x 30000 PNG bomb", _png_bomb, r"skipped unreadable image: .* pixel limit"
        )
    )

    def big_annotations(w: Path) -> dict:
        root = copy_data(base, w, "big_annotations")
        edit_json(root, "val", lambda d: d.update(info={"padding": "x" * (2 << 20)}))
        return run(eval_onnx(base, root, global_opts=("--max-file-size", "1M")))

    cases.append(
        Case(
            "a 2 MiB annotation file under --max-file-size 1M",
            "security",
            "exit 3",
            big_annotations,
            expect(3, r"annotation file .* is 2 MiB, over the 1 MiB limit for annotation files"),
        )
    )

    for name, cmd, code, pattern in (
        (
            "train --config /dev/zero",
            ["train", "--config", "/dev/zero"],
            3,
            r"config /dev/zero is a device, not a regular file",
        ),
        (
            "eval --pretrained /dev/zero",
            ["eval", "--pretrained", "/dev/zero", "--data_dir", "{d}"],
            1,
            r"checkpoint /dev/zero is a device",
        ),
        (
            "eval --onnx /dev/zero",
            ["eval", "--onnx", "/dev/zero", "--data_dir", "{d}"],
            1,
            r"model file /dev/zero is a device",
        ),
        (
            "train --resume /dev/zero",
            ["train", "--resume", "/dev/zero"],
            1,
            r"checkpoint /dev/zero is a device",
        ),
        (
            "predict /dev/zero",
            ["predict", "/dev/zero", "--checkpoint", "{c}"],
            3,
            r"image /dev/zero is a device",
        ),
        (
            "import-darknet /dev/zero",
            ["import-darknet", "/dev/zero", "--output", "{w}/x.ckpt"],
            1,
            r"Darknet weights file /dev/zero is a device",
        ),
    ):

        def go(w: Path, cmd=cmd) -> dict:
            args = [a.format(d=base["data"], c=base["ckpt"], w=w) for a in cmd]
            return run([*BASE, *args], cwd=w)

        cases.append(
            Case(name, "security", f"exit {code}, not read", go, expect_secure(code, pattern))
        )
    return cases


READ_ONLY = r"""
mount --bind "$HERE" "$HERE" && mount -o remount,bind,ro "$HERE" || exit 99
cd "$HERE" && exec "$@"
"""


def _read_only_possible() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount --bind /tmp /mnt && mount -o remount,bind,ro /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


def unclear_cases(base: dict[str, Path], work: Path) -> list[Case]:
    cases = []

    def read_only(name: str, cmd: list[str]) -> Callable[[Path], dict]:
        def go(w: Path) -> dict:
            if not _read_only_possible():
                return {
                    "code": None,
                    "error": "n/a: needs root and unshare -m",
                    "stderr": "",
                    "skipped": True,
                }
            here = w / name
            here.mkdir()
            script = w / f"{name}.sh"
            script.write_text(READ_ONLY)
            args = [a.format(c=base["ckpt"], d=base["data"]) for a in cmd]
            env = dict(os.environ, HERE=str(here))
            return run(["unshare", "-m", "sh", str(script), *BASE, *args], env=env)

        return go

    for name, cmd, pattern in (
        (
            "export, default output",
            ["export", "--checkpoint", "{c}"],
            r"--output folder outputs/export is not writable: Read-only file system",
        ),
        ("synth", ["synth", "data"], r"OUT_DIR data is not writable: Read-only file system"),
        (
            "eval, default output",
            ["eval", "--pretrained", "{c}", "--data_dir", "{d}"],
            r"--output outputs/eval is not writable: Read-only file system",
        ),
    ):
        cases.append(
            Case(
                f"read-only current folder: {name}",
                "unclear",
                "exit 3, one line",
                read_only(name.split(",")[0], cmd),
                expect(3, pattern),
            )
        )

    def bad_size_flag(w: Path) -> dict:
        return run([*BASE, "--max-file-size", "lots", "list"])

    cases.append(
        Case(
            "--max-file-size lots",
            "unclear",
            "exit 3",
            bad_size_flag,
            expect(3, r"file size 'lots' is not valid"),
        )
    )
    return cases


KILLED_WRITER = """
import os, sys
from yoloqat.core.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as fh:
        fh.write(b"half of it")
        fh.flush()
        os.kill(os.getpid(), 9)
"""


def leftover_cases(base: dict[str, Path], work: Path) -> list[Case]:
    """A real process killed with -9 in the middle of an atomic write leaves its
    temporary; the next run of the command must remove it (and the final file stays)."""
    cases = []

    def go_for(name: str, target: Callable[[Path], Path], cmd: Callable[[Path], list[str]]):
        def go(w: Path) -> dict:
            final = target(w)
            final.parent.mkdir(parents=True, exist_ok=True)
            final.write_bytes(b"the previous file")
            subprocess.run([sys.executable, "-c", KILLED_WRITER, str(final)], check=False)
            kept = final.read_bytes() == b"the previous file"
            left = [p for p in final.parent.iterdir() if p.name.startswith(f".{final.name}.")]
            obs = run(cmd(w), cwd=w)
            obs.update(kept=kept, left_before=len(left), left_after=sum(p.exists() for p in left))
            obs["error"] = (
                f"{obs['left_before']} temporary after the kill, {obs['left_after']} after the "
                f"next run; previous file {'intact' if kept else 'LOST'}"
            )
            return obs

        def judge(obs: dict) -> str:
            if not obs["kept"]:
                return "data-loss"
            if obs["code"] != 0 or obs["left_before"] == 0:
                return "unclear"
            return "ok" if obs["left_after"] == 0 else "unclear"

        cases.append(
            Case(
                f"kill -9 mid-write, then {name}",
                "leftover",
                "exit 0, the temporary removed",
                go,
                judge,
            )
        )

    go_for(
        "export again",
        lambda w: w / "m" / "model.onnx",
        lambda w: [
            *BASE,
            "export",
            "--checkpoint",
            str(base["ckpt"]),
            "--output",
            str(w / "m" / "model.onnx"),
        ],
    )
    go_for(
        "eval again",
        lambda w: w / "ev" / "predict_x.json",
        lambda w: [
            *BASE,
            "eval",
            "--onnx",
            str(base["onnx"]),
            "--data_dir",
            str(base["data"]),
            "--output",
            str(w / "ev"),
        ],
    )
    go_for(
        "predict again",
        lambda w: w / "pr" / "detections.json",
        lambda w: [
            *BASE,
            "predict",
            str(base["data"] / "val"),
            "--onnx",
            str(base["onnx"]),
            "--output",
            str(w / "pr"),
        ],
    )
    go_for(
        "synth again",
        lambda w: w / "sy" / "names.txt",
        lambda w: [*BASE, "synth", str(w / "sy"), "--train", "2", "--val", "1", "--force"],
    )
    return cases


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker_pid(rank: int, root: int) -> int | None:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    todo, found = [root], []
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    for pid in found:
        try:
            env = dict(
                e.split(b"=", 1)
                for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                if b"=" in e
            )
        except OSError:
            continue
        if env.get(b"MS_ROLE") == b"MS_WORKER" and env.get(b"RANK_ID") == str(rank).encode():
            return pid
    return None


def distributed_case(base: dict[str, Path], work: Path) -> Case:
    def go(w: Path) -> dict:
        import yaml

        from yoloqat.core.config import apply_overrides, load_config

        cfg = apply_overrides(
            load_config("synth_tiny"),
            [
                f"dataset.data_dir={base['data']}",
                "model.num_classes=3",
                "model.backbone.width=0.0625",
                "model.backbone.blocks=[1, 1, 1, 1, 1]",
                "model.head.width=0.0625",
                "data.training_shape=64",
                "data.multi_scale=[64]",
            ],
        )
        cfg_path = w / "tiny.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        out = w / "runs"
        out.mkdir(parents=True)
        args = [
            "bash",
            str(REPO / "scripts" / "run_distribute_train.sh"),
            str(base["data"]),
            str(base["ckpt"]),
            "none",
            "2",
            "--config",
            str(cfg_path),
            "--per_batch_size",
            "1",
            "--max_epoch",
            "4",
            "--T_max",
            "4",
            "--warmup_epochs",
            "0",
            "--lr",
            "0.01",
            "--ckpt_path",
            str(out),
            "--ckpt_interval",
            "1",
        ]
        env = dict(
            os.environ,
            PYTHON=sys.executable,
            MASTER_PORT=str(_free_port()),
            LOG_DIR=str(w / "logs"),
            RUN_NAME="run",
            GLOG_v="3",
        )
        proc = subprocess.Popen(
            args,
            cwd=w,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        metrics = out / "run" / "metrics.jsonl"
        end = time.monotonic() + TIMEOUT_S
        while time.monotonic() < end and proc.poll() is None:
            if metrics.is_file() and metrics.read_text().count('"kind": "step"') >= 3:
                break
            time.sleep(0.1)
        victim = _worker_pid(1, proc.pid)
        if victim is None:
            proc.kill()
            return {"code": None, "error": "rank 1 not found", "stderr": ""}
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        try:
            console, _ = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return {"code": None, "error": "the job did not end", "stderr": ""}
        seconds = time.monotonic() - killed
        steps = metrics.read_text().count('"kind": "step"')
        log0 = (w / "logs" / "worker_0.log").read_text(errors="replace")
        errors = [ln for ln in log0.splitlines() if ln.startswith("error:")]
        return {
            "code": proc.returncode,
            "error": f"{(errors or ['(none)'])[-1][:400]} (the job ended {seconds:.1f} s after "
            f"the kill, {steps} steps done)",
            "stderr": " ".join((console + "\n" + "\n".join(errors)).split()),
            "steps_done": steps,
            "seconds_to_end": round(seconds, 1),
        }

    def judge(obs: dict) -> str:
        if obs["code"] is None:
            return "unclear"
        if obs["code"] == 0:
            return "silent-wrong"
        named = re.search(
            rf"rank 1 was killed by SIGKILL during step {obs['steps_done'] + 1} .*last "
            r"checkpoint: \S+ckpt_0/0-\d+_\d+\.ckpt; resume with: bash .*--resume \S+",
            obs["stderr"],
        )
        return "ok" if named and "yoloqat launch: rank 1 was killed" in obs["stderr"] else "unclear"

    return Case(
        "msrun 2 workers, kill -9 of rank 1",
        "distributed",
        "exit 1; rank 0 names rank 1, its step, checkpoint, resume command",
        go,
        judge,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated substrings of case names")
    ap.add_argument("--no-distributed", action="store_true", help="skip the msrun case")
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="yoloqat_inputs_"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    base = make_base(work)
    cases = [
        *integrity_cases(base, work),
        *security_cases(base, work),
        *unclear_cases(base, work),
        *leftover_cases(base, work),
    ]
    if not args.no_distributed:
        cases.append(distributed_case(base, work))
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if only:
        cases = [c for c in cases if any(s in c.name for s in only)]
    rows = []
    for i, case in enumerate(cases):
        folder = work / f"case{i:02d}"
        folder.mkdir()
        obs = case.run(folder)
        verdict = "n/a" if obs.get("skipped") else case.judge(obs)
        code = "timeout" if obs["code"] is None else obs["code"]
        observed = f"exit {code}: {obs['error']}"
        rows.append(
            {
                "case": case.name,
                "kind": case.kind,
                "expected": case.expected,
                "observed": observed,
                "verdict": verdict,
            }
        )
        print(
            f"[{verdict}] {case.name} | expected: {case.expected} | observed: {observed}",
            file=sys.stderr,
            flush=True,
        )
    print("| # | case | expected | observed | verdict |")
    print("|---|---|---|---|---|")
    for i, row in enumerate(rows, 1):
        observed = row["observed"].replace("|", "\\|")
        print(f"| {i} | {row['case']} | {row['expected']} | {observed} | {row['verdict']} |")
    counts = {v: sum(r["verdict"] == v for r in rows) for v in (*VERDICTS, "n/a")}
    summary = {"cases": len(rows), **counts, "minutes": round((time.monotonic() - start) / 60, 1)}
    print()
    print("| cases | ok | unclear | silent-wrong | data-loss | security | n/a |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print("| " + " | ".join(str(summary[k]) for k in ("cases", *VERDICTS, "n/a")) + " |")
    print(json.dumps({**summary, "work_folder": str(work)}))
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
