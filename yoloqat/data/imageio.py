"""Robust, bounded image reading: any common file becomes a 3-channel 8-bit RGB array.

Only regular files are read (a device such as ``/dev/zero``, a FIFO or a folder is refused
before reading), at most :func:`yoloqat.core.limits.max_bytes` ("image") bytes, and only
images of at most :func:`yoloqat.core.limits.max_image_pixels` pixels are decoded (the
size is read from the file header first). Whatever a decoder raises becomes an
:class:`ImageReadError` naming the file and the reason, so the loaders skip and count the
image. :func:`read_image` returns the stored pixel layout; :func:`read_upright` applies the
file's EXIF orientation (a phone photo held upright is stored sideways with orientation 6),
as viewers and annotation tools show it, unless the annotation's recorded size says its
boxes refer to the stored layout.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import cv2
import numpy as np

from yoloqat.core import limits
from yoloqat.core.contracts.dataset import UnreadableImageError

_FLAGS = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION


class ImageReadError(UnreadableImageError):
    """An image file is missing, empty, truncated or not decodable (the message says which).

    The contract's :class:`~yoloqat.core.contracts.dataset.UnreadableImageError`: a source's
    ``load`` may let it propagate."""


def _jpeg_truncated(data: bytes) -> bool:
    # A complete JPEG ends its last scan with an EOI marker (FFD9). Entropy-coded data
    # never contains FFD9 (0xFF bytes are stuffed), and an EXIF thumbnail's EOI lies
    # before the main image's first SOS, so "no EOI after the last SOS" means truncated.
    return data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Decoded OpenCV array (gray, gray+alpha, BGR, BGRA; 8/16-bit, float) -> RGB uint8."""
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=1.0 / 257.0)
    elif image.dtype.kind == "f":
        scale = 255.0 if float(np.nanmax(image)) <= 1.0 else 1.0
        image = np.clip(np.nan_to_num(image) * scale, 0, 255).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # gray + alpha: the alpha channel is dropped
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(image[:, :, :4], cv2.COLOR_BGRA2RGB)


def _pil(data: bytes) -> np.ndarray | None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(im.convert("RGB"))
    except Exception:
        return None


def _allow_pillow(pixels: int) -> None:
    """Keep Pillow's own decompression-bomb refusal at or above yoloqat's pixel limit."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and pixels > 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = pixels // 2 + 1


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from an image file's header (nothing decoded), or None when
    Pillow does not know the format. Raises ``PIL.Image.DecompressionBombError`` for
    images over Pillow's limit."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bomb and corrupt-EXIF warnings: the size is checked
        try:
            with Image.open(io.BytesIO(data)) as im:
                return int(im.size[0]), int(im.size[1])
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None


def _read_bytes(path: Path) -> bytes:
    """The file's bytes: a regular file within the image size limit, else ImageReadError."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ImageReadError(f"image file not found: {path}") from None
    except OSError as exc:
        raise ImageReadError(f"cannot read image {path}: {exc.strerror or exc}") from None
    limit = limits.max_bytes("image")
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            kind = limits.file_type(st.st_mode)
            raise ImageReadError(f"image {path} is {kind}, not a regular file")
        if st.st_size > limit:
            raise ImageReadError(
                f"image file {path} is {limits.human_size(st.st_size)}, over the "
                f"{limits.human_size(limit)} limit for image files ({limits.SIZE_HINT})"
            )
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise ImageReadError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ImageReadError(f"image file {path} grew over the {limits.human_size(limit)} limit")
    return data


def _too_many_pixels(path: str | Path, width: int, height: int, limit: int) -> ImageReadError:
    return ImageReadError(
        f"image {path} has {width} x {height} = {width * height:,} pixels, over the "
        f"{limit:,} pixel limit ({limits.PIXELS_HINT})"
    )


