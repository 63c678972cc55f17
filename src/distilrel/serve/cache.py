"""Query-embedding cache: an in-process LRU with a size bound and a TTL, and a Redis backend with the
same interface that falls back to the in-process cache while Redis is down.

Key: :func:`cache_key` = model id + the normalised query (Unicode NFKC, case-fold, whitespace collapsed),
so "Red  Shoes" and "red shoes" share one entry and two models never share one. The engine encodes the
normalised text too (see :func:`normalize_query`): a cached answer is then exactly the answer the model
would give now, whichever spelling filled the entry.

Values are 1-D float32 vectors (one query embedding).
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

Clock = Callable[[], float]


def normalize_query(query: str) -> str:
    """NFKC, then case-fold, then runs of whitespace collapsed to one space (ends stripped)."""
    return " ".join(unicodedata.normalize("NFKC", query).casefold().split())


def cache_key(query: str, model_id: str) -> str:
    # \x1f (unit separator) never survives normalisation inside a query, so keys cannot collide.
    return f"{model_id}\x1f{normalize_query(query)}"


@dataclass(frozen=True)
class CacheStats:
    """Counters since start (``size`` and ``remote_up`` are current values)."""

    backend: str
    size: int
    max_items: int | None
    local_hits: int = 0
    remote_hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0
    fallbacks: int = 0  # operations answered without Redis because it was down
    remote_errors: int = 0  # Redis calls that failed
    remote_recoveries: int = 0  # times Redis came back after being down
    remote_up: bool | None = None  # None: no remote backend

    @property
    def hits(self) -> int:
        return self.local_hits + self.remote_hits

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class QueryCache(Protocol):
    """What the engine needs of a cache (the LRU and the Redis cache both are one)."""

    def get(self, key: str) -> np.ndarray | None: ...

    def put(self, key: str, value: np.ndarray) -> None: ...

    def stats(self) -> CacheStats: ...

    def close(self) -> None: ...


@dataclass
class _Counters:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0


class LRUCache:
    """Thread-safe LRU: at most ``max_items`` entries, each valid ``ttl_s`` seconds after it was written
    (None: forever). ``clock`` is injectable so a replay can run on a log's timestamps."""

    def __init__(self, max_items: int = 100_000, ttl_s: float | None = None, clock: Clock = time.monotonic):
        if max_items < 1:
            raise ValueError(f"LRUCache: max_items must be >= 1, got {max_items}")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"LRUCache: ttl_s must be > 0 or None, got {ttl_s}")
        self.max_items = max_items
        self.ttl_s = ttl_s
        self.clock = clock
        self._items: OrderedDict[str, tuple[np.ndarray, float]] = OrderedDict()  # key -> (value, expires at)
        self._lock = threading.Lock()
        self._counts = _Counters()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            entry = self._items.get(key)
            return entry is not None and entry[1] > self.clock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                self._counts.misses += 1
                return None
            if entry[1] <= self.clock():
                del self._items[key]
                self._counts.expirations += 1
                self._counts.misses += 1
                return None
            self._items.move_to_end(key)
            self._counts.hits += 1
            return entry[0]

    def put(self, key: str, value: np.ndarray) -> None:
        expires = self.clock() + self.ttl_s if self.ttl_s is not None else float("inf")
        with self._lock:
            self._items[key] = (value, expires)
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
                self._counts.evictions += 1

    def stats(self) -> CacheStats:
        c = self._counts
        return CacheStats(
            backend="lru",
            size=len(self._items),
            max_items=self.max_items,
            local_hits=c.hits,
            misses=c.misses,
            evictions=c.evictions,
            expirations=c.expirations,
        )

    def close(self) -> None:
        with self._lock:
            self._items.clear()


class RedisCache:
    """Redis behind an in-process LRU ("near cache"), with fallback while Redis is down.

    ``get`` answers from the local LRU first, then from Redis (a Redis hit also fills the LRU); ``put``
    writes both (Redis with ``ttl_s`` as its expiry). When a Redis call fails, Redis is marked down for
    ``retry_after_s``: meanwhile every operation is served by the local LRU alone and counted as a
    fallback, and no request waits on a dead connection. The first call after that window tries Redis
    again; when it succeeds Redis is up again (counted as a recovery). Because the LRU is written on
    every ``put``, it already holds the recent queries when Redis goes away.
    """

    def __init__(
        self,
        url: str,
        local: LRUCache | None = None,
        ttl_s: float | None = None,
        prefix: str = "distilrel:q:",
        retry_after_s: float = 1.0,
        timeout_s: float = 0.25,
        clock: Clock = time.monotonic,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.local = local or LRUCache(ttl_s=ttl_s)
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self.clock = clock
        # No client-side retries: a dead Redis must cost one fast failure, not a backoff per request.
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._errors = redis.RedisError
        self._lock = threading.Lock()
        self._down_until: float | None = None  # None: up
        self._remote_hits = 0
        self._fallbacks = 0
        self._remote_errors = 0
        self._recoveries = 0

    @property
    def remote_up(self) -> bool:
        return self._down_until is None

    def get(self, key: str) -> np.ndarray | None:
        value = self.local.get(key)
        if value is not None:
            return value
        raw = self._remote(lambda: self._client.get(self.prefix + key))
        if not isinstance(raw, bytes):
            return None
        value = np.frombuffer(raw, dtype=np.float32).copy()
        self.local.put(key, value)
        with self._lock:
            self._remote_hits += 1
        return value

    def put(self, key: str, value: np.ndarray) -> None:
        value = np.ascontiguousarray(value, dtype=np.float32)
        self.local.put(key, value)
        ex = max(1, round(self.ttl_s)) if self.ttl_s is not None else None
        self._remote(lambda: self._client.set(self.prefix + key, value.tobytes(), ex=ex))

    def ping(self) -> bool:
        """Whether Redis answers now (also marks it up or down)."""
        return self._remote(self._client.ping) is True

    def _remote(self, call: Callable[[], object]) -> object | None:
        with self._lock:
            if self._down_until is not None and self.clock() < self._down_until:
                self._fallbacks += 1
                return None
        try:
            result = call()
        except self._errors:
            with self._lock:
                self._remote_errors += 1
                self._fallbacks += 1
                self._down_until = self.clock() + self.retry_after_s
            return None
        with self._lock:
            if self._down_until is not None:
                self._down_until = None
                self._recoveries += 1
        return result

    def stats(self) -> CacheStats:
        local = self.local.stats()
        with self._lock:
            # A local miss answered by Redis is a hit overall: it is not counted as a miss.
            return CacheStats(
                backend="redis",
                size=local.size,
                max_items=local.max_items,
                local_hits=local.local_hits,
                remote_hits=self._remote_hits,
                misses=local.misses - self._remote_hits,
                evictions=local.evictions,
                expirations=local.expirations,
                fallbacks=self._fallbacks,
                remote_errors=self._remote_errors,
                remote_recoveries=self._recoveries,
                remote_up=self._down_until is None,
            )

    def close(self) -> None:
        self._client.close()
        self.local.close()


def make_cache(
    max_items: int = 100_000, ttl_s: float | None = None, redis_url: str | None = None
) -> LRUCache | RedisCache:
    """The in-process LRU, or Redis backed by that LRU when ``redis_url`` is given."""
    local = LRUCache(max_items=max_items, ttl_s=ttl_s)
    return RedisCache(redis_url, local=local, ttl_s=ttl_s) if redis_url else local
