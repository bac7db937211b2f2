from django.urls import path

from governance import views

app_name = "governance"

urlpatterns = [
    path("models/", views.models_index, name="models"),
    path("models/compare/", views.models_compare, name="compare"),
    path("models/<int:model_version_id>/", views.model_detail, name="model"),
    path("models/<int:model_version_id>/promote/", views.model_promote, name="promote"),
    path("models/<int:model_version_id>/retire/", views.model_retire, name="retire"),
    path("models/<int:model_version_id>/mitigate/", views.model_mitigate, name="mitigate"),
    path("models/<int:model_version_id>/card/", views.model_card, name="card"),
    path("models/<int:model_version_id>/card.json", views.model_card_json, name="card_json"),
    path("models/<int:model_version_id>/privacy-audit/", views.model_privacy_audit,
         name="privacy_audit"),
    path("models/<int:model_version_id>/score/", views.scoring_start, name="score"),
    path("privacy-audits/<int:audit_id>/cancel/", views.privacy_audit_cancel,
         name="privacy_audit_cancel"),
    path("scoring/<int:job_id>/", views.scoring_job, name="job"),
    path("scoring/<int:job_id>/cancel/", views.scoring_cancel, name="job_cancel"),
    path("scoring/<int:job_id>/download/", views.scoring_download, name="download"),
    path("datasets/<int:dataset_id>/ledger/", views.dataset_ledger, name="ledger"),
    path("problems/<slug:vertical>/<slug:problem>/", views.problem_gates, name="problem"),
    path("problems/<slug:vertical>/<slug:problem>/schedule/", views.problem_schedule,
         name="schedule"),
]
