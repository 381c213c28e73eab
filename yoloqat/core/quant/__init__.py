"""Shared building blocks of fake quantization: the NumPy reference arithmetic, fake-quant
nodes and observers built from ordinary MindSpore ops, the quantized layers, and
:class:`~yoloqat.core.quant.rewrite.FakeQuantizer`, a complete implementation of the
quantizer contract (:mod:`yoloqat.core.contracts.quantizer`) that quantizer plugins
(``int8_qat``, ``int8_ptq``, third-party ones) configure rather than rewrite.
"""
