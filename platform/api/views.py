"""REST API v1. Views are thin: scope the query, call a service, shape the answer."""

from __future__ import annotations

import dataclasses

from django.core.exceptions import PermissionDenied
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from accounts.scoping import for_request, get_scoped_or_404
from api import serializers as s
from api.permissions import CanReview, IsMember
from audits.services import review_model
from governance import cards, registry, scoring
from governance.ledger import ledger_status
from governance.models import ScoringJob
from ingestion.codebook import Codebook, CodebookError
from ingestion.codebook import validate as validate_codebook
from ingestion.models import Dataset, DatasetVersion
from ingestion.services import (
    UploadError,
    attach_companion,
    confirm_mapping,
    save_codebook,
    set_identifier_allowed,
    upload_dataset,
)
from ml_core.spec import ColumnMapping
from training.models import ModelVersion, TrainingRun
from training.options import InvalidRunOptions
from training.services import cancel_run, start_run
from verticals.registry import verticals

# One instance answers every status poll: a serializer deep-copies its fields when it is
# built, which costs more than the rest of the endpoint's serialising, and reading fields
# keep no state from one answer to the next.
_RUN_STATUS = s.RunStatusSerializer()

ERROR = OpenApiResponse(s.ErrorSerializer, description="Refused; the body says why.")


def _error(detail: str, *, errors: list | None = None, code=status.HTTP_400_BAD_REQUEST, **extra):
    body = {"detail": detail, **extra}
    if errors is not None:
        body["errors"] = errors
    return Response(body, status=code)


class _Scoped:
    """Every queryset is the requester's organisation's: other ids are simply not found."""

    permission_classes = [IsMember]
    base_queryset = None

    def get_queryset(self):
        return for_request(self.base_queryset.all(), self.request)


class VerticalViewSet(viewsets.ViewSet):
    permission_classes = [IsMember]

    @extend_schema(responses=s.VerticalSerializer(many=True))
    def list(self, request):
        data = [
            {
                "key": vertical.key,
                "name": vertical.name,
                "description": vertical.description,
                "problems": [
                    {
                        "key": problem.key,
                        "name": problem.spec.name,
                        "description": problem.spec.description,
                        "task_type": problem.spec.task_type.value,
                        "primary_metric": problem.spec.primary_metric,
                        "metrics": list(problem.spec.metrics),
                        "min_rows": problem.spec.min_rows,
                        "sensitive_hints": list(problem.spec.sensitive_hints),
                        "privacy": dataclasses.asdict(problem.spec.privacy),
                        "fairness": dataclasses.asdict(problem.spec.fairness),
                        "guide": problem.guide,
                    }
                    for problem in vertical.problems
                ],
            }
            for vertical in verticals()
        ]
        return Response(s.VerticalSerializer(data, many=True).data)


class DatasetViewSet(
    _Scoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    base_queryset = Dataset.objects.prefetch_related("versions")
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def get_serializer_class(self):
        if self.action == "retrieve":
            return s.DatasetDetailSerializer
        if self.action == "create":
            return s.UploadSerializer
        return s.DatasetSerializer

    @extend_schema(
        request={"multipart/form-data": s.UploadSerializer},
        responses={201: s.DatasetVersionSerializer, 400: ERROR},
        description="Upload a table. A file that cannot be read is kept as a rejected version "
        "and answered with 400 and its errors.",
    )
    def create(self, request):
        form = s.UploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        dataset = None
        if data.get("dataset") is not None:
            dataset = get_scoped_or_404(Dataset, request.user, pk=data["dataset"])
        try:
            version = upload_dataset(
                user=request.user, vertical=data["vertical"], problem=data["problem"],
                file=data["file"], name=data.get("name") or "", sep=data.get("sep") or None,
                header=data.get("header"), dataset=dataset,
            )
        except UploadError as exc:
            return _error(exc.message, errors=exc.errors)
        body = s.DatasetVersionSerializer(version).data
        if version.status == DatasetVersion.Status.REJECTED:
            return _error("the file could not be read", errors=version.errors,
                          dataset_version=version.pk)
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.LedgerSerializer,
                   description="The dataset's privacy budget ledger: budget, the composed "
                   "spend of its runs, what runs in progress reserve, what remains.")
    @action(detail=True, methods=["get"])
    def ledger(self, request, pk=None):
        return Response(s.LedgerSerializer(ledger_status(self.get_object()).to_dict()).data)


