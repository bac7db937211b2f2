from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("", include("accounts.urls")),
    path("catalog/", include("catalog.urls")),
    path("datasets/", include("ingestion.urls")),
    path("runs/", include("training.urls")),
    path("reviews/", include("audits.urls")),
]
