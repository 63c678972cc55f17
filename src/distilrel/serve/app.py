"""HTTP routes over the engine: ``create_app(engine, settings) -> FastAPI``.

Routes are thin: validate (pydantic, :mod:`distilrel.serve.schema`), call the engine, translate. Endpoints
are plain ``def``: FastAPI runs them on its thread pool, where they block on the engine's micro-batcher.

Status codes: 422 for a request that breaks the schema or the server's limits (the message names the
field and the limit), or asks for a teacher this server does not have; 404 for ``/v1/related`` of a doc id
not in the index; 401 without an API key and 403 with a wrong one (when the server has one; ``/healthz``
and ``/metrics`` stay open for probes and scrapers). Unknown candidate ids are listed in the response.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader

from distilrel.serve import schema
from distilrel.serve.engine import Candidate, Engine, RankResult, TeacherUnavailable, UnknownDocument
from distilrel.serve.metrics import ServiceMetrics
from distilrel.serve.schema import API_KEY_HEADER

if TYPE_CHECKING:
    from distilrel.serve.ui.explorer import Explorer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


# Module level: with postponed annotations FastAPI resolves ``Security(...)`` in the module's namespace.
_KEY_HEADER = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="the server's API key")


@dataclass(frozen=True)
class ServeSettings:
    api_key: str | None = None  # None: no authentication
    max_candidates: int = schema.MAX_CANDIDATES  # may only tighten the schema's ceilings
    max_text_chars: int = schema.MAX_TEXT_CHARS
    title: str = "distilrel re-ranking service"

    def __post_init__(self) -> None:
        if not 1 <= self.max_candidates <= schema.MAX_CANDIDATES:
            raise ValueError(
                f"max_candidates must be in 1..{schema.MAX_CANDIDATES}, got {self.max_candidates}"
            )
        if not 1 <= self.max_text_chars <= schema.MAX_TEXT_CHARS:
            raise ValueError(
                f"max_text_chars must be in 1..{schema.MAX_TEXT_CHARS}, got {self.max_text_chars}"
            )
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty (None turns authentication off)")


class _LatencyMiddleware:
    """Observes every request's latency under its route template (``/v1/related/{doc_id}``), so random
    paths do not create one time series each."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception escaping the app ends as a 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(label, scope["method"], str(status)).observe(
                time.perf_counter() - start
            )


