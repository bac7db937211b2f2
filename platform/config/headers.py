"""Security headers every answer carries: the Content-Security-Policy, and ``no-store`` on
API answers (tokens, personal data, run results) so no browser or proxy keeps a copy."""

from __future__ import annotations

from django.conf import settings

API_PREFIX = "/api/"


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = settings.TESSERA_CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        if request.path.startswith(API_PREFIX):
            response["Cache-Control"] = "no-store"
        return response
