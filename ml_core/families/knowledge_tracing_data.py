"""Response logs -> ordered per-student histories, checks, and the split by student.

A response log has one row per answer: student, skill, correct (0/1) and an order or a
timestamp. Two shapes of real logs make one answer look like several, which leaks the
answer into its own history and inflates knowledge tracing AUC (Xiong et al., 2016, on
ASSISTments 2009): a skill cell naming several skills (``"3_7"``), and the same
(student, order) repeated once per skill. Both are detected (a validation warning lists
the rows) and merged here into ONE response whose skill is the combination (``"3+7"``),
so a model never sees an answer before predicting it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_core.fairness import band
from ml_core.spec import ColumnMapping, ProblemSpec
from ml_core.validation import MAX_LISTED_ROWS, ValidationIssue

STUDENT, SKILL, TIME = "student", "skill", "time"
REQUIRED_ROLES = (STUDENT, SKILL, TIME)
# A split needs students in train, validation and test, and the audit a few per group.
MIN_STUDENTS = 10
# Separators that join several skills in one cell ("3_7", "12;15", "a|b").
SKILL_SEPARATORS = re.compile(r"[_;,|~]")
COMBINED_SKILL_JOIN = "+"
TRUE_TEXT = {"1", "true", "yes", "correct", "right", "y", "t"}
FALSE_TEXT = {"0", "false", "no", "incorrect", "wrong", "n", "f"}


@dataclass(frozen=True)
class ResponseColumns:
    """Which columns of the upload play which part."""

    student: str
    skill: str
    time: str
    correct: str
    sensitive: tuple[str, ...]

    @classmethod
    def from_mapping(cls, mapping: ColumnMapping) -> ResponseColumns:
        missing = [role for role in REQUIRED_ROLES if not mapping.role(role)]
        if missing:
            raise ValueError(f"knowledge tracing needs the roles {', '.join(missing)}")
        return cls(student=str(mapping.role(STUDENT)), skill=str(mapping.role(SKILL)),
                   time=str(mapping.role(TIME)), correct=mapping.target,
                   sensitive=tuple(mapping.sensitive))


@dataclass(frozen=True)
class Responses:
    """One row per answer, ordered by student then time.

    ``table`` columns: ``row_id`` (the upload's index of the answer's first row),
    ``student``, ``skill`` (text; combined skills joined with "+"), ``correct`` (0/1), then
    the banded sensitive attributes (one value per student).
    """

    table: pd.DataFrame
    dropped_rows: int  # rows without a student, skill, time or answer
    merged_rows: int  # rows folded into another row of the same answer
    multi_skill_cells: int  # cells naming several skills
    varying_attributes: tuple[str, ...]  # sensitive columns that change within a student

    def notes(self) -> list[str]:
        notes = []
        if self.dropped_rows:
            notes.append(f"{self.dropped_rows} rows without a student, skill, time or answer "
                         "were left out.")
        if self.merged_rows or self.multi_skill_cells:
            notes.append(
                "Leakage guard: "
                f"{self.multi_skill_cells} answers named several skills in one cell and "
                f"{self.merged_rows} rows repeated an answer (same student and time) for "
                "another skill. Each such answer was kept ONCE, with the combined skill "
                "(e.g. '3+7'): counted per skill, a model sees the answer before predicting "
                "it, the leakage that inflates knowledge tracing AUC in the literature."
            )
        if self.varying_attributes:
            notes.append(
                "Sensitive attributes that change within a student "
                f"({', '.join(self.varying_attributes)}) were audited with each student's "
                "first value."
            )
        return notes


def as_correct(values: pd.Series) -> pd.Series:
    """0/1 (float, NaN where missing or unreadable) from numbers, booleans or words."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("Float64").astype(float)
    numbers = pd.to_numeric(values, errors="coerce")
    text = values.astype("object").map(lambda v: str(v).strip().lower() if pd.notna(v) else v)
    from_text = text.map(lambda v: 1.0 if v in TRUE_TEXT else 0.0 if v in FALSE_TEXT else np.nan)
    out = numbers.where(numbers.isin([0, 1]), np.nan)
    return out.fillna(from_text).astype(float)


