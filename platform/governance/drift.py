"""Drift checks against the champion's training data (ml_core.drift does the numbers).

Each newly validated dataset version, and each scored batch, is compared with the data the
champion of its problem was trained on: PSI per feature and per sensitive group, and the
shift of the predicted positive rate per group. A drifted report shows on the model's page
and, when the problem's schedule says so, starts a retrain.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from audits.services import log_action
from governance import registry, scoring
from governance.models import DriftReport, RetrainSchedule, ScoringJob
from ingestion.models import DatasetVersion
from ingestion.services import load_frame
from ml_core.data import feature_columns
from ml_core.drift import DriftPolicy, drift_report
from ml_core.fairness import sensitive_frame
from ml_core.spec import ColumnMapping
from training.models import ModelVersion
from verticals.registry import get_problem

logger = logging.getLogger(__name__)


def _predictions(model_version: ModelVersion, frame: pd.DataFrame) -> np.ndarray | None:
    if scoring.takes_images(model_version):
        return None  # an image model scores images, not the table's rows
    try:
        loaded = scoring.loaded_model(model_version)
        if scoring.validate_frame(loaded, frame):
            return None
        return scoring.score_frame(loaded, frame)["prediction"].to_numpy()
    except scoring.NotServing:
        return None  # not a scoring model (or no artifact): the PSI report stands alone
    except Exception:  # a model that cannot score this data still gets its PSI report
        logger.info("drift: model %s could not score the data", model_version.pk,
                    exc_info=True)
        return None


def compare(*, model_version: ModelVersion, frame: pd.DataFrame,
            policy: DriftPolicy | None = None) -> dict:
    """Drift of ``frame`` against ``model_version``'s training data."""
    run = model_version.run
    reference = load_frame(run.dataset_version)
    mapping = ColumnMapping.from_dict(run.dataset_version.mapping)
    spec = get_problem(model_version.vertical, model_version.problem).spec
    columns = [c for c in feature_columns(reference, mapping) if c in frame.columns]
    sensitive = [c for c in mapping.sensitive if c in reference.columns and c in frame.columns]
    groups_reference = groups_current = None
    if sensitive:
        # Banded together, so numeric quartile bands mean the same on both sides.
        both = pd.concat([reference[sensitive], frame[sensitive]], ignore_index=True)
        banded = sensitive_frame(both, ColumnMapping(target=mapping.target,
                                                     sensitive=tuple(sensitive)), spec)
        groups_reference = banded.iloc[:len(reference)].reset_index(drop=True)
        groups_current = banded.iloc[len(reference):].reset_index(drop=True)
    return drift_report(
        reference=reference.reset_index(drop=True), current=frame.reset_index(drop=True),
        columns=columns, groups_reference=groups_reference, groups_current=groups_current,
        predictions_reference=_predictions(model_version, reference),
        predictions_current=_predictions(model_version, frame), policy=policy,
    )


def _after(report: DriftReport) -> None:
    log_action(organisation=report.organisation, actor=None, action="drift.checked",
               obj=report.model_version, detail={"report": report.pk, "drifted": report.drifted,
                                                 "max_psi": report.report.get("max_psi")})
    if not report.drifted:
        return
    schedule = RetrainSchedule.objects.filter(
        organisation=report.organisation, vertical=report.model_version.vertical,
        problem=report.model_version.problem, retrain_on_drift=True).first()
    if schedule is not None:
        from governance.schedules import retrain

        retrain(schedule.pk, tick_key=f"drift-{report.pk}")


def check_dataset_version(version_id: int) -> DriftReport | None:
    """Compare a validated dataset version with its problem's champion's training data."""
    version = DatasetVersion.objects.select_related("dataset").filter(pk=version_id).first()
    if version is None or not version.trainable:
        return None
    dataset = version.dataset
    champion = registry.champion_of(organisation=dataset.organisation,
                                    vertical=dataset.vertical, problem=dataset.problem)
    if champion is None or champion.run.dataset_version_id == version.pk:
        return None
    body = compare(model_version=champion, frame=load_frame(version))
    report = DriftReport.objects.create(
        organisation=dataset.organisation, model_version=champion, dataset_version=version,
        drifted=body["drifted"], threshold=body["threshold"], report=body)
    _after(report)
    return report


def check_scoring_job(job_id: int, *, frame: pd.DataFrame) -> DriftReport | None:
    """Compare a scored batch with the champion's training data (else the scoring model's)."""
    job = ScoringJob.objects.select_related("model_version").get(pk=job_id)
    model = job.model_version
    reference_model = registry.champion_of(organisation=model.organisation,
                                           vertical=model.vertical, problem=model.problem) or model
    body = compare(model_version=reference_model, frame=frame)
    report = DriftReport.objects.create(
        organisation=job.organisation, model_version=reference_model, scoring_job=job,
        drifted=body["drifted"], threshold=body["threshold"], report=body)
    ScoringJob.objects.filter(pk=job.pk).update(drift={"report": report.pk,
                                                       "drifted": report.drifted,
                                                       "max_psi": body["max_psi"]})
    _after(report)
    return report
