"""API representations. Writes go through the services; these only shape data."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audits import verdicts
from audits.models import FairnessReport, Review
from governance.models import ScoringJob
from ingestion.codebook import Codebook
from ingestion.models import Dataset, DatasetVersion
from training.models import ModelVersion, TrainingRun
from training.options import OPTION_RANGES, PRIVACY_RANGES
from training.services import SERVER_PATH_KEYS

# --- errors -------------------------------------------------------------------------


class IssueSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    column = serializers.CharField(allow_null=True, required=False)
    option = serializers.CharField(required=False, help_text="The run option refused.")
    rows = serializers.ListField(child=serializers.IntegerField(), required=False)
    severity = serializers.CharField(required=False)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = IssueSerializer(many=True, required=False)
    dataset_version = serializers.IntegerField(required=False, allow_null=True)


# --- catalogue ----------------------------------------------------------------------


class ProblemSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    task_type = serializers.CharField()
    primary_metric = serializers.CharField()
    metrics = serializers.ListField(child=serializers.CharField())
    min_rows = serializers.IntegerField()
    sensitive_hints = serializers.ListField(child=serializers.CharField())
    privacy = serializers.DictField()
    fairness = serializers.DictField()
    guide = serializers.CharField()


class VerticalSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    problems = ProblemSerializer(many=True)


# --- datasets -----------------------------------------------------------------------


class DatasetVersionSerializer(serializers.ModelSerializer):
    trainable = serializers.BooleanField(read_only=True)
    uploaded_by = serializers.CharField(source="uploaded_by.username", read_only=True)

    class Meta:
        model = DatasetVersion
        fields = [
            "id", "dataset", "number", "status", "trainable", "original_filename", "sha256",
            "size_bytes", "read_options", "columns", "suggested_mapping", "mapping", "profile",
            "errors", "warnings", "identifiers", "identifiers_allowed", "uploaded_by",
            "created_at", "validated_at", "column_names", "value_labels",
        ]
        read_only_fields = fields


class CodebookSerializer(serializers.Serializer):
    """A version's display names and code labels (presentation only: data, mapping and
    results keep the original names). A PUT replaces both; blank entries are dropped."""

    column_names = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=True), required=False,
        default=dict, help_text="Original column name -> display name.")
    value_labels = serializers.DictField(
        child=serializers.DictField(child=serializers.CharField(
            allow_blank=True, trim_whitespace=True)), required=False, default=dict,
        help_text="Original column name -> {code: label}.")


def _codebook_of(run) -> dict:
    return Codebook.of_run(run).to_dict()


class DatasetVersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = DatasetVersion
        fields = ["id", "number", "status", "original_filename", "sha256", "size_bytes",
                  "created_at"]
        read_only_fields = fields


class DatasetSerializer(serializers.ModelSerializer):
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["id", "name", "vertical", "problem", "created_at", "latest_version"]
        read_only_fields = fields

    @extend_schema_field(DatasetVersionSummarySerializer(allow_null=True))
    def get_latest_version(self, dataset: Dataset) -> dict | None:
        versions = sorted(dataset.versions.all(), key=lambda v: v.number)
        return DatasetVersionSummarySerializer(versions[-1]).data if versions else None


class DatasetDetailSerializer(DatasetSerializer):
    versions = serializers.SerializerMethodField()

    class Meta(DatasetSerializer.Meta):
        fields = [*DatasetSerializer.Meta.fields, "versions"]
        read_only_fields = fields

    @extend_schema_field(DatasetVersionSerializer(many=True))
    def get_versions(self, dataset: Dataset) -> list[dict]:
        versions = sorted(dataset.versions.all(), key=lambda v: v.number, reverse=True)
        return DatasetVersionSerializer(versions, many=True).data


class UploadSerializer(serializers.Serializer):
    vertical = serializers.CharField()
    problem = serializers.CharField()
    file = serializers.FileField(allow_empty_file=True)
    name = serializers.CharField(required=False, allow_blank=True, default="")
    sep = serializers.CharField(
        required=False, allow_null=True, default=None, trim_whitespace=False,
        help_text="Delimiter; sniffed when absent.",
    )
    header = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="Whether the first row names the columns; detected when absent.",
    )
    dataset = serializers.IntegerField(
        required=False, allow_null=True, default=None,
        help_text="Add a new version to this existing dataset.",
    )


class IdentifierDecisionSerializer(serializers.Serializer):
    """An admin's decision on one column flagged as a direct identifier."""

    column = serializers.CharField(trim_whitespace=False)
    allowed = serializers.BooleanField(help_text="true: the column may be a model input")
    reason = serializers.CharField(max_length=2000, help_text="Why; kept in the audit log.")