def _merged_mapping(version: DatasetVersion, given: dict) -> dict:
    """The suggested mapping with the fields the client sent laid over it. The suggested
    target rule was made for the suggested target: another target drops it unless the
    client sends one; a rule's labels default to the problem's."""
    suggested = dict(version.suggested_mapping or {})
    merged = {"target": "", **suggested, **given}
    if "target_rule" not in given and merged.get("target") != suggested.get("target"):
        merged["target_rule"] = None
    rule = given.get("target_rule")
    if rule:
        problem = suggested.get("target_rule") or {}
        merged["target_rule"] = {
            "positive_text": problem.get("positive_text"),
            "negative_text": problem.get("negative_text"), **rule}
    return merged


class DatasetVersionViewSet(_Scoped, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    base_queryset = DatasetVersion.objects.select_related("dataset", "uploaded_by")
    serializer_class = s.DatasetVersionSerializer

    @extend_schema(
        request={"multipart/form-data": s.CompanionUploadSerializer},
        responses={201: s.DatasetVersionSerializer, 400: ERROR},
        description="Add a second file to a version awaiting its mapping: a given test set "
        "(same columns, target included) or, where the problem takes them, its true values "
        "or an attributes file, or a public item catalogue (recommendation).",
    )
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser, FormParser])
    def companions(self, request, pk=None):
        version = self.get_object()
        form = s.CompanionUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            attach_companion(version=version, user=request.user, kind=data["kind"],
                             file=data["file"], sep=data.get("sep") or None)
        except UploadError as exc:
            return _error(exc.message, errors=exc.errors)
        except ValueError as exc:
            return _error(str(exc))
        version.refresh_from_db()
        return Response(s.DatasetVersionSerializer(version).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.MappingSerializer,
        responses={200: s.DatasetVersionSerializer, 400: ERROR},
        description="Confirm the column mapping; fields left out take the suggested mapping. "
        "Validation errors reject the version (400 with the report).",
    )
    @action(detail=True, methods=["post"])
    def mapping(self, request, pk=None):
        version = self.get_object()
        form = s.MappingSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        # Validation decides whether an empty target is allowed (implicit-feedback
        # problems have none) and answers with the validation report.
        merged = _merged_mapping(version, form.validated_data)
        try:
            version = confirm_mapping(
                version=version, user=request.user, mapping=ColumnMapping.from_dict(merged)
            )
        except ValueError as exc:
            return _error(str(exc))
        if version.status == DatasetVersion.Status.REJECTED:
            return _error("the data does not fit the mapping", errors=version.errors,
                          dataset_version=version.pk)
        return Response(s.DatasetVersionSerializer(version).data)

    @extend_schema(
        request=s.IdentifierDecisionSerializer,
        responses={200: s.DatasetVersionSerializer, 400: ERROR, 403: ERROR},
        description="Admins only: allow a column flagged as a direct identifier as a model "
        "input (or block it again) before the mapping is confirmed; audited with the reason.",
    )
    @action(detail=True, methods=["post"])
    def identifiers(self, request, pk=None):
        version = self.get_object()
        form = s.IdentifierDecisionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            version = set_identifier_allowed(version=version, user=request.user,
                                             **form.validated_data)
        except ValueError as exc:
            return _error(str(exc))
        return Response(s.DatasetVersionSerializer(version).data)

    @extend_schema(methods=["GET"], responses={200: s.CodebookSerializer},
                   description="The version's display names and code labels.")
    @extend_schema(
        methods=["PUT"], request=s.CodebookSerializer,
        responses={200: s.CodebookSerializer, 400: ERROR, 403: ERROR},
        description="Replace the display names and code labels (any member). "
        "Presentation only: the data, the mapping and every result keep the original names. "
        "Refused as a whole, with every problem listed, on an unknown column, a name two "
        "columns would share, or a label two codes of one column would share.")
    @action(detail=True, methods=["get", "put"])
    def codebook(self, request, pk=None):
        version = self.get_object()
        if request.method == "GET":
            return Response(Codebook.of(version).to_dict())
        form = s.CodebookSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            book = validate_codebook(columns=version.columns or [],
                                     names=form.validated_data["column_names"],
                                     labels=form.validated_data["value_labels"])
        except CodebookError as exc:
            return _error("the codebook was not saved", errors=exc.errors)
        version = save_codebook(version=version, user=request.user, codebook=book,
                                source="the API")
        return Response(Codebook.of(version).to_dict())


