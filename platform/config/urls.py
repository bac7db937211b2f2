from django.contrib import admin
from django.urls import include, path

from config import user_guides
from observability.health import healthz

# A database outage answers 503 (observability.outage); any other error Django's 500.
handler500 = "observability.outage.server_error"

urlpatterns = [
    # Probes (load balancer, compose, Kubernetes) ask without a session.
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("", include("accounts.urls")),
    # Before the catalog: its "<vertical>/<problem>/" pattern would take "guides/<vertical>/".
    path("catalog/guides/", user_guides.guide_index, name="user_guides"),
    path("catalog/guides/<slug:vertical>/", user_guides.guide_page, name="user_guide"),
    path("catalog/", include("catalog.urls")),
    path("datasets/", include("ingestion.urls")),
    path("runs/", include("training.urls")),
    path("reviews/", include("audits.urls")),
    path("governance/", include("governance.urls")),
]
