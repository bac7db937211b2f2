"""Model families: each one a registered plug-in (:mod:`ml_core.families.base`).

Every module of this package that defines a family registers it with
:func:`~ml_core.families.base.register_family` at its end; :func:`get_family` and
:func:`all_families` import the package's modules on first use, so the registry is complete
without a list of names here. A family's ``run`` follows the contract of
:func:`ml_core.pipeline.run_training`: it checkpoints every epoch into ``checkpoint_dir`` and
resumes from there (:mod:`ml_core.checkpoints`).
"""

from __future__ import annotations

from ml_core.families.base import (
    FamilyError,
    MetricDeclaration,
    ModelFamily,
    Supports,
    all_families,
    get_family,
    register_family,
)

__all__ = ["FamilyError", "MetricDeclaration", "ModelFamily", "Supports", "all_families",
           "get_family", "register_family"]