class RunViewSet(
    _Scoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    base_queryset = TrainingRun.objects.select_related("model_version", "dataset_version")

    def get_queryset(self):
        if self.action == "run_status":  # polled often: only the columns it answers with
            return for_request(TrainingRun.objects.only(*s.RunStatusSerializer.COLUMNS),
                               self.request)
        return super().get_queryset()

    def get_serializer_class(self):
        return s.RunCreateSerializer if self.action == "create" else s.RunSerializer

    @extend_schema(responses={200: s.RunStatusSerializer})
    @action(detail=True, methods=["get"], url_path="status", url_name="status")
    def run_status(self, request, pk=None):
        """A run's progress for polling: status, stage, epochs, privacy budget spent so far.
        The run itself (``GET /runs/<id>/``) adds configuration, history and results."""
        return Response(_RUN_STATUS.to_representation(self.get_object()))

    @extend_schema(request=s.RunCreateSerializer, responses={201: s.RunSerializer, 400: ERROR})
    def create(self, request):
        form = s.RunCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        version = get_scoped_or_404(DatasetVersion, request.user, pk=data["dataset_version"])
        privacy = data.get("privacy") or {}
        try:
            run = start_run(
                version=version, user=request.user,
                privacy_enabled=privacy.get("enabled", True),
                target_epsilon=privacy.get("target_epsilon"), delta=privacy.get("delta"),
                max_grad_norm=privacy.get("max_grad_norm"),
                config={**data.get("config", {}), "seed": data["seed"]},
            )
        except InvalidRunOptions as exc:
            return _error(str(exc), errors=[
                {"code": "invalid_option", "option": name, "message": f"{name}: {why}"}
                for name, why in exc.errors.items()])
        except (ValueError, TypeError) as exc:
            return _error(str(exc))
        return Response(s.RunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: s.RunSerializer, 400: ERROR})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        try:
            run = cancel_run(run=run, user=request.user)
        except ValueError as exc:
            return _error(str(exc))
        return Response(s.RunSerializer(run).data)


