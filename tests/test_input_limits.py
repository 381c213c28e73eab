"""Untrusted inputs stay bounded and contained (issue 22, item 2).

Image paths from annotation files stay inside the image folder unless allowed; only regular
files are read (``/dev/zero``, a FIFO); every kind of input file has a size limit and
images a pixel limit, each with a named error; an image that cannot be decoded is skipped
and counted whatever the decoder says. Real files on a tmp dataset, real devices and FIFOs.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny import cli

from yoloqat.core.errors import CheckpointError, ConfigError, DataError
from yoloqat.core.limits import OUTSIDE_ENV, PIXELS_ENV, SIZE_ENV, parse_size
from yoloqat.data.coco import CocoSource
from yoloqat.data.imageio import ImageReadError, read_image
from yoloqat.data.loader import EvalLoader


def _dataset(root: Path, names: list[str]) -> Path:
    """64 x 48 JPEGs 1.jpg .. n.jpg in root/img, an instances file listing ``names``."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i, name in enumerate(names, 1):
        pixels = np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "img" / f"{i}.jpg"), pixels)
        images.append({"id": i, "file_name": name, "width": 64, "height": 48})
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 20, 20]})
    path = root / "instances.json"
    cats = [{"id": 1, "name": "a"}]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def _eval_stats(source: CocoSource) -> dict:
    loader = EvalLoader(source, testing_shape=64)
    ids = [int(i) for batch in loader for i in batch["image_id"]]
    return {"ids": ids, **loader.stats}


# -- contained paths ---------------------------------------------------------------------


def test_a_traversal_file_name_is_refused_unless_allowed(tmp_path: Path, monkeypatch) -> None:
    outside = tmp_path / "outside.jpg"  # a real image there: it would have been used silently
    cv2.imwrite(str(outside), np.full((48, 64, 3), 200, np.uint8))
    path = _dataset(tmp_path, ["1.jpg", "../outside.jpg"])
    with pytest.raises(DataError) as err:
        CocoSource(tmp_path / "img", path)
    assert str(err.value) == (
        f"{path}: image id 2 (images[1]) 'file_name': '../outside.jpg' points outside the "
        f"image folder {tmp_path / 'img'}"
    )
    assert "--allow-outside-paths" in err.value.hint
    monkeypatch.setenv(OUTSIDE_ENV, "1")
    source = CocoSource(tmp_path / "img", path)
    assert source.load(1).image.mean() == pytest.approx(200, abs=1)


def test_dev_zero_as_file_name_is_refused_and_never_read(tmp_path: Path, monkeypatch) -> None:
    path = _dataset(tmp_path, ["1.jpg", "/dev/zero"])
    with pytest.raises(DataError, match=r"images\[1\]\) 'file_name': '/dev/zero' points outside"):
        CocoSource(tmp_path / "img", path)
    # allowed outside, it is still only a device: skipped and counted, not read
    monkeypatch.setenv(OUTSIDE_ENV, "1")
    stats = _eval_stats(CocoSource(tmp_path / "img", path))
    assert stats["ids"] == [1] and stats["skipped_images"] == 1
    with pytest.raises(ImageReadError, match=r"^image /dev/zero is a device, not a regular file$"):
        read_image("/dev/zero")


def test_a_link_to_a_device_and_a_fifo_inside_the_folder_are_skipped(tmp_path: Path) -> None:
    path = _dataset(tmp_path, ["1.jpg", "zero.jpg", "pipe.jpg"])
    (tmp_path / "img" / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "img" / "pipe.jpg")  # opening it for reading would block forever
    stats = _eval_stats(CocoSource(tmp_path / "img", path))
    assert stats["ids"] == [1] and stats["skipped_images"] == 2
    with pytest.raises(ImageReadError, match=r"pipe\.jpg is a pipe, not a regular file"):
        read_image(tmp_path / "img" / "pipe.jpg")


# -- size limits -------------------------------------------------------------------------


def test_parse_size() -> None:
    assert parse_size("512M") == 512 << 20 and parse_size("8G") == 8 << 30
    assert parse_size("1.5k") == 1536 and parse_size(100) == 100 and parse_size("7") == 7
    with pytest.raises(ConfigError, match="'12Q' is not valid"):
        parse_size("12Q")


