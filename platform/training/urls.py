from django.urls import path

from training import views

urlpatterns = [
    path("", views.run_list, name="run_list"),
    path("new/<int:version_id>/", views.run_start, name="run_start"),
    path("<int:run_id>/", views.run_detail, name="run_detail"),
    path("<int:run_id>/progress.json", views.run_progress, name="run_progress"),
    path("<int:run_id>/progress/", views.run_progress_partial, name="run_progress_partial"),
    path("<int:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("<int:run_id>/pictures/<str:name>", views.run_picture, name="run_picture"),
]
