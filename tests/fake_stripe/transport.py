"""The HTTP side: a request handler class that hands every request to ``FakeStripe.handle``."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from tests.fake_stripe.params import ApiError

if TYPE_CHECKING:
    from tests.fake_stripe.server import FakeStripe


def make_handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeStripe/1.0"

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_PATCH(self) -> None:
            self._dispatch("PATCH")

        def _dispatch(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                answer = fake.handle(method, self.path, dict(self.headers.items()), body)
            except Exception as error:  # a bug in the fake or a test's predicate: say so
                answer = (
                    500,
                    {},
                    ApiError(500, f"fake_stripe error: {error!r}", kind="api_error").body(),
                )
            if answer is None:
                self.close_connection = True
                return
            status, headers, payload = answer
            data = json.dumps(payload, indent=2).encode()
            try:
                self.send_response(status)
                for name, value in {
                    **headers,
                    "Content-Type": "application/json",
                    "Content-Length": str(len(data)),
                }.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up waiting (a late answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
