"""Dataset plugin ``voc``: Pascal VOC XML (JPEGImages/, Annotations/, ImageSets/Main/)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from yoloqat.data.source import ClassListDataset

#: The 20 Pascal VOC classes, in the usual index order.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


def voc(
    *,
    data_dir: str,
    train_split: Optional[str] = "train",
    val_split: Optional[str] = "val",
    classes: Union[str, list, None] = None,
    use_difficult: bool = False,
    category_ids: Optional[list] = None,
) -> ClassListDataset:
    """Pascal VOC XML: JPEGImages/, Annotations/*.xml, ImageSets/Main/{train,val}.txt.

    Each id listed in ``ImageSets/Main/<split>.txt`` has ``Annotations/<id>.xml`` (one
    ``<object>`` per box: ``<name>``, ``<difficult>``, ``<bndbox>`` with 1-based inclusive
    ``xmin ymin xmax ymax``, read as the pixel edges ``xmin - 1 .. xmax``) and the image
    ``JPEGImages/<filename>`` (the XML's ``<filename>``, else ``<id>.jpg``). An XML that is
    missing, not well-formed, lacks a box field or names an unknown class is a DataError
    naming the file and the field; boxes with non-positive size are dropped, boxes outside
    the ``<size>`` are clipped (both counted); unreadable images are skipped and counted.
    Image ids: the ids' numbers when every id is a unique number (``000005`` -> 5), else
    1, 2, ... in list order.

    Args:
        data_dir: the VOC root (e.g. ``VOCdevkit/VOC2007``).
        train_split: the ``ImageSets/Main`` list of the training images (``trainval`` for
            the usual VOC2007 recipe); None: no training split.
        val_split: the list of the validation images (``test`` for VOC2007 test); None:
            no validation split.
        classes: the class names in index order: a list or a file (one name per line, or
            a yaml with ``names``); default the 20 VOC classes.
        use_difficult: False (default, as VOC's own evaluation): ``difficult`` objects are
            no training targets and are ignore regions in evaluation (detections on them
            count neither as hits nor as false positives). True: ordinary objects.
        category_ids: the ``category_id`` written in COCO-json detections for each class
            index (default ``0 .. n-1``).
    """
    from yoloqat.plugins.voc.reader import build

    return build(
        data_dir=data_dir,
        splits={"train": train_split, "val": val_split},
        classes=list(VOC_CLASSES) if classes is None else classes,
        use_difficult=use_difficult,
        category_ids=category_ids,
    )


@hookimpl
def yoloqat_datasets() -> dict:
    """The bundled Pascal VOC dataset plugin."""
    return {"voc": voc}
