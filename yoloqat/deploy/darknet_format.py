"""The Darknet ``.weights`` format: header, per-conv layout, reading and writing arrays.

File layout (little endian), as Darknet's ``load_weights``/``save_weights`` write it:

- header: int32 ``major``, ``minor``, ``revision``, then ``seen`` (images seen in training)
  as int64 when ``major * 10 + minor >= 2`` and both are below 1000, else as int32;
- then, for each ``[convolutional]`` layer in ``.cfg`` order, float32 arrays:
  with batch norm: ``beta`` (Darknet's "biases"), ``gamma`` ("scales"), running mean,
  running variance (``out`` values each), then the weights ``[out, in, k, k]``;
  without batch norm (YOLOv3's three output convs): bias (``out``), then the weights.

``darknet53.conv.74`` holds the 52 backbone convs (the order of
the DarkNet-53 backbone's ``conv_units()``); ``yolov3.weights`` holds all
75 convs (backbone, then the YOLOv3 head's ``conv_units()``,
which is ``yolov3.cfg`` order). Any network whose backbone and head offer ``conv_units()``
(ConvBnAct units and bias-only output convs) can be read and written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core.atomic import atomic_path
from yoloqat.core.errors import CheckpointError, ConfigError
from yoloqat.core.limits import check_input_file

#: Header written by :func:`write_darknet_weights` (Darknet's own current version).
DEFAULT_VERSION = (0, 2, 0)
#: The Darknet-trained activation of the backbone.
DARKNET_ACTIVATION = "leaky"
DEFAULT_CONFIG = "yolov3_darknet53"


@dataclass(frozen=True)
class DarknetHeader:
    """The version triple and ``seen`` counter at the start of a ``.weights`` file."""

    major: int = DEFAULT_VERSION[0]
    minor: int = DEFAULT_VERSION[1]
    revision: int = DEFAULT_VERSION[2]
    seen: int = 0

    @property
    def seen_is_int64(self) -> bool:
        """Darknet's rule: ``seen`` is an int64 from version 0.2 on, an int32 before."""
        return (self.major * 10 + self.minor) >= 2 and self.major < 1000 and self.minor < 1000

    @property
    def nbytes(self) -> int:
        """Size of the header in bytes (20 with an int64 ``seen``, else 16)."""
        return 12 + (8 if self.seen_is_int64 else 4)

    def to_bytes(self) -> bytes:
        """The header as Darknet writes it."""
        version = np.asarray([self.major, self.minor, self.revision], dtype="<i4").tobytes()
        seen_type = "<i8" if self.seen_is_int64 else "<i4"
        return version + np.asarray([self.seen], dtype=seen_type).tobytes()

    def to_dict(self) -> dict[str, int]:
        return {
            "major": self.major,
            "minor": self.minor,
            "revision": self.revision,
            "seen": self.seen,
        }


def parse_header(data: bytes, source: str | Path = "<bytes>") -> DarknetHeader:
    """Parse the header at the start of ``data`` (at least its first 20 bytes, or all)."""
    if len(data) < 16:
        raise CheckpointError(
            f"{source} has {len(data)} bytes: too short for a Darknet .weights header "
            "(16 or 20 bytes)"
        )
    major, minor, revision = (int(v) for v in np.frombuffer(data[:12], dtype="<i4"))
    head = DarknetHeader(major, minor, revision, 0)
    if head.seen_is_int64:
        if len(data) < 20:
            raise CheckpointError(
                f"{source} has {len(data)} bytes: too short for a Darknet {major}.{minor} "
                "header (20 bytes)"
            )
        seen = int(np.frombuffer(data[12:20], dtype="<i8")[0])
    else:
        seen = int(np.frombuffer(data[12:16], dtype="<i4")[0])
    return DarknetHeader(major, minor, revision, seen)


@dataclass(frozen=True)
class ConvSpec:
    """One Darknet conv layer: the parameter names it maps to, in file order, and shapes."""

    index: int
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    batch_norm: bool

    @property
    def num_floats(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes))


def _unit_spec(index: int, unit: Any) -> ConvSpec:
    conv = getattr(unit, "conv", None)
    bn = getattr(unit, "bn", None)
    if conv is not None and bn is not None and getattr(conv, "bias", None) is None:
        params: tuple[Any, ...] = (
            bn.beta,
            bn.gamma,
            bn.moving_mean,
            bn.moving_variance,
            conv.weight,
        )
        batch_norm = True
    elif getattr(unit, "bias", None) is not None and getattr(unit, "weight", None) is not None:
        params = (unit.bias, unit.weight)
        batch_norm = False
    else:
        raise ConfigError(
            f"conv unit {index} ({type(unit).__name__}) is neither conv+BN without bias nor a "
            "conv with bias; it cannot be stored in Darknet format"
        )
    return ConvSpec(
        index, tuple(p.name for p in params), tuple(tuple(p.shape) for p in params), batch_norm
    )


def _conv_units(part: Any, what: str) -> list[Any]:
    units = getattr(part, "conv_units", None)
    if units is None:
        raise ConfigError(
            f"the {what} {type(part).__name__} has no conv_units() method, so its layer order "
            "in a Darknet .weights file is unknown",
            hint="Darknet weights need a backbone/head that lists its convs (darknet53, "
            "yolov3_head)",
        )
    return list(units())


