"""Suggesting a column mapping from a problem's hints, and checking a confirmed one.

Uploaded files never match a fixed schema, so :func:`suggest_mapping` pre-fills the
analyst's mapping form from the problem's name hints and :func:`validate` checks what
the analyst confirmed. Every issue names the column and, where rows are at fault, the
1-based data row numbers (row 1 is the first row under the header), so a person can
find and fix them in the file.

A file without a header (columns ``column_1`` .. ``column_N``) usually matches no hint:
the suggested target is then ``""``, and the platform must make the analyst choose it;
:func:`validate` reports ``target_required`` until they do.

Direct identifiers (names, e-mail addresses, ...) are found by :mod:`ml_core.identifiers`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ml_core.code_hierarchies import HIERARCHY_KINDS
from ml_core.column_types import (
    CATEGORICAL,
    DATE,
    KINDS,
    NUMERIC,
    NUMERIC_SHARE,
    TEXT,
    infer_column_type,
    override_hint,
)
from ml_core.data import binary_target, feature_columns, label_text
from ml_core.fairness import band_counts
from ml_core.identifiers import INPUT_ROLES
from ml_core.spec import (
    TABULAR_ROLES,
    ColumnMapping,
    ColumnRole,
    ProblemSpec,
    TargetRule,
    TaskType,
    normalise_name,
)
from ml_core.tables import (
    ColumnCodes,
    factorize,
    name_skeleton,
    name_words,
)

MAX_LISTED_ROWS = 20
# A hint at least this long also matches inside a longer name ("gender" in "applicant
# gender"); shorter ones ("age", "sex", "id", "y") only match a whole word of the name,
# so "age" does not find "average_balance" nor "race" "trace_id".
MIN_SUBSTRING_HINT = 5
CLASSIFICATION_TASKS = (TaskType.BINARY_CLASSIFICATION, TaskType.TEXT_CLASSIFICATION)
TABULAR_ROLE_NAMES = frozenset(role.value for role in TABULAR_ROLES)
# Roles a problem may give to several columns (store and item keys, covariates).
REPEATABLE_ROLES = frozenset({"series", "covariate"})


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in an uploaded table under a mapping."""

    code: str
    message: str
    column: str | None = None
    rows: tuple[int, ...] = ()  # 1-based data row numbers, at most 20 listed
    severity: str = "error"  # "error" blocks training; "warning" does not

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "message": self.message,
            "column": self.column,
            "rows": list(self.rows),
            "severity": self.severity,
        }


# --- suggesting -------------------------------------------------------------------------

def _match_rank(column: str, hints: tuple[str, ...]) -> tuple[int, int] | None:
    """How well ``column`` matches ``hints``: (0 exact / 1 partial, index of the hint); None."""
    norm = normalise_name(column)
    words = name_words(column)
    best = None
    for index, hint in enumerate(hints):
        hint_norm = normalise_name(hint)
        if not hint_norm:
            continue
        if hint_norm == norm:
            rank = (0, index)
        elif hint_norm in words or (len(hint_norm) >= MIN_SUBSTRING_HINT and hint_norm in norm):
            rank = (1, index)
        else:
            continue
        if best is None or rank < best:
            best = rank
    return best


def _best_column(columns: list[str], hints: tuple[str, ...], taken: set[str]) -> str | None:
    ranked = []
    for position, column in enumerate(columns):
        if column in taken:
            continue
        rank = _match_rank(column, hints)
        if rank is not None:
            ranked.append((rank, position, column))
    return min(ranked)[2] if ranked else None


def _hint_names(spec: ProblemSpec, role: ColumnRole) -> tuple[str, ...]:
    return tuple(name for hint in spec.hints if hint.role == role for name in hint.names)


def _unique_id_like(frame: pd.DataFrame, taken: set[str]) -> str | None:
    for column in frame.columns:
        column = str(column)
        if column in taken:
            continue
        named_like_id = "id" in name_words(column) or normalise_name(column).endswith("id")
        if named_like_id and frame[column].notna().all() and frame[column].is_unique:
            return column
    return None


