"""Upload and column-mapping forms."""

from __future__ import annotations

from django import forms

from ml_core.spec import ColumnMapping

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


class UploadForm(forms.Form):
    name = forms.CharField(
        max_length=200, required=False,
        help_text="A name for this dataset; the file name is used when blank.",
    )
    file = forms.FileField(help_text="CSV or other delimited text, with or without a header.")
    delimiter = forms.ChoiceField(choices=DELIMITER_CHOICES, required=False,
                                  label="Delimiter override")
    no_header = forms.BooleanField(required=False, label="File has no header row")

    def read_options(self) -> dict:
        """Keyword arguments for ingestion.services.upload_dataset."""
        data = self.cleaned_data
        return {"sep": data.get("delimiter") or None,
                "header": False if data.get("no_header") else None}


def roles_from_mapping(columns: list[str], mapping: dict) -> dict[str, str]:
    """The role of each column in a stored ColumnMapping dict (features by default)."""
    roles = dict.fromkeys(columns, "feature")
    if not mapping:
        return roles
    listed = set(mapping.get("features") or ())
    for name in columns:
        if name == mapping.get("target"):
            roles[name] = "target"
        elif name == mapping.get("id"):
            roles[name] = "id"
        elif name in (mapping.get("sensitive") or ()):
            roles[name] = "sensitive"
        elif name in (mapping.get("exclude") or ()) or (listed and name not in listed):
            roles[name] = "exclude"
    return roles


class MappingForm(forms.Form):
    """One role select per column; field names are positional because column names are
    whatever the user's file says."""

    positive_label = forms.CharField(
        max_length=100, required=False, label="Positive label",
        help_text="The target value that counts as the outcome of interest "
                  "(e.g. 2 = bad credit). Blank: the rarer class.",
    )

    def __init__(self, *args, columns: list[str], initial_roles: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.columns = columns
        for index, name in enumerate(columns):
            self.fields[f"role_{index}"] = forms.ChoiceField(
                choices=ROLE_CHOICES, label=name, initial=initial_roles.get(name, "feature"),
            )

    def role_fields(self):
        return [self[f"role_{i}"] for i in range(len(self.columns))]

    def clean(self):
        cleaned = super().clean()
        roles = [cleaned.get(f"role_{i}") for i in range(len(self.columns))]
        if roles.count("target") != 1:
            raise forms.ValidationError("Choose exactly one target column.")
        if roles.count("id") > 1:
            raise forms.ValidationError("Choose at most one row identifier column.")
        if "feature" not in roles:
            raise forms.ValidationError("Choose at least one feature column.")
        return cleaned

    def mapping(self) -> ColumnMapping:
        roles = {name: self.cleaned_data[f"role_{i}"] for i, name in enumerate(self.columns)}

        def having(role: str) -> tuple[str, ...]:
            return tuple(name for name, r in roles.items() if r == role)

        ids = having("id")
        return ColumnMapping(
            target=having("target")[0], features=having("feature"),
            sensitive=having("sensitive"), exclude=having("exclude"),
            id=ids[0] if ids else None,
            positive_label=self.cleaned_data.get("positive_label") or None,
        )
