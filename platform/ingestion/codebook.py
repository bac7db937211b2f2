"""A dataset version's codebook: display names for its columns and labels for coded values
(``A93`` -> "male, single"), typed inline or uploaded as a CSV file.

Presentation only. The stored file, the mapping, the training result and the fairness
report all stay keyed by the original column names and codes; :class:`Codebook` is the one
place that turns them into the names people read, for every page, the card and the API.
Renaming never changes a result.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ml_core.data import label_text

# Columns with at most this many distinct values are offered a label box per code.
MAX_CODED_VALUES = 30
MAX_NAME_LENGTH = 120
MAX_CODEBOOK_BYTES = 1024 * 1024
# Header names a codebook file may use (case-insensitive); other columns are ignored.
HEADER_ALIASES = {
    "column": ("column", "variable", "field", "attribute"),
    "name": ("name", "display name", "display_name", "new name", "new_name", "rename"),
    "code": ("code", "value"),
    "label": ("label", "meaning", "description"),
}


@dataclass(frozen=True)
class Codebook:
    """Display names ``{column: name}`` and value labels ``{column: {code: label}}``."""

    names: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, version) -> Codebook:
        """The codebook of a dataset version (an empty one for None)."""
        if version is None:
            return cls()
        return cls(names=dict(version.column_names or {}),
                   labels={c: dict(v) for c, v in (version.value_labels or {}).items()})

    @classmethod
    def of_run(cls, run) -> Codebook:
        return cls.of(getattr(run, "dataset_version", None)) if run is not None else cls()

    def __bool__(self) -> bool:
        return bool(self.names) or any(self.labels.values())

    def to_dict(self) -> dict:
        return {"column_names": dict(self.names),
                "value_labels": {c: dict(v) for c, v in self.labels.items() if v}}

    # --- what people read ------------------------------------------------------------

    def column(self, name: object) -> str:
        """A column's display name (its original name when it has none)."""
        return self.names.get(str(name)) or str(name)

    def value(self, column: object, code: object) -> str:
        """A value's label in ``column`` (the value as text when it has none)."""
        text = label_text(code)
        return (self.labels.get(str(column)) or {}).get(text) or text

    def values(self, column: object, counts: Mapping) -> dict:
        """``{code: x}`` as ``{label: x}``, in the same order."""
        return {self.value(column, code): x for code, x in counts.items()}

    def fairness(self, report: Mapping | None) -> dict:
        """A fairness report (attribute -> {by_group, judged_groups, ...}) with attributes
        and groups named for people. Labels are unique within a column (see
        :func:`validate`), so no two groups merge."""
        shown = {}
        for attribute, body in (report or {}).items():
            if isinstance(body, Mapping) and "by_group" in body:
                body = {**body, "by_group": self.values(attribute, body["by_group"] or {})}
                if body.get("judged_groups") is not None:
                    body["judged_groups"] = [self.value(attribute, g)
                                             for g in body["judged_groups"]]
            shown[self.column(attribute)] = body
        return shown

    def by_attribute(self, table: Mapping | None) -> dict:
        """``{attribute: {group: row}}`` (group sizes, per-group costs) named for people."""
        return {self.column(a): self.values(a, rows or {}) for a, rows in (table or {}).items()}

    def profile(self, profile: Mapping | None) -> dict:
        """A stored profile with its columns, values, target classes and groups named."""
        if not profile:
            return {}
        columns = []
        for entry in profile.get("columns") or ():
            name = entry.get("name")
            entry = {**entry, "name": self.column(name), "original": str(name)}
            for key in ("top_values", "value_counts"):
                if entry.get(key):
                    entry[key] = [[self.value(name, v), n] for v, n in entry[key]]
            columns.append(entry)
        target = _target_of(profile)
        balance = profile.get("target_balance") or {}
        return {**profile, "columns": columns,
                "target_balance": self.values(target, balance) if target else balance,
                "groups": self.by_attribute(profile.get("groups"))}


def _target_of(profile: Mapping) -> str | None:
    return next((str(c.get("name")) for c in profile.get("columns") or ()
                 if c.get("role") == "target"), None)


# --- checking and reading ------------------------------------------------------------


