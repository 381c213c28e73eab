"""The Python API (``yoloqat.load``, ``Model.predict/val/export``, ``yoloqat.train``) and
``predict``'s sources, options and outputs, with real files: a video made with OpenCV, a
local HTTP server, a glob, an EXIF-rotated JPEG, two files with one stem."""

from __future__ import annotations

import http.server
import json
import shutil
import threading

import cv2
import numpy as np
import pytest
from tiny import cli

import yoloqat
from yoloqat.core.errors import ConfigError, DataError, UsageError
from yoloqat.engine.results import Result, draw


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A toy checkpoint trained for one epoch with the Python API, its data, its ONNX."""
    from yoloqat.data.synth import make_synthetic_coco

    root = tmp_path_factory.mktemp("api")
    data = root / "data"
    make_synthetic_coco(data, train=8, val=4, size=64, seed=3, num_classes=3)
    result = yoloqat.train(
        "synth_tiny",
        data_dir=str(data),
        max_epoch=1,
        per_batch_size=4,
        training_shape=64,
        ckpt_path=str(root / "runs"),
        overrides={
            "model.num_classes": 3,
            "model.backbone.width": 0.0625,
            "model.backbone.blocks": [1, 1, 1, 1, 1],
            "model.head.width": 0.0625,
            "eval.testing_shape": 64,
        },
    )
    ckpt = result.checkpoints[-1]
    model = yoloqat.load(ckpt)
    onnx = model.export(root / "model.onnx")
    return {"root": root, "data": data, "ckpt": ckpt, "model": model, "onnx": onnx}


def test_train_load_and_describe(trained) -> None:
    model = trained["model"]
    assert model.kind == "checkpoint" and model.names == ["circle", "square", "triangle"]
    assert model.input_size == 64 and model.normalize == "imagenet"
    exported = yoloqat.load(trained["onnx"])
    assert exported.kind == "exported" and exported.names == model.names  # from its metadata
    assert exported.input_size == 64


def test_benchmark_from_python(trained, tmp_path) -> None:
    """``Model.benchmark`` runs what ``yoloqat benchmark`` runs, on the checkpoint's own
    config and data: a row per (format, precision, runtime) and the files."""
    model = trained["model"]
    out = tmp_path / "bench"
    result = model.benchmark(
        formats=["mindspore", "onnx"], precisions=["fp32"], runtimes=["onnxruntime"],
        max_images=4, runs=1, warmup=0, output=out,
    )  # fmt: skip
    rows = {(r["format"], r["runtime"]): r for r in result["rows"]}
    assert set(rows) == {("mindspore", "mindspore"), ("onnx", "onnxruntime")}, rows
    assert all(r["status"] == "ok" and r["latency_ms"] > 0 for r in rows.values()), rows
    assert all(0 <= r["AP50"] <= 1 for r in rows.values())  # scored on its own val split
    assert json.loads((out / "benchmark.json").read_text())["rows"] == result["rows"]
    with pytest.raises(UsageError, match="is an exported model; benchmark its checkpoint"):
        yoloqat.load(trained["onnx"]).benchmark()


def test_predict_is_the_same_in_python_and_on_the_command_line(trained, tmp_path) -> None:
    val = sorted(str(p) for p in (trained["data"] / "val").glob("*.jpg"))
    results = trained["model"].predict(val, conf=0.01)
    assert [r.source for r in results] == val
    res = cli("predict", *val, "--checkpoint", str(trained["ckpt"]), "--conf", "0.01",
              "--output", str(tmp_path / "predict"), "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    printed = json.loads(res.stdout)
    assert printed == json.loads((tmp_path / "predict" / "results.json").read_text())
    for r, p in zip(results, printed):
        assert [d["box"] for d in p["detections"]] == [
            [round(float(v), 2) for v in box] for box in r.boxes
        ]
        assert [d["class_name"] for d in p["detections"]] == r.class_names
    exported = yoloqat.load(trained["onnx"]).predict(val, conf=0.01)
    for a, b in zip(results, exported):  # the ONNX file finds the same boxes
        assert len(a) == len(b)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)


def test_every_kind_of_source(trained, tmp_path) -> None:
    model = trained["model"]
    val = trained["data"] / "val"
    nested = tmp_path / "photos" / "2024"
    nested.mkdir(parents=True)
    for p in sorted(val.glob("*.jpg"))[:2]:
        shutil.copy(p, nested / p.name)
    assert len(model.predict(str(val / "*.jpg"), conf=0.5)) == 4  # a glob
    assert len(model.predict([str(val / "000001.jpg"), str(val / "000002.jpg")])) == 2
    with pytest.raises(DataError, match="--recursive reads its sub-folders"):
        model.predict(str(tmp_path / "photos"))
    assert len(model.predict(str(tmp_path / "photos"), recursive=True)) == 2
    with pytest.raises(DataError, match=r"image, video or folder not found: .*nope\.jpg"):
        model.predict(str(tmp_path / "nope.jpg"))
    with pytest.raises(DataError, match="camera 7 could not be opened"):
        model.predict(7)


def test_two_files_with_one_stem_keep_both_outputs(trained, tmp_path) -> None:
    image = cv2.imread(str(trained["data"] / "val" / "000001.jpg"))
    cv2.imwrite(str(tmp_path / "gray.jpg"), image)
    cv2.imwrite(str(tmp_path / "gray.png"), image)
    out = tmp_path / "out"
    results = trained["model"].predict(str(tmp_path), save_dir=out)
    assert sorted(r.name for r in results) == ["gray", "gray_png"]
    assert sorted(p.name for p in out.glob("*.jpg")) == ["gray.jpg", "gray_png.jpg"]


def test_a_video_gives_per_frame_results_and_an_annotated_video(coco128, trained, tmp_path):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (320, 240))
    for p in sorted((coco128 / "images" / "train2017").glob("*.jpg"))[:5]:
        writer.write(cv2.resize(cv2.imread(str(p)), (320, 240)))
    writer.release()
    out = tmp_path / "out"
    results = trained["model"].predict(str(video), conf=0.01, save_dir=out, max_det=5)
    assert [r.frame for r in results] == [0, 1, 2, 3, 4]
    assert all(r.stream == "clip" and r.size == (320, 240) for r in results)
    assert all(len(r) <= 5 for r in results)
    annotated = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert (int(annotated.get(cv2.CAP_PROP_FRAME_WIDTH)), int(annotated.get(3 + 1))) == (320, 240)
    annotated.release()
    assert not list(out.glob(".*"))  # no temporary left


def test_an_http_url(trained, tmp_path) -> None:
    folder = trained["data"] / "val"

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/000002.jpg"
        (from_url,) = trained["model"].predict(url, conf=0.01)
        (from_file,) = trained["model"].predict(str(folder / "000002.jpg"), conf=0.01)
        assert from_url.source == url
        np.testing.assert_array_equal(from_url.boxes, from_file.boxes)
        with pytest.raises(DataError, match=r"could not fetch .*missing\.jpg: HTTP 404"):
            trained["model"].predict(f"http://127.0.0.1:{server.server_port}/missing.jpg")
    finally:
        server.shutdown()


def test_an_exif_rotated_photo_is_detected_upright(coco128, trained, tmp_path) -> None:
    """A JPEG stored sideways with EXIF orientation 6 (a phone held upright): the boxes are
    those of the upright picture a viewer shows, with its width and height."""
    from PIL import Image

    upright = cv2.cvtColor(
        cv2.imread(str(coco128 / "images" / "train2017" / "000000000009.jpg")),
        cv2.COLOR_BGR2RGB,
    )
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    model = trained["model"]
    (result,) = model.predict(str(tmp_path / "phone.jpg"), conf=0.01)
    assert result.exif_orientation == 6
    assert result.size == (upright.shape[1], upright.shape[0])  # the displayed frame
    decoded = cv2.cvtColor(cv2.imread(str(tmp_path / "phone.jpg"), cv2.IMREAD_IGNORE_ORIENTATION
                                      | cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)  # fmt: skip
    (reference,) = model.predict(np.ascontiguousarray(np.rot90(decoded, -1)), conf=0.01)
    np.testing.assert_array_equal(result.boxes, reference.boxes)
    assert len(result) > 0


def test_options_classes_max_det_and_label_files(trained, tmp_path) -> None:
    model = trained["model"]
    val = str(trained["data"] / "val")
    everything = model.predict(val, conf=0.001)
    assert max(len(r) for r in everything) > 2
    capped = model.predict(val, conf=0.001, max_det=2)
    assert all(len(r) == min(2, len(e)) for r, e in zip(capped, everything))
    only = model.predict(val, conf=0.001, classes=["square"])
    assert all(set(r.class_names) <= {"square"} for r in only) and any(len(r) for r in only)
    assert [len(r) for r in model.predict(val, conf=0.001, classes=[1])] == [len(r) for r in only]
    with pytest.raises(ConfigError, match=r"no class named .sqare.\. Did you mean .square."):
        model.predict(val, classes=["sqare"])
    out = tmp_path / "out"
    model.predict(val, conf=0.001, max_det=3, save_dir=out, save_txt=True, save_conf=True,
                  save_crop=True)  # fmt: skip
    lines = (out / "labels" / "000001.txt").read_text().splitlines()
    assert 0 < len(lines) <= 3 and all(len(line.split()) == 6 for line in lines)
    assert list((out / "crops").glob("*/000001_*.jpg"))


def test_each_cli_run_gets_its_own_folder(trained, tmp_path) -> None:
    args = ("predict", str(trained["data"] / "val" / "000001.jpg"), "--checkpoint",
            str(trained["ckpt"]), "--output", str(tmp_path / "predict"))  # fmt: skip
    for _ in range(2):
        res = cli(*args)
        assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predict", "predict_2"]
    assert "1 image(s)" in res.stderr and "results: " in res.stderr
    assert res.stdout == ""  # results go to a file (--json prints them)


@pytest.mark.parametrize("side", [128, 1920])
def test_labels_are_sized_to_the_image_and_kept_inside(side: int) -> None:
    image = np.full((side, side, 3), 255, np.uint8)
    boxes = np.array([[0, 0, side * 0.4, side * 0.3]], np.float32)  # a box at the top-left
    out = draw(image, boxes, np.array([0.87]), np.array([0]), ["a rather long label"])
    width = max(round(side * 0.003), 2)
    assert (out[side // 10, :width] != 255).any()  # the box's left edge is width px wide
    painted = np.argwhere((out != 255).any(axis=2))
    assert painted.min() >= 0 and painted[:, 0].max() < side and painted[:, 1].max() < side
    assert (out[: side // 20] != 255).any()  # the label sits inside the image, at the top


def test_result_json_round_trip(trained) -> None:
    (r,) = trained["model"].predict(str(trained["data"] / "val" / "000003.jpg"), conf=0.01)
    assert isinstance(r, Result)
    data = json.loads(r.to_json())
    assert data["width"] == 64 and len(data["detections"]) == len(r)
    assert r.plot().shape == (64, 64, 3)
