"""Automatic judge client: asks any OpenAI-compatible chat-completions endpoint (GPT-4o in the
paper) for one 0-10 score of how strongly a query image and a retrieved image share the same
logic. Transient failures are retried; refusals and bad replies are reported, never guessed."""

from __future__ import annotations

import base64
import io
import json
import math
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from ml.callbacks import ProgressFn, StopFn, ThrottledProgress, never_stop, no_progress
from ml.judge.prompt import (
    CANDIDATE_LABEL,
    JUDGE_INSTRUCTIONS,
    JUDGE_SYSTEM,
    QUERY_LABEL,
    parse_score,
)

__all__ = [
    "STATUSES",
    "ImageInput",
    "JudgeConfig",
    "JudgeResult",
    "JudgeRun",
    "JudgeStatus",
    "JudgeSummary",
    "build_request",
    "image_data_url",
    "judge_many",
    "judge_pair",
    "summarise",
]

JudgeStatus = Literal["ok", "refused", "unparsable", "out_of_range", "error"]
STATUSES: tuple[JudgeStatus, ...] = ("ok", "refused", "unparsable", "out_of_range", "error")
ImageInput = str | Path | bytes | Image.Image

# Rate limits and server-side failures pass; anything else 4xx is the caller's to fix.
_TRANSIENT_HTTP = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class JudgeConfig:
    """Where and how to ask. `base_url` is the API root (".../v1"); a URL that already ends in
    /chat/completions is used as it is."""

    base_url: str
    model: str = "gpt-4o"
    api_key: str | None = None
    temperature: float = 0.7
    max_tokens: int | None = 32  # None leaves the field out (some servers reject it)
    timeout_s: float = 60.0
    max_attempts: int = 5
    backoff_s: float = 1.0  # first wait; doubles per retry
    backoff_max_s: float = 30.0
    image_detail: str | None = None  # "low", "high" or "auto" where the server supports it
    max_image_side: int | None = 1024  # larger images are shrunk before sending; None: never
    system_prompt: str = JUDGE_SYSTEM
    instructions: str = JUDGE_INSTRUCTIONS
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        url = self.base_url.rstrip("/")
        return url if url.endswith("/chat/completions") else f"{url}/chat/completions"

    def validate(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must lie in [0, 2]")


@dataclass(frozen=True)
class JudgeResult:
    status: JudgeStatus
    score: float | None  # set when status is ok; the value read when out_of_range
    reply: str | None  # the model's raw text (or refusal message)
    attempts: int  # HTTP requests made
    error: str | None = None  # why, for every status but ok
    http_status: int | None = None  # of the last response, if one came
    elapsed_s: float = 0.0
    # Token counts from the response's "usage", 0 where the server reports none.
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class JudgeSummary:
    n: int  # pairs judged
    n_valid: int  # replies with a score in [0, 10]
    mean_score: float | None  # over valid scores only, as in the paper; None if there are none
    counts: dict[str, int]  # one entry per status

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_valid": self.n_valid,
            "mean_score": self.mean_score,
            "counts": dict(self.counts),
        }


@dataclass(frozen=True)
class JudgeRun:
    results: list[JudgeResult | None]  # in the order of the pairs; None = not sent (stopped)
    summary: JudgeSummary
    stopped: bool