class CodebookError(ValueError):
    """Refused codebook input; ``errors`` lists every problem, one sentence each."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def validate(*, columns: Iterable[str], names: Mapping[str, str],
             labels: Mapping[str, Mapping[str, str]]) -> Codebook:
    """The codebook cleaned (blank entries dropped, whitespace trimmed), or CodebookError
    listing every problem: an unknown column, a name or label too long, two columns shown
    under one name, two codes of one column under one label (their groups would merge)."""
    columns = [str(c) for c in columns]
    known = set(columns)
    errors: list[str] = []
    clean_names: dict[str, str] = {}
    for column, name in names.items():
        name = str(name or "").strip()
        if column not in known:
            errors.append(f"there is no column {column!r}")
        elif len(name) > MAX_NAME_LENGTH:
            errors.append(f"the name of {column!r} is longer than {MAX_NAME_LENGTH} characters")
        elif name and name != column:
            clean_names[column] = name
    shown: dict[str, str] = {}
    for column in columns:
        display = clean_names.get(column, column)
        if display.casefold() in shown:
            errors.append(f"{shown[display.casefold()]!r} and {column!r} would both be "
                          f"shown as {display!r}")
        else:
            shown[display.casefold()] = column
    clean_labels: dict[str, dict[str, str]] = {}
    for column, codes in labels.items():
        if column not in known:
            errors.append(f"there is no column {column!r}")
            continue
        kept: dict[str, str] = {}
        for code, label in (codes or {}).items():
            label = str(label or "").strip()
            if len(label) > MAX_NAME_LENGTH:
                errors.append(f"the label of {code!r} in {column!r} is longer than "
                              f"{MAX_NAME_LENGTH} characters")
            elif label and label != str(code):
                kept[label_text(code)] = label
        used: dict[str, str] = {}
        for code, label in kept.items():
            if label.casefold() in used:
                errors.append(f"codes {used[label.casefold()]!r} and {code!r} of {column!r} "
                              f"share the label {label!r}; their groups would merge")
            used[label.casefold()] = code
        if kept:
            clean_labels[column] = kept
    if errors:
        raise CodebookError(errors)
    return Codebook(names=clean_names, labels=clean_labels)


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CodebookError(["the file is not text"])  # latin-1 decodes anything: unreachable


def _header_index(header: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for position, raw in enumerate(header):
        text = raw.strip().lower()
        for key, aliases in HEADER_ALIASES.items():
            if text in aliases and key not in found:
                found[key] = position
    return found


def _resolve_column(given: str, columns: list[str], current: Codebook) -> str | None:
    """The original column a codebook line means: its original name, else its display
    name, else either of those ignoring case when only one column matches."""
    if given in columns:
        return given
    by_name = [c for c in columns if current.names.get(c) == given]
    if len(by_name) == 1:
        return by_name[0]
    folded = given.casefold()
    loose = [c for c in columns if c.casefold() == folded
             or (current.names.get(c) or "").casefold() == folded]
    return loose[0] if len(loose) == 1 else None


def parse_codebook(data: bytes, *, columns: Iterable[str], current: Codebook) -> Codebook:
    """A codebook file merged over ``current``.

    A CSV (comma, semicolon or tab) whose header names ``column`` and ``name`` (renames)
    and/or ``code`` and ``label`` (value labels); header names are case-insensitive and
    other columns are ignored. A line may rename, label, or both. Every bad line is
    reported by its number and nothing is kept (CodebookError)."""
    if len(data) > MAX_CODEBOOK_BYTES:
        raise CodebookError([f"the file is larger than {MAX_CODEBOOK_BYTES // 1024} KB"])
    text = _decode(data)
    if not text.strip():
        raise CodebookError(["the file is empty"])
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    header = _header_index(rows[0])
    if "column" not in header or not ({"name"} <= header.keys()
                                      or {"code", "label"} <= header.keys()):
        raise CodebookError([
            "line 1: the header must name the columns column,name and/or column,code,label "
            f"(found: {', '.join(h.strip() for h in rows[0]) or 'nothing'})"])
    columns = [str(c) for c in columns]
    names = dict(current.names)
    labels = {c: dict(v) for c, v in current.labels.items()}
    errors: list[str] = []

    def cell(row: list[str], key: str) -> str:
        position = header.get(key)
        return row[position].strip() if position is not None and position < len(row) else ""

    for number, row in enumerate(rows[1:], start=2):
        if not any(value.strip() for value in row):
            continue
        given, name = cell(row, "column"), cell(row, "name")
        code, label = cell(row, "code"), cell(row, "label")
        if not given:
            errors.append(f"line {number}: the column is empty")
            continue
        column = _resolve_column(given, columns, current)
        if column is None:
            errors.append(f"line {number}: there is no column {given!r}")
            continue
        if not name and not code:
            errors.append(f"line {number}: give a name for {given!r}, or a code and its label")
            continue
        if code and not label:
            errors.append(f"line {number}: code {code!r} of {given!r} has no label")
            continue
        if name:
            names[column] = name
        if code:
            labels.setdefault(column, {})[label_text(code)] = label
    if errors:
        raise CodebookError(errors)
    try:
        return validate(columns=columns, names=names, labels=labels)
    except CodebookError as exc:
        raise CodebookError([f"after this file: {e}" for e in exc.errors]) from None


def changes(before: Codebook, after: Codebook) -> list[str]:
    """What changed, as short phrases for the audit log ("column_9 named "status"")."""
    said: list[str] = []
    for column in sorted(set(before.names) | set(after.names)):
        old, new = before.names.get(column), after.names.get(column)
        if old != new:
            said.append(f"{column} named {new!r}" if new else f"{column} keeps its own name")
    for column in sorted(set(before.labels) | set(after.labels)):
        old, new = before.labels.get(column) or {}, after.labels.get(column) or {}
        for code in sorted(set(old) | set(new)):
            if old.get(code) != new.get(code):
                said.append(f"{column} code {code} labelled {new[code]!r}" if code in new
                            else f"{column} code {code} unlabelled")
    return said
