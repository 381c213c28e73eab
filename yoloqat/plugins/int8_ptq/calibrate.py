"""Calibration of the ``int8_ptq`` quantizer: activation ranges from float activations."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from mindspore import Tensor, nn

from yoloqat.core.quant.rewrite import FakeQuantizer, quantized_layers, refresh_weight_ranges

#: At most this many values of one activation per batch enter the percentile (sampled).
SAMPLE = 1 << 20


class Int8PTQ(FakeQuantizer):
    """The shared fake-quant rewrite whose activation ranges :meth:`calibrate` measures."""

    needs_calibration = True

    def __init__(self, config, skip_layers=(), *, method: str, percentile: float) -> None:
        super().__init__(config, skip_layers, name="int8_ptq")
        self.method = method
        self.percentile = float(percentile)

    def calibrate(self, network: nn.Cell, images: Iterable[np.ndarray]) -> int:
        """Set every range from float activations of ``images`` (``[B, 3, S, S]`` batches).

        Weight ranges are the folded weights' min/max. The network runs in PyNative mode
        with fake quantization off, a hook reading the input of each activation fake quant.
        Returns the number of images seen.
        """
        import mindspore as ms

        refresh_weight_ranges(network)
        nodes = {
            f"{path}.{attr}": fq
            for path, layer in quantized_layers(network)
            for attr, fq in layer.fake_quants().items()
            if attr != "weight_quant"
        }
        stats: dict[str, list[tuple[float, float]]] = {name: [] for name in nodes}
        rng = np.random.default_rng(0)

        def hook_for(name: str):
            def hook(cell, inputs, output):
                x = inputs[0].asnumpy().reshape(-1)
                if self.method == "minmax":
                    stats[name].append((float(x.min()), float(x.max())))
                    return
                if x.size > SAMPLE:
                    x = rng.choice(x, SAMPLE, replace=False)
                lo, hi = np.percentile(x, [100.0 - self.percentile, self.percentile])
                stats[name].append((float(lo), float(hi)))

            return hook

        enabled = {name: fq.enabled for name, fq in nodes.items()}
        self.set_fake_quant(network, False)
        handles = [fq.register_forward_hook(hook_for(name)) for name, fq in nodes.items()]
        mode = ms.get_context("mode")
        ms.set_context(mode=ms.PYNATIVE_MODE)
        seen = 0
        try:
            network.set_train(False)
            for batch in images:
                network(Tensor(np.asarray(batch, np.float32)))
                seen += len(batch)
        finally:
            ms.set_context(mode=mode)
            for handle in handles:
                handle.remove()
            self.set_fake_quant(network, True)
            for name, fq in nodes.items():
                fq.enabled = enabled[name]
        if seen == 0:
            raise ValueError("int8_ptq: no calibration image was read")
        for name, fq in nodes.items():
            lows, highs = zip(*stats[name]) if stats[name] else ((0.0,), (0.0,))
            if self.method == "minmax":
                lo, hi = min(lows), max(highs)
            else:
                lo, hi = float(np.mean(lows)), float(np.mean(highs))
            fq.min_value.set_data(Tensor(np.full(fq.min_value.shape, min(lo, 0.0), np.float32)))
            fq.max_value.set_data(Tensor(np.full(fq.max_value.shape, max(hi, 0.0), np.float32)))
        return seen
