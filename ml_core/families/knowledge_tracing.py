"""Knowledge tracing (DKT-style GRU) and next-exercise recommendation from its mastery.

``run`` (model family ``knowledge_tracing``): predicts whether each answer is correct from
the student's earlier answers. Split by student; judged by ROC AUC and accuracy beside the
per-skill mean correctness of the training students; audited by AUC per student group.

``run_next_exercise`` (model family ``next_exercise``): trains the same model (the same
code path), then, for each test student, reads the predicted success on every skill after
the first 80 % of their answers and recommends the skill in the zone of proximal
development (predicted success 0.5-0.85) closest to 0.7. Judged by the share of
recommendations in that zone beside a random choice of skill.

Privacy: one training example is one student's whole history (capped at
:data:`MAX_TRAIN_STEPS` answers), so DP-SGD bounds each *student's* influence, not each
answer's. A private run learns no skill vocabulary from the rows: skills are hashed into
:data:`SKILL_BUCKETS` slots by a public hash of their name, so the artifact holds nothing
but DP-SGD weights, and a skill is named at serving time from the request's own answers
(the recommendations choose among the skills of the students being scored). The released
weights are the last epoch's; the report states the student as the unit
(:class:`ml_core.person_privacy.PrivatePlan`).

Progress stages: ``preparing``, ``baseline``, ``training``, ``training_twin`` (private
runs), ``auditing``, ``saving``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from ml_core import fairness, group_metrics
from ml_core import privacy as dp
from ml_core.artifacts import file_sha256
from ml_core.data import given_test_units
from ml_core.families.base import MetricDeclaration, ModelFamily, Supports, register_family
from ml_core.families.knowledge_tracing_data import (
    ResponseColumns,
    Responses,
    StudentSplit,
    prepare_responses,
    split_students,
    validate_responses,
)
from ml_core.metrics import binary_metrics
from ml_core.models.sequence import (
    KnowledgeTracingGRU,
    build_sequence_model,
    plain_state_dict,
    shifted_inputs,
)
from ml_core.person_privacy import PrivatePlan, person_batch_size
from ml_core.privacy_statement import privacy_notes
from ml_core.runner import (
    Baseline,
    Evaluation,
    FamilyHooks,
    FitCall,
    Fitted,
    RunInputs,
    Saved,
    family_runner,
    json_ready,
    with_groups,
)
from ml_core.spec import (
    ColumnMapping,
    ColumnRole,
    PrivacyConfig,
    ProblemSpec,
    ProgressSink,
    StopCheck,
    TaskType,
    TrainConfig,
)
from ml_core.training_loop import LoopPlan, resolve_device, run_loop
from ml_core.validation import ValidationIssue

__all__ = ["load", "predict", "recommend", "run", "run_next_exercise", "validate"]

# One example per student; longer histories are cut to their first answers in training
# (Opacus' DPGRU steps through time in Python: cost grows with the padded length).
MAX_TRAIN_STEPS = 200
EMBED_DIM = 32
HIDDEN_SIZE = 64
EVAL_BATCH = 256
DECISION_THRESHOLD = 0.5
KT_METRICS = ("roc_auc", "accuracy", "brier")
# Per-skill baseline: mean correctness shrunk towards the overall mean by this many answers.
BASELINE_PRIOR_ANSWERS = 1.0
# AUC by group: worst group's AUC at least this share of the best group's.
MIN_AUC_RATIO = 0.9
# Zone of proximal development: predicted success a learner can reach with some effort.
ZPD_LOW, ZPD_HIGH, ZPD_TARGET = 0.5, 0.85, 0.7
# Next exercise: mastery is read after this share of each test student's answers; the rest
# shows how the student actually did on the recommended skill afterwards.
HISTORY_SHARE = 0.8
MIN_ZPD_SHARE_RATIO = 0.8
MASTERY_CHART_STUDENTS = 5
MASTERY_CHART_SKILLS = 8
RECOMMENDATION_CHART_STUDENTS = 10
UNKNOWN_SKILL = "__unknown__"
# A private model's skill slots: skills are hashed by name into this many (public; two
# skills share a slot with probability about skills / SKILL_BUCKETS).
SKILL_BUCKETS = 1024
RELEASED: dict[str, str] = {}  # nothing estimated from the rows besides the weights
PUBLIC = ("the confirmed mapping", f"the skill hash ({SKILL_BUCKETS} slots; no vocabulary)",
          "decision threshold 0.5 and the zone of proximal development (constants)",
          "training settings", "student and answer counts of the split")
CURATOR_ONLY = ("the per-skill mean baseline", "the non-private twin",
                "the audit's per-group tables", "test metrics")
WEIGHTS_FILE = "model.pt"
METADATA_FILE = "metadata.json"


# --- data -> tensors ---------------------------------------------------------------------


def skill_bucket(skill: str, buckets: int) -> int:
    """A skill's slot among ``buckets``: a public hash of its name (stable across runs and
    processes, unlike Python's ``hash``)."""
    digest = hashlib.blake2b(str(skill).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets


@dataclass(frozen=True)
class SkillVocabulary:
    """Skills seen in the training students; anything else maps to one "unknown" slot.

    ``buckets`` > 0 (private runs): no vocabulary is learnt; every skill's slot is
    :func:`skill_bucket` and ``skills`` only names the skills of the data at hand
    (:meth:`named`)."""

    skills: tuple[str, ...]
    buckets: int = 0

    @property
    def size(self) -> int:
        return self.buckets or len(self.skills) + 1  # + the unknown slot

    def indices(self, skills: pd.Series) -> np.ndarray:
        if self.buckets:
            return skills.astype(str).map(
                lambda skill: skill_bucket(skill, self.buckets)).to_numpy(dtype=np.int64)
        position = {skill: i for i, skill in enumerate(self.skills)}
        return skills.map(position).fillna(len(self.skills)).to_numpy(dtype=np.int64)

    def named(self, skills: Iterable[str]) -> SkillVocabulary:
        """The vocabulary naming ``skills`` (the data being scored) when hashed; itself
        otherwise."""
        if not self.buckets:
            return self
        return SkillVocabulary(tuple(sorted({str(s) for s in skills})), buckets=self.buckets)

    @property
    def columns(self) -> np.ndarray:
        """The model's output column of each of ``skills``."""
        return self.indices(pd.Series(self.skills, dtype=object))

    def names(self) -> dict[int, str]:
        """Slot -> skill name for ``skills`` (the first name, when two share a slot)."""
        found: dict[int, str] = {}
        for column, skill in zip(self.columns.tolist(), self.skills, strict=True):
            found.setdefault(int(column), skill)
        return found


@dataclass(frozen=True)
class History:
    """One student's answers in order."""

    student: str
    row_ids: np.ndarray
    skills: np.ndarray  # vocabulary indices
    correct: np.ndarray  # 0/1


def histories(table: pd.DataFrame, vocabulary: SkillVocabulary,
              students: tuple[str, ...] | None = None) -> list[History]:
    """Per-student histories (in ``students`` order when given, else sorted)."""
    skills = vocabulary.indices(table["skill"])
    groups = table.groupby("student", sort=True).indices
    names = students if students is not None else tuple(groups)
    return [
        History(student=name, row_ids=table["row_id"].to_numpy()[groups[name]],
                skills=skills[groups[name]], correct=table["correct"].to_numpy()[groups[name]])
        for name in names if name in groups
    ]


def padded(items: list[History], *, max_steps: int | None = None) -> tuple[torch.Tensor, ...]:
    """(skills, correct, mask) tensors ``(students, steps)``, right-padded with zeros."""
    length = max((len(h.skills) for h in items), default=1)
    if max_steps is not None:
        length = min(length, max_steps)
    length = max(length, 1)
    skills = np.zeros((len(items), length), dtype=np.int64)
    correct = np.zeros((len(items), length), dtype=np.float32)
    mask = np.zeros((len(items), length), dtype=np.float32)
    for i, history in enumerate(items):
        n = min(len(history.skills), length)
        skills[i, :n] = history.skills[:n]
        correct[i, :n] = history.correct[:n]
        mask[i, :n] = 1.0
    return torch.from_numpy(skills), torch.from_numpy(correct), torch.from_numpy(mask)


def student_loss(logits: torch.Tensor, correct: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over students of each student's mean answer log loss.

    Per-*student* terms averaged over the batch: that is what Opacus' ``loss_reduction=
    "mean"`` assumes, so each per-sample gradient is one student's own gradient. (A mean
    over all answers of the batch would weight students by their history length.)
    """
    per_answer = F.binary_cross_entropy_with_logits(logits, correct, reduction="none") * mask
    per_student = per_answer.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return per_student.mean()


def _probabilities(model: KnowledgeTracingGRU, items: list[History], device: torch.device,
                   ) -> list[np.ndarray]:
    """Per student, ``(answers + 1, skills)`` success probabilities: row ``t`` is the
    prediction before answer ``t`` (the last row: after every answer)."""
    model.eval()
    out: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(items), EVAL_BATCH):
            batch = items[start:start + EVAL_BATCH]
            skills, correct, _ = padded(batch)
            # One extra step so the state after the last answer is read too.
            skills = torch.cat([skills, torch.zeros_like(skills[:, :1])], dim=1)
            correct = torch.cat([correct, torch.zeros_like(correct[:, :1])], dim=1)
            inputs = shifted_inputs(skills, correct).to(device)
            probs = torch.sigmoid(model.all_skill_logits(inputs)).double().cpu().numpy()
            out.extend(probs[i, :len(history.skills) + 1] for i, history in enumerate(batch))
    return out


def answer_scores(model: KnowledgeTracingGRU, items: list[History], device: torch.device,
                  ) -> np.ndarray:
    """Predicted probability of each answer being correct, concatenated over ``items``."""
    scores = [probs[np.arange(len(h.skills)), h.skills]
              for probs, h in zip(_probabilities(model, items, device), items, strict=True)]
    return np.concatenate(scores) if scores else np.zeros(0)


# --- training -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainedTracer:
    model: KnowledgeTracingGRU  # plain nn.GRU layout, eval mode, CPU
    history: list[dict]
    best_epoch: int
    privacy: dict
    device: str
    fixes: tuple[str, ...]  # what Opacus' ModuleValidator changed


def _new_model(vocabulary: SkillVocabulary) -> KnowledgeTracingGRU:
    return KnowledgeTracingGRU(vocabulary.size, embed_dim=EMBED_DIM, hidden_size=HIDDEN_SIZE)


def _val_auc(model: nn.Module, template: KnowledgeTracingGRU, val: list[History],
             ) -> float:
    # Score with a plain copy: fast nn.GRU instead of DPGRU's per-step Python loop.
    template.load_state_dict(plain_state_dict(dp.unwrap(model), template))
    scores = answer_scores(template, val, torch.device("cpu"))
    truth = np.concatenate([h.correct for h in val]) if val else np.zeros(0)
    if len(np.unique(truth)) < 2:
        return math.nan
    return float(roc_auc_score(truth, scores))


def train_tracer(
    *, train_items: list[History], val_items: list[History], vocabulary: SkillVocabulary,
    train: TrainConfig, privacy: PrivacyConfig | None, stage: str,
    progress: ProgressSink | None, should_stop: StopCheck | None,
    checkpoint_path: Path | None = None,
) -> TrainedTracer:
    """Train one DKT model (DP-SGD when ``privacy`` is enabled) through the one training
    loop (:mod:`ml_core.training_loop`); the best epoch by validation AUC is kept. Raises
    :class:`TrainingCancelled` with the privacy spent.

    With ``checkpoint_path`` a checkpoint is written there every epoch and one found there
    is resumed, ending as an uninterrupted run (:mod:`ml_core.checkpoints`)."""
    device = resolve_device(train.device)
    skills, correct, mask = padded(train_items, max_steps=MAX_TRAIN_STEPS)
    templates: list[KnowledgeTracingGRU] = []

    def template() -> KnowledgeTracingGRU:
        # Built at the first snapshot (as the loop starts, after the DP wrapping), where the
        # global RNG stood when this loop was written out by hand: same seeds, same model.
        if not templates:
            templates.append(_new_model(vocabulary))
        return templates[0]

    def validate(model: nn.Module) -> tuple[float, float]:
        auc = _val_auc(model, template(), val_items)
        # An undefined AUC (one class among the validation answers) ranks below any
        # defined one, yet the first epoch is still kept over the untrained weights.
        return auc, -sys.float_info.max if math.isnan(auc) else auc

    def batch_loss(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, int]:
        skills, correct, mask = (tensor.to(device) for tensor in batch)
        # Trim the batch to its longest history: padding steps cost time, not accuracy.
        if len(mask):
            steps = max(int(mask.sum(dim=1).max().item()), 1)
            skills, correct, mask = skills[:, :steps], correct[:, :steps], mask[:, :steps]
        logits = model(shifted_inputs(skills, correct), skills)
        return student_loss(logits, correct, mask), len(mask)

    plan = LoopPlan(
        build=lambda: _new_model(vocabulary), dataset=TensorDataset(skills, correct, mask),
        batch_size=person_batch_size(train.batch_size, len(train_items)),
        batch_loss=batch_loss, validate=validate, train=train, privacy=privacy, stage=stage,
        device=device,
        # The best weights are kept in the plain nn.GRU layout (DPGRU's aside).
        snapshot=lambda module: plain_state_dict(module, template()),
        checkpoint_path=checkpoint_path, checkpoint_inputs=(skills, correct, mask),
        # A private model is its last DP-SGD step's: no epoch chosen on private students.
        select_on_validation=privacy is None or not privacy.enabled,
    )
    result = run_loop(plan, progress=progress, should_stop=should_stop)
    return TrainedTracer(model=result.module, history=result.history,
                         best_epoch=result.best_epoch, privacy=result.privacy,
                         device=result.device, fixes=result.fixes)


# --- the shared preparation of both problems ---------------------------------------------


@dataclass(frozen=True)
class Prepared:
    columns: ResponseColumns
    responses: Responses
    split: StudentSplit
    vocabulary: SkillVocabulary
    train_items: list[History]
    val_items: list[History]
    test_items: list[History]
    groups: pd.DataFrame  # banded sensitive attributes per student (index: student)
    plan: PrivatePlan | None = None  # a private run's preprocessing and SGD budget


def prepare(frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec,
            train: TrainConfig, privacy: PrivacyConfig | None = None) -> Prepared:
    """Responses cleaned and merged, students split, skills indexed (training students;
    under ``privacy``, hashed: no vocabulary is learnt from the rows)."""
    columns = ResponseColumns.from_mapping(mapping)
    responses = prepare_responses(frame, columns, spec)
    table = responses.table
    split = split_students(list(table["student"].unique()), test_fraction=train.test_fraction,
                           val_fraction=train.val_fraction, seed=train.seed,
                           given_test=given_test_units(frame, columns.student,
                                                              noun="students"))
    train_rows = table[table["student"].isin(split.train)]
    plan = None
    if privacy is not None and privacy.enabled:
        plan = PrivatePlan.for_units(
            privacy=privacy, unit_column=columns.student, n_units=table["student"].nunique(),
            n_histograms=0, n_categorical=0, max_rows=1, released=RELEASED,
            public=PUBLIC, curator_only=CURATOR_ONLY, examples_per_step=1,
            gradient="the student's whole history (one sequence, its first "
                     f"{MAX_TRAIN_STEPS} answers): one gradient clipped to max_grad_norm")
        vocabulary = SkillVocabulary((), buckets=SKILL_BUCKETS)
    else:
        vocabulary = SkillVocabulary(tuple(sorted(train_rows["skill"].unique())))
    groups = table.groupby("student")[list(columns.sensitive)].first()
    return Prepared(
        columns=columns, responses=responses, split=split, vocabulary=vocabulary,
        train_items=histories(table, vocabulary, split.train),
        val_items=histories(table, vocabulary, split.val),
        test_items=histories(table, vocabulary, split.test), groups=groups, plan=plan,
    )


@dataclass(frozen=True)
class SkillMeanBaseline:
    """Each skill's mean correctness over the training students' answers (shrunk towards
    the overall mean by one answer; skills unseen in training get the overall mean)."""

    means: dict[str, float]
    overall: float

    @classmethod
    def fit(cls, table: pd.DataFrame) -> SkillMeanBaseline:
        overall = float(table["correct"].mean()) if len(table) else 0.5
        stats = table.groupby("skill")["correct"].agg(["sum", "count"])
        means = ((stats["sum"] + BASELINE_PRIOR_ANSWERS * overall)
                 / (stats["count"] + BASELINE_PRIOR_ANSWERS))
        return cls(means={str(k): float(v) for k, v in means.items()}, overall=overall)

    def score(self, skills: pd.Series) -> np.ndarray:
        return skills.map(self.means).fillna(self.overall).to_numpy(dtype=float)


@dataclass(frozen=True)
class TracerRun:
    """What both problems' hooks share: the prepared students, and (knowledge tracing) the
    test answers in the order the model scores them."""

    tracer: Prepared
    test_rows: pd.DataFrame | None = None
    y_true: np.ndarray | None = None
    groups: pd.DataFrame | None = None  # banded sensitive attributes per test answer


class TracerHooks(FamilyHooks):
    """The hooks both problems share: one DKT model trained the same way."""

    model_family: str

    def prepare(self, inputs: RunInputs) -> TracerRun:
        return TracerRun(tracer=prepare(inputs.frame, inputs.mapping, inputs.spec,
                                        inputs.train, privacy=inputs.privacy))

    def fit(self, inputs: RunInputs, prepared: TracerRun, call: FitCall) -> Fitted:
        tracer = prepared.tracer
        plan = tracer.plan if call.privacy is not None else None

        def fit(privacy: PrivacyConfig | None) -> Fitted:
            trained = train_tracer(train_items=tracer.train_items, val_items=tracer.val_items,
                                   vocabulary=tracer.vocabulary, train=inputs.train,
                                   privacy=privacy, stage=call.stage, progress=call.progress,
                                   should_stop=call.should_stop,
                                   checkpoint_path=call.checkpoint_path)
            return Fitted.of(trained, model=trained.model)

        if plan is None:
            return fit(call.privacy)
        n_students = len(tracer.train_items)
        sgd = plan.sgd_for(n_units=n_students, train=inputs.train,
                           batch_size=person_batch_size(inputs.train.batch_size, n_students))
        return plan.charged(fit, sgd=sgd, spec=inputs.spec, mapping=inputs.mapping)

    def split(self, inputs: RunInputs, prepared: TracerRun) -> dict:
        return prepared.tracer.split.summary(prepared.tracer.responses.table)

    def save(self, inputs: RunInputs, prepared: TracerRun, model: Fitted,
             evaluation: Evaluation, *, directory: Path, metadata: dict) -> Saved:
        return _save(directory=directory, trained=model.trained, prepared=prepared.tracer,
                     model_family=self.model_family, train=inputs.train,
                     split=self.split(inputs, prepared), metadata=metadata)


def _common_notes(prepared: Prepared, main: TrainedTracer, privacy: PrivacyConfig) -> list[str]:
    split = prepared.split
    notes = [
        f"Split by student: {len(split.train)}/{len(split.val)}/{len(split.test)} students "
        "for training/validation/test; all answers of a student stay in one part, so the test "
        "measures the model on learners it never saw.",
        "The model predicts each answer from the student's earlier answers only.",
    ]
    notes += prepared.responses.notes()
    longest = max((len(h.skills) for h in prepared.train_items), default=0)
    if longest > MAX_TRAIN_STEPS:
        notes.append(f"Training used each student's first {MAX_TRAIN_STEPS} answers (the "
                     f"longest history has {longest}); scoring reads whole histories.")
    if privacy.enabled:
        notes.append(
            "Differential privacy protects students, not single answers: one training "
            "example is a student's whole history. No skill vocabulary is learnt from the "
            f"rows: skills are hashed by name into {SKILL_BUCKETS} slots, and named from "
            "the answers being scored."
        )
        if main.fixes:
            notes.append(
                "Opacus' ModuleValidator changed the model for private training: "
                + "; ".join(main.fixes) + ". PyTorch's nn.GRU runs as one fused kernel whose "
                "per-student gradients Opacus cannot see; DPGRU computes the same GRU from "
                "per-step linear layers it can clip per student. The saved weights are the "
                "same GRU's, reloaded into nn.GRU for scoring."
            )
    return notes


# --- knowledge tracing ------------------------------------------------------------------


def _answer_truth(items: list[History]) -> np.ndarray:
    return np.concatenate([h.correct for h in items]).astype(int) if items else np.zeros(0, int)


def _kt_fairness(*, y_true: np.ndarray, y_score: np.ndarray, groups: pd.DataFrame,
                 spec: ProblemSpec) -> dict:
    """AUC by student group (judged) with the decision rates beside it (for reading)."""
    if groups.shape[1] == 0:
        return {}
    by_auc = group_metrics.score_by_group(
        y_true=y_true, y_score=y_score, sensitive=groups, metric=roc_auc_score, name="auc",
        kind="personal", min_score_ratio=MIN_AUC_RATIO,
        min_group_size=spec.fairness.min_group_size,
    )
    decisions = fairness.audit(y_true=y_true, y_pred=(y_score >= DECISION_THRESHOLD).astype(int),
                               sensitive=groups, policy=spec.fairness)
    for attribute, report in by_auc.items():
        other = decisions[attribute]
        for group, values in report["by_group"].items():
            values.update({key: value for key, value in other["by_group"][group].items()
                           if key != "count"})
        report["disparities"].update(other["disparities"])
        # Predicted-correct rates legitimately differ with what groups know; they are shown
        # for reading, while the judged check is how well the model tracks each group.
        report["informational_checks"] = other["checks"]
    return by_auc


def _mastery_chart(model: KnowledgeTracingGRU, items: list[History],
                   vocabulary: SkillVocabulary) -> list[dict]:
    chosen = sorted(items, key=lambda h: (-len(h.skills), h.student))[:MASTERY_CHART_STUDENTS]
    charts = []
    slots = vocabulary.names()
    column = {name: slot for slot, name in slots.items()}
    for history, probs in zip(chosen, _probabilities(model, chosen, torch.device("cpu")),
                              strict=True):
        names = [slots.get(int(i), UNKNOWN_SKILL) for i in history.skills]
        practised = pd.Series(names).value_counts()
        shown = [s for s in practised.index if s != UNKNOWN_SKILL][:MASTERY_CHART_SKILLS]
        charts.append({
            "student": history.student,
            "steps": list(range(len(history.skills) + 1)),
            "answers": [{"step": i + 1, "skill": name, "correct": int(c)}
                        for i, (name, c) in enumerate(zip(names, history.correct, strict=True))],
            "skills": {skill: [round(float(p), 4) for p in
                               probs[:, column[skill]]] for skill in shown},
        })
    return charts


class KnowledgeTracingHooks(TracerHooks):
    """Knowledge tracing: every test answer predicted from the student's earlier ones."""

    model_family = "knowledge_tracing"

    def prepare(self, inputs: RunInputs) -> TracerRun:
        tracer = super().prepare(inputs).tracer
        table = tracer.responses.table
        test_rows = pd.concat([table[table["student"] == h.student] for h in tracer.test_items])
        groups = tracer.groups.reindex(test_rows["student"].to_numpy()).reset_index(drop=True)
        return TracerRun(tracer=tracer, test_rows=test_rows,
                         y_true=_answer_truth(tracer.test_items), groups=groups)

    def baseline(self, inputs: RunInputs, prepared: TracerRun) -> Baseline:
        tracer, table = prepared.tracer, prepared.tracer.responses.table
        baseline_model = SkillMeanBaseline.fit(table[table["student"].isin(tracer.split.train)])
        scores = baseline_model.score(prepared.test_rows["skill"])
        return Baseline(report={
            "name": inputs.spec.baseline, "description": "per-skill mean correctness of the "
            "training students", "threshold": DECISION_THRESHOLD,
            "metrics": binary_metrics(prepared.y_true, scores, threshold=DECISION_THRESHOLD,
                                      metrics=KT_METRICS)}, detail=scores)

    def evaluate(self, inputs: RunInputs, prepared: TracerRun, fitted: Fitted) -> Evaluation:
        scores = answer_scores(fitted.model, prepared.tracer.test_items, torch.device("cpu"))
        return Evaluation(
            metrics=binary_metrics(prepared.y_true, scores, threshold=DECISION_THRESHOLD,
                                   metrics=KT_METRICS),
            fairness=_kt_fairness(y_true=prepared.y_true, y_score=scores,
                                  groups=prepared.groups, spec=inputs.spec),
            detail=scores)

    def predictions(self, inputs: RunInputs, prepared: TracerRun, baseline: Baseline,
                    evaluation: Evaluation) -> pd.DataFrame:
        test_rows, scores = prepared.test_rows, evaluation.detail
        return with_groups(pd.DataFrame({
            "row_id": test_rows["row_id"].to_numpy(), "student": test_rows["student"].to_numpy(),
            "skill": test_rows["skill"].to_numpy(), "y_true": prepared.y_true, "y_score": scores,
            "y_pred": (scores >= DECISION_THRESHOLD).astype(int),
            "baseline_score": baseline.detail,
        }), prepared.groups)

    def charts(self, inputs: RunInputs, prepared: TracerRun, baseline: Baseline, model: Fitted,
               evaluation: Evaluation) -> dict:
        tracer = prepared.tracer
        vocabulary = tracer.vocabulary.named(prepared.test_rows["skill"])
        return {"mastery": _mastery_chart(model.model, tracer.test_items, vocabulary)}

    def notes(self, inputs: RunInputs, prepared: TracerRun, model: Fitted, twin: Fitted | None,
              evaluation: Evaluation) -> list[str]:
        return [*privacy_notes(model.privacy),
                *_common_notes(prepared.tracer, model.trained, inputs.privacy),
                "Baseline: each skill's mean correctness over the training students' answers "
                "(the same number for every student)."]


run = family_runner(KnowledgeTracingHooks(), doc="""Train and judge a knowledge tracing model;
same contract as ``run_training``.

``predictions``: one row per test answer: ``row_id``, ``student``, ``skill``, ``y_true``,
``y_score`` (predicted chance of a correct answer), ``y_pred`` (at 0.5),
``baseline_score``, then the banded sensitive attributes.
""")


# --- next exercise ------------------------------------------------------------------------


def choose_skill(success: np.ndarray) -> int:
    """The skill to practise next: among skills with predicted success in the zone of
    proximal development [0.5, 0.85], the one closest to 0.7; with none in the zone, the
    closest to 0.7 overall (then flagged as outside the zone)."""
    distance = np.abs(success - ZPD_TARGET)
    inside = (success >= ZPD_LOW) & (success <= ZPD_HIGH)
    if inside.any():
        distance = np.where(inside, distance, np.inf)
    return int(np.argmin(distance))


def in_zpd(value: float) -> bool:
    return ZPD_LOW <= value <= ZPD_HIGH


def _cut(n_answers: int) -> int:
    """Answers read before recommending: the first 80 %, at least one, leaving one after."""
    return min(max(1, math.ceil(HISTORY_SHARE * n_answers)), max(1, n_answers - 1))


def _recommendations(model: KnowledgeTracingGRU, items: list[History],
                     vocabulary: SkillVocabulary, *, seed: int) -> pd.DataFrame:
    """One row per student: model's and random choice's skill, predicted success, in-zone
    flag, and the observed success on that skill in the answers after the cut."""
    known = len(vocabulary.skills)  # the unknown slot is never recommended
    columns = vocabulary.columns
    rng = np.random.default_rng(seed)
    cuts = [_cut(len(h.skills)) for h in items]
    prefixes = [History(student=h.student, row_ids=h.row_ids[:k], skills=h.skills[:k],
                        correct=h.correct[:k]) for h, k in zip(items, cuts, strict=True)]
    rows = []
    for history, k, probs in zip(items, cuts, _probabilities(model, prefixes,
                                                             torch.device("cpu")), strict=True):
        success = probs[-1][columns]
        chosen = choose_skill(success)
        random_choice = int(rng.integers(known))
        later_skills, later_correct = history.skills[k:], history.correct[k:]

        def observed(skill: int, later_skills=later_skills, later_correct=later_correct
                     ) -> tuple[float | None, int]:
            hits = later_correct[later_skills == skill]
            return (float(hits.mean()) if len(hits) else None), int(len(hits))

        seen, seen_n = observed(chosen)
        random_seen, random_n = observed(random_choice)
        rows.append({
            "row_id": history.row_ids[k - 1], "student": history.student,
            "answers_read": k,
            "recommended_skill": vocabulary.skills[chosen],
            "predicted_success": float(success[chosen]),
            "in_zpd": in_zpd(float(success[chosen])),
            "observed_success": seen, "observed_answers": seen_n,
            "random_skill": vocabulary.skills[random_choice],
            "random_predicted_success": float(success[random_choice]),
            "random_in_zpd": in_zpd(float(success[random_choice])),
            "random_observed_success": random_seen, "random_observed_answers": random_n,
            "success_by_skill": {vocabulary.skills[i]: round(float(p), 4)
                                 for i, p in enumerate(success)},
        })
    return pd.DataFrame(rows)


NEXT_EXERCISE_METRICS = ("zpd_share", "mean_distance_to_target", "observed_success",
                         "observed_students", "skill_coverage")


def _recommendation_metrics(table: pd.DataFrame, *, prefix: str, n_skills: int) -> dict:
    """zpd_share (primary), mean |predicted success - 0.7|, observed success on the chosen
    skill in later answers (students who practised it), and the share of skills used."""
    skill = f"{prefix}skill" if prefix else "recommended_skill"
    predicted = table[f"{prefix}predicted_success"].astype(float)
    observed = table[f"{prefix}observed_success"].dropna().astype(float)
    return {
        "zpd_share": float(table[f"{prefix}in_zpd"].mean()) if len(table) else math.nan,
        "mean_distance_to_target": float((predicted - ZPD_TARGET).abs().mean()),
        "observed_success": float(observed.mean()) if len(observed) else math.nan,
        "observed_students": int(len(observed)),
        "skill_coverage": float(table[skill].nunique() / max(n_skills, 1)),
    }


def _zpd_fairness(table: pd.DataFrame, groups: pd.DataFrame, spec: ProblemSpec) -> dict:
    if groups.shape[1] == 0 or len(table) == 0:
        return {}
    share = table["in_zpd"].astype(float).to_numpy()
    return group_metrics.score_by_group(
        y_true=share, y_score=share, sensitive=groups,
        metric=lambda _, values: float(np.mean(values)), name="zpd_share", kind="personal",
        min_score_ratio=MIN_ZPD_SHARE_RATIO, min_group_size=spec.fairness.min_group_size,
    )


@dataclass(frozen=True)
class Recommended:
    table: pd.DataFrame  # _recommendations' rows, one per test student
    groups: pd.DataFrame  # banded sensitive attributes per row of ``table``


class NextExerciseHooks(TracerHooks):
    """Next exercise: the knowledge tracing model's mastery picks each student's next skill.
    The random-skill baseline is judged through the trained model's predicted mastery, so
    its figures come with the model's evaluation."""

    model_family = "next_exercise"

    def prepare(self, inputs: RunInputs) -> TracerRun:
        prepared = super().prepare(inputs)
        if not (prepared.tracer.vocabulary.skills or prepared.tracer.vocabulary.buckets):
            raise ValueError("No skill in the training students: nothing to recommend.")
        return prepared

    def baseline(self, inputs: RunInputs, prepared: TracerRun) -> Baseline:
        return Baseline(report=None)

    def evaluate(self, inputs: RunInputs, prepared: TracerRun, fitted: Fitted) -> Evaluation:
        tracer = prepared.tracer
        table = tracer.responses.table
        vocabulary = tracer.vocabulary.named(
            table.loc[table["student"].isin(tracer.split.test), "skill"])
        n_skills = len(vocabulary.skills)
        table = _recommendations(fitted.model, tracer.test_items, vocabulary,
                                 seed=inputs.train.seed)
        groups = tracer.groups.reindex(table["student"].to_numpy()).reset_index(drop=True)
        return Evaluation(
            metrics=_recommendation_metrics(table, prefix="", n_skills=n_skills),
            fairness=_zpd_fairness(table, groups, inputs.spec),
            detail=Recommended(table=table, groups=groups),
            baseline={"name": inputs.spec.baseline, "description": "a skill drawn uniformly "
                      "at random, judged by the same predicted mastery",
                      "metrics": _recommendation_metrics(table, prefix="random_",
                                                         n_skills=n_skills)})

    def predictions(self, inputs: RunInputs, prepared: TracerRun, baseline: Baseline,
                    evaluation: Evaluation) -> pd.DataFrame:
        recommended = evaluation.detail
        predictions = recommended.table.drop(columns=["success_by_skill"]).copy()
        predictions["y_score"] = predictions["predicted_success"]
        predictions["y_pred"] = predictions["in_zpd"].astype(int)
        return with_groups(predictions, recommended.groups)

    def charts(self, inputs: RunInputs, prepared: TracerRun, baseline: Baseline, model: Fitted,
               evaluation: Evaluation) -> dict:
        table = evaluation.detail.table
        return {
            "recommendations": [
                {"student": row["student"], "recommended_skill": row["recommended_skill"],
                 "random_skill": row["random_skill"],
                 "predicted_success": row["success_by_skill"], "in_zpd": bool(row["in_zpd"])}
                for row in table.head(RECOMMENDATION_CHART_STUDENTS).to_dict("records")
            ],
            "zpd": {"low": ZPD_LOW, "high": ZPD_HIGH, "target": ZPD_TARGET},
            "zpd_share": {"model": evaluation.metrics["zpd_share"],
                          "random": evaluation.baseline["metrics"]["zpd_share"]},
        }

    def notes(self, inputs: RunInputs, prepared: TracerRun, model: Fitted, twin: Fitted | None,
              evaluation: Evaluation) -> list[str]:
        return [*privacy_notes(model.privacy),
                *_common_notes(prepared.tracer, model.trained, inputs.privacy),
                f"Recommendations read each test student's first {int(HISTORY_SHARE * 100)} % "
                "of answers and pick the skill with predicted success in the zone of proximal "
                f"development ({ZPD_LOW}-{ZPD_HIGH}) closest to {ZPD_TARGET}. The baseline "
                "draws a skill at random; both are judged by the same predicted mastery, and "
                "by the success the students actually had on that skill in their remaining "
                "answers, where they practised it."]


run_next_exercise = family_runner(NextExerciseHooks(), doc="""Train the knowledge tracing
model, then recommend each test student's next skill.

``predictions``: one row per test student: ``row_id`` (the last answer read), ``student``,
``recommended_skill``, ``predicted_success``, ``in_zpd``, ``observed_success``, the random
choice's columns (``random_*``), ``y_score`` (= predicted success), ``y_pred`` (= in the
zone, 0/1), then the banded sensitive attributes.
""")


# --- artifacts ------------------------------------------------------------------------------


def _save(*, directory: Path, trained: TrainedTracer, prepared: Prepared, model_family: str,
          train: TrainConfig, split: dict, metadata: dict) -> Saved:
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    torch.save(plain_state_dict(trained.model, trained.model), weights)
    sha256 = file_sha256(weights)
    metadata = json_ready({
        "model_family": model_family, **metadata,
        "architecture": trained.model.architecture(), "skills": list(prepared.vocabulary.skills),
        "skill_buckets": prepared.vocabulary.buckets,
        "split": split, "opacus_fixes": list(trained.fixes), "threshold": DECISION_THRESHOLD,
        "zpd": {"low": ZPD_LOW, "high": ZPD_HIGH, "target": ZPD_TARGET},
        "train_config": {"epochs": train.epochs, "batch_size": train.batch_size,
                         "learning_rate": train.learning_rate, "patience": train.patience,
                         "test_fraction": train.test_fraction,
                         "val_fraction": train.val_fraction},
        "device": trained.device, "weights_sha256": sha256,
    })
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
    return Saved(path=str(directory), sha256=sha256)


@dataclass(frozen=True)
class LoadedTracer:
    model: KnowledgeTracingGRU
    metadata: dict
    vocabulary: SkillVocabulary


def load(path: Path | str) -> LoadedTracer:
    """Restore a saved knowledge tracing (or next-exercise) model, in eval mode on the CPU.
    Raises ``ValueError`` when a file is missing or the weights' sha256 does not match."""
    directory = Path(path)
    for name in (WEIGHTS_FILE, METADATA_FILE):
        if not (directory / name).is_file():
            raise ValueError(f"artifact {directory} lacks {name}")
    metadata = json.loads((directory / METADATA_FILE).read_text())
    if file_sha256(directory / WEIGHTS_FILE) != metadata.get("weights_sha256"):
        raise ValueError(f"weights in {directory} do not match their recorded sha256")
    model = build_sequence_model(metadata["architecture"])
    model.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu",
                                     weights_only=True))
    model.eval()
    return LoadedTracer(model=model, metadata=metadata,
                        vocabulary=SkillVocabulary(tuple(metadata["skills"]),
                                                   buckets=int(metadata.get("skill_buckets")
                                                               or 0)))


