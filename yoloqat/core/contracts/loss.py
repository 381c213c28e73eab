"""The loss contract: what a ``yoloqat_losses()`` factory returns, and what it receives.

A loss is a ``mindspore.nn.Cell`` called once per training step (inside the compiled train
step, so it must compile in GRAPH_MODE) with the network's three raw training outputs and
the targets built by :func:`yoloqat.data.targets.build_targets_batch` from the batch's
boxes. Its factory may declare ``num_classes``, ``anchors`` and ``anchor_masks``: the
pipeline passes the model's values (the head's) to factories that declare them and whose
config block does not set them.

Shapes, for an input ``[N, 3, H, W]``, ``A`` anchors per output, ``C`` classes and the
outputs in the order stride 32, 16, 8 (``l``, ``m``, ``s``; ``G_s = H / s x W / s``):

- ``out_l, out_m, out_s``: raw predictions ``[N, H / s, W / s, A, 5 + C]`` (anchor-major;
  ``tx, ty, tw, th, objectness, classes`` as logits, before any decoding);
- ``y_true_l, y_true_m, y_true_s``: float32 ``[N, H / s, W / s, A, 5 + C]``: for the one
  anchor and cell each ground-truth box is assigned to (best anchor-shape IoU),
  ``cx, cy, w, h`` normalised to the input, ``1`` (object), then the one-hot (or smoothed)
  class vector; zeros elsewhere;
- ``gt_l, gt_m, gt_s``: float32 ``[N, max_boxes, 4]``: normalised ``cx, cy, w, h`` of the
  boxes assigned to that output, zero padded (for the ignore mask).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

#: Members :func:`yoloqat.core.contracts.check_component` checks on a loss.
MEMBERS: tuple[str, ...] = ("construct",)


@runtime_checkable
class Loss(Protocol):
    """What a loss factory returns: an ``nn.Cell`` from outputs and targets to a scalar."""

    def construct(
        self,
        out_l: Any,
        out_m: Any,
        out_s: Any,
        y_true_l: Any,
        y_true_m: Any,
        y_true_s: Any,
        gt_l: Any,
        gt_m: Any,
        gt_s: Any,
    ) -> Any:
        """The scalar float32 loss of the batch (the train step scales it and takes its
        gradient with respect to the network's weights); arguments as in the module doc."""
        ...


def problems(obj: Any) -> list[str]:
    """Nothing beyond the members: a loss's values are checked by the first train step."""
    return []