def suggest_mapping(frame: pd.DataFrame, spec: ProblemSpec) -> ColumnMapping:
    """Pre-fill a mapping from ``spec``'s hints; the analyst confirms or changes it.

    Exact (normalised) name matches beat partial ones, and earlier hint names beat later
    ones. The target comes from the TARGET hints (``""`` when nothing matches: the
    analyst must choose), the id from the ID hints or else a column named like an id
    whose values are unique, sensitive columns from ``spec.sensitive_hints`` and excluded
    ones from EXCLUDE hints. No column gets two roles. ``features`` is left empty, which
    means "every other column".
    """
    columns = [str(column) for column in frame.columns]
    taken: set[str] = set()
    target = _best_column(columns, _hint_names(spec, ColumnRole.TARGET), taken) or ""
    if target:
        taken.add(target)
    id_column = _best_column(columns, _hint_names(spec, ColumnRole.ID), taken)
    if id_column is None:
        id_column = _unique_id_like(frame, taken)
    if id_column:
        taken.add(id_column)
    sensitive = tuple(
        column for column in columns
        if column not in taken and _match_rank(column, spec.sensitive_hints) is not None
    )
    taken.update(sensitive)
    exclude_hints = _hint_names(spec, ColumnRole.EXCLUDE)
    exclude = tuple(
        column for column in columns
        if column not in taken and _match_rank(column, exclude_hints) is not None
    )
    taken.update(exclude)
    return ColumnMapping(target=target, sensitive=sensitive, exclude=exclude, id=id_column,
                         roles=_suggest_roles(columns, spec, taken),
                         target_rule=_suggest_target_rule(frame, target, spec),
                         hierarchies=_suggest_hierarchies(columns, spec))


def _suggest_target_rule(frame: pd.DataFrame, target: str, spec: ProblemSpec
                         ) -> TargetRule | None:
    """The problem's rule for a target of more than two numbers (a grade); None for a
    target already binary or made of labels, which is used as it is."""
    if not target or spec.target_rule is None:
        return None
    values = frame[target].dropna()
    numeric = pd.to_numeric(values, errors="coerce").notna().all()
    return spec.target_rule if numeric and values.nunique() > 2 else None


def _suggest_hierarchies(columns: list[str], spec: ProblemSpec) -> tuple[tuple[str, str], ...]:
    """Columns named like a declared code hierarchy's hints (diagnosis codes, postcodes)."""
    found = []
    for hierarchy in spec.code_hierarchies:
        found += [(column, hierarchy.kind) for column in columns
                  if _match_rank(column, hierarchy.column_hints) is not None
                  and column not in dict(found)]
    return tuple(found)


def _suggest_roles(
    columns: list[str], spec: ProblemSpec, taken: set[str]
) -> tuple[tuple[str, str], ...]:
    """Task-specific roles (series, time, user, item, ...) from the spec's hints: the best
    match for single roles, every match for the repeatable ones."""
    roles: list[tuple[str, str]] = []
    for hint in spec.hints:
        role = str(getattr(hint.role, "value", hint.role))
        if role in TABULAR_ROLE_NAMES:
            continue
        if role in REPEATABLE_ROLES:
            matched = [c for c in columns
                       if c not in taken and _match_rank(c, hint.names) is not None]
        else:
            best = _best_column(columns, hint.names, taken)
            matched = [best] if best else []
        roles.extend((role, column) for column in matched)
        taken.update(matched)
    return tuple(roles)


# --- validating -------------------------------------------------------------------------

def _row_numbers(mask: pd.Series | np.ndarray) -> tuple[int, tuple[int, ...]]:
    positions = np.flatnonzero(np.asarray(mask))
    return len(positions), tuple(int(p) + 1 for p in positions[:MAX_LISTED_ROWS])


def _rows_text(count: int, rows: tuple[int, ...]) -> str:
    noun = "row" if count == 1 else "rows"
    listed = ", ".join(str(r) for r in rows)
    more = f" and {count - len(rows)} more" if count > len(rows) else ""
    return f"{count} {noun}: {listed}{more}"


def _mapped_columns(mapping: ColumnMapping) -> list[tuple[str, str]]:
    named = [("target", mapping.target)] if mapping.target else []
    if mapping.id:
        named.append(("id", mapping.id))
    for role, columns in (
        ("feature", mapping.features), ("sensitive", mapping.sensitive),
        ("exclude", mapping.exclude),
    ):
        named.extend((role, column) for column in columns)
    named.extend(mapping.roles)
    return named


