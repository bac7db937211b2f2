"""Progress reporting and cancellation checks that a worker writes to / reads from the DB."""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from observability.audit_trail import log_action
from training.models import TrainingRun


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class RunProgress:
    """A ``ml_core.spec.ProgressSink`` that persists to one TrainingRun row.

    Writes at most once per ``interval_s``, except that a new stage or a new epoch always
    writes, so the page never misses an epoch end. Each new (stage, epoch) is appended to
    history; at the end the run's history is replaced by the pipeline's own.
    """

    def __init__(self, run_id: int, *, interval_s: float | None = None, clock=time.monotonic,
                 should_stop=None):
        self.run_id = run_id
        # Checked at every stage boundary too; within a stage, the long loops (encoding,
        # baselines, audits) ask the same check between chunks (ml_core.cancellation).
        self.should_stop = should_stop
        self.interval_s = settings.TESSERA_PROGRESS_INTERVAL_S if interval_s is None else interval_s
        self.clock = clock
        self.history: list[dict] = []
        self.writes = 0
        self._last_write = -math.inf
        self._last_key: tuple[str, int] | None = None

    def __call__(
        self, *, stage: str, epoch: int, total_epochs: int, loss: float | None = None,
        val_metric: float | None = None, epsilon: float | None = None,
    ) -> None:
        key = (str(stage), int(epoch or 0))
        if key[1] == 0 and self.should_stop is not None and self.should_stop():
            from ml_core.pipeline import TrainingCancelled  # torch: only in the worker

            raise TrainingCancelled()
        boundary = key != self._last_key
        now = self.clock()
        if not boundary and now - self._last_write < self.interval_s:
            return
        if key[1] == 0:
            # A stage report ("preparing", "auditing", ...): keep the last epoch's numbers.
            TrainingRun.objects.filter(pk=self.run_id).update(
                stage=key[0][:32], total_epochs=int(total_epochs or 0)
            )
            self._wrote(now, key)
            return
        if key[0] in MODEL_STAGES:
            fields = {
                "stage": key[0][:32],
                "epoch": key[1],
                "total_epochs": int(total_epochs or 0),
                "loss": _number(loss),
                "val_metric": _number(val_metric),
            }
            if epsilon is not None:
                fields["epsilon_spent"] = _number(epsilon)
        else:
            # The non-private twin (a reference for the curator) trains after the model: its
            # epochs go to the curve, but the headline keeps the model's own numbers.
            fields = {"stage": key[0][:32]}
        last = self.history[-1] if self.history else None
        numbers = {"loss": _number(loss), "val_metric": _number(val_metric),
                   "epsilon": _number(epsilon)}
        if last is not None and (last["stage"], last["epoch"]) == key:
            # Later reports within the same epoch carry the epoch's final numbers.
            last.update(numbers)
        else:
            # One entry per (stage, epoch): the private model and its non-private twin
            # each train their epochs, told apart by stage.
            self.history.append({"stage": key[0], "epoch": key[1], **numbers})
        fields["history"] = list(self.history)
        TrainingRun.objects.filter(pk=self.run_id).update(**fields)
        self._wrote(now, key)

    def _wrote(self, now: float, key: tuple[str, int]) -> None:
        self.writes += 1
        self._last_write = now
        self._last_key = key


class CancelCheck:
    """A ``ml_core.spec.StopCheck`` reading ``cancel_requested`` at most every ``interval_s``:
    a run's, or another long job's (``model``: a scoring job, a privacy audit)."""

    def __init__(self, run_id: int, *, interval_s: float = 0.5, clock=time.monotonic,
                 model: type[models.Model] = TrainingRun):
        self.run_id = run_id
        self.model = model
        self.interval_s = interval_s
        self.clock = clock
        self._last_check = -math.inf
        self._cancelled = False

    def __call__(self) -> bool:
        if self._cancelled:
            return True
        now = self.clock()
        if now - self._last_check >= self.interval_s:
            self._last_check = now
            self._cancelled = self.model.objects.filter(
                pk=self.run_id, cancel_requested=True
            ).exists()
        return self._cancelled


def request_cancel(obj: models.Model, *, organisation, user, action: str, what: str,
                   **when_queued) -> None:
    """The one cancel request of runs, scoring jobs and privacy audits (rows with ``status``,
    ``cancel_requested`` and ``finished_at``): a queued one is cancelled at once (with
    ``when_queued`` set too), a running one is asked to stop at its worker's next check
    (:class:`CancelCheck`). Logs ``<action>.cancelled`` or ``<action>.cancel_requested``;
    ValueError naming ``what`` when it has already finished. The caller checks who asks."""
    rows = type(obj).objects.filter(pk=obj.pk)
    with transaction.atomic():
        if rows.filter(status="queued").update(status="cancelled", cancel_requested=True,
                                               finished_at=timezone.now(), **when_queued):
            verb = "cancelled"
        elif rows.filter(status="running").update(cancel_requested=True):
            verb = "cancel_requested"
        else:
            obj.refresh_from_db()
            raise ValueError(f"{what} has already {obj.get_status_display().lower()}")
        log_action(organisation=organisation, actor=user, action=f"{action}.{verb}", obj=obj)
    obj.refresh_from_db()