def _loaded_items(loaded: LoadedTracer, frame: pd.DataFrame) -> tuple[Responses, list[History]]:
    mapping = ColumnMapping.from_dict(loaded.metadata["mapping"])
    columns = ResponseColumns.from_mapping(mapping)
    # Scoring needs no groups: the attributes are left out.
    columns = ResponseColumns(student=columns.student, skill=columns.skill, time=columns.time,
                              correct=columns.correct, sensitive=())
    responses = prepare_responses(frame, columns, None)
    return responses, histories(responses.table, loaded.vocabulary)


def predict_answers(loaded: LoadedTracer, frame: pd.DataFrame) -> pd.DataFrame:
    """Each answer's predicted chance of being correct given the student's earlier answers
    in ``frame``: ``row_id``, ``student``, ``skill``, ``y_score``."""
    responses, items = _loaded_items(loaded, frame)
    scores = answer_scores(loaded.model, items, torch.device("cpu"))
    table = pd.concat([responses.table[responses.table["student"] == h.student]
                       for h in items]) if items else responses.table
    return pd.DataFrame({"row_id": table["row_id"].to_numpy(),
                         "student": table["student"].to_numpy(),
                         "skill": table["skill"].to_numpy(), "y_score": scores})


def recommend(loaded: LoadedTracer, frame: pd.DataFrame) -> pd.DataFrame:
    """Each student's next skill after ALL their answers in ``frame``: ``student``,
    ``recommended_skill``, ``predicted_success``, ``in_zpd`` and ``success_by_skill``."""
    responses, items = _loaded_items(loaded, frame)
    # A hashed (private) model names the skills of the answers it is given.
    vocabulary = loaded.vocabulary.named(responses.table["skill"])
    rows = []
    for history, probs in zip(items, _probabilities(loaded.model, items, torch.device("cpu")),
                              strict=True):
        success = probs[-1][vocabulary.columns]
        chosen = choose_skill(success)
        rows.append({
            "student": history.student, "recommended_skill": vocabulary.skills[chosen],
            "predicted_success": float(success[chosen]), "in_zpd": in_zpd(float(success[chosen])),
            "success_by_skill": {s: float(p) for s, p in zip(vocabulary.skills, success,
                                                             strict=True)},
        })
    return pd.DataFrame(rows)