def _check_columns(frame: pd.DataFrame, mapping: ColumnMapping) -> list[ValidationIssue]:
    issues = []
    present = {str(column) for column in frame.columns}
    for role, column in _mapped_columns(mapping):
        if column not in present:
            code = "missing_target" if role == "target" else "unknown_column"
            issues.append(ValidationIssue(
                code=code, column=column,
                message=(f"The {role} column '{column}' is not in the file."
                         f"{_lookalike(column, present)}"),
            ))
    target = mapping.target
    if target:
        clashes = [
            role for role, column in _mapped_columns(mapping)
            if column == target and role != "target"
        ]
        for role in clashes:
            issues.append(ValidationIssue(
                code="role_conflict", column=target,
                message=f"Column '{target}' is the target and cannot also be {role}.",
            ))
    return issues


def _lookalike(column: str, present: set[str]) -> str:
    """A hint naming the file's column that looks like ``column`` but is spelled otherwise."""
    skeleton = name_skeleton(column)
    for name in sorted(present):
        if name != column and name_skeleton(name) == skeleton:
            odd = ", ".join(f"'{c}' (U+{ord(c):04X})" for c in dict.fromkeys(name)
                            if ord(c) > 127) or "other letters"
            return (f" Column '{name}' looks the same but is spelled with {odd}: rename it in "
                    "the file, or map that column.")
    return ""


def _check_non_finite(frame: pd.DataFrame, columns: list[str]) -> list[ValidationIssue]:
    """Infinite numbers (``inf``, ``1e999``) in the columns a model reads: no scaling or
    loss survives them, so they block training (missing values are imputed instead)."""
    issues = []
    for column in columns:
        values = frame[column]
        if not pd.api.types.is_float_dtype(values):
            continue
        infinite = pd.Series(np.isinf(values.to_numpy()), index=values.index)
        if infinite.any():
            count, rows = _row_numbers(infinite)
            issues.append(ValidationIssue(
                code="infinite_values", column=column, rows=rows,
                message=(f"Column '{column}' holds infinite numbers in "
                         f"{_rows_text(count, rows)}; replace them with real values or "
                         "leave the cells empty."),
            ))
    return issues


def _label_counts(values: pd.Series) -> pd.Series:
    """Rows per ``label_text`` of the non-missing values; each distinct value is named once."""
    counts = values.value_counts(dropna=True, sort=False)
    return counts.groupby(counts.index.map(label_text), sort=False).sum()