def _shrink(image: Image.Image, max_side: int | None) -> Image.Image:
    if max_side is None or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _png_url(image: Image.Image, max_side: int | None) -> str:
    buffer = io.BytesIO()
    picture = _shrink(image, max_side)
    if picture.mode not in ("RGB", "RGBA", "L", "LA"):
        picture = picture.convert("RGB")
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _sniff_mime(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def image_data_url(image: ImageInput, *, max_side: int | None = None) -> str:
    """A base64 data URL. PNG, JPEG, WebP and GIF bytes or files go as they are unless larger
    than `max_side`; anything else (and every PIL image) is re-encoded as PNG. A string that
    already is a data: or http(s): URL is passed on unchanged."""
    if isinstance(image, Image.Image):
        return _png_url(image, max_side)
    if isinstance(image, str) and image.startswith(("data:image/", "http://", "https://")):
        return image
    data = Path(image).read_bytes() if isinstance(image, (str, Path)) else bytes(image)
    mime = _sniff_mime(data)
    if mime is not None:
        fits = True
        if max_side is not None:
            with Image.open(io.BytesIO(data)) as opened:
                fits = max(opened.size) <= max_side
        if fits:
            return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        return _png_url(opened, max_side)


def _image_part(url: str, detail: str | None) -> dict[str, Any]:
    image_url: dict[str, Any] = {"url": url}
    if detail is not None:
        image_url["detail"] = detail
    return {"type": "image_url", "image_url": image_url}


def build_request(query: ImageInput, candidate: ImageInput, config: JudgeConfig) -> dict[str, Any]:
    """The chat-completions body: both images as data URLs, labelled, then the instructions."""
    side = config.max_image_side
    content = [
        {"type": "text", "text": QUERY_LABEL},
        _image_part(image_data_url(query, max_side=side), config.image_detail),
        {"type": "text", "text": CANDIDATE_LABEL},
        _image_part(image_data_url(candidate, max_side=side), config.image_detail),
        {"type": "text", "text": config.instructions},
    ]
    body: dict[str, Any] = {
        "model": config.model,
        "temperature": config.temperature,
        "n": 1,
        "messages": [
            {"role": "system", "content": config.system_prompt},
            {"role": "user", "content": content},
        ],
    }
    if config.max_tokens is not None:
        body["max_tokens"] = config.max_tokens
    return body


class _Transient(Exception):
    def __init__(self, message: str, status: int | None, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class _Fatal(Exception):
    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _post(url: str, payload: bytes, headers: dict[str, str], timeout: float) -> bytes:
    request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read()[:300].decode("utf-8", "replace").strip()
        message = f"HTTP {error.code}: {detail or error.reason}"
        if error.code in _TRANSIENT_HTTP or error.code >= 500:
            retry_after = _retry_after(error.headers.get("Retry-After"))
            raise _Transient(message, error.code, retry_after) from error
        raise _Fatal(message, error.code) from error
    except TimeoutError as error:
        raise _Transient(f"timed out after {timeout:g} s", None, None) from error
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise _Transient(f"timed out after {timeout:g} s", None, None) from error
        raise _Transient(f"connection failed: {error.reason}", None, None) from error
    except (ConnectionError, HTTPException, OSError) as error:
        raise _Transient(f"connection failed: {error}", None, None) from error


def _reply_text(message: dict[str, Any]) -> str | None:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "".join(part for part in parts if isinstance(part, str))
    return None


def _token_count(usage: Any, key: str) -> int:
    value = usage.get(key) if isinstance(usage, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(value, 0)


def _read_response(raw: bytes, attempts: int, started: float) -> JudgeResult:
    usage: Any = None

    def done(status: JudgeStatus, **fields: Any) -> JudgeResult:
        return JudgeResult(
            status=status,
            attempts=attempts,
            http_status=200,
            elapsed_s=time.monotonic() - started,
            prompt_tokens=_token_count(usage, "prompt_tokens"),
            completion_tokens=_token_count(usage, "completion_tokens"),
            **fields,
        )

    try:
        data = json.loads(raw)
        usage = data.get("usage")
        choice = data["choices"][0]
        message = choice["message"]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        snippet = raw[:200].decode("utf-8", "replace")
        return done("error", score=None, reply=None, error=f"malformed response: {snippet!r}")
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal.strip():
        return done("refused", score=None, reply=refusal, error="the model refused")
    text = _reply_text(message)
    if choice.get("finish_reason") == "content_filter":
        return done("refused", score=None, reply=text, error="stopped by the content filter")
    parsed = parse_score(text)
    return done(
        parsed.status,
        score=parsed.score,
        reply=text,
        error=parsed.reason or None,
    )


def judge_pair(
    query: ImageInput,
    candidate: ImageInput,
    config: JudgeConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> JudgeResult:
    """Ask the judge about one (query, candidate) pair; transient errors are retried with
    exponential backoff (honouring Retry-After) up to `config.max_attempts` requests."""
    config.validate()
    started = time.monotonic()
    try:
        body = build_request(query, candidate, config)
    except (OSError, ValueError) as error:
        return JudgeResult("error", None, None, 0, f"cannot read an image: {error}")
    payload = json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    headers.update(config.extra_headers)

    last: _Transient | None = None
    for attempt in range(1, config.max_attempts + 1):
        try:
            raw = _post(config.endpoint, payload, headers, config.timeout_s)
        except _Fatal as error:
            return JudgeResult(
                "error",
                None,
                None,
                attempt,
                str(error),
                error.status,
                time.monotonic() - started,
            )
        except _Transient as error:
            last = error
            if attempt < config.max_attempts:
                wait_s = min(config.backoff_max_s, config.backoff_s * 2 ** (attempt - 1))
                if error.retry_after is not None:
                    wait_s = min(config.backoff_max_s, max(wait_s, error.retry_after))
                # Jitter keeps parallel workers from retrying in lockstep.
                sleep(wait_s * (1.0 + 0.25 * random.random()))
            continue
        return _read_response(raw, attempt, started)
    assert last is not None
    return JudgeResult(
        "error",
        None,
        None,
        config.max_attempts,
        f"gave up after {config.max_attempts} attempts: {last}",
        last.status,
        time.monotonic() - started,
    )


def summarise(results: Sequence[JudgeResult | None]) -> JudgeSummary:
    """Counts per status and the mean of the valid scores (pairs not sent are left out)."""
    done = [r for r in results if r is not None]
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for result in done:
        counts[result.status] += 1
    scores = [r.score for r in done if r.status == "ok" and r.score is not None]
    mean = sum(scores) / len(scores) if scores else None
    return JudgeSummary(n=len(done), n_valid=len(scores), mean_score=mean, counts=counts)


def judge_many(
    pairs: Sequence[tuple[ImageInput, ImageInput]],
    config: JudgeConfig,
    *,
    concurrency: int = 4,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    sleep: Callable[[float], None] = time.sleep,
) -> JudgeRun:
    """Judge every pair with at most `concurrency` requests in flight. A stop request lets
    the requests in flight finish and sends no more."""
    config.validate()
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    total = len(pairs)
    results: list[JudgeResult | None] = [None] * total
    next_index, finished, stopped = 0, 0, False
    report = ThrottledProgress(progress)
    report(0, total, "judging", force=True)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="judge") as pool:
        running: dict[Future[JudgeResult], int] = {}
        while next_index < total or running:
            while not stopped and next_index < total and len(running) < concurrency:
                if should_stop():
                    stopped = True
                    break
                query, candidate = pairs[next_index]
                future = pool.submit(judge_pair, query, candidate, config, sleep=sleep)
                running[future] = next_index
                next_index += 1
            if not running:
                break
            completed, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in completed:
                results[running.pop(future)] = future.result()
                finished += 1
            report(finished, total, f"judged {finished} of {total} pairs")
            if not stopped and next_index < total and should_stop():
                stopped = True
    summary = summarise(results)
    progress(finished, total, "stopped" if stopped else "done")
    return JudgeRun(results=results, summary=summary, stopped=stopped)
