"""The app's URLs plus two reference views. Beside the trivial view they show the floor an
answer cannot go under: a database round trip, and a row committed to disk."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from config.urls import urlpatterns as app_urlpatterns

SCRATCH_TABLE = "bench_flood_scratch"


@require_GET
def select_one(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return HttpResponse("ok", content_type="text/plain")


@csrf_exempt
@require_POST
def insert_one(request: HttpRequest) -> HttpResponse:
    # Autocommit: the row is on disk (fsync) before the response, as an answer is.
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {SCRATCH_TABLE} (n) VALUES (%s)", [1])
    return HttpResponse("ok", content_type="text/plain")


urlpatterns: list[URLPattern | URLResolver] = [
    path("bench/select-one/", select_one),
    path("bench/insert-one/", insert_one),
    *app_urlpatterns,
]