class ScoringJobViewSet(_Scoped, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Batch scoring jobs (started from a model's page): their progress, and their cancel."""

    base_queryset = ScoringJob.objects.all()
    serializer_class = s.ScoringJobSerializer

    @extend_schema(request=None, responses={200: s.ScoringJobSerializer, 400: ERROR})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued job at once, or ask a running one to stop before its next batch
        (what it scored is discarded). 400 when it has already finished."""
        try:
            job = scoring.cancel_scoring_job(job=self.get_object(), user=request.user)
        except ValueError as exc:
            return _error(str(exc))
        return Response(s.ScoringJobSerializer(job).data)


class ModelVersionViewSet(
    _Scoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    base_queryset = ModelVersion.objects.select_related(
        "run", "run__fairness_report", "run__dataset_version")
    serializer_class = s.ModelVersionSerializer

    @extend_schema(responses=s.ModelReportSerializer)
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        model_version = self.get_object()
        run = model_version.run
        data = {
            "model_version": model_version,
            "run": run,
            "baseline": run.result.get("baseline"),
            "nonprivate_metrics": run.result.get("nonprivate_metrics"),
            "fairness": getattr(run, "fairness_report", None),
            "reviews": model_version.reviews.select_related("reviewer"),
        }
        return Response(s.ModelReportSerializer(data).data)

    @extend_schema(
        request=s.ReviewCreateSerializer,
        responses={201: s.ReviewSerializer, 400: ERROR, 403: ERROR},
    )
    @action(detail=True, methods=["post"], permission_classes=[IsMember, CanReview])
    def review(self, request, pk=None):
        model_version = self.get_object()
        form = s.ReviewCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            review = review_model(
                model_version=model_version, user=request.user,
                decision=form.validated_data["decision"], comment=form.validated_data["comment"],
            )
        except PermissionDenied:
            raise
        except ValueError as exc:
            return _error(str(exc))
        return Response(s.ReviewSerializer(review).data, status=status.HTTP_201_CREATED)

    # --- governance: predictions, model card, gates, promotion ------------------------

    @extend_schema(
        request={"application/json": s.PredictRequestSerializer,
                 "multipart/form-data": s.ImagePredictRequestSerializer},
        responses={200: PolymorphicProxySerializer(
            component_name="PredictAnswer", serializers=[s.PredictResponseSerializer,
                                                      s.ImagePredictResponseSerializer],
            resource_type_field_name=None), 400: ERROR, 409: ERROR},
        description="Score with an approved or champion model. A model that scores rows takes "
        "JSON rows, checked against its input schema (a bad row is a 400 naming the row and "
        "column); a model that scores images takes one image as the multipart field "
        "'image' and answers with its class and a probability per class.",
    )
    @action(detail=True, methods=["post"],
            parser_classes=[JSONParser, MultiPartParser, FormParser])
    def predict(self, request, pk=None):
        model_version = self.get_object()
        multipart = request.content_type.startswith(("multipart/", "application/x-www-form"))
        try:
            if multipart:
                body = s.ImagePredictResponseSerializer(scoring.predict_image(
                    model_version=model_version, user=request.user,
                    file=request.FILES.get("image"))).data
            else:
                rows = request.data.get("rows") if isinstance(request.data, dict) else None
                body = s.PredictResponseSerializer(scoring.predict_rows(
                    model_version=model_version, user=request.user, rows=rows)).data
        except scoring.NotServing as exc:
            return _error(str(exc), code=status.HTTP_409_CONFLICT)
        except scoring.PredictionInputError as exc:
            return _error(str(exc), errors=exc.errors)
        return Response(body)

    @extend_schema(responses=OpenApiTypes.OBJECT,
                   description="The model card: intended use, data, metrics beside the "
                   "baseline, the privacy guarantee, fairness by group, approvals, limitations.")
    @action(detail=True, methods=["get"])
    def card(self, request, pk=None):
        return Response(cards.model_card(self.get_object()))

    @extend_schema(responses=s.GateSummarySerializer)
    @action(detail=True, methods=["get"])
    def gates(self, request, pk=None):
        return Response(s.GateSummarySerializer(registry.gate_summary(self.get_object())).data)

    @extend_schema(request=s.PromoteSerializer,
                   responses={201: s.PromotionEventSerializer, 400: ERROR, 403: ERROR})
    @action(detail=True, methods=["post"], permission_classes=[IsMember, CanReview])
    def promote(self, request, pk=None):
        model_version = self.get_object()
        form = s.PromoteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            event = registry.promote(
                model_version=model_version, user=request.user,
                reason=form.validated_data["reason"],
                override_reason=form.validated_data.get("override_reason") or None,
            )
        except registry.GateFailure as exc:
            return _error(str(exc), gates=exc.failures)
        except ValueError as exc:
            return _error(str(exc))
        return Response(s.PromotionEventSerializer(event).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.RetireSerializer,
                   responses={201: s.PromotionEventSerializer, 400: ERROR, 403: ERROR})
    @action(detail=True, methods=["post"], permission_classes=[IsMember, CanReview])
    def retire(self, request, pk=None):
        model_version = self.get_object()
        form = s.RetireSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            event = registry.retire(model_version=model_version, user=request.user,
                                    reason=form.validated_data["reason"])
        except ValueError as exc:
            return _error(str(exc))
        return Response(s.PromotionEventSerializer(event).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.PromotionEventSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)  # the whole list, as given
    def history(self, request, pk=None):
        model_version = self.get_object()
        events = registry.history(organisation=model_version.organisation,
                                  vertical=model_version.vertical, problem=model_version.problem)
        return Response(s.PromotionEventSerializer(events, many=True).data)
