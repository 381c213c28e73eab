"""Class-name lists for dataset plugins: a list, a one-name-per-line file or a yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yoloqat.core.errors import DataError


def names_from_yaml_value(value: Any, origin: str) -> list[str]:
    """``names`` of a data yaml: a list, or ``{index: name}`` with indices 0..n-1."""
    if isinstance(value, dict):
        try:
            index = {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise DataError(f"{origin}: 'names' keys must be class indices 0..n-1") from None
        if sorted(index) != list(range(len(index))):
            raise DataError(f"{origin}: 'names' indices must be 0..{len(index) - 1} without gaps")
        return [index[i] for i in range(len(index))]
    if isinstance(value, (list, tuple)) and value:
        return [str(v) for v in value]
    raise DataError(f"{origin}: 'names' must be a non-empty list or {{index: name}} mapping")


def read_names(value: Any, base: Path | None, what: str) -> list[str]:
    """Class names from a list, a ``.names``/``.txt`` file or a yaml with ``names``."""
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise DataError(f"{what}: names must be a non-empty list of non-empty strings")
        return [v.strip() for v in value]
    if not isinstance(value, (str, Path)):
        raise DataError(f"{what}: names must be a list or a file path, got {value!r}")
    path = Path(value).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise DataError(f"{what}: class names file not found: {path}")
    from yoloqat.data.paths import read_text

    text = read_text(path, f"{what}: class names file")
    if path.suffix.lower() in (".yaml", ".yml"):
        from yoloqat.core.config import yaml_load

        try:
            data = yaml_load(text)
        except Exception as exc:
            raise DataError(f"{what}: {path} is not valid YAML ({exc})") from None
        if not isinstance(data, dict) or "names" not in data:
            raise DataError(f"{what}: {path} has no 'names' list")
        return names_from_yaml_value(data["names"], str(path))
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DataError(f"{what}: class names file is empty: {path}")
    return names


#: The 80 COCO class names in Darknet's order (its ``data/coco.names``): the classes of
#: Darknet's published COCO models.
COCO80_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "sofa", "pottedplant", "bed", "diningtable", "toilet", "tvmonitor", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)  # fmt: skip
