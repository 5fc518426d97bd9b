"""A real HTTP server on 127.0.0.1 that plays an OpenAI-compatible endpoint, scripted per test.

Each test queues behaviours (`Answer`, `Slow`, `Status`, `Malformed`, `Drop`); each request to
``POST /v1/chat/completions`` takes the next one from the queue, or the ``default`` when the
queue is empty. The server records every request it received and the most requests it ever
had in flight at once, so tests can assert exact request counts and the concurrency limit.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    """A normal chat completion. ``text=None`` echoes the last user message (to check ordering)."""

    text: str | None = "ok"
    prompt_tokens: int = 10
    completion_tokens: int = 2
    finish_reason: str = "stop"
    delay_s: float = 0.0
    logprobs: list[dict[str, Any]] | None = None  # the OpenAI ``choices[0].logprobs.content`` list
    include_usage: bool = True


@dataclass(frozen=True)
class Slow:
    """Sleep (beyond the client's timeout), then answer."""

    seconds: float
    then: Answer = field(default_factory=Answer)


@dataclass(frozen=True)
class Status:
    """An HTTP error status with an OpenAI-style error body (e.g. 429 with Retry-After)."""

    code: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted error"


@dataclass(frozen=True)
class Malformed:
    """A 200 whose body is not a chat completion."""

    body: bytes = b'{"id": "chatcmpl-1", "choices": [{"message": '
    content_type: str = "application/json"


@dataclass(frozen=True)
class Drop:
    """Close the connection without sending any response."""


Behaviour = Answer | Slow | Status | Malformed | Drop


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased: HTTP header names are case-insensitive
    body: dict[str, Any]
    at: float  # time.monotonic() when the request arrived


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def completion_body(answer: Answer, request: dict[str, Any]) -> dict[str, Any]:
    text = _last_user_text(request) if answer.text is None else answer.text
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": answer.finish_reason,
    }
    if answer.logprobs is not None:
        choice["logprobs"] = {"content": answer.logprobs}
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "fake"),
        "choices": [choice],
    }
    if answer.include_usage:
        body["usage"] = {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        }
    return body


class FakeOpenAIServer:
    """Start with `start()` (or as a context manager); ``base_url`` is the API root to give the client."""

    def __init__(self, default: Behaviour | Callable[[dict[str, Any]], Behaviour] = Answer()) -> None:
        self.default = default
        self.received: list[Received] = []
        self.max_in_flight = 0
        self._queue: deque[Behaviour] = deque()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True  # a handler still sleeping for a timeout test must not block shutdown
        self._server.block_on_close = False
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next requests, in order."""
        with self._lock:
            self._queue.extend(behaviours)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.received)

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling ---------------------------------------------------------------

    def _arrive(self, received: Received) -> Behaviour:
        with self._lock:
            self.received.append(received)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            if self._queue:
                return self._queue.popleft()
        return self.default(received.body) if callable(self.default) else self.default

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes; without this, Nagle's algorithm and the
                # client's delayed ACK add ~40 ms to every response and slow the suite down.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, code: int, payload: bytes, content_type: str, headers: dict[str, str]) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _send_json(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self._send(code, json.dumps(body).encode(), "application/json", headers or {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_unparsed": raw.decode(errors="replace")}
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                headers = {name.lower(): value for name, value in self.headers.items()}
                behaviour = fake._arrive(Received(self.path, headers, body, time.monotonic()))
                try:
                    self._behave(behaviour, body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (its timeout): nothing to answer
                finally:
                    fake._leave()

            def _behave(self, behaviour: Behaviour, body: dict[str, Any]) -> None:
                if isinstance(behaviour, Slow):
                    time.sleep(behaviour.seconds)
                    behaviour = behaviour.then
                if isinstance(behaviour, Answer):
                    if behaviour.delay_s:
                        time.sleep(behaviour.delay_s)
                    self._send_json(200, completion_body(behaviour, body))
                elif isinstance(behaviour, Status):
                    error = {"error": {"message": behaviour.message, "type": "scripted", "code": str(behaviour.code)}}
                    self._send_json(behaviour.code, error, behaviour.headers)
                elif isinstance(behaviour, Malformed):
                    self._send(200, behaviour.body, behaviour.content_type, {})
                elif isinstance(behaviour, Drop):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                else:  # pragma: no cover - a test wrote a behaviour this server does not know
                    raise TypeError(f"unknown behaviour {behaviour!r}")

        return Handler
