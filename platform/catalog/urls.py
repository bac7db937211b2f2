from django.urls import path

from catalog import views

urlpatterns = [
    path("", views.catalog_index, name="catalog"),
    path("<slug:vertical>/<slug:problem>/", views.problem_detail, name="problem"),
]
