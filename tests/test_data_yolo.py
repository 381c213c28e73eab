"""The ``yolo`` dataset plugin: coco128 against ``coco``, bad input, train and eval."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from dataset_layouts import coco_to_yolo, score_stats, synthetic_detections
from tiny import cli

from yoloqat.core.contracts.dataset import Dataset, DataSource
from yoloqat.core.errors import ConfigError, DataError
from yoloqat.core.events import subscribe
from yoloqat.core.ground_truth import coco_ground_truth
from yoloqat.data.coco import load_coco
from yoloqat.data.imageio import ImageReadError
from yoloqat.data.loader import EvalLoader, TrainLoader
from yoloqat.engine.evaluate import ground_truth
from yoloqat.plugins.coco import coco
from yoloqat.plugins.yolo import yolo


def _coco128(root: Path) -> tuple:
    ids = [int(r.split("\t")[1]) for r in (root / "classes.tsv").read_text().splitlines()[1:]]
    y = yolo(data_dir=str(root), val="images/train2017", category_ids=ids)
    c = coco(
        val_images=str(root / "images" / "train2017"),
        val_annotations=str(root / "annotations" / "instances_train2017.json"),
    )
    return y, c, ids


def test_coco128_yolo_reads_the_same_boxes_as_coco(coco128: Path) -> None:
    y, c, ids = _coco128(coco128)
    assert isinstance(y, Dataset) and isinstance(y.val_source(), DataSource)
    assert y.class_names == c.class_names and y.category_ids == c.category_ids == ids
    yv, cv = y.val_source(), c.val_source()
    assert len(yv) == len(cv) == 128 and yv.bad_boxes == {"dropped": 0, "clipped": 0}
    assert yv.image_ids.tolist() == cv.image_ids.tolist()  # numeric file names -> COCO ids
    worst = 0.0
    for i in range(0, 128, 9):
        a, b = yv.load(i), cv.load(i)
        assert (a.image_id, a.orig_size) == (b.image_id, b.orig_size)
        np.testing.assert_array_equal(a.classes, b.classes)
        if len(a.boxes):
            worst = max(worst, float(np.abs(a.boxes[:, :4] - b.boxes[:, :4]).max()))
    assert worst < 1e-3  # the txt files' 6-digit rounding, at 640 px


def _touches(box, regions) -> bool:
    x, y, w, h = box
    return any(
        min(x + w, rx + rw) > max(x, rx) and min(y + h, ry + rh) > max(y, ry)
        for rx, ry, rw, rh in regions
    )


def test_coco128_same_detections_same_ap_through_coco_and_yolo(coco128: Path) -> None:
    y, c, ids = _coco128(coco128)
    coco_ann = c.val_source().annotations()
    dets = synthetic_detections(coco_ann, ids)
    via_file = score_stats(dets, load_coco(coco128 / "annotations" / "instances_train2017.json"))
    via_coco = score_stats(dets, ground_truth(c.val_source(), c.category_ids))
    via_yolo = score_stats(dets, ground_truth(y.val_source(), y.category_ids))
    # 1. the coco plugin's ground truth scores exactly as pycocotools on the file itself
    assert via_coco == via_file
    assert 0.2 < via_coco["AP"] < 0.4  # the detections are neither perfect nor useless
    # 2. yolo == the COCO ground truth as far as YOLO txt can express it (no crowd regions,
    #    box areas): all 12 numbers identical, the txt rounding (< 1e-3 px) changes nothing
    plain = [
        dataclasses.replace(
            r, boxes=r.boxes[~r.crowd], classes=r.classes[~r.crowd], crowd=None, area=None
        )
        for r in coco_ann
    ]
    assert via_yolo == score_stats(dets, coco_ground_truth(plain, ids))
    # 3. against the file: recall numbers identical; AP/AP50/AP75 too when no detection
    #    touches one of the 10 crowd regions (which COCO ignores and txt cannot express);
    #    the size split differs (COCO's area is the segmentation area, txt has boxes only)
    for key in ("AR1", "AR10", "AR100"):
        assert via_yolo[key] == via_file[key]
    assert via_yolo["AP"] != via_file["AP"]
    crowd = {r.image_id: r.boxes[r.crowd] for r in coco_ann if r.crowd.any()}
    clear = [d for d in dets if not _touches(d["bbox"], crowd.get(d["image_id"], []))]
    assert len(clear) < len(dets)
    on_file = score_stats(clear, load_coco(coco128 / "annotations" / "instances_train2017.json"))
    on_yolo = score_stats(clear, ground_truth(y.val_source(), y.category_ids))
    for key in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100"):
        assert on_yolo[key] == on_file[key], key
    assert on_yolo["AP_small"] != on_file["AP_small"]


# -- bad input -------------------------------------------------------------------------


def _image(path: Path, seed: int = 0, size=(48, 64)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)


def _tiny(root: Path, labels: dict[str, str], n: int = 4, split: str = "train") -> Path:
    for i in range(1, n + 1):
        _image(root / "images" / split / f"{i}.jpg", i)
    for stem, text in labels.items():
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split / f"{stem}.txt").write_text(text)
    (root / "obj.names").write_text("a\nb\nc\n")
    return root


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n", r"1\.txt:2: expected 'class x_center"),
        ("0 0.5 abc 0.2 0.2\n", r"1\.txt:1: coordinate is not a number: 'abc'"),
        ("7 0.5 0.5 0.2 0.2\n", r"1\.txt:1: class 7 is not an index in 0\.\.2"),
        ("1.5 0.5 0.5 0.2 0.2\n", r"1\.txt:1: class 1\.5 is not an index"),
    ],
)
def test_malformed_label_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    ds = yolo(data_dir=str(_tiny(tmp_path, {"1": text})))
    with pytest.raises(DataError, match=message):
        ds.train_source()


def test_bad_boxes_dropped_clipped_and_counted(tmp_path: Path) -> None:
    seen: list = []
    unsubscribe = subscribe(seen.append)
    labels = {
        "1": "0 0.5 0.5 0.25 0.5\n1 0.5 0.5 0 0.2\n2 0.5 0.5 -0.1 0.2\n",  # good, 2 dropped
        "2": "0 nan 0.5 0.2 0.2\n1 0.95 0.5 0.2 0.2\n",  # NaN dropped, one clipped at x=1
        "3": "\n2 1.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2 0.3 0.3 0.2 0.3\n",  # outside; polygon
    }  # 4.jpg has no label file: no objects
    try:
        src = yolo(data_dir=str(_tiny(tmp_path, labels))).train_source()
    finally:
        unsubscribe()
    assert src.bad_boxes == {"dropped": 4, "clipped": 1}
    assert any("4 boxes" in e.data["message"] for e in seen if e.kind == "warning")
    first = src.load(0)
    assert first.orig_size == (64, 48) and first.bad_boxes == (2, 0)
    np.testing.assert_allclose(first.boxes, [[24, 12, 40, 36, 0]])
    np.testing.assert_allclose(src.load(1).boxes, [[54.4, 19.2, 64, 28.8, 1]], rtol=1e-6)
    np.testing.assert_allclose(src.load(2).boxes, [[12.8, 9.6, 32, 24, 0]], rtol=1e-6)
    assert src.load(3).boxes.shape == (0, 5)
    loader = TrainLoader(src, batch_size=2, multi_scale=(64,))
    list(loader.epoch(0))
    assert loader.stats["bad_boxes_dropped"] == 4 and loader.stats["bad_boxes_clipped"] == 1


def test_unreadable_images_skipped_and_counted(tmp_path: Path) -> None:
    root = _tiny(tmp_path, {str(i): "0 0.5 0.5 0.2 0.2\n" for i in range(1, 5)}, split="val")
    (root / "images" / "val" / "2.jpg").write_bytes(b"")
    (root / "images" / "val" / "3.jpg").write_bytes(b"not a jpeg")
    src = yolo(data_dir=str(root)).val_source()
    with pytest.raises(ImageReadError, match=r"empty.*2\.jpg"):
        src.load(1)
    loader = EvalLoader(src, batch_size=2, testing_shape=64)
    seen = np.concatenate([b["image_id"] for b in loader]).tolist()
    assert seen == [1, 4] and loader.stats["skipped_images"] == 2
    assert [r.image_id for r in src.annotations()] == [1, 2, 3, 4]


def test_class_names_from_list_file_yaml_and_data_yaml(tmp_path: Path) -> None:
    root = _tiny(tmp_path, {"1": "2 0.5 0.5 0.2 0.2\n"})
    assert yolo(data_dir=str(root)).class_names == ["a", "b", "c"]  # the one .names file
    assert yolo(data_dir=str(root), names=["x", "y", "z", "w"]).num_classes == 4
    (root / "n.yaml").write_text("names: {0: p, 1: q, 2: r}\n")
    assert yolo(data_dir=str(root), names="n.yaml").class_names == ["p", "q", "r"]
    data = tmp_path / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames: [u, v, w]\n")
    ds = yolo(data_dir=str(data))
    assert ds.class_names == ["u", "v", "w"] and len(ds.val_source()) == 4
    with pytest.raises(DataError, match="several candidates"):  # obj.names, n.yaml, data.yaml
        yolo(data_dir=str(root))
    with pytest.raises(DataError, match=r"'names' indices must be 0\.\.1"):
        (root / "n.yaml").write_text("names: {0: p, 2: r}\n")
        yolo(data_dir=str(root), names="n.yaml")


def test_missing_paths_are_named(tmp_path: Path) -> None:
    root = _tiny(tmp_path, {})
    with pytest.raises(DataError, match=r"val images not found: .*images/nope"):
        yolo(data_dir=str(root), val="images/nope")
    with pytest.raises(DataError, match="no val split"):
        yolo(data_dir=str(root)).val_source()  # images/val absent: only asking for it fails
    with pytest.raises(ConfigError, match="give data_dir"):
        yolo()


# -- train and eval --------------------------------------------------------------------


def test_train_then_eval_onnx_on_a_yolo_folder(tmp_path: Path) -> None:
    """One tiny epoch on a yolo dataset; ``eval --onnx M --data_dir D`` tells the layout,
    and the same model scores identically on the coco original of the data."""
    import mindspore as ms

    from yoloqat.core.config import apply_overrides, load_config
    from yoloqat.data.synth import make_synthetic_coco
    from yoloqat.deploy.onnx_export import export_onnx
    from yoloqat.engine.inference import load_detector
    from yoloqat.engine.training.trainer import Trainer

    synth = tmp_path / "synth"
    make_synthetic_coco(synth, train=8, val=4, size=64, seed=3, num_classes=3)
    data = tmp_path / "yolo"
    for split in ("train", "val"):
        names = coco_to_yolo(
            synth / "annotations" / f"instances_{split}.json", synth / split, data, split
        )
    (data / "classes.txt").write_text("\n".join(names) + "\n")
    cfg = apply_overrides(
        load_config("synth_tiny"),
        [
            f"dataset={{name: yolo, data_dir: {data}}}",
            f"train.ckpt_path={tmp_path / 'runs'}",
            "model.num_classes=3",
            "model.backbone.width=0.0625",
            "model.backbone.blocks=[1, 1, 1, 1, 1]",
            "model.head.width=0.0625",
            "data.training_shape=64",
            "train.per_batch_size=4",
            "train.max_epoch=1",
            "scheduler.T_max=1",
            "scheduler.warmup_epochs=0",
        ],
    )
    try:
        result = Trainer(cfg).run()
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert result.global_step == 2 and np.isfinite(result.losses).all()
    network, _, meta = load_detector(cfg, result.checkpoints[-1])
    assert meta["class_names"] == names and meta["config"]["dataset"]["name"] == "yolo"
    model = export_onnx(network, tmp_path / "m.onnx", input_size=64)
    runs = {}
    for name, folder in (("yolo", data), ("coco", synth)):
        out = tmp_path / f"ev_{name}"
        res = cli("eval", "--onnx", str(model), "--data_dir", str(folder), "--output", str(out))
        assert res.returncode == 0, res.stderr[-2000:]
        assert len([ln for ln in res.stdout.splitlines() if ln.startswith(" Average")]) == 12
        runs[name] = json.loads(next(out.glob("*/eval.json")).read_text())
    assert runs["yolo"]["num_images"] == 4 and runs["yolo"]["testing_shape"] == 64
    assert runs["yolo"]["num_detections"] == runs["coco"]["num_detections"] > 0
    assert runs["yolo"]["stats"] == runs["coco"]["stats"]
