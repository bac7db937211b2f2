"""Combining a dataset version's companion files with its main table (pandas only).

Two kinds of second file exist because users' data come that way:

* **attributes**: one row per user or student (sex, age band, ...), kept apart from the
  interactions or responses. Joined on the main table's ``user`` or ``student`` column, so
  the attributes become columns the analyst can map as sensitive (or exclude).
* **a given test set**: a file with the training file's columns, target included (a
  published benchmark split: other rows, students or machines, or a forecast's later
  periods), marked by :func:`ml_core.data.attach_labelled_test`; for remaining useful life
  also held-out
  run-to-failure series such as C-MAPSS ``test_FD001.txt`` with their true values
  (``RUL_FD001.txt``), which the family's ``attach_test_set`` combines. Either way the
  test rows are the given ones, not a random draw.
* **a public item catalogue** (recommendation): one item id per row (a products,
  restaurants or courses table), declared public by the analyst: a retailer knows its own
  catalogue, it is not personal data. The model's item vocabulary is then the catalogue,
  with no privacy budget spent on estimating it, and its other columns (city, price band,
  cuisine, latitude, ...) are public item attributes the model scores with
  (:func:`ml_core.families.recommendation.with_catalogue`).
"""

from __future__ import annotations

import pandas as pd

from catalog.families import family_of
from ml_core.spec import ColumnMapping, ColumnRole, ProblemSpec

# Roles whose column names a person (or a machine): the key an attributes file joins on.
ENTITY_ROLES = ("user", "student", "unit")
# The target column a given test set fills when the mapping names none.
DEFAULT_TEST_TARGET = "rul"
# Columns a family adds for its own bookkeeping (e.g. "__split__"): never shown or mapped.
INTERNAL_PREFIX = "__"


def _role_name(role: object) -> str:
    return str(getattr(role, "value", role))


def entity_roles(spec: ProblemSpec) -> tuple[str, ...]:
    """The entity roles ``spec`` declares (user, student, unit), in hint order."""
    declared = [_role_name(h.role) for h in spec.hints]
    return tuple(role for role in declared if role in ENTITY_ROLES)


def entity_column(mapping: ColumnMapping, spec: ProblemSpec) -> str | None:
    """The main table's column an attributes file joins on, from the mapping's roles."""
    for role in entity_roles(spec):
        column = mapping.role(role)
        if column:
            return column
    return None


def supports_attributes(spec: ProblemSpec) -> bool:
    return bool(entity_roles(spec))


def takes_catalogue(spec: ProblemSpec) -> bool:
    """Whether ``spec`` ranks items from a catalogue (it declares an ``item`` role)."""
    return "item" in (_role_name(h.role) for h in spec.hints)


def attach_catalogue(frame: pd.DataFrame, catalogue: pd.DataFrame, *, key: str,
                     mapping: ColumnMapping | None = None) -> pd.DataFrame:
    """``frame`` carrying the declared public item catalogue: the ids in the catalogue's
    column named like ``mapping``'s item column, else in ``key`` (chosen at upload).
    ValueError when the column is missing or lists no id."""
    item = mapping.role("item") if mapping is not None else None
    key = item if item in catalogue.columns else key
    # Imported here: the family module brings torch, which upload pages do not need.
    from ml_core.families.recommendation import with_catalogue

    if key not in catalogue.columns:
        raise ValueError(f"the catalogue file has no column {key!r}")
    return with_catalogue(frame, catalogue[key], attributes=catalogue)


def takes_labelled_test(spec: ProblemSpec) -> bool:
    """Whether ``spec``'s family takes a given test file that carries its own target."""
    return family_of(spec).supports.labelled_test_file


def needs_truth(spec: ProblemSpec) -> bool:
    """Whether a given test set comes with a second file of true values (the family's
    ``attach_test_set``: remaining useful life)."""
    return family_of(spec).supports.test_file


def takes_test_set(spec: ProblemSpec) -> bool:
    """Whether ``spec``'s family takes a given test set of either kind."""
    return takes_labelled_test(spec) or needs_truth(spec)


