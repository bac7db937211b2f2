"""Upload and column-mapping forms."""

from __future__ import annotations

from django import forms

from catalog.families import family_of
from ingestion.codebook import MAX_NAME_LENGTH, Codebook, CodebookError, validate
from ml_core.column_types import KINDS
from ml_core.spec import ColumnMapping, ColumnRole, ProblemSpec, TargetRule

DELIMITER_CHOICES = [
    ("", "Detect automatically"),
    (",", "Comma ,"),
    (";", "Semicolon ;"),
    ("\t", "Tab"),
    ("|", "Pipe |"),
    (" ", "Spaces"),
]

ROLE_CHOICES = [
    ("feature", "Feature"),
    ("target", "Target"),
    ("sensitive", "Sensitive attribute"),
    ("id", "Row identifier"),
    ("exclude", "Exclude"),
]
# Task roles (ColumnMapping.roles), in the order the select lists them.
TASK_ROLE_LABELS = {
    "series": "Series key (store, item, ...)",
    "time": "Time or order",
    "covariate": "Covariate (price, promotion, ...)",
    "user": "User",
    "item": "Item",
    "student": "Student",
    "skill": "Skill",
    "unit": "Unit (engine, machine)",
    "cycle": "Cycle",
    "text": "Text",
    "image": "Image file (its path in the ZIP)",
    "privacy_unit": "Person (privacy unit)",
}
# Roles several columns may share; the others take one column each.
REPEATABLE = frozenset({"feature", "sensitive", "exclude", "series", "covariate"})


def _role_name(role: object) -> str:
    return str(getattr(role, "value", role))


def role_choices(spec: ProblemSpec | None) -> list[tuple[str, str]]:
    """The roles a column of ``spec``'s table can take: the problem's task roles (from its
    hints) and the tabular ones; "feature" only where the model reads features."""
    if spec is None:
        return list(ROLE_CHOICES)
    declared = [_role_name(h.role) for h in spec.hints]
    # The person column is offered wherever the problem's unit is mapped on its own (not
    # where a task role, student or user, already names the person).
    if spec.privacy_unit.role == "privacy_unit":
        declared.append("privacy_unit")
    task = [(r, TASK_ROLE_LABELS[r]) for r in TASK_ROLE_LABELS if r in declared]
    # Only a family that reads mapping.features is offered the role (the others decide
    # from their task roles alone).
    reads_features = family_of(spec).reads(ColumnRole.FEATURE)
    base = [(value, label) for value, label in ROLE_CHOICES
            if value != "feature" or reads_features]
    if not reads_features:
        base = [(v, "Not used" if v == "exclude" else label) for v, label in base]
    return [base[0], *task, *base[1:]] if base[0][0] == "feature" else [*task, *base]


def target_required(spec: ProblemSpec | None) -> bool:
    """Implicit-feedback and computed targets (recommendation, remaining useful life) may be
    left unmapped; every other problem needs one."""
    if spec is None:
        return True
    targets = [h for h in spec.hints if _role_name(h.role) == "target"]
    return not targets or any(h.required for h in targets)


LABELLED_TEST_HELP = ("Held-out rows with the same columns, target included (e.g. a published "
                      "benchmark split): the model is tested on exactly these.")
TRUTH_TEST_HELP = ("Whole series of other units with their remaining life column (or run to "
                   "failure), every row judged; or series cut before failure (e.g. C-MAPSS "
                   "test_FD001.txt) with their true values below, judged on their last cycle.")