class TargetRuleSerializer(serializers.Serializer):
    threshold = serializers.FloatField()
    direction = serializers.ChoiceField(
        choices=["below", "at_or_above"], default="at_or_above",
        help_text="below: the positive class is value < threshold; at_or_above: >= threshold.")
    positive_text = serializers.CharField(required=False, max_length=100)
    negative_text = serializers.CharField(required=False, max_length=100)


class MappingSerializer(serializers.Serializer):
    """A column mapping; fields left out fall back to the version's suggested mapping."""

    features = serializers.ListField(child=serializers.CharField(), required=False)
    sensitive = serializers.ListField(child=serializers.CharField(), required=False)
    exclude = serializers.ListField(child=serializers.CharField(), required=False)
    id = serializers.CharField(required=False, allow_null=True)
    positive_label = serializers.CharField(required=False, allow_null=True)
    target = serializers.CharField(required=False, allow_blank=True)
    roles = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField(), min_length=2, max_length=2),
        required=False,
        help_text='Task roles as [role, column] pairs, e.g. [["series", "store"], '
                  '["time", "date"]]; roles: series, time, user, item, student, skill, unit, '
                  'cycle, text, covariate, privacy_unit (the column naming the person the '
                  'epsilon protects, e.g. ["privacy_unit", "patient_nbr"]).',
    )
    column_types = serializers.DictField(
        child=serializers.ChoiceField(choices=["categorical", "numeric", "date", "text"]),
        required=False,
        help_text='Override inferred column types, e.g. {"icd9_code": "categorical"}.',
    )
    positive_labels = serializers.ListField(
        child=serializers.CharField(), required=False,
        help_text="The labels of a multi-class target that form the positive class, e.g. "
                  '["Dropout"]; the others are negative.',
    )
    target_rule = TargetRuleSerializer(
        required=False, allow_null=True,
        help_text="Cut a numeric target at a threshold (the suggested mapping carries the "
                  "problem's rule); null uses the target as it is.",
    )
    hierarchies = serializers.DictField(
        child=serializers.ChoiceField(choices=["icd9", "postcode"]), required=False,
        help_text='Code columns and their public hierarchy, e.g. {"diag_1": "icd9"}.',
    )


class CompanionUploadSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=["test_set", "test_truth", "attributes", "catalogue"],
        help_text="test_set: held-out rows with the same columns, target included (every "
                  "tabular problem; remaining useful life adds test_truth); attributes: one "
                  "row per user or student; catalogue: one item id per row, declared public "
                  "(recommendation: the model's item vocabulary, no privacy budget spent).")
    file = serializers.FileField()
    sep = serializers.CharField(required=False, allow_blank=True, max_length=8)


# --- runs ---------------------------------------------------------------------------


class PrivacyRequestSerializer(serializers.Serializer):
    """Parsed here; the ranges are checked by the service (training.options), which names
    each option and its range in the 400."""

    enabled = serializers.BooleanField(default=True)
    target_epsilon = serializers.FloatField(
        required=False, allow_null=True,
        help_text=f"Allowed: {PRIVACY_RANGES['target_epsilon'].describe()}.")
    delta = serializers.FloatField(required=False, allow_null=True,
                                   help_text=f"Allowed: {PRIVACY_RANGES['delta'].describe()}.")
    max_grad_norm = serializers.FloatField(
        required=False, allow_null=True,
        help_text=f"Per-person clipping bound; allowed: "
                  f"{PRIVACY_RANGES['max_grad_norm'].describe()}.")


class RunCreateSerializer(serializers.Serializer):
    dataset_version = serializers.IntegerField()
    privacy = PrivacyRequestSerializer(required=False)
    seed = serializers.IntegerField(default=0, min_value=0)
    config = serializers.DictField(
        required=False, default=dict,
        help_text="Training overrides, each within its range (a 400 names the option and "
                  "its range otherwise): " + "; ".join(
                      f"{name}: {option.describe()}" for name, option in OPTION_RANGES.items()),
    )


class ProgressSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(source="progress_percent", read_only=True)

    class Meta:
        model = TrainingRun
        fields = ["stage", "epoch", "total_epochs", "percent", "loss", "val_metric",
                  "epsilon_spent", "history"]
        read_only_fields = fields


class RunSerializer(serializers.ModelSerializer):
    progress = ProgressSerializer(source="*", read_only=True)
    model_version = serializers.SerializerMethodField()
    codebook = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "id", "status", "vertical", "problem", "dataset_version", "privacy_requested",
            "config", "cancel_requested", "progress", "metrics", "privacy", "fairness", "result",
            "device", "error", "model_version", "created_at", "started_at", "finished_at",
            "codebook",
        ]
        read_only_fields = fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if isinstance(data.get("result"), dict):  # runs stored before paths were left out
            data["result"] = {key: value for key, value in data["result"].items()
                              if key not in SERVER_PATH_KEYS}
        return data

    @extend_schema_field(CodebookSerializer)
    def get_codebook(self, run: TrainingRun) -> dict:
        """The dataset version's names and labels for the columns and groups shown."""
        return _codebook_of(run)

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_model_version(self, run: TrainingRun) -> int | None:
        model_version = getattr(run, "model_version", None) if run.pk else None
        return model_version.pk if model_version else None


class RunStatusSerializer(serializers.Serializer):
    """What a client polling a run needs, from a few small columns (the run-status
    endpoint answers often: no history, metrics or results, and a plain serializer, which
    builds its fields faster than a model serializer)."""

    id = serializers.IntegerField(read_only=True)
    status = serializers.ChoiceField(choices=TrainingRun.Status.choices, read_only=True)
    stage = serializers.CharField(read_only=True)
    epoch = serializers.IntegerField(read_only=True)
    total_epochs = serializers.IntegerField(read_only=True)
    percent = serializers.IntegerField(source="progress_percent", read_only=True)
    loss = serializers.FloatField(read_only=True, allow_null=True)
    val_metric = serializers.FloatField(read_only=True, allow_null=True)
    epsilon_spent = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Privacy budget spent so far (ε)."
    )
    cancel_requested = serializers.BooleanField(read_only=True)
    error = serializers.CharField(read_only=True)
    started_at = serializers.DateTimeField(read_only=True, allow_null=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)

    # The columns the answer is made of (``percent`` from status, epoch and total_epochs).
    COLUMNS = ("id", "organisation_id", "status", "stage", "epoch", "total_epochs", "loss",
               "val_metric", "epsilon_spent", "cancel_requested", "error", "started_at",
               "finished_at")


# --- batch scoring --------------------------------------------------------------------


class ScoringJobSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(source="progress_percent", read_only=True)

    class Meta:
        model = ScoringJob
        fields = ["id", "model_version", "status", "original_filename", "rows_total",
                  "rows_done", "percent", "cancel_requested", "errors", "created_at",
                  "finished_at"]
        read_only_fields = fields


# --- models and reviews -------------------------------------------------------------


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)

    class Meta:
        model = Review
        fields = ["id", "model_version", "reviewer", "decision", "comment", "created_at"]
        read_only_fields = fields


class ReviewCreateSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Review.Decision.choices)
    comment = serializers.CharField(allow_blank=True, trim_whitespace=True)


class ModelVersionSerializer(serializers.ModelSerializer):
    fairness_passed = serializers.SerializerMethodField()
    fairness_verdict = serializers.SerializerMethodField()
    metrics = serializers.JSONField(source="run.metrics", read_only=True)
    privacy = serializers.JSONField(source="run.privacy", read_only=True)
    codebook = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["id", "run", "vertical", "problem", "status", "artifact_sha256",
                  "fairness_passed", "fairness_verdict", "metrics", "privacy", "created_at",
                  "decided_at", "codebook"]
        read_only_fields = fields

    @extend_schema_field(CodebookSerializer)
    def get_codebook(self, model_version: ModelVersion) -> dict:
        """The dataset version's names and labels for the columns and groups shown."""
        return _codebook_of(model_version.run)

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_fairness_passed(self, model_version: ModelVersion) -> bool | None:
        report = getattr(model_version.run, "fairness_report", None)
        return report.passed if report else None

    @extend_schema_field(OpenApiTypes.STR)
    def get_fairness_verdict(self, model_version: ModelVersion) -> str | None:
        """passed, failed or not_judged (groups too small), as every page says it."""
        report = getattr(model_version.run, "fairness_report", None)
        return verdicts.for_report(report.report).code if report else None