def predict(loaded: LoadedTracer, frame: pd.DataFrame) -> pd.DataFrame:
    """Score new rows: per-answer predictions for a knowledge tracing model
    (:func:`predict_answers`), next-skill recommendations for a next-exercise model
    (:func:`recommend`)."""
    if loaded.metadata.get("model_family") == "next_exercise":
        return recommend(loaded, frame)
    return predict_answers(loaded, frame)


def validate(frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec
             ) -> list[ValidationIssue]:
    """Task checks for response logs (roles, 0/1 answers, readable times, multi-skill
    leakage): see :func:`ml_core.families.knowledge_tracing_data.validate_responses`."""
    return validate_responses(frame, mapping, spec)


# --- registration -----------------------------------------------------------------------


class _ResponseLogFamily(ModelFamily):
    """What both families over response logs (student, skill, time, correct) share."""

    # "skills" is empty in a private model (hashed slots); only a non-private model, which
    # promises nothing, holds the training students' exact vocabulary.
    artifact_public = frozenset({"split", "opacus_fixes", "threshold", "zpd", "train_config",
                                 "skill_buckets", "skills"})

    required_roles = (ColumnRole.TARGET.value, ColumnRole.STUDENT.value,
                      ColumnRole.SKILL.value, ColumnRole.TIME.value)
    # A given test file holds other students' answers (ml_core.data.given_test_units).
    supports = Supports(labelled_test_file=True)
    given_test_role = ColumnRole.STUDENT.value

    def validate(self, frame, mapping, spec):
        return validate(frame, mapping, spec)

    def load(self, path):
        return load(path)


