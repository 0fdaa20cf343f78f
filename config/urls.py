"""URL configuration."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path

from config.health import healthz
from config.media import media_file
from curation import views as curation_views

admin.site.site_header = "relsim studio"
admin.site.site_title = "relsim studio"
admin.site.index_title = "Administration"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", curation_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz/", healthz, name="healthz"),
    path("study/", include("evaluation.participant_urls")),
    path("admin/", admin.site.urls),
    # Images only for signed-in users, with DEBUG on or off; a deployment may still serve
    # them from its web server, behind the same check.
    path(f"{settings.MEDIA_URL.strip('/')}/<path:path>", media_file, name="media"),
    path("", include("curation.urls")),
    path("", include("captions.urls")),
    path("", include("training.urls")),
    path("", include("evaluation.urls")),
]