def _check_target(
    frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec
) -> list[ValidationIssue]:
    name = mapping.target
    target = frame[name]
    issues = []
    missing = target.isna()
    if missing.any():
        count, rows = _row_numbers(missing)
        issues.append(ValidationIssue(
            code="missing_target_values", column=name, rows=rows,
            message=f"Column '{name}' is missing a value in {_rows_text(count, rows)}.",
        ))
    if spec.task_type not in CLASSIFICATION_TASKS:
        return issues
    rule = mapping.target_rule
    labels = _label_counts(target)
    if rule is None and not mapping.positive_labels and len(labels) > 2:
        numbers = pd.to_numeric(target, errors="coerce")
        if spec.target_rule is not None and numbers.notna().sum() == target.notna().sum():
            # The problem's rule, used because the analyst confirmed no other: said aloud.
            rule = spec.target_rule
            issues.append(ValidationIssue(
                code="target_rule_suggested", column=name, severity="warning",
                message=(f"Column '{name}' holds {len(labels)} numbers; the problem's rule "
                         f"is used: {rule.describe(name)}. To change it, "
                         f"{_target_rule_hint(rule)}."),
            ))
    if rule is not None:
        numbers = pd.to_numeric(target, errors="coerce")
        text = numbers.isna() & target.notna()
        if text.any():
            count, rows = _row_numbers(text)
            issues.append(ValidationIssue(
                code="target_not_numeric", column=name, rows=rows,
                message=(f"Column '{name}' must hold numbers for the rule "
                         f"{rule.describe(name)}; text in {_rows_text(count, rows)}. If the "
                         "column holds labels, clear the target rule and choose the positive "
                         f"labels instead ({_positive_labels_hint(target)})."),
            ))
            return issues
    if mapping.positive_labels:
        unknown = [label for label in mapping.positive_labels
                   if label_text(label) not in labels.index]
        if unknown:
            issues.append(ValidationIssue(
                code="positive_label_unknown", column=name,
                message=(f"The positive labels {', '.join(repr(u) for u in unknown)} do not "
                         f"occur in column '{name}'; its labels: "
                         f"{', '.join(repr(v) for v in sorted(labels.index)[:10])}."),
            ))
            return issues
    target = binary_target(target, replace(mapping, target_rule=rule)).labels
    counts = _label_counts(target)
    if len(counts) < 2:
        only = f" ('{counts.index[0]}')" if len(counts) else ""
        fix = (f" The target rule {rule.describe(name)} puts every row in one class: edit its "
               f"threshold, or clear it if '{name}' already holds two classes "
               f"({_target_rule_hint(rule)})." if rule is not None else
               " Choose another target column.")
        issues.append(ValidationIssue(
            code="single_class", column=name,
            message=(f"Column '{name}' has only one class{only}; a model needs at least "
                     f"two.{fix}"),
        ))
    elif spec.task_type == TaskType.BINARY_CLASSIFICATION and len(counts) > 2:
        shown = ", ".join(f"'{label}'" for label in sorted(counts.index)[:10])
        issues.append(ValidationIssue(
            code="target_not_binary", column=name,
            message=(
                f"Column '{name}' has {len(counts)} distinct values ({shown}"
                f"{', ...' if len(counts) > 10 else ''}); this problem needs exactly two. "
                f"Choose the labels that form the positive class "
                f"({_positive_labels_hint(frame[name])})"
                + (f", or cut the numbers at a threshold ({_target_rule_hint(None)})"
                   if pd.to_numeric(frame[name], errors="coerce").notna().sum()
                   == frame[name].notna().sum() else "") + "."
            ),
        ))
    if (not mapping.positive_labels and mapping.positive_label is not None
            and label_text(mapping.positive_label) not in counts):
        issues.append(ValidationIssue(
            code="positive_label_unknown", column=name,
            message=(
                f"The positive label '{mapping.positive_label}' does not occur in column '{name}'."
            ),
        ))
    return issues


def _check_numeric_text(frame: pd.DataFrame, column: str, known: ColumnCodes, *,
                        kind: str | None, used: bool) -> ValidationIssue | None:
    """Text among the numbers of a column that is not a code column.

    Code columns (ICD-9 ``V57`` among ``250.83``, postcodes, leading zeros) are categorical
    and pass; so does a column the analyst typed as categorical or text. A column typed as
    numeric has its text read as missing (a warning). Otherwise the text is an error when
    the model reads the column, a warning when it does not; both name the override.
    """
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return None
    if kind in (CATEGORICAL, TEXT, DATE):
        return None
    # Each distinct value is tried as a number once (a text column repeats its values).
    codes, distinct = known.of_text(column) or factorize(values.astype(str))
    present = codes >= 0
    if not present.any():
        return None
    is_number = pd.to_numeric(pd.Series(distinct, dtype=object).str.strip(),
                              errors="coerce").notna().to_numpy()
    numeric = present & is_number[codes]
    share = numeric.sum() / present.sum()
    if share < NUMERIC_SHARE:
        return None
    if kind is None and infer_column_type(values).kind == CATEGORICAL:
        return None
    bad = present & ~numeric
    count, rows = _row_numbers(bad)
    # Distinct values come in order of first appearance, as the rows do.
    examples = ", ".join(f"'{v}'" for v in distinct[~is_number][:3])
    where = (f"Column '{column}' holds numbers but has text ({examples}) in "
             f"{_rows_text(count, rows)}")
    if kind == NUMERIC:
        return ValidationIssue(
            code="text_read_as_missing", column=column, rows=rows, severity="warning",
            message=f"{where}; the column is typed numeric, so these cells are read as missing.",
        )
    fix = (f"Fix those cells, or if the column holds codes, {override_hint(column, CATEGORICAL)}"
           f"; to read the text as missing, {override_hint(column, NUMERIC)}.")
    if not used:
        return ValidationIssue(
            code="text_in_numeric", column=column, rows=rows, severity="warning",
            message=f"{where}. The model does not read this column, so it is not a problem "
                    f"now. {fix}",
        )
    return ValidationIssue(code="text_in_numeric", column=column, rows=rows,
                           message=f"{where}. {fix}")


