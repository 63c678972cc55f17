"""The wire schema of the re-ranking service: one pydantic module, used by the server (request
validation, response models, OpenAPI) and by :mod:`distilrel.serve.client`.

Limits here are hard ceilings, visible in the OpenAPI schema; a server may be started with tighter ones
(``--max-candidates``, ``--max-text-chars``). A request over a limit is answered 422 with the field and
the limit in the message.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

API_KEY_HEADER = "X-API-Key"
MAX_CANDIDATES = 1000
MAX_TEXT_CHARS = 20_000
MAX_QUERY_CHARS = 1000
MAX_EMBED_TEXTS = 256
MAX_K = 1000
ID_CHARS = 256


NOT_BLANK = r"\S"  # at least one non-space character: a blank query or document has nothing to encode


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Candidate(_Strict):
    """A document to score: a doc id from the embedding store, an inline text, or both (the text is
    scored, the id is echoed back)."""

    id: str | None = Field(None, min_length=1, max_length=ID_CHARS, description="doc id in the store")
    text: str | None = Field(
        None, min_length=1, max_length=MAX_TEXT_CHARS, pattern=NOT_BLANK, description="document text"
    )

    @model_validator(mode="after")
    def _id_or_text(self) -> Candidate:
        if self.id is None and self.text is None:
            raise ValueError("a candidate needs an id, a text, or both")
        return self


class RerankRequest(_Strict):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, pattern=NOT_BLANK)
    candidates: list[Candidate] = Field(min_length=1, max_length=MAX_CANDIDATES)
    top_n: int | None = Field(None, ge=1, le=MAX_CANDIDATES, description="results returned (default: all)")
    teacher_top: int | None = Field(
        None, ge=0, le=MAX_CANDIDATES, description="re-score this many of the student's best with the teacher"
    )


class ScoredDoc(BaseModel):
    index: int = Field(description="position of the candidate in the request (search: in the retrieved list)")
    id: str | None = None
    score: float = Field(description="final score: the teacher's where it re-scored, else the student's")
    student_score: float
    levels: list[float] = Field(description="level distribution of the final scorer, most relevant first")
    scorer: Literal["student", "teacher"]


class RerankResponse(BaseModel):
    model_id: str
    level_names: list[str]
    results: list[ScoredDoc]
    unknown_ids: list[str] = Field(description="candidate ids not in the embedding store (not scored)")
    query_cached: bool
    teacher_rescored: int


class SearchRequest(_Strict):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, pattern=NOT_BLANK)
    k: int = Field(100, ge=1, le=MAX_K, description="documents retrieved by the ANN index")
    top_n: int = Field(10, ge=1, le=MAX_K, description="results returned after re-ranking")
    teacher_top: int | None = Field(None, ge=0, le=MAX_K)


class SearchResponse(RerankResponse):
    retrieved: int


class EmbedRequest(_Strict):
    texts: list[Annotated[str, Field(min_length=1, pattern=NOT_BLANK)]] = Field(
        min_length=1, max_length=MAX_EMBED_TEXTS
    )
    kind: Literal["query", "document"] = "query"

    @model_validator(mode="after")
    def _lengths(self) -> EmbedRequest:
        limit = MAX_QUERY_CHARS if self.kind == "query" else MAX_TEXT_CHARS
        for i, text in enumerate(self.texts):
            if len(text) > limit:
                raise ValueError(f"texts[{i}] has {len(text)} characters; a {self.kind} may have {limit}")
        return self


class EmbedResponse(BaseModel):
    model_id: str
    dim: int
    vectors: list[list[float]]
    cached: list[bool] = Field(
        description="per text: answered from the query cache (always false for documents)"
    )


class Neighbour(BaseModel):
    id: str
    score: float = Field(description="cosine similarity")


class RelatedResponse(BaseModel):
    doc_id: str
    neighbours: list[Neighbour]


class HealthResponse(BaseModel):
    status: Literal["ok"]
    model_id: str
    documents: int
    index: str
    store_generation: int
    cache: str
    redis_up: bool | None
    teacher: bool


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, object]]
    message: str | None = None