def time_key(values: pd.Series) -> pd.Series:
    """A sortable float per row: the number itself, or the parsed timestamp (NaN: unreadable)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return pd.to_numeric(values, errors="coerce").astype(float)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() >= 0.9 * values.notna().sum() and values.notna().any():
        return numbers.astype(float)
    parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    seconds = (parsed - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)
    return seconds.astype(float)


def multi_skill_mask(skills: pd.Series) -> pd.Series:
    """Cells naming several skills: parts joined by ``_ ; , | ~`` where every part is a
    number or at least two parts are skills seen on their own elsewhere in the column
    (so a plain name such as ``place_value`` is not split)."""
    text = skills.astype("object").map(lambda v: str(v).strip() if pd.notna(v) else "")
    singles = set(text[~text.str.contains(SKILL_SEPARATORS)])

    def several(cell: str) -> bool:
        parts = [part for part in SKILL_SEPARATORS.split(cell) if part]
        if len(parts) < 2:
            return False
        if all(part.strip().isdigit() for part in parts):
            return True
        return sum(part in singles for part in parts) >= 2

    return text.map(several).astype(bool)


def _combined(skill: str) -> str:
    parts = sorted({part.strip() for part in SKILL_SEPARATORS.split(skill) if part.strip()})
    return COMBINED_SKILL_JOIN.join(parts)


def prepare_responses(
    frame: pd.DataFrame, columns: ResponseColumns, spec: ProblemSpec | None
) -> Responses:
    """Clean, order and de-duplicate the answers of ``frame`` (see the module docstring).
    ``spec`` bands numeric sensitive attributes (age bands); None: no banding."""
    student = frame[columns.student]
    skill = frame[columns.skill].astype("object").map(
        lambda v: str(v).strip() if pd.notna(v) else np.nan)
    correct = as_correct(frame[columns.correct])
    when = time_key(frame[columns.time])
    keep = student.notna() & skill.notna() & correct.notna() & when.notna()
    multi = multi_skill_mask(skill) & keep
    skill = skill.where(~multi, skill[multi].map(_combined))
    table = pd.DataFrame({
        "row_id": frame.index.to_numpy(),
        "student": student.astype("object").map(str).to_numpy(),
        "skill": skill.to_numpy(),
        "correct": correct.to_numpy(),
        "time": when.to_numpy(),
        "position": np.arange(len(frame)),
    })[keep.to_numpy()]
    table = table.sort_values(["student", "time", "position"], kind="stable")
    # Several rows at the same (student, time) are one answer counted per skill: fold them.
    grouped = table.groupby(["student", "time"], sort=False)
    skills = grouped["skill"].agg(lambda s: COMBINED_SKILL_JOIN.join(
        sorted({part for cell in s for part in str(cell).split(COMBINED_SKILL_JOIN)})))
    first = grouped.head(1).set_index(["student", "time"])
    merged_rows = int(len(table) - len(first))
    first["skill"] = skills
    table = first.reset_index()[["row_id", "student", "skill", "correct"]]
    table["correct"] = table["correct"].astype(np.int64)

    varying = []
    kept_frame = frame.loc[frame.index[keep.to_numpy()]]
    for column in columns.sensitive:
        per_student = kept_frame.groupby(student[keep].astype(str))[column]
        if (per_student.nunique(dropna=False) > 1).any():
            varying.append(column)
        first_value = per_student.first()
        banded = band(first_value, spec.banding_for(column) if spec else None)
        table[column] = table["student"].map(banded).to_numpy()
    return Responses(
        table=table.reset_index(drop=True), dropped_rows=int((~keep).sum()),
        merged_rows=merged_rows, multi_skill_cells=int(multi.sum()),
        varying_attributes=tuple(varying),
    )


@dataclass(frozen=True)
class StudentSplit:
    """Students (never single answers) assigned to train, validation and test."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    seed: int

    def summary(self, responses: pd.DataFrame) -> dict:
        counts = responses.groupby("student").size()

        def answers(students: tuple[str, ...]) -> int:
            return int(counts.loc[list(students)].sum()) if students else 0

        return {
            "method": "by_student",
            "entity": "student",
            "train": len(self.train), "val": len(self.val), "test": len(self.test),
            "train_responses": answers(self.train), "val_responses": answers(self.val),
            "test_responses": answers(self.test),
            "seed": self.seed,
        }


