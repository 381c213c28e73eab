"""Dataset plugin ``yolo``: the Ultralytics/Darknet layout (images/ + labels/*.txt + names)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from yoloqat.data.source import ClassListDataset


def yolo(
    *,
    data_dir: Optional[str] = None,
    train: Optional[str] = None,
    val: Optional[str] = None,
    names: Union[str, list, None] = None,
    category_ids: Optional[list] = None,
) -> ClassListDataset:
    """YOLO txt labels (Ultralytics/Darknet): images/<split>/, labels/<split>/*.txt, names.

    Each image ``.../images/<split>/x.jpg`` has its labels in ``.../labels/<split>/x.txt``
    (an image outside an ``images`` folder: ``x.txt`` beside it), one box per line:
    ``class x_center y_center width height``, normalised by the image size, ``class`` the
    0-based class index (a polygon line ``class x1 y1 x2 y2 ...`` counts as its bounding
    box). A missing label file means no objects. A malformed line or a class outside the
    names is a DataError naming file and line; boxes with NaN or non-positive size are
    dropped, boxes reaching outside the image are clipped (both counted); unreadable
    images are skipped and counted. Image ids: the file names' numbers when every stem is
    a unique number (COCO's ``000000000009.jpg`` -> 9), else 1, 2, ... in sorted order.

    Args:
        data_dir: the dataset root, or an Ultralytics data yaml whose ``path``, ``train``,
            ``val`` and ``names`` serve as defaults for the parameters below.
        train: training images: a folder (searched recursively) or a ``.txt`` list of
            image paths (relative ones resolved against the list's folder); relative to
            ``data_dir``. Default ``images/train`` (absent: no training split).
        val: validation images, the same way. Default ``images/val``.
        names: the class names: a list, a file with one name per line (``.names``,
            ``.txt``) or a yaml with ``names`` (a list or ``{index: name}``); relative to
            ``data_dir``. Default: the data yaml's, else the one ``*.names``,
            ``classes.txt``, ``names.txt`` or yaml-with-names file in ``data_dir``.
        category_ids: the ``category_id`` written in COCO-json detections for each class
            index (default ``0 .. n-1``; COCO's 1..90 ids to score against COCO files).
    """
    from yoloqat.plugins.yolo.reader import build

    return build(data_dir=data_dir, train=train, val=val, names=names, category_ids=category_ids)


@hookimpl
def yoloqat_datasets() -> dict:
    """The bundled YOLO-txt dataset plugin."""
    return {"yolo": yolo}