class UploadForm(forms.Form):
    name = forms.CharField(
        max_length=200, required=False,
        help_text="A name for this dataset; the file name is used when blank.",
    )
    file = forms.FileField(help_text="CSV or other delimited text, with or without a header.")
    delimiter = forms.ChoiceField(choices=DELIMITER_CHOICES, required=False,
                                  label="Delimiter override")
    no_header = forms.BooleanField(required=False, label="File has no header row")

    def __init__(self, *args, spec: ProblemSpec | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # Second files, offered only to the problems that take them (see CompanionFile).
        self.companion_names: list[str] = []
        if spec is None:
            return
        from ingestion import companions

        if companions.supports_attributes(spec):
            self.fields["attributes"] = forms.FileField(
                required=False, label="Attributes file (optional)",
                help_text="One row per user or student (e.g. sex, age), joined on their id; "
                          "its columns can then be mapped as sensitive attributes.")
            self.companion_names.append("attributes")
        if companions.takes_catalogue(spec):
            self.fields["catalogue"] = forms.FileField(
                required=False, label="Item catalogue (optional, declared public)",
                help_text="One item id per row (e.g. your products or restaurants table). By "
                          "uploading it you declare the catalogue public: which items exist is "
                          "not personal data. The model then knows exactly these items and "
                          "spends no privacy budget on finding them; interactions on other "
                          "items are dropped. Without it the items are chosen privately.")
            self.companion_names.append("catalogue")
        if companions.takes_test_set(spec):
            # One field for every family; what the file holds is the family's.
            self.fields["test_file"] = forms.FileField(
                required=False, label="Given test set (optional)",
                help_text=TRUTH_TEST_HELP if companions.needs_truth(spec)
                else LABELLED_TEST_HELP)
            self.companion_names.append("test_file")
        if companions.needs_truth(spec):
            self.fields["test_truth"] = forms.FileField(
                required=False, label="True remaining life of the test units (optional)",
                help_text="One number per test unit in unit order (e.g. RUL_FD001.txt), or "
                          "two columns: unit, remaining life.")
            self.companion_names.append("test_truth")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("test_truth") and not cleaned.get("test_file"):
            raise forms.ValidationError(
                "True values belong to a given test set: add the test series too.")
        return cleaned

    def companion_fields(self):
        return [self[name] for name in self.companion_names]

    def companion_files(self) -> list[tuple[str, object]]:
        """(CompanionFile kind, uploaded file) for the second files given, in attach order."""
        kinds = {"attributes": "attributes", "test_file": "test_set", "test_truth": "test_truth",
                 "catalogue": "catalogue"}
        return [(kinds[name], self.cleaned_data[name]) for name in self.companion_names
                if self.cleaned_data.get(name)]

    def read_options(self) -> dict:
        """Keyword arguments for ingestion.services.upload_dataset."""
        data = self.cleaned_data
        return {"sep": data.get("delimiter") or None,
                "header": False if data.get("no_header") else None}


def roles_from_mapping(columns: list[str], mapping: dict, *,
                       default: str = "feature") -> dict[str, str]:
    """The role of each column in a stored ColumnMapping dict (``default`` when it has none)."""
    roles = dict.fromkeys(columns, default)
    if not mapping:
        return roles
    listed = set(mapping.get("features") or ())
    task_roles = {column: role for role, column in mapping.get("roles") or ()}
    for name in columns:
        if name == mapping.get("target"):
            roles[name] = "target"
        elif name == mapping.get("id"):
            roles[name] = "id"
        elif name in (mapping.get("sensitive") or ()):
            roles[name] = "sensitive"
        elif name in task_roles:
            roles[name] = task_roles[name]
        elif name in (mapping.get("exclude") or ()) or (listed and name not in listed):
            roles[name] = "exclude"
        elif name in listed:
            roles[name] = "feature"
    return roles


class MappingForm(forms.Form):
    """One role select per column; field names are positional because column names are
    whatever the user's file says. ``spec`` decides which roles are offered."""

    positive_label = forms.CharField(
        max_length=100, required=False, label="Positive label",
        help_text="The target value that counts as the outcome of interest "
                  "(e.g. 2 = bad credit). Blank: the rarer class.",
    )

    def __init__(self, *args, columns: list[str], initial_roles: dict[str, str],
                 spec: ProblemSpec | None = None, suggested: dict | None = None,
                 inferred_kinds: dict[str, str] | None = None,
                 target_labels: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.columns = columns
        self.spec = spec
        self.suggested = ColumnMapping.from_dict({"target": "", **(suggested or {})})
        self.choices = role_choices(spec)
        offered = {value for value, _ in self.choices}
        fallback = "feature" if "feature" in offered else "exclude"
        inferred_kinds = inferred_kinds or {}
        for index, name in enumerate(columns):
            initial = initial_roles.get(name, fallback)
            self.fields[f"role_{index}"] = forms.ChoiceField(
                choices=self.choices, label=name,
                initial=initial if initial in offered else fallback,
            )
            # Blank keeps the inferred kind; a choice overrides it (codes read as numbers).
            inferred = inferred_kinds.get(name)
            self.fields[f"type_{index}"] = forms.ChoiceField(
                choices=[("", f"{inferred} (inferred)" if inferred else "inferred"),
                         *((kind, kind) for kind in KINDS)],
                required=False, label=f"Type of {name}",
                initial=self.suggested.column_type(name) or "",
            )
        if target_labels:
            # A multi-class outcome: the analyst says which labels are the positive class.
            self.fields["positive_labels"] = forms.MultipleChoiceField(
                choices=[(label, label) for label in target_labels], required=False,
                widget=forms.CheckboxSelectMultiple, label="Positive class",
                initial=list(self.suggested.positive_labels),
                help_text="The target has more than two values: tick the ones that count as "
                          "the outcome of interest (e.g. Dropout); the rest are negative.")
        rule = self.suggested.target_rule or (spec.target_rule if spec is not None else None)
        if rule is not None:
            # The problem's threshold for a numeric target, shown so the analyst confirms
            # or edits it; blank uses the target as it is (already two classes).
            self.fields["rule_threshold"] = forms.FloatField(
                required=False, label="Target rule: threshold",
                initial=self.suggested.target_rule.threshold if self.suggested.target_rule
                else None,
                help_text=f"Suggested by the problem: {rule.describe()}. Leave blank when the "
                          "target already holds two classes.")
            self.fields["rule_direction"] = forms.ChoiceField(
                choices=[("below", f"{rule.positive_text} when below the threshold"),
                         ("at_or_above", f"{rule.positive_text} at or above the threshold")],
                initial="below" if rule.positive_below else "at_or_above",
                label="Target rule: direction", required=False)
        self.rule = rule

    def role_fields(self):
        return [self[f"role_{i}"] for i in range(len(self.columns))]

    def type_fields(self):
        return [self[f"type_{i}"] for i in range(len(self.columns))]

    def target_fields(self):
        return [self[name] for name in ("positive_labels", "rule_threshold", "rule_direction")
                if name in self.fields]

    def clean(self):
        cleaned = super().clean()
        roles = [cleaned.get(f"role_{i}") for i in range(len(self.columns))]
        labels = dict(self.choices)
        if roles.count("target") > 1 or (target_required(self.spec) and "target" not in roles):
            raise forms.ValidationError("Choose exactly one target column."
                                        if target_required(self.spec)
                                        else "Choose at most one target column.")
        for role in dict.fromkeys(roles):
            if role and role not in REPEATABLE and role != "target" and roles.count(role) > 1:
                raise forms.ValidationError(
                    f"Choose at most one column as {labels.get(role, role).lower()}.")
        if family_of(self.spec).requires(ColumnRole.FEATURE) and "feature" not in roles:
            raise forms.ValidationError("Choose at least one feature column.")
        return cleaned

    def mapping(self) -> ColumnMapping:
        roles = {name: self.cleaned_data[f"role_{i}"] for i, name in enumerate(self.columns)}

        def having(role: str) -> tuple[str, ...]:
            return tuple(name for name, r in roles.items() if r == role)

        ids, targets = having("id"), having("target")
        threshold = self.cleaned_data.get("rule_threshold")
        rule = None
        if threshold is not None and self.rule is not None:
            below = self.cleaned_data.get("rule_direction") != "at_or_above"
            rule = TargetRule(threshold=threshold, positive_below=below,
                              positive_text=self.rule.positive_text,
                              negative_text=self.rule.negative_text)
        return ColumnMapping(
            target=targets[0] if targets else "", features=having("feature"),
            sensitive=having("sensitive"), exclude=having("exclude"),
            id=ids[0] if ids else None,
            positive_label=self.cleaned_data.get("positive_label") or None,
            roles=tuple((role, name) for role in TASK_ROLE_LABELS for name in having(role)),
            column_types=tuple((name, self.cleaned_data[f"type_{i}"])
                               for i, name in enumerate(self.columns)
                               if self.cleaned_data.get(f"type_{i}")),
            positive_labels=tuple(self.cleaned_data.get("positive_labels") or ()),
            target_rule=rule,
            hierarchies=self.suggested.hierarchies,
        )


class CodebookForm(forms.Form):
    """Names and labels typed inline: a name box per column and, for each coded column
    (few distinct values), a label box per code. Blank boxes keep the original."""

    def __init__(self, *args, columns: list[dict], codebook, **kwargs):
        """``columns``: [{name, codes}] with the codes of coded columns (else [])."""
        super().__init__(*args, **kwargs)
        self.columns = columns
        self.rows = []
        for i, column in enumerate(columns):
            name = column["name"]
            key = f"name-{i}"
            self.fields[key] = forms.CharField(
                required=False, max_length=MAX_NAME_LENGTH,
                label=f"Display name of {name}", initial=codebook.names.get(name, ""),
                widget=forms.TextInput(attrs={"placeholder": name, "autocomplete": "off"}))
            codes = []
            for j, code in enumerate(column.get("codes") or ()):
                label_key = f"label-{i}-{j}"
                self.fields[label_key] = forms.CharField(
                    required=False, max_length=MAX_NAME_LENGTH,
                    label=f"Label of {code} in {name}",
                    initial=(codebook.labels.get(name) or {}).get(str(code), ""),
                    widget=forms.TextInput(attrs={"autocomplete": "off"}))
                codes.append((str(code), label_key))
            self.rows.append({"name": name, "field": key, "codes": codes})

    def bound_rows(self) -> list[dict]:
        return [{"name": row["name"], "field": self[row["field"]],
                 "codes": [(code, self[key]) for code, key in row["codes"]]}
                for row in self.rows]

    def codebook(self, *, columns: list[str], current: Codebook) -> Codebook:
        """The codebook as typed (a blank box removes its name or label); labels of codes
        without a box here (set by a codebook file) are kept. CodebookError lists every
        problem, the form's own included."""
        if not self.is_valid():
            raise CodebookError([f"{self[key].label}: {' '.join(errors)}"
                                 for key, errors in self.errors.items()])
        data = self.cleaned_data
        names = {row["name"]: data.get(row["field"]) or "" for row in self.rows}
        labels = {c: dict(v) for c, v in current.labels.items()}
        for row in self.rows:
            if row["codes"]:
                labels[row["name"]] = {**labels.get(row["name"], {}), **{
                    code: data.get(key) or "" for code, key in row["codes"]}}
        return validate(columns=columns, names=names, labels=labels)


class CodebookUploadForm(forms.Form):
    file = forms.FileField(
        label="Codebook file (CSV)",
        help_text="Columns column,name to rename and/or column,code,label to label codes; "
                  "header names in any case, other columns ignored. Merged over the names "
                  "and labels already set.")