def image_size(path: str | Path) -> tuple[float, float] | None:
    """``(width, height)`` of an image as displayed (its EXIF orientation applied, as
    :func:`read_upright` turns it) from its header, or None when the file cannot be read or
    is not an image (it is then skipped and counted when loaded)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > limits.max_bytes("image"):
        return None
    try:
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = float(im.size[0]), float(im.size[1])
                orientation = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def read_file_bytes(path: str | Path) -> bytes:
    """The bytes of the image file ``path``: a regular file within the image size limit,
    else :class:`ImageReadError` naming the problem."""
    return _read_bytes(Path(path))


def read_image(path: str | Path) -> np.ndarray:
    """Read ``path`` as an HxWx3 uint8 RGB array.

    Grayscale, RGBA, palette and 16-bit files are converted; EXIF orientation is not applied.
    Raises :class:`ImageReadError` naming the problem for a missing, zero-byte, truncated,
    undecodable, non-regular, too large (bytes or pixels) file.
    """
    path = Path(path)
    return decode_bytes(_read_bytes(path), path)


def decode_bytes(data: bytes, path: str | Path) -> np.ndarray:
    """Decode an image file's bytes (``path`` names it in errors) as an HxWx3 uint8 RGB
    array, with the pixel limit checked from the header first (see :func:`read_image`)."""
    if not data:
        raise ImageReadError(f"image file is empty (0 bytes): {path}")
    if data[:3] == b"\xff\xd8\xff" and _jpeg_truncated(data):
        raise ImageReadError(f"image file is truncated (JPEG without end marker): {path}")
    pixel_limit = limits.max_image_pixels()
    try:
        _allow_pillow(pixel_limit)
        size = header_size(data)
    except Exception as exc:  # Pillow's DecompressionBombError, or a header it chokes on
        from PIL import Image

        if isinstance(exc, Image.DecompressionBombError):
            raise ImageReadError(
                f"image {path} is over the {pixel_limit:,} pixel limit ({exc}; "
                f"{limits.PIXELS_HINT})"
            ) from None
        size = None
    if size is not None and size[0] * size[1] > pixel_limit:
        raise _too_many_pixels(path, size[0], size[1], pixel_limit)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), _FLAGS)
    except Exception:  # cv2.error: its own limits, broken streams
        image = None
    try:
        if image is None:
            image = _pil(data)
            if image is None:
                raise ImageReadError(f"image file is corrupt or not an image: {path}")
            if image.size == 0:
                raise ImageReadError(f"image has zero size: {path}")
            out = np.ascontiguousarray(image)
        else:
            if image.size == 0:
                raise ImageReadError(f"image has zero size: {path}")
            out = to_rgb8(image)
    except ImageReadError:
        raise
    except Exception as exc:  # whatever the decoder or the conversion raised
        raise ImageReadError(
            f"image {path} cannot be decoded ({type(exc).__name__}: {exc})"
        ) from None
    h, w = out.shape[:2]
    if size is None and h * w > pixel_limit:  # a format Pillow cannot size: checked after
        raise _too_many_pixels(path, w, h, pixel_limit)
    return out


#: Orientation tags that swap width and height (5-8: turned by 90 degrees).
_SWAPS = (5, 6, 7, 8)
_TURN = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.rot90(a, 1)[::-1],
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, -1)[::-1],
    8: lambda a: np.rot90(a, 1),
}


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8) of an encoded image; 1 when it has none."""
    if b"Exif" not in data[:131072]:  # no EXIF block: skip the parse (most files)
        return 1
    try:
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                value = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:
        return 1
    return value if value in _TURN else 1


def turn_upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` (stored pixel layout) as a viewer shows it, for EXIF ``orientation``."""
    turn = _TURN.get(int(orientation))
    return image if turn is None else np.ascontiguousarray(turn(image))


def read_upright(
    path: str | Path, frame_size: tuple[float, float] | None = None
) -> tuple[np.ndarray, int]:
    """Read ``path`` turned upright by its EXIF orientation; returns ``(RGB uint8, the
    orientation applied)`` (1: none). ``frame_size``: the ``(width, height)`` an
    annotation recorded for the image. When it matches the stored pixels and not the
    upright ones (a 90-degree orientation), the boxes refer to the stored layout and the
    image is not turned (``0`` is returned: an orientation seen and left alone)."""
    path = Path(path)
    data = _read_bytes(path)
    image = decode_bytes(data, path)
    orientation = exif_orientation(data)
    if orientation == 1:
        return image, 1
    if frame_size is not None and orientation in _SWAPS:
        h, w = image.shape[:2]
        fw, fh = (round(float(v)) for v in frame_size)
        if (fw, fh) == (w, h) and (fw, fh) != (h, w):
            return image, 0
    return turn_upright(image, orientation), orientation


_SAID: set[tuple[str, bool]] = set()


def say_orientation(origin: str, path: str | Path, applied: int) -> None:
    """Warn once per dataset (``origin``) and process that its images carry EXIF
    orientations, and whether they were turned upright (``applied`` > 1) or left in the
    stored layout because the annotation records that size (``applied`` 0)."""
    turned = applied > 1
    if (origin, turned) in _SAID or applied == 1:
        return
    _SAID.add((origin, turned))
    from yoloqat.core import events

    if turned:
        events.warn(
            f"{origin}: images carry an EXIF orientation (first: {path}, orientation "
            f"{applied}); they are turned upright, as viewers and annotation tools show them"
        )
    else:
        events.warn(
            f"{origin}: {path} carries an EXIF orientation but its annotation records the "
            "stored size: its boxes are taken in the stored (unturned) layout"
        )