STAGE_LABELS = {"training": "model", "training_twin": "non-private twin"}
# Stages whose epochs are the released model's; the run page's headline shows only these.
MODEL_STAGES = frozenset({"training"})


def model_headline(history: list[dict]) -> dict:
    """The model's last epoch in ``history`` (entries without a stage are the model's, as the
    finished run stores them): epoch, loss, validation metric; {} when it has none."""
    own = [entry for entry in history or [] if isinstance(entry, dict) and entry.get("epoch")
           and str(entry.get("stage") or "training") in MODEL_STAGES]
    if not own:
        return {}
    last = own[-1]
    return {"epoch": int(last["epoch"]), "loss": _number(last.get("loss")),
            "val_metric": _number(last.get("val_metric"))}


# A private run that leaves more than this share of its target epsilon unspent says why
# (issue 13); below it the page still states what was spent and what was left.
UNSPENT_SHARE = 0.10


def epsilon_left(privacy: dict | None) -> tuple[float, float] | None:
    """(spent, target) of a private run's stored privacy report; None when not private or
    not known."""
    privacy = privacy or {}
    try:
        spent, target = float(privacy["epsilon"]), float(privacy["target_epsilon"])
    except (KeyError, TypeError, ValueError):
        return None
    if not privacy.get("enabled") or not math.isfinite(spent) or not target > 0:
        return None
    return spent, target


def _budget_sentence(privacy: dict | None, *, why_left: str) -> str:
    budget = epsilon_left(privacy)
    if budget is None:
        return ""
    spent, target = budget
    left = max(0.0, target - spent)
    if left <= UNSPENT_SHARE * target:
        return f" ε spent: {spent:.2f} of the target {target:g} ({left:.2f} left)."
    return (f" ε spent: {spent:.2f} of the target {target:g}; {left:.2f} ({left / target:.0%}) "
            f"was left unspent {why_left}.")


def stop_reason(run: TrainingRun, *, patience: int | None) -> str:
    """Why training ended and, for a private run, how much of its target epsilon it spent
    and left, in words; "" for a run still going, or a non-private run that ran every
    planned epoch. More than :data:`UNSPENT_SHARE` of the target left unspent is always
    explained (stopped early, cancelled, the budget cap, or the accountant's bound)."""
    privacy = run.privacy or {}
    if run.status == TrainingRun.Status.CANCELLED:
        return ((f"Cancelled at epoch {run.epoch} of {run.total_epochs}." if run.epoch
                 else "Cancelled before the first epoch ended.")
                + _budget_sentence(privacy, why_left="because the run was cancelled"))
    if run.status != TrainingRun.Status.SUCCEEDED or not run.total_epochs:
        return ""
    steps, planned = privacy.get("steps"), privacy.get("planned_steps")
    if 0 < run.epoch < run.total_epochs:
        why = (f"the validation metric had not improved for {patience} epochs in a row "
               "(early stopping)" if patience else "early stopping")
        return (f"Stopped early at epoch {run.epoch} of {run.total_epochs}: {why}; the model "
                "kept is its best epoch on the validation split."
                + _budget_sentence(privacy, why_left="because training stopped before the "
                                   "steps its noise was set for"))
    if epsilon_left(privacy) is None:
        return ""
    if isinstance(steps, int) and isinstance(planned, int) and steps < planned:
        return (f"Stopped at the budget cap after {steps} of {planned} planned steps: one more "
                "epoch would have taken more steps than the noise was set for."
                + _budget_sentence(privacy, why_left="because a whole further epoch did not "
                                   "fit in the budget"))
    return (f"Ran every planned epoch ({run.total_epochs})."
            + _budget_sentence(privacy, why_left="because the accountant's bound for the "
                               "planned steps, with the noise searched for them, came out "
                               "below the target"))


def curve_data(history: list[dict]) -> dict:
    """The training curve from a run's history: one series per stage (the model, then its
    non-private twin), each with its epochs and the loss, validation metric and epsilon
    spent at each. Plain JSON for the page's chart (``json_script``) and progress.json."""
    series: dict[str, dict] = {}
    for entry in history:
        if not isinstance(entry, dict) or not entry.get("epoch"):
            continue
        stage = str(entry.get("stage") or "training")
        line = series.setdefault(stage, {
            "stage": stage, "label": STAGE_LABELS.get(stage, stage.replace("_", " ")),
            "epochs": [], "loss": [], "val_metric": [], "epsilon": []})
        line["epochs"].append(int(entry["epoch"]))
        for key in ("loss", "val_metric", "epsilon"):
            line[key].append(_number(entry.get(key)))
    return {"series": list(series.values())}
