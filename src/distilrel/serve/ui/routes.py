"""The explorer's HTTP routes: ``ui_router(explorer, api_key) -> APIRouter``, mounted by ``create_app``.

Pages are rendered on the server by Jinja2 with autoescaping on, so every document text, title, query and
id reaches the browser escaped; the page's script (``static/ui.js``, served from the package, nothing from
the internet) writes only through ``textContent``. A Content-Security-Policy allowing scripts and styles
from this server only backs both up: an injected inline script or ``onerror`` handler would not run.

Routes (left out of the OpenAPI schema: they are a page, not the API):
``GET /ui`` (``?q=`` the query), ``GET /ui/agreement``, ``GET /ui/static/{name}``,
``POST /ui/api/judgments``, ``GET /ui/api/related/{doc_id}``.

With an API key on the server the explorer asks for it too, in the ``X-API-Key`` header or the
``distilrel_api_key`` cookie (a browser cannot add headers to a page load; the 401 page sets the cookie).
"""

from __future__ import annotations

import json
import secrets
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from distilrel.data.schema import DataError
from distilrel.serve import schema
from distilrel.serve.engine import UnknownDocument
from distilrel.serve.ui.explorer import Explorer, JudgingDisabled, format_score

COOKIE = "distilrel_api_key"
STATIC = {"ui.js": "text/javascript; charset=utf-8", "ui.css": "text/css; charset=utf-8"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class JudgmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=schema.MAX_QUERY_CHARS, pattern=schema.NOT_BLANK)
    doc_id: str = Field(min_length=1, max_length=schema.ID_CHARS)
    label: str = Field(min_length=1, max_length=200)
    annotator: str | None = Field(None, max_length=200)


def _templates() -> Any:
    from jinja2 import Environment, PackageLoader

    env = Environment(loader=PackageLoader("distilrel.serve.ui", "templates"), autoescape=True)
    env.filters["score"] = format_score
    env.filters["pct"] = lambda p: f"{100 * p:.0f}%"
    return env


def ui_router(explorer: Explorer, api_key: str | None = None) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)
    env = _templates()

    def key_ok(request: Request) -> bool:
        if api_key is None:
            return True
        given = request.headers.get(schema.API_KEY_HEADER) or request.cookies.get(COOKIE) or ""
        return secrets.compare_digest(given.encode("utf-8"), api_key.encode("utf-8"))

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": CSP})

    def require_key(request: Request) -> None:
        if not key_ok(request):
            raise HTTPException(401, f"missing or wrong API key ({schema.API_KEY_HEADER} header or cookie)")

    @router.get("", response_class=HTMLResponse)
    def explore(
        request: Request, q: Annotated[str, Query(max_length=schema.MAX_QUERY_CHARS)] = ""
    ) -> Response:
        if not key_ok(request):
            return page("login.html", 401, cookie=COOKIE)
        result, error = None, None
        if q.strip():
            try:
                result = explorer.explore(q)
            except ValueError as e:
                error = str(e)
        levels = explorer.level_names
        return page(
            "explore.html",
            query=q,
            result=result,
            error=error,
            explorer=explorer,
            judged_queries=explorer.judged_queries(),
            levels=levels,
            levels_json=json.dumps(levels),
            judging=explorer.store is not None,
        )

    @router.get("/agreement", response_class=HTMLResponse)
    def agreement(request: Request, max_queries: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
        if not key_ok(request):
            return page("login.html", 401, cookie=COOKIE)
        return page("agreement.html", report=explorer.agreement(max_queries), max_queries=max_queries)

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, f"no static file {name!r}")
        body = (resources.files("distilrel.serve.ui") / "static" / name).read_bytes()
        return Response(body, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    @router.post("/api/judgments")
    def judge(request: Request, body: JudgmentRequest) -> JSONResponse:
        require_key(request)
        try:
            judgments = explorer.judge(body.query, body.doc_id, body.label, body.annotator)
        except JudgingDisabled as e:
            raise HTTPException(409, str(e)) from None
        except (DataError, ValueError) as e:
            raise HTTPException(422, str(e)) from None
        labels = {j["label"] for j in judgments}
        return JSONResponse({"doc_id": body.doc_id, "judgments": judgments, "conflict": len(labels) > 1})

    @router.get("/api/related/{doc_id:path}")
    def related(
        request: Request,
        doc_id: Annotated[str, Path(max_length=schema.ID_CHARS)],
        k: Annotated[int, Query(ge=1, le=50)] = 8,
    ) -> JSONResponse:
        require_key(request)
        try:
            hits = explorer.related(doc_id, k)
        except UnknownDocument as e:
            raise HTTPException(404, str(e)) from None
        return JSONResponse(
            {
                "doc_id": doc_id,
                "neighbours": [{"id": d, "score": s, "title": view.title} for d, s, view in hits],
            }
        )

    return router
