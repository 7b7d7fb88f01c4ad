"""The web application: three pages and the JSON API that mirrors them, read-only.

Security, all of it here: every query is parameterised (queries.py); templates autoescape every
name (file and folder names are hostile input); a strict Content-Security-Policy forbids scripts
and inline styles; no endpoint serves data bytes; with a token every request must carry it
(compared in constant time); behind a trusted proxy, only the proxy (or a token holder) gets in.
"""

from __future__ import annotations

import hmac
from datetime import UTC, date, datetime, time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from ... import __version__
from ...core.humanize import human_bytes
from ..config import WebSettings
from ..search import Filters
from .chart import activity_svg
from .queries import FACETS, MAX_PAGE, WebQueries

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_HERE = resources.files(__package__)


def create_app(queries: WebQueries, settings: WebSettings) -> FastAPI:
    app = FastAPI(
        title="fair-agent catalogue",
        version=__version__,
        description="Read-only JSON API over the facility's catalogue; the pages show the same records.",
        docs_url=None,  # Swagger UI needs scripts the CSP forbids; the schema is at /openapi.json
        redoc_url=None,
    )
    token = _read_token(settings.token_file)
    app.add_middleware(_Guard, token=token, trusted_proxy=settings.trusted_proxy)
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    templates.env.filters["filesize"] = _filesize
    templates.env.filters["duration"] = _duration
    templates.env.globals.update(version=__version__, chart=activity_svg, max_page=MAX_PAGE)
    style = (_HERE / "static" / "style.css").read_bytes()

    @app.get("/static/style.css", include_in_schema=False)
    async def stylesheet() -> Response:
        return Response(style, media_type="text/css")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def search_page(request: Request, filters: FromQuery, page: int = Query(1, ge=1)) -> Response:
        found = await queries.search(filters, page)
        params = {k: v for k, v in request.query_params.items() if k != "page"}
        return templates.TemplateResponse(
            request,
            "search.html",
            {
                "f": filters,
                "found": found,
                "facets": found["facets"],
                "session_link": _session_link,
                "page_link": lambda n: "/?" + urlencode({**params, "page": n}),
                "facet_link": lambda name, value: "/?" + urlencode({**params, _FACET_PARAM[name]: value}),
            },
        )

    @app.get("/sessions/{agent}/{root}/{session}", response_class=HTMLResponse, include_in_schema=False)
    async def session_page(request: Request, agent: str, root: str, session: str) -> Response:
        found = await queries.session(agent, root, session)
        if found is None:
            raise HTTPException(404, "no such session in the catalogue")
        crate = _session_link(found) + "/ro-crate-metadata.json"
        return templates.TemplateResponse(request, "session.html", {"s": found, "crate_link": crate})

    @app.get("/sessions/{agent}/{root}/{session}/ro-crate-metadata.json", include_in_schema=False)
    async def crate_download(agent: str, root: str, session: str) -> Response:
        crate = await queries.crate(agent, root, session)
        if crate is None:
            raise HTTPException(404, "the catalogue holds no crate for this session")
        return JSONResponse(
            crate,
            media_type="application/ld+json",
            headers={"Content-Disposition": 'attachment; filename="ro-crate-metadata.json"'},
        )

    @app.get("/agents", response_class=HTMLResponse, include_in_schema=False)
    async def agents_page(request: Request) -> Response:
        agents = await queries.agents(settings.quiet_after_s, datetime.now(UTC))
        return templates.TemplateResponse(request, "agents.html", {"agents": agents})

    @app.get("/api/search", summary="Current files matching every filter, newest acquisition first")
    async def api_search(filters: FromQuery, page: int = Query(1, ge=1, le=MAX_PAGE)) -> dict[str, Any]:
        return await queries.search(filters, page)

    @app.get(
        "/api/sessions/{agent}/{root}/{session}", summary="A session: its files, people, instrument, licence"
    )
    async def api_session(agent: str, root: str, session: str) -> dict[str, Any]:
        found = await queries.session(agent, root, session)
        if found is None:
            raise HTTPException(404, "no such session in the catalogue")
        return found

    @app.get("/api/agents", summary="Each agent: last event, backlog, 30 days of activity, quiet or not")
    async def api_agents() -> list[dict[str, Any]]:
        return await queries.agents(settings.quiet_after_s, datetime.now(UTC))

    return app


_FACET_PARAM = {
    "dataset_type": "type",
    "instrument": "instrument",
    "agent": "agent",
    "validation": "validation",
}
assert set(_FACET_PARAM) == set(FACETS)


class _Guard(BaseHTTPMiddleware):
    """Authorisation first, security headers on every answer."""

    def __init__(self, app: Any, *, token: str | None, trusted_proxy: str | None) -> None:
        super().__init__(app)
        self._token = token.encode() if token else None
        self._proxy = trusted_proxy

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if not self._allowed(request):
            response: Response = JSONResponse(
                {"detail": "a valid bearer token is required"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    def _allowed(self, request: Request) -> bool:
        if self._proxy is not None and request.client is not None and request.client.host == self._proxy:
            return True
        if self._token is None:
            return self._proxy is None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)


def _read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    from ...ship.credentials import private_text

    token = private_text(path, "web token").strip()
    if len(token) < 16:
        from ...core.errors import ConfigError

        raise ConfigError(f"the web token in {path} is too short (at least 16 characters)")
    return token


def _filters(
    q: str | None = None,
    experiment: str | None = None,
    instrument: str | None = None,
    type: str | None = None,
    agent: str | None = None,
    since: str | None = None,
    until: str | None = None,
    validation: str | None = None,
) -> Filters:
    """The query string's filters (``type``: the dataset type); empty fields are no filter."""
    return Filters(
        text=q or None,
        experiment=experiment or None,
        instrument=instrument or None,
        dataset_type=type or None,
        agent=agent or None,
        since=_day(since),
        until=_day(until),
        validation=validation or None,
    )


def _day(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.combine(date.fromisoformat(text), time.min, UTC)
    except ValueError:
        raise HTTPException(422, f"{text!r} is not a date (YYYY-MM-DD)") from None


def _session_link(record: dict[str, Any]) -> str:
    return "/sessions/" + "/".join(quote(str(record[k]), safe="") for k in ("agent", "root", "session"))


def _filesize(n: int | None) -> str:
    return "" if n is None else human_bytes(n)


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


#: The search filters of a request's query string (one definition for the page and the API).
FromQuery = Annotated[Filters, Depends(_filters)]
