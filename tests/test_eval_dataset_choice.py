"""Which dataset ``eval`` uses: flags, the checkpoint's block, or the folder's layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_layouts import coco_to_voc, coco_to_yolo

from yoloqat.core.errors import UsageError
from yoloqat.data.layout import detect_dataset
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.evaluate import dataset_overrides, eval_dataset


def _choose(cfg=None, meta=None, **flags):
    args = {"data_dir": None, "images": None, "annotations": None, **flags}
    overrides = args.pop("overrides", ())
    return eval_dataset(cfg or {}, meta or {}, explicit=False, overrides=overrides, **args)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    synth = root / "coco"
    make_synthetic_coco(synth, train=2, val=2, size=64, seed=2, num_classes=2)
    ann = synth / "annotations" / "instances_val.json"
    names = coco_to_yolo(ann, synth / "val", root / "yolo", "val")
    (root / "yolo" / "obj.names").write_text("\n".join(names) + "\n")
    coco_to_voc(ann, synth / "val", root / "voc", "val")
    (root / "plain").mkdir()
    return {"coco": synth, "yolo": root / "yolo", "voc": root / "voc", "plain": root / "plain"}


def test_layout_names_the_plugin(layouts: dict[str, Path]) -> None:
    for name in ("coco", "yolo", "voc"):
        assert detect_dataset(layouts[name]) == {"name": name, "data_dir": str(layouts[name])}
    assert detect_dataset(layouts["plain"]) is None
    ds = _choose(data_dir=str(layouts["yolo"]))  # no config, no checkpoint: an ONNX model
    assert ds.wrapped.name == "yolo" and len(ds.val_source()) == 2
    voc = _choose(data_dir=str(layouts["voc"]), overrides=["dataset.train_split=null"])
    assert voc.wrapped.name == "voc" and voc.num_classes == 20
    with pytest.raises(UsageError, match="cannot tell the dataset layout") as err:
        _choose(data_dir=str(layouts["plain"]))
    assert "--dataset" in (err.value.hint or "")
    with pytest.raises(UsageError, match="no dataset to evaluate on"):
        _choose()


def test_flags_and_the_checkpoint_block(layouts: dict[str, Path], coco128: Path) -> None:
    ds = _choose(data_dir=str(coco128), dataset="yolo", overrides=["dataset.val=images/train2017"])
    assert ds.num_classes == 80 and len(ds.val_source()) == 128
    stored = {"dataset": {"name": "yolo", "data_dir": "/elsewhere", "names": ["p", "q"]}}
    meta = {"config": stored}
    kept = _choose(meta=meta, data_dir=str(layouts["yolo"]))  # --data_dir: block kept
    assert kept.class_names == ["p", "q"]
    again = _choose(meta=meta, data_dir=str(layouts["yolo"]), dataset="yolo")
    assert again.class_names == ["p", "q"]
    switched = _choose(meta=meta, data_dir=str(layouts["coco"]), dataset="coco")
    assert switched.wrapped.name == "coco" and switched.class_names == ["circle", "square"]
    with pytest.raises(UsageError, match="not both"):
        dataset_overrides({}, None, "img", "ann.json", "yolo")