class FairnessReportSerializer(serializers.ModelSerializer):
    verdict = serializers.SerializerMethodField()

    class Meta:
        model = FairnessReport
        fields = ["passed", "verdict", "report", "nonprivate_report", "policy", "created_at"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_verdict(self, report: FairnessReport) -> dict:
        """The report's and each attribute's verdict: passed, failed or not_judged, with
        the attribute's display name."""
        shown = Codebook.of_run(report.run)
        return {**verdicts.for_report(report.report).to_dict(),
                "attributes": {name: {**verdicts.for_attribute(part).to_dict(),
                                      "display_name": shown.column(name)}
                               for name, part in (report.report or {}).items()
                               if isinstance(part, dict)}}


class ModelReportSerializer(serializers.Serializer):
    """Everything a reviewer needs to decide: quality, privacy spent, fairness, history."""

    model_version = ModelVersionSerializer()
    run = RunSerializer()
    baseline = serializers.JSONField()
    nonprivate_metrics = serializers.JSONField()
    fairness = FairnessReportSerializer(allow_null=True)
    reviews = ReviewSerializer(many=True)


# --- governance -----------------------------------------------------------------------


class PredictRequestSerializer(serializers.Serializer):
    rows = serializers.ListField(
        child=serializers.DictField(), allow_empty=False,
        help_text="Rows as objects: column name -> value, with the model's input columns.",
    )


class PredictionSerializer(serializers.Serializer):
    row = serializers.IntegerField()
    score = serializers.FloatField()
    prediction = serializers.IntegerField()


class PredictResponseSerializer(serializers.Serializer):
    model_version = serializers.IntegerField()
    positive_label = serializers.CharField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    predictions = PredictionSerializer(many=True)


class ImagePredictRequestSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="One image (JPEG, PNG, BMP, TIFF, WebP or GIF), "
                                  "for a model that scores images. A ZIP of images is scored "
                                  "as a batch job.")


class ImagePredictionSerializer(serializers.Serializer):
    row = serializers.IntegerField()
    image = serializers.CharField(help_text="The image's file name: the row id.")
    prediction = serializers.CharField(help_text="The class with the highest probability.")
    score = serializers.FloatField(help_text="That class's probability.")
    scores = serializers.DictField(child=serializers.FloatField(),
                                   help_text="Class -> probability, every class.")


class ImagePredictResponseSerializer(serializers.Serializer):
    model_version = serializers.IntegerField()
    classes = serializers.ListField(child=serializers.CharField())
    predictions = ImagePredictionSerializer(many=True)


class GateSerializer(serializers.Serializer):
    name = serializers.CharField()
    passed = serializers.BooleanField()
    required = serializers.BooleanField()
    message = serializers.CharField()
    value = serializers.JSONField(allow_null=True)
    threshold = serializers.JSONField(allow_null=True)
    shortfall = serializers.FloatField(allow_null=True)


class GateSummarySerializer(serializers.Serializer):
    gates = GateSerializer(many=True)
    blocking = serializers.ListField(child=serializers.CharField())
    promotable = serializers.BooleanField()


class PromoteSerializer(serializers.Serializer):
    reason = serializers.CharField(allow_blank=True)
    override_reason = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text="Admins only: promote although gates fail; logged with the failing gates.",
    )


class RetireSerializer(serializers.Serializer):
    reason = serializers.CharField(allow_blank=True)


class PromotionEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    model_version = serializers.IntegerField(source="model_version_id")
    action = serializers.CharField()
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    actor = serializers.CharField(source="actor.username", allow_null=True, default=None)
    reason = serializers.CharField()
    override = serializers.BooleanField()
    gates = serializers.JSONField()
    created_at = serializers.DateTimeField()


class LedgerSerializer(serializers.Serializer):
    budget_epsilon = serializers.FloatField()
    spent = serializers.DictField()
    reserved_epsilon = serializers.FloatField()
    remaining_epsilon = serializers.FloatField()
    entries = serializers.ListField(child=serializers.DictField())
