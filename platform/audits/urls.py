from django.urls import path

from audits import views

urlpatterns = [
    path("", views.review_queue, name="review_queue"),
    path("models/<int:model_version_id>/", views.review_detail, name="review_detail"),
    path("runs/<int:run_id>/report/", views.run_report, name="run_report"),
]
