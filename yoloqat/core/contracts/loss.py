"""The loss contract: what a ``yoloqat_losses()`` factory returns, and what it receives.

A loss is a ``mindspore.nn.Cell`` called once per training step inside the compiled train
step (so it must compile in GRAPH_MODE) with the head's raw training outputs, the batch's
ground truth padded to a fixed size, and the extras of its own target builder, if it has
one. A family trains in one of two ways:

- **assignment in the loss** (prediction-aware: task-aligned, SimOTA, centre sampling):
  the loss matches ground truth to predictions itself, from the padded ground truth, with
  masks and constant sizes so that it compiles once;
- **targets built on the host** (prediction-independent, e.g. each box matched to one prior):
  the loss's ``build_targets`` runs in the data loader, on NumPy, once per batch, and its
  arrays reach ``construct`` as ``*extras``.

The ground truth of a batch of ``N`` images at input size ``H x W``, ``M`` =
``data.max_boxes`` (an image with more boxes is counted and warned about):

- ``gt_boxes``: float32 ``[N, M, 4]``, ``x1, y1, x2, y2`` in network-input pixels;
- ``gt_labels``: int32 ``[N, M]``, class index (0 in padding rows);
- ``gt_valid``: float32 ``[N, M]``, 1 for a real box, 0 for padding.

Its factory may declare ``num_classes``, ``strides`` (the head's output strides) and any key
of the head's ``loss_params`` (e.g. ``anchors``): the pipeline passes the model's values to
factories that declare them and whose config block does not set them.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

#: Members :func:`yoloqat.core.contracts.check_component` checks on a loss.
MEMBERS: tuple[str, ...] = ("accepts", "build_targets", "construct")
#: Members a loss may leave out (the default is said in the Protocol).
OPTIONAL: tuple[str, ...] = ("build_targets",)
#: ``construct`` may name the builder's arrays as parameters of its own when it has one.
MORE_ARGS_WITH: dict[str, str] = {"construct": "build_targets"}


@runtime_checkable
class Loss(Protocol):
    """What a loss factory returns: an ``nn.Cell`` from outputs and ground truth to a scalar."""

    #: The head ``output_format`` values this loss can train (e.g. ``("yolo_anchors",)``).
    accepts: tuple[str, ...]

    def build_targets(
        self, gt_boxes: Any, gt_labels: Any, gt_valid: Any, input_hw: tuple[int, int]
    ) -> tuple[Any, ...]:
        """Optional host-side target builder, run by the data loader once per batch on NumPy
        arrays (the ground truth above, ``input_hw`` the batch's ``(H, W)``): returns a tuple
        of NumPy arrays, the same count and dtypes at every size, passed to ``construct``
        after ``gt_valid``. Leave it out when the loss assigns targets itself."""
        ...

    def construct(
        self, outputs: Any, gt_boxes: Any, gt_labels: Any, gt_valid: Any, *extras: Any
    ) -> Any:
        """``outputs``: the tuple of raw head outputs; then the padded ground truth, then
        ``*extras`` (the arrays ``build_targets`` returned, if any). Returns the scalar
        float32 loss of the batch (the train step scales it and takes its gradient with
        respect to the network's weights)."""
        ...


def problems(obj: Any) -> list[str]:
    """What is wrong with the values of a loss whose members are all present."""
    accepts = obj.accepts
    if (
        isinstance(accepts, str)
        or not isinstance(accepts, (tuple, list, frozenset, set))
        or not accepts
        or not all(isinstance(a, str) and a for a in accepts)
    ):
        return [
            f"'accepts' must be a tuple of head output formats (e.g. ('yolo_anchors',)), "
            f"got {accepts!r}"
        ]
    return []
