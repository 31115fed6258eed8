"""The console at /admin: a login form, then a static page (HTML, CSS and one script, served
from this package) that drives the JSON admin API with the session's cookie.

`GET /admin` answers the login form until a login succeeds, then the console. `POST
/admin/login` takes the operator's or a workspace's token from the form and sets the session
cookie (`console_session`); `POST /admin/logout` ends it. The pages' Content-Security-Policy
allows scripts and styles from this origin only: no inline script, no eval."""

from __future__ import annotations

from importlib.resources import files
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from stripe_bridge.errors import BadRequest, Forbidden, PayloadTooLarge
from stripe_bridge.web import console_session
from stripe_bridge.web.admin_auth import admin_token, caller, holder_of, login_of
from stripe_bridge.web.openapi import declare
from stripe_bridge.web.openapi_schemas import boolean, nullable, obj, string
from stripe_bridge.web.responses import JSON

_STATIC = files("stripe_bridge.web").joinpath("static")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
REFUSED = "That token is not valid: use BRIDGE_ADMIN_TOKEN or a token issued for your workspace."
MAX_FORM = 4096


def _page(name: str, status_code: int = 200, error: str = "") -> HTMLResponse:
    html = _STATIC.joinpath(name).read_text(encoding="utf-8")
    if error:  # a fixed sentence of ours, never the caller's input
        html = html.replace(
            '<p id="login-error" class="error" hidden></p>',
            f'<p id="login-error" class="error" role="alert">{error}</p>',
        )
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


async def console(request: Request) -> Response:
    """GET /admin: the console for a valid login, else the login form."""
    operator_token = admin_token(request)
    login = console_session.opened(operator_token, request.cookies.get(console_session.COOKIE))
    if login is None or not await run_in_threadpool(_known, request, login.digest):
        return _page("login.html")
    return _page("console.html")


def _known(request: Request, digest: str) -> bool:
    return holder_of(request, digest) is not None


def _same_origin(request: Request) -> bool:
    """A login posted from another site is refused (login CSRF); browsers say where from."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


async def login(request: Request) -> Response:
    """POST /admin/login (form: token): 303 to /admin with the session cookie, or the form
    again with 401 and what went wrong."""
    operator_token = admin_token(request)
    if not _same_origin(request):
        raise Forbidden("the console's login must be posted from the console")
    body = await request.body()
    if len(body) > MAX_FORM:
        raise PayloadTooLarge(f"body over {MAX_FORM} bytes")
    try:
        form = parse_qs(body.decode(), max_num_fields=4)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("malformed form") from None
    token = (form.get("token") or [""])[0].strip()
    value, session = console_session.seal(operator_token, token)
    if not token or "\x00" in token or not await run_in_threadpool(_known, request, session.digest):
        return _page("login.html", 401, REFUSED)
    response = RedirectResponse("/admin", status_code=303)
    console_session.set_cookie(response, value, secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    """POST /admin/logout (with the session's X-CSRF-Token): the cookie is cleared."""
    await caller(request)  # a logged-in caller, and the CSRF token for a cookie
    response = Response(status_code=204)
    console_session.clear_cookie(response, secure=request.url.scheme == "https")
    return response


@declare(
    "Who is logged in, and the console session's CSRF token (null with a bearer token)",
    answers={200: obj({
        "operator": boolean(), "workspace_id": nullable(string()),
        "csrf": nullable(string()), "registers_webhook_endpoint": boolean(),
    })},
)  # fmt: skip
async def session_info(request: Request) -> Response:
    """GET /admin/api/session: who is logged in, and the CSRF token the console repeats."""
    who = await caller(request)
    login = login_of(request)
    return JSON(
        {
            "operator": who.operator,
            "workspace_id": who.workspace_id,
            "csrf": login.csrf if login is not None else None,
            # the Connect form asks for a signing secret only when the bridge does not register
            "registers_webhook_endpoint": bool(request.app.state.bridge.endpoint_plan),
        }
    )


routes = [
    Route("/admin", console, methods=["GET"]),
    Route("/admin/login", login, methods=["POST"]),
    Route("/admin/logout", logout, methods=["POST"]),
]
