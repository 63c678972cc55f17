"""The Redis query cache against a real ``redis-server`` (Debian package ``redis-server``) started here on
127.0.0.1 and stopped; one test kills it mid-run and restarts it under the live service."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from distilrel.client import Client
from distilrel.serve.app import create_app
from distilrel.serve.cache import LRUCache, RedisCache, cache_key
from distilrel.serve.engine import load_engine
from tiny import build_tiny_student, free_port, make_store, run_server

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS is None, reason="redis-server is not installed (Debian: apt-get install -y redis-server)"
)


class RedisServer:
    """A throw-away ``redis-server`` on 127.0.0.1, no persistence; ``stop`` and ``start`` keep the port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS is not None
        self.process = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # as a crash would: no shutdown handshake
            self.process.wait(timeout=10)
        self.process = None

    def raw(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_values_are_shared_through_redis_with_ttl(redis_server: RedisServer) -> None:
    writer = RedisCache(redis_server.url, local=LRUCache(10), ttl_s=60)
    key = cache_key("Red Shoe", "model-a")
    vec = np.arange(4, dtype=np.float32)
    writer.put(key, vec)
    raw = redis_server.raw()
    assert np.array_equal(np.frombuffer(raw.get(writer.prefix + key), dtype=np.float32), vec)
    assert 0 < raw.ttl(writer.prefix + key) <= 60

    # Another replica (empty local cache) gets it from Redis; the second read is local.
    reader = RedisCache(redis_server.url, local=LRUCache(10), ttl_s=60)
    assert np.array_equal(reader.get(cache_key("  red SHOE", "model-a")), vec)
    assert np.array_equal(reader.get(key), vec)
    assert reader.get(cache_key("red shoe", "model-b")) is None  # another model: another key
    s = reader.stats()
    assert (s.remote_hits, s.local_hits, s.misses, s.fallbacks, s.remote_up) == (1, 1, 1, 0, True)
    writer.close()
    reader.close()


def test_service_survives_redis_going_down_and_uses_it_again(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    student = build_tiny_student(tmp_path / "student")
    store = make_store(student, tmp_path / "store")
    cache = RedisCache(redis_server.url, local=LRUCache(100), retry_after_s=0.2)
    engine = load_engine(student, store, cache=cache, device="cpu")
    raw = redis_server.raw()
    ids = ["p001", "p002", "p003"]
    try:
        with run_server(create_app(engine)) as url, Client(url) as client:
            before = client.rerank("red shoe", doc_ids=ids)
            assert not before.query_cached and len(raw.keys(f"{cache.prefix}*")) == 1

            redis_server.stop()  # mid-run
            again = client.rerank("Red Shoe", doc_ids=ids)  # answered from the in-process cache
            fresh = client.rerank("blue lamp", doc_ids=ids)  # a miss: encoded, cached locally only
            assert again.query_cached and [r.score for r in again.results] == [
                r.score for r in before.results
            ]
            assert not fresh.query_cached and len(fresh.results) == 3
            assert client.rerank("blue lamp", doc_ids=ids).query_cached
            down = client.health()
            assert down.redis_up is False
            metrics = client.metrics()
            assert "distilrel_cache_remote_up 0.0" in metrics
            assert cache.stats().fallbacks >= 1 and "distilrel_cache_fallbacks_total 0.0" not in metrics

            redis_server.start()  # same port, empty (no persistence)
            time.sleep(0.3)  # past retry_after_s: the next call tries Redis again
            client.rerank("warm desk", doc_ids=ids)
            assert raw.keys(f"{cache.prefix}*") == [
                f"{cache.prefix}{cache_key('warm desk', engine.query_model_id)}".encode()
            ]
            stats = cache.stats()
            assert stats.remote_up and stats.remote_recoveries == 1
            assert "distilrel_cache_remote_recoveries_total 1.0" in client.metrics()
            # A value written by another replica is read from Redis again.
            other = RedisCache(redis_server.url, local=LRUCache(10))
            key = cache_key("led light", engine.query_model_id)
            other.put(key, engine.student.encode_queries(["led light"])[0])
            assert client.rerank("led light", doc_ids=ids).query_cached
            assert cache.stats().remote_hits >= 1
            other.close()
    finally:
        engine.close()
