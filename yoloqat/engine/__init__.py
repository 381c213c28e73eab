"""Orchestration above the plugins: the pipeline that builds components from a config, the
trainer, evaluation, reports and the Darknet-weights conversion.

It reaches components only through the registry and their contracts (:mod:`yoloqat.core.contracts`).
"""
