"""The judge client against a real local HTTP server (127.0.0.1, a real socket)."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from ml.judge.client import JudgeConfig, judge_many, judge_pair, summarise
from ml.judge.prompt import parse_score

# (status, body, headers, delay in seconds) for the n-th request with its parsed JSON body.
Reply = tuple[int, Any, dict[str, str], float]
Responder = Callable[[int, dict[str, Any]], Reply]


def chat(content: str | None, **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content, **message},
            }
        ],
    }


def ok(content: str) -> Reply:
    return 200, chat(content), {}, 0.0


@dataclass
class FakeServer:
    url: str
    responder: Responder = lambda n, body: ok("5")
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    state = FakeServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            with state.lock:
                index = len(state.requests)
                state.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                status, payload, headers, delay = state.responder(index, body)
                if delay:
                    time.sleep(delay)
            finally:
                # Out of flight before the reply leaves: once the client has its reply it may
                # send the next request before this thread would get past a later decrement.
                with state.lock:
                    state.in_flight -= 1
            try:
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def picture(red: int) -> Image.Image:
    return Image.new("RGB", (12, 9), (red, 40, 200))


def config(server: FakeServer, **overrides: Any) -> JudgeConfig:
    settings: dict[str, Any] = {"base_url": server.url, "backoff_s": 0.001, "timeout_s": 5.0}
    settings.update(overrides)
    return JudgeConfig(**settings)


def no_sleep(seconds: float) -> None:
    pass


def decoded_images(body: dict[str, Any]) -> list[Image.Image]:
    parts = body["messages"][-1]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    images = []
    for url in urls:
        header, data = url.split(",", 1)
        assert header == "data:image/png;base64"
        images.append(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
    return images


# --- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("7", 7.0),
        ("  10\n", 10.0),
        ("0", 0.0),
        ("8.5", 8.5),
        ("Score: 6", 6.0),
        ("I would rate this pair a 4.", 4.0),
        ("**9**", 9.0),
        ("7/10", 7.0),
        ("Rating: 3 / 10 - both follow a nesting idea", 3.0),
        ("6 out of 10", 6.0),
        ("On a 0-10 scale: 2", 2.0),
        ("Seven.", 7.0),
        ("Score: 4. Both images contain 3 objects.", 4.0),
    ],
)
def test_it_reads_one_score_from_a_reply(reply: str, score: float) -> None:
    parsed = parse_score(reply)
    assert parsed.status == "ok"
    assert parsed.score == score


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        ("11", "out_of_range"),
        ("12/10", "out_of_range"),
        ("-1", "out_of_range"),
        ("3 and 7", "unparsable"),
        ("Somewhere between 6 and 8", "unparsable"),
        ("Score: 5, or maybe score: 6", "unparsable"),
        ("They share a structure.", "unparsable"),
        ("", "unparsable"),
        (None, "unparsable"),
        ("I'm sorry, but I can't compare these 2 images.", "refused"),
        ("I cannot help with that request.", "refused"),
    ],
)
def test_it_reports_replies_it_cannot_trust_instead_of_guessing(
    reply: str | None, status: str
) -> None:
    parsed = parse_score(reply)
    assert parsed.status == status
    if status != "out_of_range":
        assert parsed.score is None


# --- one pair over HTTP -------------------------------------------------------------------


def test_it_returns_the_score_of_a_plain_reply(server: FakeServer) -> None:
    server.responder = lambda n, body: ok("Score: 7")
    result = judge_pair(picture(10), picture(20), config(server))
    assert (result.status, result.score, result.attempts) == ("ok", 7.0, 1)
    assert result.reply == "Score: 7"
    assert server.requests[0]["path"] == "/v1/chat/completions"


def test_the_request_carries_both_images_the_model_and_the_temperature(
    server: FakeServer,
) -> None:
    query, candidate = picture(10), picture(250)
    judge_pair(query, candidate, config(server, model="judge-model", temperature=0.3))
    body = server.requests[0]["body"]
    assert body["model"] == "judge-model"
    assert body["temperature"] == 0.3
    sent = decoded_images(body)
    assert [image.getpixel((0, 0)) for image in sent] == [(10, 40, 200), (250, 40, 200)]
    text = " ".join(
        p["text"] for p in body["messages"][-1]["content"] if p["type"] == "text"
    ).lower()
    assert "logic" in text and "0" in text and "10" in text


def test_the_default_temperature_is_the_papers(server: FakeServer) -> None:
    judge_pair(picture(1), picture(2), config(server))
    assert server.requests[0]["body"]["temperature"] == 0.7


def test_it_sends_the_api_key_as_a_bearer_token(server: FakeServer) -> None:
    judge_pair(picture(1), picture(2), config(server, api_key="sk-test-123"))
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-test-123"


def test_it_sends_no_authorization_header_without_a_key(server: FakeServer) -> None:
    judge_pair(picture(1), picture(2), config(server))
    assert "Authorization" not in server.requests[0]["headers"]


def test_image_files_are_sent_as_they_are(server: FakeServer, tmp_path: Any) -> None:
    path = tmp_path / "q.png"
    picture(77).save(path)
    judge_pair(path, path.read_bytes(), config(server, max_image_side=None))
    parts = server.requests[0]["body"]["messages"][-1]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    expected = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    assert urls == [expected, expected]


def test_image_urls_are_passed_on_unchanged(server: FakeServer) -> None:
    url = "https://images.example/q.png"
    data_url = "data:image/png;base64,iVBORw0KGgo="
    judge_pair(url, data_url, config(server))
    parts = server.requests[0]["body"]["messages"][-1]["content"]
    assert [p["image_url"]["url"] for p in parts if p["type"] == "image_url"] == [url, data_url]


def test_an_unreadable_image_is_an_error_without_a_request(server: FakeServer) -> None:
    result = judge_pair(b"not an image", picture(1), config(server))
    assert (result.status, result.attempts) == ("error", 0)
    assert server.requests == []


def test_large_images_are_shrunk_before_sending(server: FakeServer) -> None:
    big = Image.new("RGB", (400, 200), (5, 6, 7))
    judge_pair(big, big, config(server, max_image_side=100))
    assert [image.size for image in decoded_images(server.requests[0]["body"])] == [
        (100, 50),
        (100, 50),
    ]


def test_it_retries_server_errors_then_succeeds(server: FakeServer) -> None:
    replies: list[Reply] = [
        (500, {"error": "boom"}, {}, 0.0),
        (503, {"error": "busy"}, {}, 0.0),
        ok("8"),
    ]
    server.responder = lambda n, body: replies[n]
    result = judge_pair(picture(1), picture(2), config(server), sleep=no_sleep)
    assert (result.status, result.score, result.attempts) == ("ok", 8.0, 3)
    assert len(server.requests) == 3


def test_it_waits_as_long_as_retry_after_asks_on_429(server: FakeServer) -> None:
    replies: list[Reply] = [(429, {"error": "slow down"}, {"Retry-After": "3"}, 0.0), ok("2")]
    server.responder = lambda n, body: replies[n]
    waits: list[float] = []
    result = judge_pair(picture(1), picture(2), config(server), sleep=waits.append)
    assert result.status == "ok" and result.attempts == 2
    assert len(waits) == 1 and 3.0 <= waits[0] <= 3.0 * 1.25


def test_it_gives_up_after_max_attempts(server: FakeServer) -> None:
    server.responder = lambda n, body: (502, {"error": "bad gateway"}, {}, 0.0)
    waits: list[float] = []
    result = judge_pair(
        picture(1), picture(2), config(server, max_attempts=3, backoff_s=0.5), sleep=waits.append
    )
    assert result.status == "error" and result.score is None
    assert result.attempts == 3 and result.http_status == 502
    assert len(server.requests) == 3
    # Exponential backoff between the attempts, none after the last.
    assert len(waits) == 2 and 0.5 <= waits[0] <= 0.625 and 1.0 <= waits[1] <= 1.25
    assert "3 attempts" in (result.error or "")


def test_it_does_not_retry_a_client_error(server: FakeServer) -> None:
    server.responder = lambda n, body: (401, {"error": "bad key"}, {}, 0.0)
    result = judge_pair(picture(1), picture(2), config(server, max_attempts=4), sleep=no_sleep)
    assert (result.status, result.attempts, result.http_status) == ("error", 1, 401)
    assert "bad key" in (result.error or "")


def test_a_slow_server_times_out_and_is_retried(server: FakeServer) -> None:
    server.responder = lambda n, body: (200, chat("5"), {}, 1.0 if n == 0 else 0.0)
    result = judge_pair(
        picture(1), picture(2), config(server, timeout_s=0.2, max_attempts=2), sleep=no_sleep
    )
    assert (result.status, result.score, result.attempts) == ("ok", 5.0, 2)


def test_it_reports_a_timeout_when_every_attempt_times_out(server: FakeServer) -> None:
    server.responder = lambda n, body: (200, chat("5"), {}, 1.0)
    result = judge_pair(
        picture(1), picture(2), config(server, timeout_s=0.2, max_attempts=2), sleep=no_sleep
    )
    assert (result.status, result.attempts) == ("error", 2)
    assert "timed out" in (result.error or "")


def test_a_refused_server_connection_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = JudgeConfig(base_url=f"http://127.0.0.1:{port}/v1", max_attempts=2, backoff_s=0)
    result = judge_pair(picture(1), picture(2), settings, sleep=no_sleep)
    assert (result.status, result.attempts) == ("error", 2)
    assert "connection failed" in (result.error or "")


def test_a_refusal_field_is_reported_as_a_refusal(server: FakeServer) -> None:
    server.responder = lambda n, body: (200, chat(None, refusal="I can't do that."), {}, 0.0)
    result = judge_pair(picture(1), picture(2), config(server))
    assert (result.status, result.score, result.reply) == ("refused", None, "I can't do that.")


def test_a_refusal_in_the_text_is_reported_as_a_refusal(server: FakeServer) -> None:
    server.responder = lambda n, body: ok("I'm sorry, I can't help with comparing these.")
    result = judge_pair(picture(1), picture(2), config(server))
    assert result.status == "refused" and result.score is None


def test_an_out_of_range_reply_keeps_the_value_and_the_raw_text(server: FakeServer) -> None:
    server.responder = lambda n, body: ok("15")
    result = judge_pair(picture(1), picture(2), config(server))
    assert (result.status, result.score, result.reply) == ("out_of_range", 15.0, "15")


def test_an_unparsable_reply_is_not_retried(server: FakeServer) -> None:
    server.responder = lambda n, body: ok("Between 4 and 6.")
    result = judge_pair(picture(1), picture(2), config(server), sleep=no_sleep)
    assert (result.status, result.attempts) == ("unparsable", 1)
    assert len(server.requests) == 1


def test_a_malformed_response_body_is_an_error(server: FakeServer) -> None:
    server.responder = lambda n, body: (200, b"<html>proxy error</html>", {}, 0.0)
    result = judge_pair(picture(1), picture(2), config(server))
    assert result.status == "error" and "malformed" in (result.error or "")


# --- many pairs ---------------------------------------------------------------------------


def score_from_query_colour(n: int, body: dict[str, Any]) -> Reply:
    """Replies depend on the query image: red 0..9 -> "red", red 200 -> a refusal."""
    red = decoded_images(body)[0].getpixel((0, 0))[0]
    if red == 200:
        return ok("I'm sorry, I can't help with that.")
    if red == 150:
        return ok("42")
    return 200, chat(f"{red}"), {}, 0.05


def test_judge_many_keeps_pair_order_and_summarises_valid_scores(server: FakeServer) -> None:
    server.responder = score_from_query_colour
    reds = [3, 9, 200, 150, 1, 5]
    pairs = [(picture(red), picture(0)) for red in reds]
    run = judge_many(pairs, config(server), concurrency=3)
    assert [r.status if r else None for r in run.results] == [
        "ok",
        "ok",
        "refused",
        "out_of_range",
        "ok",
        "ok",
    ]
    assert [r.score for r in run.results if r and r.ok] == [3.0, 9.0, 1.0, 5.0]
    assert run.summary.mean_score == pytest.approx((3 + 9 + 1 + 5) / 4)
    assert run.summary.n == 6 and run.summary.n_valid == 4
    assert run.summary.counts == {
        "ok": 4,
        "refused": 1,
        "unparsable": 0,
        "out_of_range": 1,
        "error": 0,
    }
    assert not run.stopped


def test_judge_many_never_exceeds_its_concurrency(server: FakeServer) -> None:
    server.responder = lambda n, body: (200, chat("5"), {}, 0.1)
    pairs = [(picture(i), picture(i)) for i in range(8)]
    run = judge_many(pairs, config(server), concurrency=2)
    assert run.summary.n_valid == 8
    assert server.max_in_flight == 2


def test_judge_many_stops_sending_when_asked(server: FakeServer) -> None:
    server.responder = lambda n, body: ok("4")
    pairs = [(picture(i), picture(i)) for i in range(10)]
    asked = iter([False, False, True])
    run = judge_many(pairs, config(server), concurrency=1, should_stop=lambda: next(asked, True))
    sent = [r for r in run.results if r is not None]
    assert run.stopped
    assert 1 <= len(sent) < 10 and len(server.requests) == len(sent)
    assert run.summary.n == len(sent)


def test_a_summary_of_nothing_valid_has_no_mean() -> None:
    summary = summarise([None, None])
    assert summary.mean_score is None and summary.n == 0 and summary.n_valid == 0
