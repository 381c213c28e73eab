"""The data a run trains on: ``--data`` (a data yaml, a dataset folder or a COCO json) and
dataset paths stored absolute, so a checkpoint's data is found from any folder."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yoloqat.core.errors import UsageError

#: Dataset parameters read as paths relative to ``data_dir`` when it is given.
BASE_KEY = "data_dir"


def _absolute(value: str) -> str:
    """``value`` made absolute against the current folder (``~`` expanded; links kept)."""
    return os.path.abspath(os.path.expanduser(value))


def absolute_data_paths(block: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A copy of a ``dataset`` block with its paths absolute (against the current folder).

    ``data_dir`` is made absolute; the other string parameters are paths relative to it
    when it is given, and are kept as they are then; without a ``data_dir`` each one naming
    an existing file or folder here is made absolute (e.g. ``coco``'s ``train_images``).
    Names that are no path (``train_split: trainval``) stay as they are.
    """
    if not isinstance(block, Mapping):
        return block
    out = dict(block)
    base = out.get(BASE_KEY)
    if isinstance(base, str) and base:
        out[BASE_KEY] = _absolute(base)
        return out
    for key, value in out.items():
        if key == "name" or not isinstance(value, str) or not value:
            continue
        if not os.path.isabs(os.path.expanduser(value)) and os.path.exists(
            os.path.expanduser(value)
        ):
            out[key] = _absolute(value)
    return out


def with_absolute_data(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with :func:`absolute_data_paths` applied to its ``dataset`` block."""
    out = dict(cfg)
    if isinstance(out.get("dataset"), Mapping):
        out["dataset"] = absolute_data_paths(out["dataset"])
    return out


def _coco_images(annotations: Path) -> Path | None:
    """The image folder of a COCO json: ``ROOT/<split>`` for ``ROOT/annotations/
    instances_<split>.json`` (COCO's and ``yoloqat synth``'s layouts), else the first of
    ``ROOT/images/<split>``, ``<json folder>/<split>``, ``<json folder>/images``,
    ``ROOT/images`` that exists."""
    split = annotations.stem.removeprefix("instances_")
    folder = annotations.parent
    root = folder.parent if folder.name == "annotations" else folder
    for candidate in (
        root / split,
        root / "images" / split,
        folder / split,
        folder / "images",
        root / "images",
    ):
        if candidate.is_dir():
            return candidate
    return None


def _coco_json_block(path: Path, given: str) -> dict[str, Any]:
    images = _coco_images(path)
    if images is None:
        raise UsageError(
            f"--data {given}: cannot tell where the images of {path.name} are (looked for "
            f"the folder '{path.stem.removeprefix('instances_')}' beside it and in images/)",
            hint="give the paths: --set 'dataset={name: coco, train_images: DIR, "
            "train_annotations: FILE.json}'",
        )
    block: dict[str, Any] = {
        "name": "coco",
        "train_images": str(images),
        "train_annotations": str(path),
    }
    if "train" in path.name:  # the val split beside it, when there is one
        val = path.with_name(path.name.replace("train", "val"))
        val_images = _coco_images(val) if val.is_file() else None
        if val_images is not None:
            block.update(val_images=str(val_images), val_annotations=str(val))
    return block


def dataset_from_data(data: str | Path) -> dict[str, Any]:
    """The ``dataset`` block for ``--data``: a data yaml (``yolo``), a dataset folder
    (its layout tells the plugin: ``coco2014``, ``coco``, ``voc`` or ``yolo``) or a COCO
    instances json (``coco``, its images found beside it); paths absolute.

    A path that does not exist, or a folder of no known layout, is a UsageError (exit 2):
    the command line names something that is not there.
    """
    from yoloqat.data.layout import detect_dataset

    given = str(data)
    path = Path(_absolute(given))
    if not path.exists():
        raise UsageError(f"--data {given}: no such file or folder")
    if path.is_file() and path.suffix.lower() == ".json":
        return _coco_json_block(path, given)
    block = detect_dataset(path)
    if block is None:
        kind = "folder" if path.is_dir() else "file"
        raise UsageError(
            f"--data {given}: a {kind} of no dataset layout yoloqat knows",
            hint="give a data .yaml, a COCO instances .json, or a folder with "
            "annotations/instances_*.json (coco), Annotations/ + JPEGImages/ (voc) or "
            "images/ + labels/ (yolo)",
        )
    return {**block, "data_dir": str(path)}


def sets_key(overrides: list[str] | tuple[str, ...], dotted: str) -> bool:
    """Whether one of the ``key=value`` overrides sets ``dotted`` (or a section holding it)."""
    parts = dotted.split(".")
    prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
    return any(o.split("=", 1)[0].strip() in prefixes for o in overrides)