def test_every_kind_of_input_file_has_a_size_limit(tmp_path: Path, monkeypatch) -> None:
    from yoloqat.core.config import load_config
    from yoloqat.deploy.darknet_format import read_darknet_weights
    from yoloqat.engine.checkpoints import read_checkpoint
    from yoloqat.engine.runtimes import open_model

    path = _dataset(tmp_path, ["1.jpg"])
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "info": {"padding": "x" * 5000}}))
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 5000)
    config = tmp_path / "big.yaml"
    config.write_text("model: {num_classes: 3}\n" + "# padding\n" * 600)
    monkeypatch.setenv(SIZE_ENV, "4K")
    limit = "over the 4 KiB limit"
    with pytest.raises(DataError, match=f"annotation file {re.escape(str(path))} is .*{limit}"):
        CocoSource(tmp_path / "img", path)
    with pytest.raises(
        ConfigError, match=f"config {re.escape(str(config))} is .* {limit} for config"
    ):
        load_config(config)
    with pytest.raises(CheckpointError, match=f"checkpoint .*big.bin is .* {limit} for checkpoint"):
        read_checkpoint(big)
    with pytest.raises(CheckpointError, match=f"model file .*big.bin is .* {limit} for onnx"):
        open_model(big)
    with pytest.raises(CheckpointError, match=f"Darknet weights file .*big.bin is .* {limit}"):
        read_darknet_weights(big, [])
    image = tmp_path / "noise.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    with pytest.raises(ImageReadError, match=f"image file .*noise.png is .* {limit} for image"):
        read_image(image)


def test_devices_are_refused_as_configs_and_checkpoints() -> None:
    from yoloqat.core.config import load_yaml
    from yoloqat.engine.checkpoints import read_checkpoint

    with pytest.raises(ConfigError, match=r"^config /dev/zero is a device, not a regular file$"):
        load_yaml(Path("/dev/zero"))
    with pytest.raises(CheckpointError, match=r"^checkpoint /dev/zero is a device, not a regular"):
        read_checkpoint("/dev/zero")


# -- pixel limits and decoders -------------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A valid PNG header claiming width x height gray pixels, with one tiny IDAT chunk:
    what a decompression bomb looks like before it is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_the_pixel_limit_is_checked_before_decoding(tmp_path: Path, monkeypatch) -> None:
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 20000, 20000)  # 400 MP: 1.2 GB once decoded to RGB
    assert bomb.stat().st_size < 200
    with pytest.raises(ImageReadError, match=r"bomb\.png is over the 178,956,970 pixel limit"):
        read_image(bomb)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((48, 64, 3), np.uint8))
    monkeypatch.setenv(PIXELS_ENV, "1000")
    with pytest.raises(
        ImageReadError, match=r"small\.png has 64 x 48 = 3,072 pixels, over the 1,000 pixel limit"
    ):
        read_image(small)


def _broken_images(folder: Path) -> list[str]:
    """Files that fail in different places of the decoders; returns their names."""
    png = cv2.imencode(".png", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
    idat = png.index(b"IDAT")
    tif = cv2.imencode(".tiff", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
    files = {
        "bad_idat.png": png[: idat + 8] + b"\x00" * 40 + png[idat + 48 :],  # corrupt stream
        "header_only.png": png[: idat - 4],  # no pixel data at all
        "cut.tiff": tif[: len(tif) // 3],
        "gif_header.jpg": b"GIF89a" + b"\x40\x00\x30\x00" + b"\x00" * 20,
        "text.png": b"just text, no image",
        "huge.png": None,
    }
    for name, data in files.items():
        if data is None:
            _png_header_only(folder / name, 30000, 30000)
        else:
            (folder / name).write_bytes(data)
    return list(files)


def test_any_undecodable_image_is_skipped_and_counted(tmp_path: Path) -> None:
    broken = _broken_images((tmp_path / "img").mkdir(parents=True) or tmp_path / "img")
    path = _dataset(tmp_path, ["1.jpg", *broken])
    for name in broken:
        with pytest.raises(ImageReadError, match=re.escape(name)):
            read_image(tmp_path / "img" / name)
    stats = _eval_stats(CocoSource(tmp_path / "img", path))
    assert stats["ids"] == [1]
    assert stats["skipped_images"] == len(broken)


# -- the options through the command line ------------------------------------------------


def test_the_global_options_reach_the_commands(tmp_path: Path, monkeypatch) -> None:
    for name in (SIZE_ENV, PIXELS_ENV, OUTSIDE_ENV):
        monkeypatch.setenv(name, "")  # what the options set in this process is undone after
    res = cli("--max-file-size", "12Q", "list", "dataset")
    assert res.returncode == 3 and "file size '12Q' is not valid" in res.stderr
    res = cli("--max-image-pixels", "0", "list", "dataset")
    assert res.returncode == 3 and "--max-image-pixels 0 must be positive" in res.stderr
    cv2.imwrite(str(tmp_path / "x.jpg"), np.zeros((48, 64, 3), np.uint8))
    path = _dataset(tmp_path, ["../x.jpg"])
    block = f"dataset={{name: coco, train_images: {tmp_path / 'img'}, train_annotations: {path}}}"
    args = ["train", "--config", "synth_tiny", "--set", block, "--set", "model.num_classes=1"]
    args += ["--ckpt_path", str(tmp_path / "out"), "--max_epoch", "1"]
    res = cli(*args)
    assert res.returncode == 3, res.stderr
    assert "'../x.jpg' points outside the image folder" in " ".join(res.stderr.split())
    assert "--allow-outside-paths" in res.stderr
