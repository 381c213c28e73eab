"""The ``voc`` dataset plugin: coco128 as VOC XML, difficult objects, bad input, train/eval."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from dataset_layouts import coco_to_voc, score_stats, synthetic_detections, voc_xml
from tiny import cli

from yoloqat.core.errors import DataError
from yoloqat.core.events import subscribe
from yoloqat.core.ground_truth import coco_ground_truth
from yoloqat.data.imageio import ImageReadError
from yoloqat.data.loader import EvalLoader, TrainLoader
from yoloqat.engine.evaluate import ground_truth
from yoloqat.plugins.coco import coco
from yoloqat.plugins.voc import VOC_CLASSES, voc


def test_coco128_as_voc_xml_scores_as_coco(coco128: Path, tmp_path: Path) -> None:
    ann = coco128 / "annotations" / "instances_train2017.json"
    names = coco_to_voc(ann, coco128 / "images" / "train2017", tmp_path, "val")
    c = coco(val_images=str(coco128 / "images" / "train2017"), val_annotations=str(ann))
    v = voc(data_dir=str(tmp_path), train_split=None, classes=names, category_ids=c.category_ids)
    assert v.class_names == c.class_names
    vs, cs = v.val_source(), c.val_source()
    assert len(vs) == 128 and vs.bad_boxes == {"dropped": 0, "clipped": 0}
    for i in (0, 5, 77):
        a, b = vs.load(i), cs.load(i)
        assert (a.image_id, a.orig_size) == (b.image_id, b.orig_size)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)  # float32 of the same values
    coco_ann = cs.annotations()
    dets = synthetic_detections(coco_ann, c.category_ids, seed=1)
    plain = [
        dataclasses.replace(
            r, boxes=r.boxes[~r.crowd], classes=r.classes[~r.crowd], crowd=None, area=None
        )
        for r in coco_ann
    ]  # what VOC XML holds of the COCO ground truth: every number identical
    want = score_stats(dets, coco_ground_truth(plain, c.category_ids))
    assert score_stats(dets, ground_truth(vs, v.category_ids)) == want
    assert 0.2 < want["AP"] < 0.4


def _voc(root: Path, xmls: dict[str, str], split: str = "train", images: int = 0) -> Path:
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for stem, text in xmls.items():
        (root / "Annotations" / f"{stem}.xml").write_text(text)
    for i, stem in enumerate(list(xmls)[: images or len(xmls)]):
        img = np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "JPEGImages" / f"{stem}.jpg"), img)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in xmls))
    return root


def test_difficult_objects_are_ignore_regions_by_default(tmp_path: Path) -> None:
    xml = voc_xml(
        "000001.jpg", (64, 48), [("dog", [5, 5, 24, 24], 0), ("dog", [35, 10, 60, 40], 1)]
    )
    root = _voc(tmp_path, {"000001": xml})
    plain = voc(data_dir=str(root), val_split=None)
    sample = plain.train_source().load(0)
    np.testing.assert_allclose(sample.boxes, [[4, 4, 24, 24, VOC_CLASSES.index("dog")]])
    (gt,) = plain.train_source().annotations()
    assert gt.crowd.tolist() == [False, True] and gt.image_id == 1
    hard = voc(data_dir=str(root), val_split=None, use_difficult=True)
    assert len(hard.train_source().load(0).boxes) == 2

    dog = VOC_CLASSES.index("dog")
    on_easy = {"image_id": 1, "category_id": dog, "bbox": [4, 4, 20, 20], "score": 0.5}
    on_hard = {"image_id": 1, "category_id": dog, "bbox": [34, 9, 26, 31], "score": 0.9}
    ignored = ground_truth(plain.train_source(), plain.category_ids)
    # a detection on the difficult dog is neither a hit nor a false positive
    assert score_stats([on_easy], ignored)["AP50"] == pytest.approx(1.0)
    both, easy = score_stats([on_easy, on_hard], ignored), score_stats([on_easy], ignored)
    for key in ("AP", "AP50", "AP75", "AR10", "AR100"):  # (AR1: the top-1 slot is taken)
        assert both[key] == easy[key], key
    counted = ground_truth(hard.train_source(), hard.category_ids)
    assert score_stats([on_easy, on_hard], counted)["AP50"] == pytest.approx(1.0)
    assert score_stats([on_easy], counted)["AP50"] < 0.6  # half the dogs found


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<annotation><object>", r"1\.xml: not well-formed XML \(.*line 1"),
        ("<root/>", r"1\.xml: the root element is <root>"),
        (voc_xml("1.jpg", (64, 48), [("dgo", [1, 1, 5, 5], 0)]), r"class 'dgo' is not in"),
        (
            voc_xml("1.jpg", (64, 48), [("cat", [1, 1, 5, 5], 0)]).replace("<xmax>5</xmax>", ""),
            r"1\.xml: object 1 \(cat\) has no <xmax>",
        ),
        (
            voc_xml("1.jpg", (64, 48), [("cat", [1, 1, 5, 5], 0)]).replace(
                ">1</ymin>", ">a</ymin>"
            ),
            r"object 1 \(cat\) <ymin> is not a number: 'a'",
        ),
        (
            voc_xml("1.jpg", (64, 48), [("cat", [1, 1, 5, 5], 0)]).replace(
                "<difficult>0", "<difficult>yes"
            ),
            r"<difficult> must be 0 or 1, got 'yes'",
        ),
    ],
)
def test_bad_xml_names_file_and_field(tmp_path: Path, xml: str, message: str) -> None:
    ds = voc(data_dir=str(_voc(tmp_path, {"1": xml})), val_split=None)
    with pytest.raises(DataError, match=message):
        ds.train_source()


def test_missing_files_are_named(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"1": voc_xml("1.jpg", (64, 48), [])})
    with pytest.raises(DataError, match=r"VOC val list not found: .*ImageSets/Main/val\.txt"):
        voc(data_dir=str(root))
    (root / "ImageSets" / "Main" / "train.txt").write_text("1\n2\n")
    with pytest.raises(DataError, match=r"VOC annotation not found: .*Annotations/2\.xml"):
        voc(data_dir=str(root), val_split=None).train_source()
    with pytest.raises(DataError, match="VOC JPEGImages folder not found"):
        (root / "JPEGImages" / "1.jpg").unlink()
        (root / "JPEGImages").rmdir()
        voc(data_dir=str(root), val_split=None)


def test_bad_boxes_and_unreadable_images_counted(tmp_path: Path) -> None:
    seen: list = []
    unsubscribe = subscribe(seen.append)
    xmls = {
        "a": voc_xml("a.jpg", (64, 48), [("cat", [1, 1, 10, 10], 0), ("cat", [20, 5, 10, 30], 0)]),
        "b": voc_xml("b.jpg", (64, 48), [("cat", [50, 40, 80, 60], 0)]),  # clipped to 64x48
        "c": voc_xml("c.jpg", None, [("cat", [100, 1, 120, 10], 0)]),  # no <size>: header
        "d": voc_xml("d.jpg", (64, 48), [("cat", [1, 1, 10, 10], 0)]),
    }
    root = _voc(tmp_path, xmls, split="val")
    whole = (root / "JPEGImages" / "d.jpg").read_bytes()
    (root / "JPEGImages" / "d.jpg").write_bytes(whole[: len(whole) // 2])
    try:
        src = voc(data_dir=str(root), train_split=None).val_source()
    finally:
        unsubscribe()
    assert src.bad_boxes == {"dropped": 2, "clipped": 1}  # xmax < xmin; outside the image
    assert any("2 boxes" in e.data["message"] for e in seen if e.kind == "warning")
    assert src.load(0).bad_boxes == (1, 0) and src.load(2).boxes.shape == (0, 5)
    cat = VOC_CLASSES.index("cat")
    np.testing.assert_allclose(src.load(1).boxes, [[49, 39, 64, 48, cat]])
    assert src.image_ids.tolist() == [1, 2, 3, 4]  # ids that are not numbers: positions
    with pytest.raises(ImageReadError, match=r"truncated.*d\.jpg"):
        src.load(3)
    loader = EvalLoader(src, batch_size=2, testing_shape=64)
    ids = np.concatenate([b["image_id"] for b in loader]).tolist()
    assert ids == [1, 2, 3] and loader.stats["skipped_images"] == 1
    train = voc(data_dir=str(_voc(tmp_path / "t", xmls)), val_split=None).train_source()
    tl = TrainLoader(train, batch_size=2, multi_scale=(64,))
    list(tl.epoch(0))
    assert tl.stats["bad_boxes_dropped"] == 2 and tl.stats["bad_boxes_clipped"] == 1


def test_train_then_eval_a_voc_checkpoint(tmp_path: Path) -> None:
    """One tiny epoch on VOC XML; ``eval --pretrained`` finds the checkpoint's own dataset."""
    import mindspore as ms

    from yoloqat.core.config import apply_overrides, load_config
    from yoloqat.data.synth import make_synthetic_coco
    from yoloqat.engine.training.trainer import Trainer

    synth = tmp_path / "synth"
    make_synthetic_coco(synth, train=8, val=4, size=64, seed=5, num_classes=3)
    data = tmp_path / "voc"
    for split in ("train", "val"):
        ann = synth / "annotations" / f"instances_{split}.json"
        names = coco_to_voc(ann, synth / split, data, split, prefix=f"{split}_")
    cfg = apply_overrides(
        load_config("synth_tiny"),
        [
            f"dataset={{name: voc, data_dir: {data}, classes: [{', '.join(names)}]}}",
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
    out = tmp_path / "ev"
    res = cli(
        *("eval", "--pretrained", str(result.checkpoints[-1]), "--testing_shape", "64"),
        *("--output", str(out)),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert len([ln for ln in res.stdout.splitlines() if ln.startswith(" Average")]) == 12
    saved = json.loads(next(out.glob("*/eval.json")).read_text())
    assert saved["num_images"] == 4 and saved["num_detections"] > 0