def _limit_error(loc: list[str | int], msg: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": loc, "msg": msg, "type": "limit"}])


def create_app(
    engine: Engine, settings: ServeSettings | None = None, explorer: Explorer | None = None
) -> FastAPI:
    """The service; with ``explorer`` also the relevance explorer and judging page under ``/ui``."""
    settings = settings or ServeSettings()
    metrics = ServiceMetrics(engine.cache.stats)
    app = FastAPI(title=settings.title, version="1")
    app.state.engine = engine
    app.state.metrics = metrics
    app.add_middleware(_LatencyMiddleware, metrics=metrics)

    def check_key(key: Annotated[str | None, Security(_KEY_HEADER)]) -> None:
        if settings.api_key is None:
            return
        if not key:
            raise HTTPException(
                401,
                f"missing API key: send it in the {API_KEY_HEADER} header",
                headers={"WWW-Authenticate": "ApiKey"},
            )
        if not secrets.compare_digest(key.encode("utf-8"), settings.api_key.encode("utf-8")):
            raise HTTPException(403, "wrong API key")

    auth = [Depends(check_key)] if settings.api_key is not None else []
    errors: dict[int | str, dict[str, Any]] = {
        422: {"model": schema.ErrorResponse, "description": "invalid request"}
    }
    if settings.api_key is not None:
        errors |= {401: {"description": "no API key"}, 403: {"description": "wrong API key"}}
    body_errors = {
        400: {"model": schema.ErrorResponse, "description": "the body is not valid JSON"},
        **errors,
    }

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The inputs are not echoed back: a 20,000-character text would come back in the error.
        detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        message = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)
        return JSONResponse(status_code=422, content={"detail": detail, "message": message})

    @app.exception_handler(TeacherUnavailable)
    async def no_teacher(_: Request, exc: TeacherUnavailable) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc), "message": str(exc)})

    @app.post("/v1/rerank", response_model=schema.RerankResponse, dependencies=auth, responses=body_errors)
    def rerank(req: schema.RerankRequest) -> schema.RerankResponse:
        """Score the candidates (store doc ids and/or inline texts) for the query, best first."""
        if len(req.candidates) > settings.max_candidates:
            raise _limit_error(
                ["body", "candidates"],
                f"{len(req.candidates)} candidates; this server takes at most {settings.max_candidates}",
            )
        for i, c in enumerate(req.candidates):
            if c.text is not None and len(c.text) > settings.max_text_chars:
                raise _limit_error(
                    ["body", "candidates", i, "text"],
                    f"{len(c.text)} characters; this server takes at most {settings.max_text_chars} per text",
                )
        candidates = [Candidate(c.id, c.text) for c in req.candidates]
        result = engine.rerank(req.query, candidates, req.top_n, req.teacher_top)
        _observe(metrics, result)
        return schema.RerankResponse(**_rank_fields(engine, result))

    @app.post("/v1/search", response_model=schema.SearchResponse, dependencies=auth, responses=body_errors)
    def search(req: schema.SearchRequest) -> schema.SearchResponse:
        """Retrieve ``k`` documents from the ANN index, re-rank them, return the best ``top_n``."""
        result, retrieved = engine.search(req.query, req.k, req.top_n, req.teacher_top)
        _observe(metrics, result)
        return schema.SearchResponse(**_rank_fields(engine, result), retrieved=len(retrieved))

    @app.post("/v1/embed", response_model=schema.EmbedResponse, dependencies=auth, responses=body_errors)
    def embed(req: schema.EmbedRequest) -> schema.EmbedResponse:
        """Embeddings from the query tower (cached) or the document tower."""
        if req.kind == "query":
            vectors, cached = engine.query_vectors(req.texts)
        else:
            for i, text in enumerate(req.texts):
                if len(text) > settings.max_text_chars:
                    raise _limit_error(
                        ["body", "texts", i],
                        f"{len(text)} characters; this server takes {settings.max_text_chars}",
                    )
            vectors, cached = engine.doc_vectors(req.texts), [False] * len(req.texts)
        return schema.EmbedResponse(
            model_id=engine.model_id, dim=engine.dim, vectors=vectors.tolist(), cached=cached
        )

    @app.get(
        "/v1/related/{doc_id:path}",  # :path: doc ids may contain slashes
        response_model=schema.RelatedResponse,
        dependencies=auth,
        responses={**errors, 404: {"model": schema.ErrorResponse, "description": "doc id not in the index"}},
    )
    def related(
        doc_id: Annotated[str, Path(max_length=schema.ID_CHARS)],
        k: Annotated[int, Query(ge=1, le=schema.MAX_K)] = 10,
    ) -> schema.RelatedResponse:
        """The ``k`` documents nearest to ``doc_id`` in the index (cosine of document embeddings)."""
        try:
            hits = engine.related(doc_id, k)
        except UnknownDocument as e:
            raise HTTPException(404, str(e)) from None
        return schema.RelatedResponse(
            doc_id=doc_id, neighbours=[schema.Neighbour(id=d, score=s) for d, s in hits]
        )

    @app.get("/healthz", response_model=schema.HealthResponse)
    def healthz() -> schema.HealthResponse:
        return schema.HealthResponse(**engine.health())

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    if explorer is not None:
        from distilrel.serve.ui.routes import ui_router

        app.include_router(ui_router(explorer, settings.api_key))
    return app


def _observe(metrics: ServiceMetrics, result: RankResult) -> None:
    metrics.observe_stages(result.timings)
    metrics.candidates.observe(result.candidates)
    metrics.unknown_ids.inc(len(result.unknown_ids))
    metrics.teacher_pairs.inc(result.teacher_rescored)


def _rank_fields(engine: Engine, result: RankResult) -> dict[str, Any]:
    return {
        "model_id": engine.model_id,
        "level_names": engine.level_names,
        "results": [
            schema.ScoredDoc(
                index=s.index,
                id=s.id,
                score=s.score,
                student_score=s.student_score,
                levels=list(s.levels),
                scorer=s.scorer,  # type: ignore[arg-type]
            )
            for s in result.results
        ],
        "unknown_ids": result.unknown_ids,
        "query_cached": result.query_cached,
        "teacher_rescored": result.teacher_rescored,
    }
