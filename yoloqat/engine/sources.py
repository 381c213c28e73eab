"""Where ``predict`` reads images from: files, folders, globs, videos, cameras and URLs.

:func:`resolve` turns what a user typed (one or several paths, a folder, a glob, a video
file, a camera index such as ``0``, an ``http(s)://`` URL; in Python also RGB uint8
arrays) into a list of :class:`Item`, with
a clear error for one that names nothing; :func:`frames` reads them one frame at a time
(videos and cameras frame by frame), as RGB uint8 arrays in the orientation a viewer shows:
a photo's EXIF orientation is applied (and recorded on the frame). Output names are unique
across the whole run (``gray.jpg`` and ``gray.png`` do not both become ``gray``).
"""

from __future__ import annotations

import glob
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
#: Seconds before a URL that does not answer is an error.
URL_TIMEOUT = 30.0
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Item:
    """One thing to read: ``kind`` is image, video, camera, url or array; ``ref`` the path,
    index or address as given (a camera's index as a string; ``array<k>`` for an array,
    which is ``array``)."""

    kind: str
    ref: str
    array: Any = None


@dataclass
class Frame:
    """An image to detect on, with where it came from.

    ``image`` RGB uint8 ``[H, W, 3]`` as displayed (EXIF orientation applied when
    ``exif_orientation`` is not 1); ``name`` a unique stem for output files; ``source`` the
    path, URL or ``camera N``; ``frame`` the frame number of a video or camera (None for a
    still image); ``stream`` the name of the video or camera it belongs to.
    """

    image: np.ndarray
    name: str
    source: str
    frame: int | None = None
    stream: str | None = None
    exif_orientation: int = 1
    fps: float | None = None


def _is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def _kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def _folder(folder: Path, recursive: bool) -> list[Item]:
    pattern = "**/*" if recursive else "*"
    found = [p for p in sorted(folder.glob(pattern)) if p.is_file() and _kind_of(p)]
    return [Item(_kind_of(p) or "image", str(p)) for p in found]


def resolve(sources: Any, *, recursive: bool = False) -> list[Item]:
    """The items of ``sources``: a path, URL, camera index or glob, or a list of them.

    A folder gives its images and videos (sorted; with ``recursive`` its sub-folders' too),
    a glob what it matches, a lone digit string or int a camera. Anything that names
    nothing is a DataError (exit 3) naming it; a lone file of an unknown type is read as an
    image (its decoder says when it is not one).
    """
    if isinstance(sources, (str, Path, int, np.ndarray)):
        sources = [sources]
    items: list[Item] = []
    for k, entry in enumerate(sources):
        text = str(entry) if not isinstance(entry, np.ndarray) else f"array{k}"
        if isinstance(entry, np.ndarray):
            if entry.ndim != 3 or entry.shape[2] != 3 or entry.dtype != np.uint8:
                raise DataError(
                    f"image array {k} is {entry.dtype} {list(entry.shape)}; expected RGB "
                    "uint8 [H, W, 3]"
                )
            items.append(Item("array", text, entry))
        elif isinstance(entry, int) or (isinstance(entry, str) and text.isdigit()):
            items.append(Item("camera", text))
        elif _is_url(text):
            items.append(Item("url", text))
        elif _GLOB.search(text) and not Path(text).exists():
            matched = sorted(glob.glob(text, recursive=recursive or "**" in text))
            found = [Item(_kind_of(Path(p)) or "image", p) for p in matched if _kind_of(Path(p))]
            if not found:
                raise DataError(f"no images or videos match {text}")
            items.extend(found)
        else:
            path = Path(text)
            if path.is_dir():
                found = _folder(path, recursive)
                if not found:
                    suffixes = ", ".join((*IMAGE_SUFFIXES, *VIDEO_SUFFIXES))
                    more = "" if recursive else " (--recursive reads its sub-folders)"
                    raise DataError(f"no images or videos ({suffixes}) in {path}{more}")
                items.extend(found)
            elif path.exists():
                items.append(Item(_kind_of(path) or "image", text))
            else:
                raise DataError(f"image, video or folder not found: {text}")
    if not items:
        raise DataError(
            "no source given: name images, a folder, a glob, a video, a URL or a camera"
        )
    return items