def _target_rule_hint(rule: TargetRule | None) -> str:
    """How an analyst sets or edits a target rule, in each place they can."""
    threshold = f"{rule.threshold:g}" if rule is not None else "10"
    direction = ("below" if rule is None or rule.positive_below else "at_or_above")
    sign = "<" if direction == "below" else ">="
    return (f"mapping form: target rule; API: \"target_rule\": {{\"threshold\": {threshold}, "
            f"\"direction\": \"{direction}\"}}; command: --target-rule '{sign}{threshold}'")


def _positive_labels_hint(target: pd.Series) -> str:
    labels = sorted(_label_counts(target).index)
    example = labels[0] if labels else "LABEL"
    return (f"mapping form: positive labels; API: \"positive_labels\": [\"{example}\"]; "
            f"command: --positive-label {example}, repeatable")


def used_columns(frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec
                 ) -> tuple[list[str], list[str]]:
    """(columns the model reads, other candidate columns) among ``frame``'s features.

    The tabular family reads every feature column; other families read the features and
    input roles (covariate, text) the analyst mapped, and choose among the rest
    themselves, so a problem in those is only worth a warning.
    """
    present = {str(column) for column in frame.columns}
    role_columns = {column for _, column in mapping.roles}
    # Task role columns (unit, time, user, ...) are checked by the family's own validator.
    features = [c for c in feature_columns(frame, mapping)
                if c in present and c != mapping.target and c not in role_columns]
    if spec.model_family == "tabular_mlp":
        return features, []
    read = set(mapping.features) | {c for role, c in mapping.roles if role in INPUT_ROLES}
    return [c for c in features if c in read], [c for c in features if c not in read]


def _check_groups(
    frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec, codes: ColumnCodes
) -> list[ValidationIssue]:
    issues = []
    minimum = spec.fairness.min_group_size
    for column in mapping.sensitive:
        counts = band_counts(frame[column], spec.banding_for(column), codes.of_text(column))
        for group, size in sorted(counts.items()):
            if size < minimum:
                issues.append(ValidationIssue(
                    code="small_group", column=column, severity="warning",
                    message=(
                        f"Group '{group}' of '{column}' has {size} "
                        f"{'row' if size == 1 else 'rows'}; groups under "
                        f"{minimum} are reported but not judged"
                    ),
                ))
    return issues


def _up_to_two_values(values: pd.Series) -> tuple[int, object]:
    """(0, 1 or 2 for more: how many distinct values ``values`` holds, its first present
    value): one comparison with the first value, not a count."""
    if values.dtype == object or (isinstance(values.dtype, pd.StringDtype)
                                  and values.dtype.na_value is np.nan):
        # Text: compared as it is; missing cells differ from any value, so only the cells
        # that differ are looked at for one that is present.
        raw = values.to_numpy(dtype=object)
        first = next((value for value in raw if not pd.isna(value)), None)
        if first is None:
            return 0, None
        try:
            differs = np.asarray(raw != first, dtype=bool)
        except (TypeError, ValueError):  # pd.NA among the values: the general way
            differs = None
        if differs is not None:
            rest = raw[differs]
            return 1 + bool(pd.notna(rest).any()), first
    present = values.notna().to_numpy()
    first = values.iloc[int(present.argmax())] if present.any() else None
    if first is None:
        return 0, None
    # Missing cells filled with the first value, not dropped.
    return 1 + bool((values.to_numpy(na_value=first) != first).any()), first


def _check_constant(frame: pd.DataFrame, columns: list[str], codes: ColumnCodes
                    ) -> list[ValidationIssue]:
    issues = []
    for column in columns:
        if column in codes:
            # Factorised already: its distinct values, in order of first appearance.
            uniques = codes(column)[1]
            distinct, first = min(len(uniques), 2), (uniques[0] if len(uniques) else None)
        else:
            distinct, first = _up_to_two_values(frame[column])
        if distinct > 1:
            continue
        what = "no values" if distinct == 0 else f"the same value ('{first}') in every row"
        issues.append(ValidationIssue(
            code="constant_column", column=column, severity="warning",
            message=f"Column '{column}' has {what}; it carries no information.",
        ))
    return issues


