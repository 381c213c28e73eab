"""What ``predict`` returns for one image or frame: boxes, scores, classes, and ways to use them.

``Result.boxes`` are ``x1, y1, x2, y2`` in the image's pixels (as displayed: EXIF
orientation applied), ``scores`` in [0, 1], ``class_ids`` indices into ``names``.
``to_dict()``/``to_json()`` give them as plain data, ``plot()`` a picture with labelled
boxes sized to the image and kept inside it, ``save_txt()`` YOLO-format label lines and
``save_crop()`` one file per box.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Result:
    """Detections on one image (or one video frame)."""

    source: str
    name: str
    image: np.ndarray = field(repr=False)
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    names: list[str]
    frame: int | None = None
    stream: str | None = None
    exif_orientation: int = 1
    speed: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the image."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def class_names(self) -> list[str]:
        """The class name of each detection."""
        return [self.names[int(c)] for c in self.class_ids]

    def to_dict(self) -> dict[str, Any]:
        """The image and its detections as plain data (boxes ``[x1, y1, x2, y2]`` pixels)."""
        out: dict[str, Any] = {"source": self.source, "width": self.size[0], "height": self.size[1]}
        if self.frame is not None:
            out["frame"] = self.frame
        if self.exif_orientation != 1:
            out["exif_orientation"] = self.exif_orientation
        out["detections"] = [
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(score), 4),
                "class_id": int(cls),
                "class_name": self.names[int(cls)],
            }
            for box, score, cls in zip(self.boxes, self.scores, self.class_ids)
        ]
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def plot(
        self,
        *,
        line_width: int | None = None,
        hide_labels: bool = False,
        hide_conf: bool = False,
    ) -> np.ndarray:
        """The image (RGB uint8) with a box per detection and its label, both sized to the
        image (``line_width`` pixels; default about 0.3% of its mean side, at least 2) and
        the label kept inside the image."""
        return draw(
            self.image,
            self.boxes,
            self.scores,
            self.class_ids,
            self.names,
            line_width=line_width,
            hide_labels=hide_labels,
            hide_conf=hide_conf,
        )

    def save(self, path: str | Path, **plot_options: Any) -> Path:
        """Write :meth:`plot` as an image file (atomically); returns the path."""
        return write_image(path, self.plot(**plot_options))

    def save_txt(self, path: str | Path, *, save_conf: bool = False) -> Path:
        """YOLO-format lines ``class cx cy w h [conf]`` (normalised to the image)."""
        from yoloqat.core.atomic import write_text

        w, h = self.size
        lines = []
        for box, score, cls in zip(self.boxes, self.scores, self.class_ids):
            x1, y1, x2, y2 = (float(v) for v in box)
            vals = [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]
            line = f"{int(cls)} " + " ".join(f"{v:.6f}" for v in vals)
            lines.append(line + (f" {float(score):.6f}" if save_conf else ""))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return write_text(Path(path), "".join(f"{line}\n" for line in lines))

    def save_crop(self, folder: str | Path) -> list[Path]:
        """One image per detection, ``folder/<class name>/<name>_<k>.jpg``; returns them."""
        written = []
        for k, (box, cls) in enumerate(zip(self.boxes, self.class_ids)):
            x1, y1, x2, y2 = (round(float(v)) for v in box)
            x1, y1 = max(x1, 0), max(y1, 0)
            x2, y2 = min(x2, self.size[0]), min(y2, self.size[1])
            if x2 <= x1 or y2 <= y1:
                continue
            crop = self.image[y1:y2, x1:x2]
            target = Path(folder) / _safe(self.names[int(cls)]) / f"{self.name}_{k}.jpg"
            written.append(write_image(target, crop))
        return written


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^\w.-]+", "_", name) or "class"


def colour(class_id: int) -> tuple[int, int, int]:
    """A distinct RGB colour per class (hues spread by the golden angle)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((int(class_id) * 0.618033988749895) % 1.0, 0.75, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    names: list[str],
    *,
    line_width: int | None = None,
    hide_labels: bool = False,
    hide_conf: bool = False,
) -> np.ndarray:
    """An RGB copy of ``image`` with labelled boxes (see :meth:`Result.plot`)."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    lw = int(line_width) if line_width else max(round((h + w) / 2 * 0.003), 2)
    font_scale = lw / 3
    thickness = max(lw - 1, 1)
    for box, score, cls in zip(boxes, scores, class_ids):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        x1, y1 = min(max(x1, 0), w - 1), min(max(y1, 0), h - 1)
        x2, y2 = min(max(x2, 0), w - 1), min(max(y2, 0), h - 1)
        rgb = colour(int(cls))
        cv2.rectangle(out, (x1, y1), (x2, y2), rgb, lw, cv2.LINE_AA)
        if hide_labels:
            continue
        label = names[int(cls)] + ("" if hide_conf else f" {float(score):.2f}")
        scale = font_scale
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        if tw > w:  # a small image: shrink the label to its width rather than clip it
            scale = max(font_scale * w / tw, 0.25)
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        tw, th = min(tw, w), th + base
        left = min(max(x1, 0), w - tw)  # inside the image horizontally
        top = y1 - th - 3 if y1 - th - 3 >= 0 else min(y1 + lw, h - th - 3)  # above, or inside
        top = max(top, 0)
        cv2.rectangle(out, (left, top), (left + tw, top + th + 3), rgb, -1, cv2.LINE_AA)
        text = (255, 255, 255) if sum(rgb) < 450 else (0, 0, 0)
        cv2.putText(
            out,
            label,
            (left, top + th - base + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            text,
            thickness,
            cv2.LINE_AA,
        )
    return out


def write_image(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 array as an image file (format from the suffix), atomically."""
    import cv2

    from yoloqat.core.atomic import atomic_path
    from yoloqat.core.errors import RuntimeFailure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ok, data = cv2.imencode(path.suffix or ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeFailure(f"could not encode {path} (OpenCV refused the format)")
        Path(tmp).write_bytes(data.tobytes())
    return path
