"""The detection network: a backbone, a neck+head, and the output decoding (spec §1-2).

``Detector(backbone, head)`` works with any backbone returning (C3, C4, C5) and any head
with ``num_classes``, ``anchors`` ([K, 2] pixels) and ``anchor_masks`` attributes whose
``construct(c3, c4, c5)`` returns the raw (stride 32, stride 16, stride 8) maps.
"""

from __future__ import annotations

import numpy as np
from mindspore import Tensor, nn

from yoloqat.core.decode import YoloPredict, to_anchor_major
from yoloqat.core.errors import ConfigError

#: Every input side must be a multiple of this (the stride of the coarsest output).
INPUT_MULTIPLE = 32


def check_input_shape(height: int, width: int) -> None:
    """Raise a ConfigError unless ``height`` and ``width`` are positive multiples of 32."""
    for name, value in (("height", height), ("width", width)):
        if int(value) != value or value <= 0 or int(value) % INPUT_MULTIPLE:
            raise ConfigError(
                f"input {name} {value} is not valid; expected a positive multiple of "
                f"{INPUT_MULTIPLE} (e.g. 320, 416, 608)"
            )


class Detector(nn.Cell):
    """YOLOv3 detector: image [N, 3, H, W] (H, W multiples of 32) -> 3 output scales.

    - Training mode (after ``set_train(True)``): a tuple of the raw predictions of the
      stride-32, stride-16 and stride-8 outputs, each ``[N, H/s, W/s, A, 5 + C]``
      (anchor-major, see :func:`yoloqat.core.decode.to_anchor_major`).
    - Eval mode: the same shapes, decoded: ``[bxy, bwh, sigmoid(obj), sigmoid(cls)]``
      with boxes normalised to [0, 1] of the input (spec §2).

    Attributes: ``backbone``, ``head`` (parameter names start with ``backbone.`` and
    ``head.``), ``num_classes``, ``anchors`` (float32 [K, 2] in input pixels),
    ``anchor_masks`` (anchor indices per output), ``strides`` = (32, 16, 8) and
    ``scale_anchors`` (the float32 [A, 2] pixel anchors of each output).
    """

    def __init__(self, backbone: nn.Cell, head: nn.Cell) -> None:
        super().__init__()
        for attr in ("num_classes", "anchors", "anchor_masks"):
            if not hasattr(head, attr):
                raise ConfigError(f"the head {type(head).__name__} has no {attr!r} attribute")
        self.backbone = backbone
        self.head = head
        self.num_classes = int(head.num_classes)
        self.anchors = np.asarray(head.anchors, dtype=np.float32).reshape(-1, 2)
        self.anchor_masks = tuple(tuple(int(i) for i in m) for m in head.anchor_masks)
        if len(self.anchor_masks) != 3:
            raise ConfigError(f"the head has {len(self.anchor_masks)} anchor masks; expected 3")
        self.strides = (32, 16, 8)
        self.scale_anchors = tuple(self.anchors[list(m)] for m in self.anchor_masks)
        self.num_anchors = tuple(len(m) for m in self.anchor_masks)
        # Constant tensors (not Parameters): they stay out of checkpoints and parameter counts.
        self.anchors_l = Tensor(self.scale_anchors[0])
        self.anchors_m = Tensor(self.scale_anchors[1])
        self.anchors_s = Tensor(self.scale_anchors[2])
        self.predict = YoloPredict()

    @staticmethod
    def check_input_shape(height: int, width: int) -> None:
        """Raise a ConfigError unless ``height`` and ``width`` are positive multiples of 32."""
        check_input_shape(height, width)

    def __call__(self, *args, **kwargs):
        # A top-level call checks the image size in Python and gives a clear ConfigError;
        # inside a compiled graph, ``construct`` raises a ValueError for the same case.
        shape = getattr(args[0], "shape", None) if args else None
        if shape is not None and len(shape) == 4:
            check_input_shape(shape[2], shape[3])
        return super().__call__(*args, **kwargs)

    def construct(self, x):
        h = x.shape[2]
        w = x.shape[3]
        if h % 32 != 0 or w % 32 != 0:
            raise ValueError(f"Detector input {h}x{w}: height and width must be multiples of 32")
        c3, c4, c5 = self.backbone(x)
        out_l, out_m, out_s = self.head(c3, c4, c5)
        raw_l = to_anchor_major(out_l, self.num_anchors[0])
        raw_m = to_anchor_major(out_m, self.num_anchors[1])
        raw_s = to_anchor_major(out_s, self.num_anchors[2])
        if self.training:
            return raw_l, raw_m, raw_s
        return (
            self.predict(raw_l, self.anchors_l, w, h),
            self.predict(raw_m, self.anchors_m, w, h),
            self.predict(raw_s, self.anchors_s, w, h),
        )
