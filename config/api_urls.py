from __future__ import annotations

from csp.decorators import csp_update
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
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
    # Swagger UI sets inline styles from its scripts: allowed on this page only. (Redoc is
    # not served: its page loads fonts from Google.)
    path(
        "docs/",
        csp_update({"style-src": ["'unsafe-inline'"]})(
            SpectacularSwaggerSplitView.as_view(url_name="api-schema")
        ),
        name="api-docs",
    ),
    path("token/", TokenAPI.as_view(), name="api-token"),
    path("generation/", include("generation.api_urls")),
    path("labeling/", include("labeling.api_urls")),
    path("training/", include("training.api_urls")),
]