class UniqueNames:
    """Output stems, unique within a run: ``a.jpg`` -> ``a``; then ``a.png`` -> ``a_png``;
    then ``a_2``, ``a_3``, ..."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, ref: str) -> str:
        path = Path(ref.split("?", 1)[0])
        stem = re.sub(r"[^\w.-]+", "_", path.stem) or "image"
        candidates = [stem]
        if path.suffix:
            candidates.append(f"{stem}_{path.suffix.lstrip('.').lower()}")
        for name in candidates:
            if name not in self.used:
                self.used.add(name)
                return name
        k = 2
        while f"{stem}_{k}" in self.used:
            k += 1
        self.used.add(f"{stem}_{k}")
        return f"{stem}_{k}"


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8) of an encoded image, 1 when it has none."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:
        return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` (stored pixel layout) as a viewer shows it, for EXIF ``orientation``."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.rot90(a, 1)[::-1],  # transpose
        6: lambda a: np.rot90(a, -1),  # 90 degrees clockwise
        7: lambda a: np.rot90(a, -1)[::-1],  # transverse
        8: lambda a: np.rot90(a, 1),  # 90 degrees counter-clockwise
    }
    op = ops.get(int(orientation))
    return image if op is None else np.ascontiguousarray(op(image))


def decode_image(data: bytes, where: str) -> tuple[np.ndarray, int]:
    """Bytes of an image file -> (RGB uint8 as displayed, its EXIF orientation)."""
    from yoloqat.data.imageio import decode_bytes

    image = decode_bytes(data, where)
    orientation = exif_orientation(data)
    return apply_orientation(image, orientation), orientation


def _read_file(path: str) -> tuple[np.ndarray, int]:
    from yoloqat.data.imageio import read_file_bytes

    return decode_image(read_file_bytes(Path(path)), path)


def fetch_url(url: str) -> bytes:
    """The body of ``url`` (bounded by the image size limit), or a DataError saying why."""
    import urllib.error
    import urllib.request

    from yoloqat.core import limits

    limit = limits.max_bytes("image")
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT) as response:
            data = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise DataError(f"could not fetch {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"could not fetch {url}: {reason}") from None
    if len(data) > limit:
        raise DataError(
            f"{url} is over the {limits.human_size(limit)} limit for images ({limits.SIZE_HINT})"
        )
    return data


def _video(capture: Any, ref: str, stream: str, max_frames: int | None) -> Iterator[Frame]:
    import cv2

    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0) or None
    count = 0
    try:
        while max_frames is None or count < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield Frame(rgb, f"{stream}_f{count:06d}", ref, frame=count, stream=stream, fps=fps)
            count += 1
    finally:
        capture.release()
    if count == 0:
        raise DataError(f"no frame could be read from {ref}")


def frames(
    items: Sequence[Item],
    *,
    max_frames: int | None = None,
    on_error: Any = None,
) -> Iterator[Frame]:
    """Read ``items`` in order: each image once, each video and camera frame by frame (at
    most ``max_frames`` per stream; a camera until then or until it stops). An image that
    cannot be read is passed to ``on_error(item, message)`` and skipped when given, else
    raised; a video, camera or URL that cannot be opened is always an error."""
    import cv2

    from yoloqat.data.imageio import ImageReadError

    names = UniqueNames()
    for item in items:
        if item.kind == "array":
            yield Frame(np.ascontiguousarray(item.array), names(item.ref), item.ref)
        elif item.kind == "image":
            try:
                image, orientation = _read_file(item.ref)
            except ImageReadError as exc:
                if on_error is None:
                    raise DataError(str(exc)) from None
                on_error(item, str(exc))
                continue
            yield Frame(image, names(item.ref), item.ref, exif_orientation=orientation)
        elif item.kind == "url":
            data = fetch_url(item.ref)
            try:
                image, orientation = decode_image(data, item.ref)
            except ImageReadError:  # not an image: a video stream behind the URL?
                capture = cv2.VideoCapture(item.ref)
                if not capture.isOpened():
                    raise DataError(f"{item.ref} is neither an image nor a video") from None
                yield from _video(capture, item.ref, names(item.ref), max_frames)
                continue
            yield Frame(image, names(item.ref), item.ref, exif_orientation=orientation)
        elif item.kind == "video":
            capture = cv2.VideoCapture(item.ref)
            if not capture.isOpened():
                raise DataError(f"cannot open the video {item.ref} (OpenCV could not read it)")
            yield from _video(capture, item.ref, names(item.ref), max_frames)
        elif item.kind == "camera":
            capture = cv2.VideoCapture(int(item.ref))
            if not capture.isOpened():
                raise DataError(
                    f"camera {item.ref} could not be opened (no such device, or it is busy)",
                    hint="list the cameras with `ls /dev/video*` (Linux)",
                )
            name = names(f"camera{item.ref}")
            yield from _video(capture, f"camera {item.ref}", name, max_frames)