@register_family
class KnowledgeTracingFamily(_ResponseLogFamily):
    name = "knowledge_tracing"
    task_types = (TaskType.SEQUENCE_PREDICTION,)
    metrics = (
        MetricDeclaration("roc_auc", higher_is_better=True, naive_level=0.5),
        MetricDeclaration("accuracy", higher_is_better=True),
        MetricDeclaration("brier", higher_is_better=False),
    )
    primary_metric = "roc_auc"
    chart_kinds = ("mastery",)

    def _run(self, **inputs):
        return run(**inputs)

    def predict(self, loaded, frame):
        return predict_answers(loaded, frame)


@register_family
class NextExerciseFamily(_ResponseLogFamily):
    name = "next_exercise"
    task_types = (TaskType.RANKING,)
    # A uniformly random skill's share in the zone is the page's "random choice" bar, measured
    # per run; it has no fixed level. Coverage and the number of students observed are
    # counts that describe the recommendations, not scores: no direction.
    metrics = (
        MetricDeclaration("zpd_share", higher_is_better=True),
        MetricDeclaration("mean_distance_to_target", higher_is_better=False),
        MetricDeclaration("observed_success", higher_is_better=True),
        MetricDeclaration("skill_coverage", higher_is_better=None),
        MetricDeclaration("observed_students", higher_is_better=None),
    )
    primary_metric = "zpd_share"
    chart_kinds = ("next_skill",)

    def _run(self, **inputs):
        return run_next_exercise(**inputs)

    def predict(self, loaded, frame):
        return recommend(loaded, frame)