def attach_labelled(frame: pd.DataFrame, test_frame: pd.DataFrame, *, spec: ProblemSpec,
                    mapping: ColumnMapping | None = None,
                    truth_may_follow: bool = False) -> pd.DataFrame:
    """``frame`` with a given test file that carries its own target, its rows marked as test
    (:func:`ml_core.data.attach_labelled_test`). ValueError when the test file lacks a
    column of the training file, or shares units with it (:func:`refuse_shared_units`,
    under ``mapping``). With ``truth_may_follow`` (files are still being added), a
    remaining-useful-life test file that lacks one (its RUL) is cut series awaiting their
    true values (:func:`attach_test`): ``frame`` is returned as it is until they come."""
    from ml_core.data import attach_labelled_test

    if needs_truth(spec) and not set(frame.columns) <= set(test_frame.columns):
        if truth_may_follow:
            return frame
        try:
            return attach_labelled_test(frame, test_frame)
        except ValueError as exc:
            raise ValueError(f"{exc}; or give the test units' true remaining life "
                             "(test_truth) with series cut before failure") from None
    combined = attach_labelled_test(frame, test_frame)
    refuse_shared_units(combined, mapping=mapping, spec=spec)
    return combined


UNIT_NOUNS = {"student": "students", "unit": "units", "user": "users"}


def refuse_shared_units(combined: pd.DataFrame, *, mapping: ColumnMapping | None,
                        spec: ProblemSpec) -> None:
    """ValueError naming the first few units (students) with rows in both the training file
    and the given test file of ``combined``, in the column ``mapping`` gives the family's
    ``given_test_role``, and the fix; nothing for a family whose test file may share them
    or while that column is not mapped."""
    from ml_core.data import given_test_units

    role = family_of(spec).given_test_role
    column = mapping.role(role) if role and mapping is not None else None
    if not column or column not in combined.columns:
        return
    try:
        given_test_units(combined, column, noun=UNIT_NOUNS.get(role, "units"))
    except ValueError as exc:
        raise ValueError(f"{exc} (the {role} column is '{column}')") from None


def attributes_key(columns: list[str], preferred: str | None) -> str:
    """The attributes file's join column: one named like the main table's key, else its first."""
    if preferred and preferred in columns:
        return preferred
    return str(columns[0])


def merge_attributes(
    frame: pd.DataFrame, attributes: pd.DataFrame, *, on: str, key: str
) -> pd.DataFrame:
    """``frame`` with ``attributes``' other columns added, matched on ``frame[on] ==
    attributes[key]`` (compared as text, so ``7`` and ``"7"`` meet). Rows and index of
    ``frame`` are kept; keys without attributes get missing values; a column ``frame``
    already has is not overwritten; a key listed twice keeps its first row."""
    extra = attributes.drop_duplicates(subset=[key]).copy()
    extra[key] = extra[key].astype(str)
    added = [str(c) for c in extra.columns if c != key and c not in frame.columns]
    lookup = extra.set_index(key)[added]
    joined = lookup.reindex(frame[on].astype(str).to_numpy())
    joined.index = frame.index
    return pd.concat([frame, joined], axis=1)


def truth_values(truth: pd.DataFrame) -> pd.Series | list[float]:
    """The true values of a given test set: one column -> a list in unit order (C-MAPSS
    ``RUL_FD00x.txt``); two or more -> the last column indexed by the first (unit, value)."""
    if truth.shape[1] == 1:
        return pd.to_numeric(truth.iloc[:, 0], errors="coerce").tolist()
    values = pd.to_numeric(truth.iloc[:, -1], errors="coerce")
    return pd.Series(values.to_numpy(), index=truth.iloc[:, 0].to_numpy())


def attach_test(
    frame: pd.DataFrame, test_frame: pd.DataFrame, truth: pd.DataFrame, *,
    mapping: ColumnMapping, spec: ProblemSpec,
) -> pd.DataFrame:
    """One frame with the given test rows marked, built by the family's ``attach_test_set``.

    ValueError when the family takes no given test set, the mapping lacks the roles it
    needs, or the truth does not fit the test units.
    """
    if not needs_truth(spec):
        raise ValueError(f"{spec.name} takes no given test set with separate true values")
    unit, cycle = mapping.role(ColumnRole.UNIT.value), mapping.role(ColumnRole.CYCLE.value)
    if not unit or not cycle:
        raise ValueError("a given test set needs the unit and cycle columns mapped")
    missing = [c for c in (unit, cycle) if c not in test_frame.columns]
    if missing:
        raise ValueError(f"the test file has no column {', '.join(map(repr, missing))}; "
                         "it needs the same columns as the training file")
    return family_of(spec).attach_test_set(
        frame, test_frame, truth_values(truth), unit=unit, cycle=cycle,
        target=mapping.target or DEFAULT_TEST_TARGET)


def visible_columns(frame: pd.DataFrame) -> list[str]:
    """The columns a person maps: the frame's, without internal bookkeeping columns."""
    return [str(c) for c in frame.columns if not str(c).startswith(INTERNAL_PREFIX)]
