from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from accounts.api import TokenAPI
from config.api_root import APIRootView

urlpatterns = [
    path("", APIRootView.as_view(), name="api-root"),
    # The OpenAPI 3 schema and its docs pages: open to anyone, as the schema lists
    # endpoints, not data. The Swagger page loads its script from a URL (no inline
    # script), so it passes the Content-Security-Policy.
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("token/", TokenAPI.as_view(), name="api-token"),
    path("generation/", include("generation.api_urls")),
    path("labeling/", include("labeling.api_urls")),
    path("training/", include("training.api_urls")),
]
