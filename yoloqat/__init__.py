"""yoloqat: plugin-based object detection on MindSpore (YOLOv3-DarkNet53 + int8 QAT).

Public entry points kept import-cheap: no MindSpore import happens here.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marker a plugin uses on its hook implementations: ``@yoloqat.hookimpl``.
hookimpl = pluggy.HookimplMarker("yoloqat")


def create(kind: str, name: str, /, **params: object) -> object:
    """Build the component ``name`` of ``kind`` through the default registry.

    ``create("backbone", "darknet53", width=0.25)`` checks the name and parameters
    (with "Did you mean" suggestions) before building anything.
    """
    from yoloqat.registry import default_registry

    return default_registry().create(kind, name, **params)


__all__ = ["__version__", "create", "hookimpl"]
