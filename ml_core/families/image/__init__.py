"""Image classification by transfer learning (family ``image_classifier``).

The family contract of :mod:`ml_core.families`: ``run`` and ``validate``; ``load`` and
``predict`` score saved models; ``read_archive`` reads an uploaded ZIP into the table
``run`` takes (:mod:`.archive`). See :mod:`.family` for the model, :mod:`.backbone` for
BatchNorm.

The hooks are imported on first use, so that a vertical naming a constant of :mod:`.data`
does not load torch, Opacus and scikit-learn when Django starts.
"""

from __future__ import annotations

from importlib import import_module

_HOOKS = {"run": "family", "load": "family", "predict": "family", "MODEL_FAMILY": "family",
          "validate": "checks", "read_archive": "archive"}

__all__ = sorted(_HOOKS)


def __getattr__(name: str):
    if name not in _HOOKS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(f"{__name__}.{_HOOKS[name]}")
    return getattr(module, "read_image_archive" if name == "read_archive" else name)
