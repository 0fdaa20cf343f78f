"""The app's URLs plus three reference views. Beside the trivial view they show the floor an
answer cannot go under: a database round trip, a row committed to disk, and the least an
answer is: a CSRF-checked form post whose row is committed before a JSON reply."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
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


@require_POST
def bare_answer(request: HttpRequest) -> HttpResponse:
    """An answer with nothing but what every answer must do: the CSRF check, the posted form
    read, one row committed, and a JSON reply. No participant is looked up, no rate limit
    applies and no page is ever rendered."""
    position = int(request.POST["position"])
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {SCRATCH_TABLE} (n) VALUES (%s)", [position])
    return JsonResponse({"position": position + 1})


urlpatterns: list[URLPattern | URLResolver] = [
    path("bench/select-one/", select_one),
    path("bench/insert-one/", insert_one),
    path("bench/bare-answer/", bare_answer),
    *app_urlpatterns,
]