def conv_specs(network: Any, *, backbone_only: bool = False) -> list[ConvSpec]:
    """The Darknet conv layers of a :class:`~yoloqat.core.detector.Detector`, in file order.

    With ``backbone_only`` only the backbone's convs (52 for DarkNet-53). Otherwise every
    parameter of the network must belong to exactly one conv layer.
    """
    units = _conv_units(network.backbone, "backbone")
    if not backbone_only:
        units += _conv_units(network.head, "head")
    specs = [_unit_spec(i, u) for i, u in enumerate(units)]
    covered = [n for s in specs for n in s.names]
    part = network.backbone if backbone_only else network
    names = [p.name for p in part.get_parameters()]
    if sorted(covered) != sorted(names):
        left = sorted(set(names) - set(covered))[:3]
        raise ConfigError(
            f"the network has parameters outside its conv units ({', '.join(left) or 'repeats'})"
            "; it cannot be stored in Darknet format"
        )
    return specs


def payload_floats(specs: Sequence[ConvSpec]) -> int:
    """Number of float32 values after the header."""
    return sum(s.num_floats for s in specs)


def _size_problem(
    path: Path,
    size: int,
    header: DarknetHeader,
    specs: Sequence[ConvSpec],
    what: str,
) -> str:
    need = header.nbytes + 4 * payload_floats(specs)
    got = (size - header.nbytes) / 4
    got_text = f"{int(got)}" if got == int(got) else f"{got:.2f} (not a whole number)"
    return (
        f"{path} has {size} bytes; the {what} needs {need} bytes "
        f"(header {header.nbytes} + {payload_floats(specs)} float32 values): expected "
        f"{payload_floats(specs)} floats, got {got_text}" + (" (truncated)" if size < need else "")
    )


def read_darknet_weights(
    path: str | Path, specs: Sequence[ConvSpec], *, what: str = "network"
) -> tuple[DarknetHeader, dict[str, np.ndarray]]:
    """Read a ``.weights`` file laid out as ``specs``; the size must match exactly.

    Returns the header and ``{parameter name: float32 array}``.
    """
    path = Path(path)
    size = check_input_file(
        path, "weights", error=CheckpointError, what="Darknet weights file"
    ).st_size
    with open(path, "rb") as fh:
        header = parse_header(fh.read(20), path)
        need = header.nbytes + 4 * payload_floats(specs)
        if size != need:
            raise CheckpointError(_size_problem(path, size, header, specs, what))
        fh.seek(header.nbytes)
        flat = np.fromfile(fh, dtype="<f4", count=payload_floats(specs))
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        for name, shape in zip(spec.names, spec.shapes):
            count = int(np.prod(shape))
            arrays[name] = flat[offset : offset + count].reshape(shape).astype(np.float32)
            offset += count
    return header, arrays


def write_darknet_weights(
    path: str | Path,
    specs: Sequence[ConvSpec],
    arrays: Mapping[str, np.ndarray],
    header: DarknetHeader | None = None,
) -> int:
    """Write ``arrays`` laid out as ``specs`` (atomically); returns the file size in bytes."""
    path = Path(path)
    header = header or DarknetHeader()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(header.to_bytes())
        for spec in specs:
            for name, shape in zip(spec.names, spec.shapes):
                value = np.asarray(arrays[name], dtype=np.float32)
                if tuple(value.shape) != tuple(shape):
                    raise CheckpointError(
                        f"tensor {name} has shape {tuple(value.shape)}; expected {shape}"
                    )
                fh.write(np.ascontiguousarray(value, dtype="<f4").tobytes())
    return path.stat().st_size


def _describe(specs: Sequence[ConvSpec], backbone_only: bool, num_classes: int) -> str:
    if backbone_only:
        return f"{len(specs)}-conv backbone"
    return f"{len(specs)}-conv detector (num_classes={num_classes})"


def explain_size(
    path: Path,
    network: Any,
    specs: Sequence[ConvSpec],
    backbone_only: bool,
) -> None:
    """Raise a CheckpointError explaining a size mismatch, with a hint when the cause is clear."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        header = parse_header(fh.read(20), path)
    num_classes = int(network.num_classes)
    message = _size_problem(path, size, header, specs, _describe(specs, backbone_only, num_classes))
    hint = None
    payload = size - header.nbytes
    if not backbone_only:
        backbone = conv_specs(network, backbone_only=True)
        outputs = [s for s in specs if not s.batch_norm]
        # Each output conv has len(mask) * (5 + C) filters of (in + 1) floats: linear in C.
        slope = sum((s.shapes[1][0] // (5 + num_classes)) * (s.shapes[1][1] + 1) for s in outputs)
        extra = payload - 4 * payload_floats(specs)
        if payload == 4 * payload_floats(backbone):
            hint = "it holds only the backbone convs (like darknet53.conv.74): pass --backbone-only"
        elif slope and extra % (4 * slope) == 0 and num_classes + extra // (4 * slope) >= 1:
            hint = f"its size fits num_classes={num_classes + extra // (4 * slope)}"
    elif payload > 4 * payload_floats(specs):
        hint = (
            "it holds more than the backbone; a full detector file (yolov3.weights) is accepted "
            "with --backbone-only when --num-classes/--config match it"
        )
    raise CheckpointError(message, hint=hint or "check --config/--set (width) and --num-classes")
