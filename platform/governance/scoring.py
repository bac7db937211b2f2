"""Predictions from approved and champion models: online rows and batch CSV files, or, for a
family that takes its uploads as archives of images, one image (multipart) and batch ZIPs.

Input is checked against the model's own schema (the columns its saved encoder was fitted
on, numeric or categorical) before any scoring; a bad row is named, never silently imputed.
Images go through the same safe archive reader as uploads (ingestion.image_uploads) and are
scored by the family's ``predict`` hook: class, top score and one score per class, the image
path as the row id. Which input a model takes is its family's declaration, never its name.
Exported CSV cells that a spreadsheet would run as a formula are escaped.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from accounts.scoping import member_of
from audits.services import log_action
from catalog.families import family_of_model
from governance.models import ScoringJob
from ingestion import image_uploads
from ingestion.storage import read_encrypted, read_stored, store_upload, write_encrypted
from ml_core import cancellation
from ml_core.artifacts import LoadedModel, predict_decisions
from ml_core.families import get_family
from ml_core.tables import TableReadError, read_table
from training.models import ModelVersion
from training.progress import CancelCheck, request_cancel
from verticals.registry import get_problem

logger = logging.getLogger(__name__)

MAX_ONLINE_ROWS = 1000
# Rows encoded and scored at a time in batch jobs: large enough that per-batch overhead
# (pandas calls, one progress write) is negligible, small enough to keep memory flat.
BATCH_ROWS = 100_000
# Images decoded and scored at a time (the family batches its network within): one progress
# write per batch, a bounded share of the images in memory as pixels.
BATCH_IMAGES = 256
# OWASP's CSV-injection list: a leading = + - @ tab or CR makes a spreadsheet cell a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
MAX_ERRORS = 20


class NotServing(ValueError):
    """The model is not approved (or champion): it may not serve predictions."""


class PredictionInputError(ValueError):
    """The rows do not fit the model's schema; ``errors`` says which rows and columns."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        super().__init__("the rows do not fit the model's input schema")


def escape_cell(value: object) -> object:
    """A text cell starting with a formula character gets a leading apostrophe; numbers
    (including negative ones) stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def ensure_serving(model_version: ModelVersion) -> None:
    if model_version.status not in ModelVersion.SERVING:
        raise NotServing(
            f"model {model_version.pk} is {model_version.get_status_display().lower()}: only "
            "approved or champion models serve predictions"
        )


@functools.lru_cache(maxsize=8)
def _load(family: str, path: str, sha256: str) -> LoadedModel:
    loaded = get_family(family).load(path)
    if loaded.metadata.get("weights_sha256") != sha256:
        raise PermissionDenied("the model's weights differ from the registered checksum")
    return loaded


def loaded_model(model_version: ModelVersion, *, mode: str | None = None) -> LoadedModel:
    """The model's artifact, loaded by its family; NotServing unless the family serves
    predictions (``mode``: "online" or "batch" asks for that one; None for either)."""
    family = family_of_model(model_version)
    serves = {"online": family.supports.online_prediction,
              "batch": family.supports.batch_scoring}
    if not (serves[mode] if mode else any(serves.values())) \
            or not model_version.run.artifact_path:
        raise NotServing(f"models of the {family.name} family serve no "
                         f"{'' if mode is None else mode + ' '}predictions here")
    return _load(family.name, model_version.run.artifact_path, model_version.artifact_sha256)


def takes_images(model_version: ModelVersion) -> bool:
    """True when the model's family takes its input as images in an archive (its uploads are
    ZIPs), False when it takes rows of a table."""
    return image_uploads.reads_archives(
        get_problem(model_version.vertical, model_version.problem).spec)


def read_images(model_version: ModelVersion, data: bytes) -> pd.DataFrame:
    """The unlabelled image table of a ZIP for ``model_version``'s family (the upload's safe
    reader); ValueError with the reader's message for an archive it refuses."""
    spec = get_problem(model_version.vertical, model_version.problem).spec
    try:
        return image_uploads.read_images_to_score(data, spec)
    except image_uploads.ArchiveRefused as exc:
        raise ValueError(exc.message) from None


def score_images(loaded, model_version: ModelVersion, frame: pd.DataFrame) -> pd.DataFrame:
    """The family's predictions for an image table: ``row_id`` (the image path), ``y_pred``
    (the class), ``y_score`` (its probability), ``prob_<class>`` per class."""
    return family_of_model(model_version).predict(loaded, frame)