def split_students(
    students: list[str], *, test_fraction: float, val_fraction: float, seed: int,
    given_test: frozenset[str] | None = None,
) -> StudentSplit:
    """A seeded random split of the students: every answer of a student lands in one part,
    so the test measures how the model does on learners it has never seen.

    ``given_test``: the students of a given test file (a published benchmark split), who
    are exactly the test part; validation and training students are drawn from the rest."""
    ordered = sorted(set(students))
    if given_test:
        test = tuple(student for student in ordered if student in given_test)
        rest = [student for student in ordered if student not in given_test]
        if not test or len(rest) < 2:
            raise ValueError("a given test file needs students of its own and at least 2 "
                             "other students in the training file")
        shuffled = [rest[i] for i in np.random.default_rng(seed).permutation(len(rest))]
        n_val = min(max(1, round(val_fraction * len(ordered))), len(shuffled) - 1)
        return StudentSplit(test=test, val=tuple(shuffled[:n_val]),
                            train=tuple(shuffled[n_val:]), seed=seed)
    if len(ordered) < 3:
        raise ValueError(f"knowledge tracing needs at least 3 students, got {len(ordered)}")
    shuffled = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    n_test = max(1, round(test_fraction * len(shuffled)))
    n_val = max(1, round(val_fraction * len(shuffled)))
    n_test = min(n_test, len(shuffled) - 2)
    n_val = min(n_val, len(shuffled) - n_test - 1)
    return StudentSplit(
        test=tuple(shuffled[:n_test]), val=tuple(shuffled[n_test:n_test + n_val]),
        train=tuple(shuffled[n_test + n_val:]), seed=seed,
    )


def merge_student_attributes(
    responses: pd.DataFrame, attributes: pd.DataFrame, *, student_column: str,
    key: str | None = None,
) -> pd.DataFrame:
    """``responses`` with the columns of a per-student ``attributes`` table added (an
    ``--attributes FILE`` upload: sex, age, ...), joined on ``key`` (default: the column of
    ``attributes`` named like ``student_column``, else its first column). Index and row
    order of ``responses`` are kept; students without attributes get missing values."""
    key = key or (student_column if student_column in attributes.columns
                  else str(attributes.columns[0]))
    extra = attributes.drop_duplicates(subset=[key]).copy()
    extra[key] = extra[key].astype(str)
    added = [c for c in extra.columns if c != key and c not in responses.columns]
    lookup = extra.set_index(key)[added]
    joined = lookup.reindex(responses[student_column].astype(str).to_numpy())
    joined.index = responses.index
    return pd.concat([responses, joined], axis=1)


def _rows(mask: pd.Series) -> tuple[int, tuple[int, ...]]:
    positions = [int(p) + 1 for p in np.flatnonzero(mask.to_numpy())]
    return len(positions), tuple(positions[:MAX_LISTED_ROWS])


