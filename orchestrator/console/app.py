"""The console's web application (aiohttp) and its one access rule.

Every request needs the token (``ORCH_CONSOLE_TOKEN``), in one of two ways:

* ``Authorization: Bearer <token>`` on the request (scripts, tests, a reverse proxy);
* a session cookie: a request with ``?token=<token>`` gets a fresh random session id in an
  ``HttpOnly; SameSite=Strict`` cookie (the id is kept in this process's memory, not the token)
  and a redirect to the same URL without the token, so the token leaves the address bar and
  the browser history. The session lasts ``SESSION_SECONDS``; at most ``MAX_SESSIONS`` are kept.

Anything else gets ``401`` and a body without data. Tokens and session ids are compared with
:func:`hmac.compare_digest`. The access log is off (a customer id in a lookup URL, a token in a
first URL stay out of logs).

:func:`make_app` takes a :class:`~orchestrator.console.state.ConsoleState` and an optional
customer-lookup function, so a test builds the whole application without Kafka.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from aiohttp import web

from orchestrator.console import pages
from orchestrator.console.state import ConsoleState

COOKIE = "orch_console_session"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000

Lookup = Callable[[str], Awaitable[str]]
"""Customer id -> the story as text (``explain.format_story``); raises ``LookupFailed`` with a one-line reason."""

STATE_KEY: web.AppKey[ConsoleState] = web.AppKey("state", ConsoleState)
AUTH_KEY: web.AppKey[Auth] = web.AppKey("auth")
LOOKUP_KEY: web.AppKey[Lookup | None] = web.AppKey("lookup")


class LookupFailed(RuntimeError):
    """A customer's story could not be read; the message says why in one line."""


ROUTES = ("/", "/journey/{journey}/{version}", "/campaigns", "/customer", "/dead-letters", "/console.js")
"""Every page (``/api/...`` below, too): each needs the token."""
API_ROUTES = ("/api/home", "/api/journey/{journey}/{version}", "/api/campaigns", "/api/dead-letters")

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


class Auth:
    """The token and the sessions it opened."""

    def __init__(self, token: str, clock: Callable[[], float] = time.monotonic) -> None:
        if not token:
            raise ValueError("the console token is empty")
        self._token = token.encode()
        self._sessions: dict[str, float] = {}
        self._clock = clock

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._token)

    def new_session(self) -> str:
        now = self._clock()
        self._sessions = {sid: until for sid, until in self._sessions.items() if until > now}
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[min(self._sessions, key=self._sessions.__getitem__)]
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = now + SESSION_SECONDS
        return sid

    def session_ok(self, given: str) -> bool:
        now = self._clock()
        found = False
        for sid, until in self._sessions.items():  # each compared in constant time; no early exit
            if hmac.compare_digest(given.encode(), sid.encode()) and until > now:
                found = True
        return found


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="401 unauthorized: send Authorization: Bearer <ORCH_CONSOLE_TOKEN>, or open a page once with ?token=<token>\n",
        headers={"WWW-Authenticate": 'Bearer realm="orchestrator console"', **_HEADERS},
    )


@web.middleware
async def _guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    auth = request.app[AUTH_KEY]
    if "token" in request.query:
        if not auth.token_ok(request.query.get("token", "")):
            return _unauthorized()
        rest = [(k, v) for k, v in request.query.items() if k != "token"]
        target = request.path + (f"?{urlencode(rest)}" if rest else "")
        response = web.Response(status=303, text="see other\n", headers={"Location": target, **_HEADERS})
        response.set_cookie(
            COOKIE, auth.new_session(), max_age=SESSION_SECONDS, path="/", httponly=True, samesite="Strict", secure=request.secure
        )
        return response
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if header and scheme.lower() == "bearer" and auth.token_ok(given.strip()):
        ok = True
    else:
        cookie = request.cookies.get(COOKIE)
        ok = cookie is not None and auth.session_ok(cookie)
    if not ok:
        return _unauthorized()
    answer = await handler(request)
    answer.headers.update(_HEADERS)
    return answer


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, content_type="text/html", charset="utf-8", status=status)


def _json(model: pages.Numbers) -> web.Response:
    return web.Response(text=model.model_dump_json(), content_type="application/json")


def _version(request: web.Request) -> tuple[str, int] | None:
    try:
        return request.match_info["journey"], int(request.match_info["version"])
    except ValueError:
        return None


async def _home(request: web.Request) -> web.Response:
    return _html(pages.home_page(request.app[STATE_KEY]))


async def _api_home(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return _json(pages.numbers(state, pages.home_numbers(state)))


async def _journey(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    key = _version(request)
    text = pages.journey_page(state, *key) if key is not None else None
    if text is None:
        return _html(pages.not_found_page(state, "No such journey version (neither loaded nor in the journey log)."), 404)
    return _html(text)


async def _api_journey(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    key = _version(request)
    if key is None or key not in state.version_keys():
        return web.json_response({"error": "no such journey version"}, status=404)
    return _json(pages.numbers(state, pages.journey_numbers(state, *key)))


async def _campaigns(request: web.Request) -> web.Response:
    return _html(pages.campaigns_page(request.app[STATE_KEY]))


async def _api_campaigns(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return _json(pages.numbers(state, pages.campaign_numbers(state)))


async def _dead_letters(request: web.Request) -> web.Response:
    return _html(pages.dead_letters_page(request.app[STATE_KEY]))


async def _api_dead_letters(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return _json(pages.numbers(state, pages.dead_letter_numbers(state)))


async def _customer(request: web.Request) -> web.Response:
    state, lookup = request.app[STATE_KEY], request.app[LOOKUP_KEY]
    customer = request.query.get("id", "").strip()
    if not customer:
        return _html(pages.customer_page(state, None, None, None))
    if lookup is None:
        return _html(pages.customer_page(state, customer, None, "customer lookup is not available in this console"))
    try:
        story = await lookup(customer)
    except LookupFailed as exc:
        return _html(pages.customer_page(state, customer, None, str(exc)))
    return _html(pages.customer_page(state, customer, story, None))


async def _script(request: web.Request) -> web.Response:
    return web.Response(text=pages.SCRIPT, content_type="application/javascript")


def make_app(state: ConsoleState, token: str, lookup: Lookup | None = None) -> web.Application:
    """The console application over ``state`` (read by the handlers, fed elsewhere)."""
    app = web.Application(middlewares=[_guard])
    app[STATE_KEY] = state
    app[AUTH_KEY] = Auth(token)
    app[LOOKUP_KEY] = lookup
    app.router.add_get("/", _home)
    app.router.add_get("/journey/{journey}/{version}", _journey)
    app.router.add_get("/campaigns", _campaigns)
    app.router.add_get("/customer", _customer)
    app.router.add_get("/dead-letters", _dead_letters)
    app.router.add_get("/console.js", _script)
    app.router.add_get("/api/home", _api_home)
    app.router.add_get("/api/journey/{journey}/{version}", _api_journey)
    app.router.add_get("/api/campaigns", _api_campaigns)
    app.router.add_get("/api/dead-letters", _api_dead_letters)
    return app


__all__ = ["API_ROUTES", "COOKIE", "ROUTES", "Auth", "Lookup", "LookupFailed", "make_app"]
