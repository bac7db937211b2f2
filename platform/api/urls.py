"""REST API v1, at /api/v1/. Token or session authentication; the schema and docs are public."""

from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from accounts.lockout import TokenView
from api import views


class Router(DefaultRouter):
    """JSON only: no ".json" suffix routes (the views take no ``format`` argument), so an id
    is anything up to the next slash: "1.5" or "x" reach the view and get its JSON 404
    instead of matching no route (Django's HTML 404)."""

    include_format_suffixes = False

    def __init__(self):
        super().__init__()
        self._default_value_pattern = "[^/]+"


router = Router()
router.register("verticals", views.VerticalViewSet, basename="vertical")
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("dataset-versions", views.DatasetVersionViewSet, basename="dataset-version")
router.register("runs", views.RunViewSet, basename="run")
router.register("models", views.ModelVersionViewSet, basename="model-version")
router.register("scoring-jobs", views.ScoringJobViewSet, basename="scoring-job")

app_name = "api"

urlpatterns = [
    # DRF's token view under the sign-in lockout (django-axes), like the login page.
    path("auth/token/", TokenView.as_view(), name="token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file: no inline script (CSP).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("", include(router.urls)),
]


def _api_handles_its_own_auth(patterns) -> None:
    """LoginRequiredMiddleware would redirect token-authenticated requests to the login page
    (it only sees the session); DRF authenticates and answers 401/403 itself."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            _api_handles_its_own_auth(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            pattern.callback.login_required = False


_api_handles_its_own_auth(urlpatterns)
