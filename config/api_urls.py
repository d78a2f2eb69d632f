from __future__ import annotations

from django.urls import include, path
from rest_framework.authtoken.views import obtain_auth_token

urlpatterns = [
    path("token/", obtain_auth_token, name="api-token"),
    path("generation/", include("generation.api_urls")),
    path("labeling/", include("labeling.api_urls")),
    path("training/", include("training.api_urls")),
]
