"""JSON responses (orjson) and the one mapping from errors to HTTP answers."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from stripe_bridge.errors import BridgeError

log = structlog.get_logger(__name__)


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def bridge_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BridgeError)
    log.info("request refused", path=request.url.path, status=exc.http_status, reason=str(exc))
    return JSON(error_body(exc.code, str(exc)), status_code=exc.http_status)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", path=request.url.path, error=type(exc).__name__)
    return JSON(error_body("internal_error", "internal error"), status_code=500)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def http_error(request: Request, exc: Exception) -> Response:
    """The router's own answers (no such route, wrong method) in the same JSON error shape."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return JSON(error_body(code, exc.detail), status_code=exc.status_code, headers=exc.headers)
