from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic.base import RedirectView

from accounts.views import LogoutView
from config import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    # Browsers ask for /favicon.ico whatever the page links; the file lives with the statics.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.ico"), permanent=True)),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("generation/", include("generation.urls")),
    path("labeling/", include("labeling.urls")),
    # Reward-model assistance: training's actions on a queue, under the queue's URLs.
    path("labeling/", include("training.assistance_urls")),
    path("training/", include("training.urls")),
    path("api/", include("config.api_urls")),
]
