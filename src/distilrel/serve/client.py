"""Python client of the re-ranking service, over the same pydantic schema as the server.

    from distilrel.client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        ranked = client.rerank("cordless drill", doc_ids=["100001", "100002"], texts=["a drill ..."])
        for doc in ranked.results:
            print(doc.id, doc.score, doc.levels)

An error answer (4xx/5xx) raises :class:`ServiceError` with the status and the server's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from distilrel.serve import schema
from distilrel.serve.schema import API_KEY_HEADER

M = TypeVar("M", bound=BaseModel)


class ServiceError(RuntimeError):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.body = body


class Client:
    """``base_url`` of a running service, or an ``httpx.Client`` of your own (``http``), e.g. FastAPI's
    ``TestClient`` for an in-process app."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        headers = {API_KEY_HEADER: api_key} if api_key else {}
        self._owned = http is None
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self.http.headers.update(headers)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self.http.close()

    # --- endpoints -----------------------------------------------------------------------------------------

    def rerank(
        self,
        query: str,
        doc_ids: Sequence[str] = (),
        texts: Sequence[str] = (),
        candidates: Sequence[schema.Candidate] = (),
        top_n: int | None = None,
        teacher_top: int | None = None,
    ) -> schema.RerankResponse:
        """Candidates are ``candidates`` (id and/or text each), then ``doc_ids``, then ``texts``; a
        result's ``index`` is its position in that order."""
        every = [
            *candidates,
            *(schema.Candidate(id=d) for d in doc_ids),
            *(schema.Candidate(text=t) for t in texts),
        ]
        req = schema.RerankRequest(query=query, candidates=every, top_n=top_n, teacher_top=teacher_top)
        return self._call("POST", "/v1/rerank", schema.RerankResponse, req)

    def search(
        self, query: str, k: int = 100, top_n: int = 10, teacher_top: int | None = None
    ) -> schema.SearchResponse:
        req = schema.SearchRequest(query=query, k=k, top_n=top_n, teacher_top=teacher_top)
        return self._call("POST", "/v1/search", schema.SearchResponse, req)

    def embed(self, texts: Sequence[str], kind: str = "query") -> schema.EmbedResponse:
        req = schema.EmbedRequest(texts=list(texts), kind=kind)  # type: ignore[arg-type]
        return self._call("POST", "/v1/embed", schema.EmbedResponse, req)

    def related(self, doc_id: str, k: int = 10) -> schema.RelatedResponse:
        path = f"/v1/related/{quote(doc_id, safe='')}"
        return self._call("GET", path, schema.RelatedResponse, params={"k": k})

    def health(self) -> schema.HealthResponse:
        return self._call("GET", "/healthz", schema.HealthResponse)

    def metrics(self) -> str:
        response = self.http.get("/metrics")
        _raise_for(response)
        return response.text

    def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        body: BaseModel | None = None,
        params: dict[str, Any] | None = None,
    ) -> M:
        content = body.model_dump_json(exclude_none=True) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        response = self.http.request(method, path, content=content, headers=headers, params=params)
        _raise_for(response)
        return model.model_validate_json(response.content)


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        raise ServiceError(response.status_code, response.text) from None
    message = body.get("message") or body.get("detail") if isinstance(body, dict) else body
    raise ServiceError(response.status_code, str(message), body)
