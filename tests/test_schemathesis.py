"""Property-based API test: schemathesis generates requests from the service's own OpenAPI schema (valid
and invalid ones, a bounded number per operation) and sends them to the real ASGI app with a tiny
student. No answer may be a server error, and every answer must match the documented status codes
and response schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from distilrel.serve.app import ServeSettings, create_app
from distilrel.serve.cache import LRUCache
from distilrel.serve.engine import Engine, load_engine
from tiny import build_tiny_student, make_store

API_KEY = "schemathesis-key"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    root: Path = tmp_path_factory.mktemp("schemathesis")
    student = build_tiny_student(root / "student")
    eng = load_engine(student, make_store(student, root / "store"), cache=LRUCache(1000), device="cpu")
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def api_schema(engine: Engine) -> Any:
    app = create_app(engine, ServeSettings(api_key=API_KEY, max_candidates=200, max_text_chars=2000))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


# The operations are enumerated inside the test (not with ``schema.parametrize``): the schema needs the
# tiny student, built by a fixture, and schemathesis's lazy fixture loader does not run under pytest 9.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(api_schema: Any, mode: GenerationMode) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/v1/rerank", "/v1/search", "/v1/embed", "/v1/related/{doc_id}", "/healthz", "/metrics"} <= paths

    for operation in operations:
        has_inputs = bool(len(operation.body) or len(operation.query) or len(operation.path_parameters))
        if mode is GenerationMode.NEGATIVE and not has_inputs:
            continue  # /healthz, /metrics: nothing to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers={"X-API-Key": API_KEY},
                checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
            )

        check()
