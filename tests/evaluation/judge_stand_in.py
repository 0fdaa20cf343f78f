"""A local stand-in for an OpenAI-compatible chat endpoint: a real HTTP server on
127.0.0.1 that names the two images of each request by their stored ids, answers as told,
and records every request, for the judge tests of the evaluation app and its pages."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

PROMPT_TOKENS = 120
COMPLETION_TOKENS = 3


def chat(content: str | None, refusal: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stand-in",
        "object": "chat.completion",
        "created": 0,
        "model": "stand-in",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        },
    }


def default_reply(index: int, first: int, second: int) -> tuple[int, dict[str, Any]]:
    """Every sixth request of each kind: a refusal, a reply with two numbers, a number out of
    range; the rest a score from the two images' ids."""
    kind = index % 6
    if kind == 0:
        return 200, chat(None, refusal="I'm sorry, I can't help with that.")
    if kind == 1:
        return 200, chat("Somewhere between 3 and 4, I would say.")
    if kind == 2:
        return 200, chat("12")
    return 200, chat(str((first + second) % 11))


@dataclass
class StandIn:
    url: str = ""
    images: dict[str, int] = field(default_factory=dict)  # sha256 -> image id
    reply: Callable[[int, int, int], tuple[int, dict[str, Any]]] = default_reply
    # One entry per request: (first image id, second image id, status, content or refusal).
    seen: list[tuple[int, int, int, str | None]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def image_of(self, part: dict[str, Any]) -> int:
        url = part["image_url"]["url"]
        data = base64.b64decode(url.split(",", 1)[1])
        return self.images[hashlib.sha256(data).hexdigest()]

    def answered_pairs(self) -> Counter[tuple[int, int]]:
        return Counter((first, second) for first, second, status, _ in self.seen if status == 200)


# Named apart from its fixture name, so that a module importing it can take a `stand_in`
# argument without shadowing the import.
@pytest.fixture(name="stand_in")
def stand_in_server() -> Iterator[StandIn]:
    state = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            parts = [p for p in body["messages"][1]["content"] if p["type"] == "image_url"]
            first, second = state.image_of(parts[0]), state.image_of(parts[1])
            with state.lock:
                index = len(state.seen)
                status, payload = state.reply(index, first, second)
                message = payload.get("choices", [{}])[0].get("message", {})
                text = message.get("content") or message.get("refusal")
                state.seen.append((first, second, status, text))
                state.authorizations.append(self.headers.get("Authorization"))
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
