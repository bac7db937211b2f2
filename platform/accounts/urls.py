from django.urls import path

from accounts import views
from audits import views as audit_views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("audit-log/", audit_views.audit_log, name="audit_log"),
    path("organisation/security/", views.organisation_security, name="organisation_security"),
]