def input_schema(loaded: LoadedModel) -> dict:
    """The columns a row needs: name -> "numeric" or "categorical" (missing values allowed)."""
    encoder = loaded.encoder
    return {**{c: "numeric" for c in encoder.numeric},
            **{c: "categorical" for c in encoder.categorical}}


def validate_frame(loaded: LoadedModel, frame: pd.DataFrame) -> list[dict]:
    """Problems with ``frame`` as input: missing columns, text in numeric columns (1-based
    row numbers)."""
    schema = input_schema(loaded)
    errors: list[dict] = []
    missing = [column for column in schema if column not in frame.columns]
    for column in missing:
        errors.append({"code": "missing_column", "column": column,
                       "message": f"column {column!r} is required by the model", "rows": []})
    for column, kind in schema.items():
        if kind != "numeric" or column in missing:
            continue
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        bad = values.notna() & numbers.isna() & (values.astype("object").map(
            lambda v: str(v).strip() != ""))
        rows = [int(i) + 1 for i in np.flatnonzero(bad.to_numpy())]
        if rows:
            errors.append({"code": "not_numeric", "column": column, "rows": rows[:MAX_ERRORS],
                           "message": f"column {column!r} needs numbers; {len(rows)} row(s) "
                                      f"hold text, first: row {rows[0]}"})
    return errors


