"""Data you can trust (issue 22, item 1): malformed datasets never train or score the wrong
thing. Each case is a real annotation file (or label folder, or plugin source) on a tmp
dataset; each problem is an error naming the file, the record and the field (exit 3), or,
where a user would go on, a warning with the count that ``--strict-data`` makes an error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny import cli

from yoloqat.core.contracts.dataset import CheckedDataset, ImageAnnotations, Sample
from yoloqat.core.errors import DataError
from yoloqat.core.events import subscribe
from yoloqat.core.limits import STRICT_ENV
from yoloqat.data.coco import CocoSource
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.plugins.yolo import yolo
from yoloqat.testing import check_data_source, check_dataset


@pytest.fixture
def warnings_seen():
    seen = []
    unsubscribe = subscribe(lambda e: seen.append(e.data["message"]) if e.kind == "warning" else 0)
    yield seen
    unsubscribe()


def _images(root: Path, n: int) -> list[dict]:
    (root / "img").mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(1, n + 1):
        pixels = np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "img" / f"{i}.jpg"), pixels)
        out.append({"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48})
    return out


def _ann(i: int, image_id, bbox=(5, 5, 20, 20), **extra) -> dict:
    return {"id": i, "image_id": image_id, "category_id": 1, "bbox": list(bbox), **extra}


def _write(root: Path, images: list, anns: list | None, cats=None) -> Path:
    data = {"images": images, "categories": cats or [{"id": 1, "name": "a"}]}
    if anns is not None:
        data["annotations"] = anns
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path


def _source(root: Path, path: Path, training: bool = False) -> CocoSource:
    return CocoSource(root / "img", path, training=training)


# -- the reported cases ------------------------------------------------------------------


def test_two_images_sharing_an_id_is_an_error_naming_both(tmp_path: Path) -> None:
    images = _images(tmp_path, 2)
    images[1]["id"] = 1  # 2.jpg claims 1.jpg's id: pycocotools would keep 2.jpg with 1's boxes
    path = _write(tmp_path, images, [_ann(1, 1)])
    for training in (True, False):
        with pytest.raises(DataError) as err:
            _source(tmp_path, path, training)
        assert str(err.value) == (
            f"{path}: images[0] ('1.jpg') and images[1] ('2.jpg') have the same id 1"
        )


def test_a_string_image_id_is_an_error_not_a_lost_box(tmp_path: Path) -> None:
    path = _write(tmp_path, _images(tmp_path, 2), [_ann(7, 1), _ann(8, "2")])
    with pytest.raises(DataError) as err:
        _source(tmp_path, path)
    assert str(err.value) == (
        f"{path}: annotation id 8 (annotations[1]): 'image_id' is '2' (a string), expected "
        "the integer id of an image"
    )
    images = _images(tmp_path, 2)
    images[0]["id"] = "1"
    path = _write(tmp_path, images, [_ann(7, 2)])
    with pytest.raises(DataError, match=re.escape("images[0]: 'id' is '1' (a string), expected")):
        _source(tmp_path, path)


@pytest.mark.parametrize("annotations", [[], None], ids=["empty", "missing"])
def test_no_annotations_is_an_error_naming_the_file(tmp_path: Path, annotations) -> None:
    path = _write(tmp_path, _images(tmp_path, 2), annotations)
    state = "empty" if annotations == [] else "missing"
    with pytest.raises(DataError) as err:
        _source(tmp_path, path)
    assert str(err.value) == (
        f"{path} has no annotations (its 'annotations' list is {state}): nothing to train on "
        "or to score against"
    )


def test_orphan_annotations_are_counted_and_strict_data_makes_them_an_error(
    tmp_path: Path, warnings_seen, monkeypatch
) -> None:
    anns = [_ann(1, 1), _ann(2, 99), _ann(3, 98), _ann(4, 2)]
    path = _write(tmp_path, _images(tmp_path, 2), anns)
    src = _source(tmp_path, path)
    assert [len(a.boxes) for a in src.annotations()] == [1, 1]  # the orphans are not scored
    (line,) = [w for w in warnings_seen if "no image has" in w]
    assert line == (
        f"{path}: 2 annotation(s) name an image_id that no image has (first: annotations[1], "
        "id 2, image_id 99); they are ignored"
    )
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(DataError, match=re.escape("2 annotation(s) name an image_id")):
        _source(tmp_path, path)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d["images"][1].update(file_name="1.jpg"),
            "images[0] and images[1] (id 2) name the same file_name '1.jpg'",
        ),
        (
            lambda d: d["images"][0].update(width="64"),
            "image id 1 (images[0]): 'width' is '64' (a string), expected a number of pixels",
        ),
        (
            lambda d: d["images"][1].update(height=-48),
            "image id 2 (images[1]): 'height' is -48 (int), expected a number of pixels",
        ),
        (
            lambda d: d["annotations"][0].update(bbox=[5, None, 20, 20]),
            "annotation id 1 (annotations[0]) has no valid 'bbox' (expected [x, y, w, h] of "
            "numbers, got [5, None, 20, 20])",
        ),
        (
            lambda d: d["annotations"][0].update(bbox=[5, 5, True, 20]),
            "annotation id 1 (annotations[0]) has no valid 'bbox'",
        ),
        (
            lambda d: d["annotations"][0].update(iscrowd=2),
            "annotation id 1 (annotations[0]): 'iscrowd' is 2 (int), expected 0 or 1",
        ),
        (
            lambda d: d["annotations"][0].update(area="big"),
            "annotation id 1 (annotations[0]): 'area' is 'big' (a string), expected a number",
        ),
        (
            lambda d: d["annotations"][0].update(id="1"),
            "annotations[0]: 'id' is '1' (a string), expected an integer",
        ),
        (
            lambda d: d["categories"].append({"id": 1, "name": "b"}),
            "categories[0] and categories[1] have the same id 1",
        ),
        (
            lambda d: d.update(images={"1": "1.jpg"}),
            "has a dict as its 'images' list",
        ),
    ],
    ids=[
        "same-file",
        "width-str",
        "height-negative",
        "bbox-null",
        "bbox-bool",
        "iscrowd",
        "area",
        "ann-id",
        "category-id",
        "images-dict",
    ],
)
def test_wrong_records_are_named(tmp_path: Path, change, message: str) -> None:
    path = _write(tmp_path, _images(tmp_path, 2), [_ann(1, 1), _ann(2, 2)])
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        _source(tmp_path, path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_repeated_annotation_ids_keep_both_boxes_with_a_warning(
    tmp_path: Path, warnings_seen
) -> None:
    path = _write(tmp_path, _images(tmp_path, 2), [_ann(5, 1), _ann(5, 2)])
    src = _source(tmp_path, path)
    assert [len(a.boxes) for a in src.annotations()] == [1, 1]
    assert any("1 annotation(s) reuse the id of an earlier one" in w for w in warnings_seen)


def test_training_images_without_a_usable_box_is_an_error_naming_the_file(tmp_path: Path):
    path = _write(tmp_path, _images(tmp_path, 2), [_ann(1, 1, (5, 5, 1, 1))])
    with pytest.raises(DataError) as err:
        _source(tmp_path, path, training=True)
    assert str(err.value) == (
        f"{path}: none of its 2 images has a box wider and taller than 1 px: nothing to train on"
    )


def test_nan_boxes_are_still_dropped_and_counted_but_strict_data_refuses_them(
    tmp_path: Path, monkeypatch
) -> None:
    anns = [_ann(1, 1), _ann(2, 2), _ann(3, 2, (1, 1, float("nan"), 3))]
    path = _write(tmp_path, _images(tmp_path, 2), anns)
    assert _source(tmp_path, path, training=True).bad_boxes == {"dropped": 1, "clipped": 0}
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(DataError, match="1 boxes with non-positive or NaN size"):
        _source(tmp_path, path, training=True)


# -- the same through the commands -------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_coco(out, train=4, val=2, size=64, seed=3, num_classes=3)
    return out


def _broken_copy(synth: Path, tmp_path: Path, split: str, change) -> Path:
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synth, root)
    path = root / "annotations" / f"instances_{split}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return root


def _tiny_train(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        *extra, "train", "--config", "synth_tiny", "--data_dir", str(root), "--ckpt_path",
        str(out), "--per_batch_size", "2", "--training_shape", "64", "--max_epoch", "1",
        "--set", "model.num_classes=3",
    ]  # fmt: skip


def test_train_on_duplicate_ids_and_on_no_annotations_fails_with_exit_3(synth, tmp_path) -> None:
    def dup(d):
        d["images"][1]["id"] = d["images"][0]["id"]

    root = _broken_copy(synth, tmp_path / "dup", "train", dup)
    res = cli(*_tiny_train(root, tmp_path / "out"))
    assert res.returncode == 3, res.stderr
    assert "have the same id" in res.stderr and "instances_train.json" in res.stderr
    root = _broken_copy(synth, tmp_path / "none", "train", lambda d: d.update(annotations=[]))
    res = cli(*_tiny_train(root, tmp_path / "out"))
    assert res.returncode == 3, res.stderr
    path = root / "annotations" / "instances_train.json"
    assert f"error: {path} has no annotations" in " ".join(res.stderr.split())
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_strict_data_is_a_global_option(synth, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(STRICT_ENV, "")  # the option sets it in this process: undone after

    def orphan(d):
        d["annotations"].append({**d["annotations"][0], "id": 999, "image_id": 12345})

    root = _broken_copy(synth, tmp_path, "train", orphan)
    res = cli(*_tiny_train(root, tmp_path / "out", "--strict-data"))
    assert res.returncode == 3, res.stderr
    assert "1 annotation(s) name an image_id that no image has" in " ".join(res.stderr.split())


# -- every dataset plugin: the core check when a source is opened -------------------------


class _Source:
    """A third-party source over in-memory records (what a plugin might build)."""

    def __init__(self, records: list[ImageAnnotations]) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, index: int) -> Path:
        return Path(self.records[index].file_name)

    def annotations(self) -> list[ImageAnnotations]:
        return self.records

    def load(self, index: int) -> Sample:
        rec = self.records[index]
        x, y, w, h = np.asarray(rec.boxes, np.float64).reshape(-1, 4).T
        boxes = np.stack([x, y, x + w, y + h, np.asarray(rec.classes)], 1).astype(np.float32)
        return Sample(np.zeros((48, 64, 3), np.uint8), boxes, int(rec.image_id), (64, 48))


class _Dataset:
    class_names = ("a", "b")
    num_classes = 2
    category_ids = (1, 2)

    def __init__(self, records: list[ImageAnnotations]) -> None:
        self.records = records

    def train_source(self) -> _Source:
        return _Source(self.records)

    def val_source(self) -> _Source:
        return _Source(self.records)


def _rec(image_id, name: str, boxes=((1, 1, 5, 5),), classes=(0,), **kw) -> ImageAnnotations:
    return ImageAnnotations(
        image_id=image_id,
        file_name=name,
        width=kw.pop("width", 64),
        height=48,
        boxes=np.asarray(boxes, **({"dtype": kw.pop("dtype")} if "dtype" in kw else {})),
        classes=np.asarray(classes, np.int64),
    )


def _toy(records: list[ImageAnnotations]):
    def toy():
        """A third-party dataset over in-memory records."""
        return _Dataset(records)

    return toy


@pytest.mark.parametrize(
    "records, message",
    [
        ([_rec(1, "a.jpg"), _rec(1, "b.jpg")], "images 0 and 1 have the same image_id 1"),
        ([_rec("1", "a.jpg")], "image 0 (a.jpg): image_id is '1' (str), expected an integer"),
        ([_rec(1, "a.jpg"), _rec(2, "a.jpg")], "images 0 and 1 are the same file 'a.jpg'"),
        ([_rec(1, "a.jpg", boxes=(), classes=())], "has no boxes in any of its 1 images"),
        (
            [_rec(1, "a.jpg", boxes=(("1", "1", "5", "5"),), dtype=object)],
            "image 0 (a.jpg): boxes are object values, expected numbers",
        ),
        ([_rec(1, "a.jpg", classes=(2,))], "image 0 (a.jpg): class index 2 is not in 0..1"),
        ([_rec(1, "a.jpg", width="64")], "image 0 (a.jpg): width is '64' (str), expected"),
        ([], "has no images"),
    ],
    ids=["dup-id", "str-id", "dup-file", "no-boxes", "str-boxes", "class", "width", "empty"],
)
def test_a_third_party_source_gets_the_same_checks(records, message: str) -> None:
    # through yoloqat.testing (a plugin author's tests) ...
    with pytest.raises(DataError, match=re.escape(message)):
        check_dataset(_toy(records))
    with pytest.raises(DataError, match=re.escape(message)):
        check_data_source(_Source(records), num_classes=2)
    # ... and through the pipeline's wrapper, when the source is opened
    checked = CheckedDataset(_Dataset(records), plugin="acme", name="toy")
    with pytest.raises(DataError, match=re.escape(message)) as err:
        checked.train_source()
    assert str(err.value).startswith("the train split of dataset 'toy'")
    assert err.value.exit_code == 3


def test_a_good_third_party_source_passes() -> None:
    records = [
        _rec(1, "a.jpg"),
        _rec(2, "b.jpg", boxes=((2, 2, 9, 9), (3, 3, 4, 4)), classes=(1, 0)),
    ]
    summary = check_data_source(_Source(records), num_classes=2)
    assert (summary.images, summary.boxes, summary.invalid_boxes) == (2, 3, 0)
    assert check_dataset(_toy(records)).num_classes == 2


def _yolo_root(tmp_path: Path, labels: dict[str, str]) -> Path:
    root = tmp_path / "yolo"
    for split in ("train",):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for stem, text in labels.items():
            cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), np.zeros((8, 8, 3), np.uint8))
            (root / "labels" / split / f"{stem}.txt").write_text(text)
    return root


def test_yolo_without_a_single_box_is_an_error(tmp_path: Path) -> None:
    root = _yolo_root(tmp_path, {"1": "", "2": ""})
    with pytest.raises(DataError, match=r"the train split of dataset 'yolo' \(yolo train .*\) "):
        check_dataset(yolo, data_dir=str(root), names=["a"])


def test_yolo_image_lists_stay_in_the_dataset_and_list_each_image_once(tmp_path: Path) -> None:
    root = _yolo_root(tmp_path, {"1": "0 0.5 0.5 0.2 0.2\n", "2": ""})
    outside = tmp_path / "elsewhere.jpg"
    cv2.imwrite(str(outside), np.zeros((8, 8, 3), np.uint8))
    listing = root / "train.txt"
    listing.write_text("./images/train/1.jpg\n../elsewhere.jpg\n")
    with pytest.raises(DataError) as err:
        yolo(data_dir=str(root), train="train.txt", names=["a"]).train_source()
    assert str(err.value) == (f"{listing}:2: '{outside}' points outside the dataset folder {root}")
    listing.write_text("./images/train/1.jpg\nimages/train/2.jpg\nimages/train/1.jpg\n")
    with pytest.raises(DataError, match=re.escape(f"{listing}:3: images/train/1.jpg is listed")):
        yolo(data_dir=str(root), train="train.txt", names=["a"]).train_source()


def test_voc_filename_outside_jpegimages_is_an_error(tmp_path: Path) -> None:
    from yoloqat.plugins.voc import voc

    root = tmp_path / "VOC"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "secret.jpg"), np.zeros((8, 8, 3), np.uint8))
    (root / "ImageSets" / "Main" / "train.txt").write_text("1\n")
    xml = root / "Annotations" / "1.xml"
    xml.write_text(
        "<annotation><filename>../../secret.jpg</filename><size><width>8</width>"
        "<height>8</height></size><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    with pytest.raises(DataError) as err:
        voc(data_dir=str(root), classes=["cat"], val_split=None).train_source()
    assert str(err.value) == (
        f"{xml}: <filename>: '../../secret.jpg' points outside the JPEGImages folder "
        f"{root / 'JPEGImages'}"
    )
