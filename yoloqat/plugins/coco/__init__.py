"""Dataset plugins ``coco2014`` (the seed's layout) and ``coco`` (any COCO-format data)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from yoloqat.data.dataset import DetectionDataset

#: Layout ``coco(data_dir=...)`` assumes when no path is given (what ``yoloqat synth`` writes).
DEFAULT_LAYOUT = {
    "train_images": "train",
    "train_annotations": "annotations/instances_train.json",
    "val_images": "val",
    "val_annotations": "annotations/instances_val.json",
}


def coco2014(*, data_dir: str) -> DetectionDataset:
    """COCO 2014 in the seed's layout (train2014/, val2014/, annotations/instances_*2014.json).

    Args:
        data_dir: folder holding ``train2014/``, ``val2014/`` and
            ``annotations/instances_{train,val}2014.json``. Either split may be absent
            (e.g. only val2014 for evaluation); asking for an absent split is an error naming
            the missing path. Training images are filtered as in the seed (images without a
            box larger than 1 px dropped, crowd boxes removed); category ids map to class
            indices 0..79 in sorted-id order.
    """
    from yoloqat.core.errors import DataError
    from yoloqat.data.coco import check_path
    from yoloqat.data.dataset import DetectionDataset

    if not isinstance(data_dir, (str, Path)) or not str(data_dir):
        raise DataError(f"coco2014: data_dir must be a folder path, got {data_dir!r}")
    root = check_path(data_dir, "coco2014 data_dir", directory=True)
    return DetectionDataset(
        name="coco2014",
        train=(root / "train2014", root / "annotations" / "instances_train2014.json"),
        val=(root / "val2014", root / "annotations" / "instances_val2014.json"),
        strict=False,
    )


def coco(
    *,
    data_dir: Optional[str] = None,
    train_images: Optional[str] = None,
    train_annotations: Optional[str] = None,
    val_images: Optional[str] = None,
    val_annotations: Optional[str] = None,
) -> DetectionDataset:
    """Any COCO-format data: an image folder plus an instances json per split (COCO 2017, yours).

    Args:
        data_dir: optional base folder; relative paths below are resolved against it. Given
            alone, the layout ``yoloqat synth`` writes is assumed: ``train/``, ``val/``,
            ``annotations/instances_train.json``, ``annotations/instances_val.json`` (a split
            that is absent as a whole is allowed until it is asked for).
        train_images: folder of the training images (``file_name`` entries are relative to it).
        train_annotations: COCO instances json of the training split.
        val_images: folder of the validation images.
        val_annotations: COCO instances json of the validation split (also the COCOeval
            ground truth). The class list is taken from the training file when given; the
            validation file's categories must be a subset of it.
    """
    from yoloqat.core.errors import ConfigError
    from yoloqat.data.dataset import DetectionDataset

    given = {
        "train_images": train_images,
        "train_annotations": train_annotations,
        "val_images": val_images,
        "val_annotations": val_annotations,
    }
    strict = any(v is not None for v in given.values())
    if not strict:
        if data_dir is None:
            raise ConfigError(
                "coco: give data_dir or the train_images/train_annotations and/or "
                "val_images/val_annotations paths"
            )
        given = dict(DEFAULT_LAYOUT)
    base = Path(data_dir).expanduser() if data_dir is not None else None

    def resolve(key: str) -> Optional[Path]:
        value = given[key]
        if value is None:
            return None
        p = Path(value).expanduser()
        return base / p if base is not None and not p.is_absolute() else p

    splits = {}
    for split in ("train", "val"):
        images, ann = resolve(f"{split}_images"), resolve(f"{split}_annotations")
        if (images is None) != (ann is None):
            missing = f"{split}_images" if images is None else f"{split}_annotations"
            raise ConfigError(f"coco: {missing} is required when the other {split} path is set")
        splits[split] = (images, ann) if images is not None and ann is not None else None
    return DetectionDataset(name="coco", train=splits["train"], val=splits["val"], strict=strict)


@hookimpl
def yoloqat_datasets() -> dict:
    """The bundled COCO dataset plugins."""
    return {"coco2014": coco2014, "coco": coco}