def score_frame(loaded: LoadedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """``score`` (positive-class probability) and ``prediction`` (0/1 at the model's own
    threshold) for each row of a frame that passed :func:`validate_frame`."""
    text_numbers = {
        column: pd.to_numeric(frame[column].replace("", np.nan), errors="coerce")
        for column, kind in input_schema(loaded).items()
        if kind == "numeric" and not pd.api.types.is_numeric_dtype(frame[column])
    }
    if text_numbers:  # only the columns that need it are converted (no copy of the rest)
        frame = frame.assign(**text_numbers)
    return predict_decisions(loaded, frame)


def score_in_batches(
    loaded: LoadedModel, frame: pd.DataFrame, *, batch_rows: int = BATCH_ROWS,
    progress: Callable[[int], object] | None = None,
    score: Callable[[LoadedModel, pd.DataFrame], pd.DataFrame] = score_frame,
) -> pd.DataFrame:
    """``score`` (:func:`score_frame` unless given) over ``frame`` in batches of
    ``batch_rows`` (column-wise encoding and one forward pass each, no per-row Python);
    ``progress(rows_done)`` after each batch. Batch scoring jobs and the benchmark's
    ``scoring_ratio`` go through here."""
    parts = []
    # A cancel (ml_core.cancellation) is honoured before each batch.
    for start in cancellation.checked(range(0, len(frame), batch_rows)):
        chunk = frame.iloc[start:start + batch_rows]
        parts.append(score(loaded, chunk))
        if progress is not None:
            progress(start + len(chunk))
    if not parts:
        return pd.DataFrame({"score": pd.Series(dtype=float),
                             "prediction": pd.Series(dtype=int)}, index=frame.index)
    return pd.concat(parts) if len(parts) > 1 else parts[0]


def _input_error(code: str, message: str) -> PredictionInputError:
    return PredictionInputError([{"code": code, "column": None, "rows": [],
                                  "message": message}])


def predict_rows(*, model_version: ModelVersion, user, rows: list[dict]) -> dict:
    """Online scoring of JSON rows. NotServing, PredictionInputError (400 material)."""
    member_of(user, model_version, refusal="this model belongs to another organisation")
    ensure_serving(model_version)
    if takes_images(model_version):
        raise _input_error("image_expected", "this model scores images: send one as the "
                           "multipart field 'image' (a ZIP of images goes to batch scoring)")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise PredictionInputError([{"code": "no_rows", "column": None, "rows": [],
                                     "message": "send a non-empty list of objects as rows"}])
    if len(rows) > MAX_ONLINE_ROWS:
        raise PredictionInputError([{"code": "too_many_rows", "column": None, "rows": [],
                                     "message": f"at most {MAX_ONLINE_ROWS} rows per request; "
                                                "use batch scoring for more"}])
    loaded = loaded_model(model_version)
    frame = pd.DataFrame.from_records(rows)
    errors = validate_frame(loaded, frame)
    if errors:
        raise PredictionInputError(errors)
    scored = score_frame(loaded, frame)
    return {
        "model_version": model_version.pk,
        "positive_label": loaded.metadata.get("positive_label"),
        "threshold": loaded.metadata.get("threshold"),
        "predictions": [{"row": i + 1, "score": float(s), "prediction": int(p)}
                        for i, (s, p) in enumerate(zip(scored["score"], scored["prediction"],
                                                       strict=True))],
    }


def predict_image(*, model_version: ModelVersion, user, file) -> dict:
    """Online scoring of one uploaded image: its class, the class's probability and one
    probability per class. NotServing, PredictionInputError (400 material)."""
    member_of(user, model_version, refusal="this model belongs to another organisation")
    ensure_serving(model_version)
    if not takes_images(model_version):
        raise _input_error("rows_expected", "this model scores rows of a table: send JSON "
                           "{\"rows\": [...]}")
    if file is None:
        raise _input_error("no_image", "send one image as the multipart field 'image'")
    data = file.read()
    if len(data) > settings.TESSERA_MAX_UPLOAD_BYTES:
        raise _input_error("too_large", "the image is larger than the upload limit")
    name = getattr(file, "name", "") or "image"
    try:
        frame = image_uploads.read_images_to_score(
            image_uploads.single_image_archive(name, data),
            get_problem(model_version.vertical, model_version.problem).spec)
    except image_uploads.ArchiveRefused as exc:
        message = ("the file is not an image by its name (JPEG, PNG, BMP, TIFF, WebP or GIF)"
                   if exc.code == "no_images" else exc.message)
        raise _input_error("unreadable_image", message) from None
    loaded = loaded_model(model_version, mode="online")
    scored = score_images(loaded, model_version, frame)
    return {"model_version": model_version.pk, "classes": list(score_classes(scored)),
            "predictions": image_predictions(scored)}


def score_classes(scored: pd.DataFrame) -> list[str]:
    return [str(c)[len("prob_"):] for c in scored.columns if str(c).startswith("prob_")]


def image_predictions(scored: pd.DataFrame) -> list[dict]:
    """The family's prediction table as the API's answer, one entry per image."""
    classes = score_classes(scored)
    return [{"row": i + 1, "image": str(row["row_id"]), "prediction": str(row["y_pred"]),
             "score": float(row["y_score"]),
             "scores": {c: float(row[f"prob_{c}"]) for c in classes}}
            for i, (_, row) in enumerate(scored.iterrows())]


# --- batch scoring -------------------------------------------------------------------------


def start_scoring_job(*, model_version: ModelVersion, user, file) -> ScoringJob:
    """Store an uploaded CSV and queue its scoring (Celery, default queue)."""
    membership = member_of(user, model_version,
                           refusal="this model belongs to another organisation")
    ensure_serving(model_version)
    data = file.read() if hasattr(file, "read") else bytes(file)
    if len(data) > settings.TESSERA_MAX_UPLOAD_BYTES:
        raise ValueError("the file is larger than the upload limit")
    frame = _read_input(model_version, data)
    # Stored encrypted like every upload (ingestion.storage), read back with read_stored.
    stored = store_upload(io.BytesIO(data), organisation_id=membership.organisation_id,
                          max_bytes=settings.TESSERA_MAX_UPLOAD_BYTES)
    with transaction.atomic():
        job = ScoringJob.objects.create(
            organisation=membership.organisation, model_version=model_version,
            original_filename=getattr(file, "name", "rows.csv")[:255],
            input_path=stored.relative_path, rows_total=len(frame), created_by=user,
        )
        log_action(organisation=membership.organisation, actor=user, action="scoring.started",
                   obj=job, detail={"model_version": model_version.pk, "rows": len(frame)})
        transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _read_input(model_version: ModelVersion, data: bytes) -> pd.DataFrame:
    """The rows a job scores: the table of a CSV, or the images of a ZIP for a model whose
    family takes images. ValueError with the reader's message."""
    if takes_images(model_version):
        return read_images(model_version, data)
    try:
        frame, _ = read_table(data)
    except TableReadError as exc:
        raise ValueError(f"the file could not be read: {exc.message}") from None
    return frame


def _enqueue(job_id: int) -> None:
    from governance.tasks import score_batch

    score_batch.apply_async(args=[job_id], queue="default")


def output_path(job: ScoringJob) -> Path:
    return Path(settings.TESSERA_ARTIFACT_DIR) / "scoring" / f"job_{job.pk}.csv"


def scored_csv(frame: pd.DataFrame) -> bytes:
    """``frame`` as CSV with every formula-like text cell escaped."""
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow([escape_cell(str(c)) for c in frame.columns])
    for row in frame.itertuples(index=False, name=None):
        writer.writerow(["" if (not isinstance(v, str) and pd.isna(v)) else escape_cell(v)
                         for v in row])
    return handle.getvalue().encode("utf-8")


def scored_file(job: ScoringJob) -> bytes:
    """The decrypted result of a succeeded job, for its download (the view checks who)."""
    return read_encrypted(Path(job.output_path))


def cancel_scoring_job(*, job: ScoringJob, user) -> ScoringJob:
    """Cancel a queued job at once; ask a running one to stop before its next batch (what it
    scored is discarded: no file is written). Any member of the job's organisation, as for
    starting one. ValueError when it has already finished."""
    membership = member_of(user, job, refusal="this scoring job belongs to another "
                                              "organisation")
    request_cancel(job, organisation=membership.organisation, user=user, action="scoring",
                   what=f"scoring job {job.pk}")
    return job


def execute_scoring_job(job_id: int) -> None:
    """Score one job; what the Celery task calls. A job not queued any more is left alone.
    A cancel (:func:`cancel_scoring_job`) is honoured before each batch: the job ends
    ``cancelled`` with the rows scored so far counted and nothing written."""
    if not ScoringJob.objects.filter(pk=job_id, status=ScoringJob.Status.QUEUED).update(
            status=ScoringJob.Status.RUNNING):
        return
    job = ScoringJob.objects.select_related("model_version__run").get(pk=job_id)
    try:
        with cancellation.stop_when(CancelCheck(job.pk, model=ScoringJob)):
            path, frame, images = _score_job(job)
    except cancellation.TrainingCancelled:
        ScoringJob.objects.filter(pk=job.pk).update(status=ScoringJob.Status.CANCELLED,
                                                    finished_at=timezone.now())
        return
    except Exception as exc:  # the job records why; the worker stays up
        logger.exception("scoring job %s failed", job_id)
        _fail(job, [{"code": "failed", "column": None, "rows": [],
                     "message": f"{type(exc).__name__}: {exc}"[:2000]}])
        return
    if path is None:
        return  # failed on its rows (_fail recorded which)
    ScoringJob.objects.filter(pk=job.pk).update(
        status=ScoringJob.Status.SUCCEEDED, rows_done=len(frame), output_path=str(path),
        finished_at=timezone.now())
    if images:
        return  # drift compares table columns with the training table's
    try:
        from governance.drift import check_scoring_job

        check_scoring_job(job.pk, frame=frame)
    except Exception:  # drift is advisory: a failed check never fails the scored file
        logger.exception("drift check of scoring job %s failed", job.pk)


def _score_job(job: ScoringJob) -> tuple[Path | None, pd.DataFrame, bool]:
    """Score the job's rows and write the encrypted result: (its path, the input rows,
    whether they were images); no path when the rows do not fit the model (job failed)."""
    ensure_serving(job.model_version)
    loaded = loaded_model(job.model_version, mode="batch")
    images = takes_images(job.model_version)
    frame = _read_input(job.model_version, read_stored(job.input_path))

    def progress(done: int) -> None:
        ScoringJob.objects.filter(pk=job.pk).update(rows_done=done)

    if images:
        # One row per image: its path, class and scores (never the image's bytes).
        scored = score_in_batches(
            loaded, frame, batch_rows=BATCH_IMAGES, progress=progress,
            score=lambda model, part: score_images(model, job.model_version, part))
    else:
        errors = validate_frame(loaded, frame)
        if errors:
            _fail(job, errors)
            return None, frame, images
        scores = score_in_batches(loaded, frame, progress=progress)
        scored = pd.concat([frame, scores], axis=1) if len(frame) else frame
    path = output_path(job)
    # Every input column, sensitive ones included: encrypted at rest like the upload.
    write_encrypted(path, scored_csv(scored))
    return path, frame, images


def _fail(job: ScoringJob, errors: list[dict]) -> None:
    ScoringJob.objects.filter(pk=job.pk).update(status=ScoringJob.Status.FAILED, errors=errors,
                                                finished_at=timezone.now())
