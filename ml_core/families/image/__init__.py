"""Image classification by transfer learning (family ``image_classifier``).

The family contract of :mod:`ml_core.families`: ``run`` and ``validate``; ``load`` and
``predict`` score saved models. :mod:`.archive` reads an uploaded ZIP into the table ``run``
takes. See :mod:`.family` for the model, :mod:`.backbone` for BatchNorm.
"""

from ml_core.families.image.checks import validate
from ml_core.families.image.family import MODEL_FAMILY, load, predict, run

__all__ = ["MODEL_FAMILY", "load", "predict", "run", "validate"]
