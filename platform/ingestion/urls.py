from django.urls import path

from ingestion import views

urlpatterns = [
    path("", views.dataset_list, name="dataset_list"),
    path("upload/<slug:vertical>/<slug:problem>/", views.upload, name="dataset_upload"),
    path("versions/<int:version_id>/", views.version_detail, name="dataset_version"),
    path("versions/<int:version_id>/mapping/", views.mapping, name="dataset_mapping"),
    path("versions/<int:version_id>/samples/<str:name>", views.version_sample,
         name="dataset_sample"),
    path("versions/<int:version_id>/names/", views.codebook, name="dataset_codebook"),
    path("versions/<int:version_id>/identifiers/", views.identifier_decision,
         name="dataset_identifier"),
]