def validate_responses(
    frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec
) -> list[ValidationIssue]:
    """Knowledge-tracing checks beyond the generic ones (1-based row numbers).

    Errors: ``missing_role`` (student, skill or time not mapped), ``unknown_column``,
    ``target_not_binary``, ``time_unreadable``, ``too_few_students``. Warnings:
    ``multi_skill_cell`` and ``multi_skill_rows`` (the AUC-inflating leakage; merged into
    one answer at training), ``missing_values`` (rows left out), ``attribute_varies``.
    """
    issues: list[ValidationIssue] = []
    for role in REQUIRED_ROLES:
        column = mapping.role(role)
        if not column:
            issues.append(ValidationIssue(
                code="missing_role", column=None,
                message=f"Choose the {role} column (role '{role}').",
            ))
        elif column not in frame.columns:
            issues.append(ValidationIssue(
                code="unknown_column", column=column,
                message=f"The {role} column '{column}' is not in the file.",
            ))
    if mapping.target not in frame.columns:
        issues.append(ValidationIssue(
            code="missing_target", column=mapping.target or None,
            message="Choose the column that records whether each answer was correct.",
        ))
    if any(issue.severity == "error" for issue in issues):
        return issues
    columns = ResponseColumns.from_mapping(mapping)
    raw_correct = frame[columns.correct]
    correct = as_correct(raw_correct)
    unreadable = correct.isna() & raw_correct.notna()
    if unreadable.any():
        count, rows = _rows(unreadable)
        examples = ", ".join(repr(v) for v in pd.unique(raw_correct[unreadable])[:3])
        issues.append(ValidationIssue(
            code="target_not_binary", column=columns.correct, rows=rows,
            message=(f"Column '{columns.correct}' must say 0/1 (or true/false, correct/"
                     f"incorrect); {count} rows hold other values ({examples})."),
        ))
    raw_time = frame[columns.time]
    bad_time = time_key(raw_time).isna() & raw_time.notna()
    if bad_time.any():
        count, rows = _rows(bad_time)
        issues.append(ValidationIssue(
            code="time_unreadable", column=columns.time, rows=rows,
            message=(f"Column '{columns.time}' must hold an order number or a date and time; "
                     f"{count} rows cannot be read."),
        ))
    needed = [columns.student, columns.skill, columns.time, columns.correct]
    missing = frame[needed].isna().any(axis=1)
    if missing.any():
        count, rows = _rows(missing)
        issues.append(ValidationIssue(
            code="missing_values", severity="warning", rows=rows,
            message=f"{count} rows lack a student, skill, time or answer and will be left out.",
        ))
    n_students = frame[columns.student].nunique()
    if n_students < MIN_STUDENTS:
        issues.append(ValidationIssue(
            code="too_few_students", column=columns.student,
            message=(f"The file has {n_students} students; knowledge tracing splits by student "
                     f"and needs at least {MIN_STUDENTS}."),
        ))
    multi = multi_skill_mask(frame[columns.skill])
    if multi.any():
        count, rows = _rows(multi)
        issues.append(ValidationIssue(
            code="multi_skill_cell", column=columns.skill, severity="warning", rows=rows,
            message=(f"{count} answers name several skills in one cell (e.g. "
                     f"'{frame.loc[multi, columns.skill].iloc[0]}'). Each is kept as one "
                     "answer with a combined skill: splitting it per skill would let the model "
                     "see the answer before predicting it (inflated AUC)."),
        ))
    keys = frame[[columns.student, columns.time]]
    repeated = keys.duplicated(keep=False) & keys.notna().all(axis=1)
    if repeated.any():
        per_answer = frame[repeated].groupby([columns.student, columns.time])[columns.skill]
        several = per_answer.transform("nunique") > 1
        mask = pd.Series(False, index=frame.index)
        mask.loc[several[several].index] = True
        if mask.any():
            count, rows = _rows(mask)
            issues.append(ValidationIssue(
                code="multi_skill_rows", column=columns.skill, severity="warning", rows=rows,
                message=(f"{count} rows repeat one answer (same student and "
                         f"'{columns.time}') for different skills. They are merged into one "
                         "answer with a combined skill: counted per skill, the model would see "
                         "the answer before predicting it (inflated AUC)."),
            ))
    for column in mapping.sensitive:
        if column not in frame.columns:
            continue
        varies = frame.groupby(frame[columns.student].astype(str))[column].nunique() > 1
        if varies.any():
            issues.append(ValidationIssue(
                code="attribute_varies", column=column, severity="warning",
                message=(f"'{column}' changes within {int(varies.sum())} students; the audit "
                         "uses each student's first value."),
            ))
    return issues
