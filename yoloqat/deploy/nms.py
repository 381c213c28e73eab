"""Non-maximum suppression in the exported graph: ``export --nms``.

:func:`append_nms` takes an exported detector graph (outputs ``boxes`` ``[N, M, 4]``, ``cx, cy,
w, h`` normalised to the input, and ``scores`` ``[N, M, C]``: the family's float decode) and
appends, in float and with standard ONNX ops only, what ``engine/predict.postprocess`` does on
the host, so that one output is left: ``detections`` ``[N, max_det, 6]`` = ``x1, y1, x2, y2``
(pixels of the input, as the decode gives them: a box may reach past the input's edges),
``score``, ``class``, best first. Rows past the
detections an image has are padding: ``0, 0, 0, 0, -1, -1`` (score and class ``-1``, so a
consumer keeps ``score >= 0`` rows, and no real detection, even of score 0, looks like one).

The steps, each the host's:

1. boxes to ``x1, y1, x2, y2`` pixels of the input; the NMS compares them clipped to
   ``[0, S]`` (the host clips them to the image before its NMS), the output keeps them
   whole (the host clips them to the image after undoing the letterbox; ``eval`` clamps
   them the seed's way);
2. each candidate's class is its best class (``ArgMax``, first of ties as NumPy's); it is a
   candidate when that score is ``>= conf`` (the host's comparison, exact for float32 scores:
   the threshold is rounded up to float32, not left to ``NonMaxSuppression``'s own score
   threshold, which ONNX Runtime and OpenVINO apply as ``>``); all other entries become -1;
3. ``NonMaxSuppression`` on ``[N, C, M]`` scores, which is per class by its definition (a box
   only suppresses boxes of its own class), at most ``max_det`` per class;
4. the kept boxes of each image, best first (``TopK``), padded to ``max_det`` rows.

What differs from the host: ONNX's IoU takes box areas as ``w * h`` where the host's NMS
(:mod:`yoloqat.core.nms`, the seed's) takes ``(w + 1) * (h + 1)`` in image pixels, and the
graph clips boxes to the input where the host clips them to the image (for a letterbox, the
image is inside the input's padding). Both only change which of two overlapping boxes of one
class survives when their IoU is close to the threshold (README: the measured agreement).
Boxes of one class with exactly equal scores (frequent only in toy int8 networks) are taken
in index order by the host and in the runtime's own order by ``NonMaxSuppression``. OpenVINO
suppresses at an IoU equal to the threshold, ONNX Runtime (and ONNX's definition) above it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from yoloqat.core.contracts.runtime import DETECTION_FIELDS, NMS_OUTPUTS, OUTPUTS
from yoloqat.core.errors import UsageError
from yoloqat.deploy.onnx_graph import Graph

#: Score and class of a padding row.
PAD_VALUE = -1.0


@dataclass(frozen=True)
class NmsSettings:
    """What ``export --nms`` bakes into the graph: ``conf`` the score threshold (kept: score
    ``>= conf``), ``iou`` the per-class IoU threshold (suppressed: IoU ``> iou``) and
    ``max_det`` the detections per image (the output's second dimension)."""

    conf: float = 0.25
    iou: float = 0.5
    max_det: int = 300

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.conf) <= 1.0:
            raise UsageError(f"--conf {self.conf!r} is not valid; expected a score in [0, 1]")
        if not 0.0 < float(self.iou) <= 1.0:
            raise UsageError(f"--iou {self.iou!r} is not valid; expected an IoU in (0, 1]")
        md = self.max_det
        if isinstance(md, bool) or not isinstance(md, (int, np.integer)) or md < 1:
            raise UsageError(f"--max_det {md!r} is not valid; expected an integer >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {k: (int(v) if k == "max_det" else float(v)) for k, v in asdict(self).items()}


def float32_at_least(value: float) -> np.float32:
    """The smallest float32 ``>= value``: for a float32 score ``s``, ``s >= value`` (the
    host's float64 comparison) exactly when ``s >= float32_at_least(value)``."""
    v = np.float32(value)
    if float(v) < float(value):
        v = np.nextafter(v, np.float32(np.inf))
    return np.float32(v)


def decode_metadata(settings: NmsSettings | None, num_classes: int) -> dict[str, str]:
    """The ``nms`` and ``decode`` metadata entries of an export (with or without NMS)."""
    if settings is None:
        decode = {
            "in_graph": ["family decode"],
            "outputs": {
                "boxes": {"shape": ["N", "M", 4], "layout": "cx, cy, w, h",
                          "units": "normalised to the input"},
                "scores": {"shape": ["N", "M", num_classes], "layout": "per-class score",
                           "range": [0, 1]},
            },
            "host": "keep best-class score >= conf, map boxes to the image, per-class NMS",
        }  # fmt: skip
        return {"nms": "false", "decode": json.dumps(decode)}
    decode = {
        "in_graph": ["family decode", "per-class NMS"],
        "outputs": {
            NMS_OUTPUTS[0]: {
                "shape": ["N", settings.max_det, len(DETECTION_FIELDS)],
                "layout": ", ".join(DETECTION_FIELDS),
                "units": "pixels of the input, not clipped (the NMS compares boxes "
                "clipped to the input)",
                "order": "score, best first",
                "padding": "rows 0, 0, 0, 0, -1, -1 (score -1) after the detections",
            }
        },
        "nms": {**settings.to_dict(), "per_class": True, "iou_areas": "w * h (ONNX)",
                "conf_test": "best-class score >= conf"},
        "host": "keep rows with score >= 0, map boxes to the image (undo letterbox/stretch)",
    }  # fmt: skip
    return {"nms": "true", "decode": json.dumps(decode)}


def _init(g: Graph, value: Any, hint: str, dtype: Any) -> str:
    return g.add_init(np.asarray(value, dtype), f"nms/{hint}")


def append_nms(model: Any, settings: NmsSettings, *, input_size: int, num_classes: int) -> None:
    """Append the in-graph NMS to ``model`` (an exported detector ``ModelProto`` whose outputs
    are ``boxes`` and ``scores``); its only output becomes ``detections``."""
    from onnx import TensorProto, helper

    outputs = [o.name for o in model.graph.output]
    if outputs != list(OUTPUTS):
        raise UsageError(f"in-graph NMS needs the outputs {list(OUTPUTS)}; got {outputs}")
    g = Graph(model)
    boxes, scores = OUTPUTS
    size = float(input_size)
    i64, f32 = np.int64, np.float32

    def node(op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        return g.node(op, inputs, f"nms/{hint}", **attrs)

    def const(value: Any, hint: str, dtype: Any = i64) -> str:
        return _init(g, value, hint, dtype)

    axis0, axis1, last_axis = const([0], "axis_0"), const([1], "axis_1"), const([-1], "axis_-1")
    minus_one = const(PAD_VALUE, "minus_one", f32)

    def part(x: str, start: int, end: int, hint: str) -> str:
        bounds = [const([start], f"{hint}_start"), const([end], f"{hint}_end")]
        return node("Slice", [x, *bounds, last_axis], hint)

    # 1. x1, y1, x2, y2 in input pixels (clipped to the input for the NMS only)
    pix = node("Mul", [boxes, const(size, "input_size", f32)], "pixels")
    centre = part(pix, 0, 2, "centre")
    half = node("Mul", [part(pix, 2, 4, "size"), const(0.5, "half", f32)], "half_size")
    top_left = node("Sub", [centre, half], "top_left")
    bottom_right = node("Add", [centre, half], "bottom_right")
    corners = node("Concat", [top_left, bottom_right], "corners", axis=-1)
    xyxy = node("Clip", [corners, const(0.0, "lo", f32), const(size, "hi", f32)], "xyxy")

    # 2. each box is a candidate of its best class only, when that score is >= conf
    best_class = node("ArgMax", [scores], "best_class", axis=-1, keepdims=1)  # [N, M, 1]
    best = node("GatherElements", [scores, best_class], "best_score", axis=-1)
    conf = const(float32_at_least(settings.conf), "conf", f32)
    candidate = node("GreaterOrEqual", [best, conf], "candidate")
    one_hot = node("Equal", [best_class, const(np.arange(num_classes), "classes")], "one_hot")
    wanted = node("And", [one_hot, candidate], "wanted")
    masked = node("Where", [wanted, scores, minus_one], "masked")
    per_class = node("Transpose", [masked], "per_class", perm=[0, 2, 1])  # [N, C, M]

    # 3. per-class NMS (the -1 entries are below its score threshold)
    nms_inputs = [
        xyxy,
        per_class,
        const([settings.max_det], "max_per_class"),
        const([settings.iou], "iou", f32),
        const([-0.5], "score_threshold", f32),
    ]
    selected = node("NonMaxSuppression", nms_inputs, "selected", center_point_box=0)  # [K, 3]
    image = part(selected, 0, 1, "image")  # [K, 1]: batch index
    cls = part(selected, 1, 2, "class")
    box = part(selected, 2, 3, "box")
    kept_score = node("GatherND", [per_class, selected], "kept_score")  # [K]
    image_box = node("Concat", [image, box], "image_box", axis=1)
    kept_box = node("GatherND", [corners, image_box], "kept_box")  # [K, 4], not clipped
    score_col = node("Unsqueeze", [kept_score, axis1], "score_col")
    class_col = node("Cast", [cls], "class_col", to=TensorProto.FLOAT)
    rows = node("Concat", [kept_box, score_col, class_col], "rows", axis=1)  # [K, 6]

    # 4. per image: its rows best first, padded to max_det: TopK over [N, K + max_det] scores
    # where another image's rows and the max_det padding rows score -1
    n = node("Gather", [node("Shape", [scores], "scores_shape"), const(0, "zero")], "batch")
    images = node("Range", [const(0, "range_start"), n, const(1, "range_step")], "images")
    image_col = node("Unsqueeze", [images, axis1], "image_col")  # [N, 1]
    image_row = node("Transpose", [image], "image_row", perm=[1, 0])  # [1, K]
    mine = node("Equal", [image_col, image_row], "mine")  # [N, K]
    score_row = node("Unsqueeze", [kept_score, axis0], "score_row")  # [1, K]
    dense = node("Where", [mine, score_row, minus_one], "dense")
    n1 = node("Unsqueeze", [n, axis0], "batch_1d")
    fill_shape = node("Concat", [n1, const([settings.max_det], "max_det")], "fill_shape", axis=0)
    fill = node("Expand", [minus_one, fill_shape], "fill")
    padded = node("Concat", [dense, fill], "padded_scores", axis=1)  # [N, K + max_det]
    top_values, top_index = g.unique("nms/top_score"), g.unique("nms/top_index")
    topk = helper.make_node(
        "TopK",
        [padded, const([settings.max_det], "k")],
        [top_values, top_index],
        name=g.unique("nms/topk"),
        axis=1,
        largest=1,
        sorted=1,
    )
    g.graph.node.append(topk)
    pad_row = [0.0, 0.0, 0.0, 0.0, PAD_VALUE, PAD_VALUE]
    pad_rows = const(np.tile(pad_row, (settings.max_det, 1)), "pad_rows", f32)
    all_rows = node("Concat", [rows, pad_rows], "all_rows", axis=0)  # [K + max_det, 6]
    picked = node("Gather", [all_rows, top_index], "picked", axis=0)  # [N, max_det, 6]
    real = node("Greater", [top_values, const(-0.5, "real_score", f32)], "real")
    real = node("Unsqueeze", [real, const([2], "axis_2")], "real_col")
    detections = node("Where", [real, picked, const(pad_row, "pad_row", f32)], "detections")

    last = next(x for x in g.graph.node if x.output and x.output[0] == detections)
    last.output[0] = NMS_OUTPUTS[0]  # (graph.node holds copies of the nodes g.node made)
    batch_dim = model.graph.output[0].type.tensor_type.shape.dim[0]
    dim0: Any = batch_dim.dim_param or batch_dim.dim_value or "batch"
    del model.graph.output[:]
    model.graph.output.append(
        helper.make_tensor_value_info(
            NMS_OUTPUTS[0], TensorProto.FLOAT, [dim0, settings.max_det, len(DETECTION_FIELDS)]
        )
    )
    g.sort()