def validate(
    frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec, *,
    codes: ColumnCodes | None = None,
) -> list[ValidationIssue]:
    """Check ``frame`` under ``mapping`` for ``spec``; an empty list means trainable.

    Errors (``severity="error"``) block training: ``target_required``, ``missing_target``,
    ``unknown_column``, ``role_conflict``, ``too_few_rows``, ``missing_target_values``,
    ``single_class``, ``target_not_binary``, ``positive_label_unknown``,
    ``text_in_numeric``, ``infinite_values``. Warnings do not: ``small_group`` (a banded
    sensitive group below ``spec.fairness.min_group_size``), ``constant_column``,
    ``id_not_unique``.

    ``codes`` shares the text columns' factorisations with other steps (the profile).
    """
    codes = ColumnCodes(frame) if codes is None else codes
    issues: list[ValidationIssue] = []
    if not mapping.target and _target_required(spec):
        issues.append(ValidationIssue(
            code="target_required",
            message="Choose the target column: the column the model should predict.",
        ))
    issues.extend(_check_columns(frame, mapping))
    if len(frame) < spec.min_rows:
        issues.append(ValidationIssue(
            code="too_few_rows",
            message=(
                f"The file has {len(frame)} data rows; "
                f"this problem needs at least {spec.min_rows}."
            ),
        ))
    present = {str(column) for column in frame.columns}
    if mapping.target in present:
        issues.extend(_check_target(frame, mapping, spec))
    features, unread = used_columns(frame, mapping, spec)
    issues.extend(_check_column_types(frame, mapping))
    for column in features + unread:
        issue = _check_numeric_text(frame, column, codes, kind=mapping.column_type(column),
                                    used=column in features)
        if issue is not None:
            issues.append(issue)
    if mapping.id in present and not frame[mapping.id].is_unique:
        duplicated = frame[mapping.id].duplicated(keep=False)
        count, rows = _row_numbers(duplicated)
        issues.append(ValidationIssue(
            code="id_not_unique", column=mapping.id, rows=rows, severity="warning",
            message=f"Id column '{mapping.id}' repeats values in {_rows_text(count, rows)}.",
        ))
    known_sensitive = ColumnMapping(
        target=mapping.target, sensitive=tuple(c for c in mapping.sensitive if c in present)
    )
    issues.extend(_check_groups(frame, known_sensitive, spec, codes))
    used = list(dict.fromkeys(features + list(known_sensitive.sensitive)))
    checked = used + ([mapping.target] if mapping.target in present else [])
    issues.extend(_check_non_finite(frame, list(dict.fromkeys(checked))))
    issues.extend(_check_constant(frame, used, codes))
    # Imported here: family modules import this one for ValidationIssue.
    from ml_core.families import get_family

    issues.extend(get_family(spec.model_family).validate(frame, mapping, spec))
    return issues


def _check_column_types(frame: pd.DataFrame, mapping: ColumnMapping) -> list[ValidationIssue]:
    present = {str(column) for column in frame.columns}
    issues = []
    for column, kind in mapping.column_types:
        if column not in present:
            issues.append(ValidationIssue(
                code="unknown_column", column=column,
                message=f"The column type is set for '{column}', which is not in the file."
                        f"{_lookalike(column, present)}"))
        elif kind not in KINDS:
            issues.append(ValidationIssue(
                code="unknown_column_type", column=column,
                message=f"Column '{column}' is typed '{kind}'; the types are "
                        f"{', '.join(KINDS)}."))
    for column, kind in mapping.hierarchies:
        if kind not in HIERARCHY_KINDS:
            issues.append(ValidationIssue(
                code="unknown_hierarchy", column=column,
                message=f"Column '{column}' is given the hierarchy '{kind}'; known: "
                        f"{', '.join(HIERARCHY_KINDS)}."))
    return issues


def _target_required(spec: ProblemSpec) -> bool:
    """Implicit-feedback problems (every row a positive) may leave the target empty."""
    return any(h.role == ColumnRole.TARGET and h.required for h in spec.hints) or not any(
        h.role == ColumnRole.TARGET for h in spec.hints)


def has_errors(issues: list[ValidationIssue]) -> bool:
    """True when any issue blocks training."""
    return any(issue.severity == "error" for issue in issues)
