from __future__ import annotations

from django.conf import settings
from django.db import models

from accounts.models import Organisation


class Dataset(models.Model):
    """A named stream of uploads for one problem, in one organisation."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="datasets"
    )
    vertical = models.CharField(max_length=64)
    problem = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class DatasetVersion(models.Model):
    """One immutable upload: the stored bytes, how they were read, and what validation said.

    A version is ``pending`` until the analyst confirms the column mapping, then
    ``validated`` (trainable) or ``rejected`` (kept with its error report, never trainable).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Awaiting mapping"
        VALIDATED = "validated", "Validated"
        REJECTED = "rejected", "Rejected"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    original_filename = models.CharField(max_length=255)
    stored_path = models.CharField(max_length=500, blank=True)  # relative to TESSERA_UPLOAD_DIR
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    read_options = models.JSONField(
        default=dict
    )  # delimiter, encoding, header, as detected or forced
    columns = models.JSONField(default=list)
    mapping = models.JSONField(default=dict)  # ml_core.spec.ColumnMapping.to_dict()
    suggested_mapping = models.JSONField(default=dict)
    profile = models.JSONField(default=dict)
    errors = models.JSONField(default=list)  # [{code, message, column, rows}]
    warnings = models.JSONField(default=list)
    # Columns that look like direct identifiers (ml_core.identifiers.find_identifiers):
    # [{column, kind, evidence, message}]. They are kept out of training unless an admin
    # allowed them (ingestion.services.set_identifier_allowed, audited).
    identifiers = models.JSONField(default=list)
    identifiers_allowed = models.JSONField(default=list)  # column names
    # The analyst's codebook (ingestion.codebook): display names {column: name} and value
    # labels {column: {code: label}}. Presentation only: the stored file, the mapping and
    # every result stay keyed by the original column names and codes.
    column_names = models.JSONField(default=dict, blank=True)
    value_labels = models.JSONField(default=dict, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    validated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="unique_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.number}"

    @property
    def organisation(self) -> Organisation:
        return self.dataset.organisation

    @property
    def trainable(self) -> bool:
        return self.status == self.Status.VALIDATED

    @property
    def blocked_identifiers(self) -> list[str]:
        """Flagged identifier columns that no admin allowed: never model inputs."""
        allowed = set(self.identifiers_allowed or ())
        return [item["column"] for item in self.identifiers or () if item["column"] not in allowed]


class CompanionFile(models.Model):
    """A second file stored with a dataset version: per-person attributes (joined on the
    user or student key), a given test set and its true values (remaining useful life), or
    a public item catalogue (recommendation: one item id per row, declared public).

    Stored and hashed like the main file; :func:`ingestion.services.load_frame` combines
    them, so validation, training and reloading all see the same table.
    """

    class Kind(models.TextChoices):
        ATTRIBUTES = "attributes", "Attributes per user or student"
        TEST_SET = "test_set", "Given test set"
        TEST_TRUTH = "test_truth", "True values for the given test set"
        CATALOGUE = "catalogue", "Public item catalogue"

    version = models.ForeignKey(
        DatasetVersion, on_delete=models.CASCADE, related_name="companions"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    original_filename = models.CharField(max_length=255)
    stored_path = models.CharField(max_length=500)  # relative to TESSERA_UPLOAD_DIR
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    read_options = models.JSONField(default=dict)
    columns = models.JSONField(default=list)
    # The column of this file that joins it to the main table (attributes), or that holds
    # the item ids (catalogue).
    key_column = models.CharField(max_length=255, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind"]
        constraints = [
            models.UniqueConstraint(fields=["version", "kind"], name="one_companion_per_kind")
        ]

    def __str__(self) -> str:
        return f"{self.version} {self.kind}: {self.original_filename}"
