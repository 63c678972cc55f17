"""Prometheus metrics of the service, in a registry of its own (two apps in one process never clash).

* ``distilrel_request_seconds{route,method,status}`` — latency histogram per route template;
* ``distilrel_stage_seconds{stage}`` — query_encode, doc_vectors, head, teacher, ann;
* ``distilrel_candidates`` — candidates scored per re-rank;
* ``distilrel_unknown_ids_total``, ``distilrel_teacher_pairs_total``;
* cache counters read from the cache at scrape time: ``distilrel_cache_hits_total{tier}``,
  ``distilrel_cache_misses_total``, ``distilrel_cache_fallbacks_total``, evictions, expirations,
  ``distilrel_cache_remote_errors_total``, ``distilrel_cache_remote_recoveries_total``,
  ``distilrel_cache_remote_up`` and ``distilrel_cache_items``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from distilrel.serve.cache import CacheStats

# 0.5 ms .. 10 s: a cached query with 100 stored candidates takes milliseconds, teacher re-scoring seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _CacheCollector(Collector):
    def __init__(self, stats: Callable[[], CacheStats]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats()
        hits = CounterMetricFamily("distilrel_cache_hits", "query cache hits", labels=["tier"])
        hits.add_metric(["local"], s.local_hits)
        hits.add_metric(["redis"], s.remote_hits)
        yield hits
        for name, value, doc in (
            ("misses", s.misses, "query cache misses (the query tower ran)"),
            ("fallbacks", s.fallbacks, "cache operations served in process because Redis was down"),
            ("evictions", s.evictions, "entries evicted by the size bound"),
            ("expirations", s.expirations, "entries dropped by the TTL"),
            ("remote_errors", s.remote_errors, "failed Redis calls"),
            ("remote_recoveries", s.remote_recoveries, "times Redis was used again after being down"),
        ):
            yield CounterMetricFamily(f"distilrel_cache_{name}", doc, value=value)
        yield GaugeMetricFamily("distilrel_cache_items", "entries in the in-process cache", value=s.size)
        if s.remote_up is not None:
            yield GaugeMetricFamily(
                "distilrel_cache_remote_up", "1 while Redis answers", value=int(s.remote_up)
            )


class ServiceMetrics:
    def __init__(self, cache_stats: Callable[[], CacheStats]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Histogram(
            "distilrel_request_seconds",
            "HTTP request latency",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "distilrel_stage_seconds",
            "time per engine stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.candidates = Histogram(
            "distilrel_candidates",
            "candidates scored per re-rank or search",
            buckets=(1, 10, 25, 50, 100, 250, 500, 1000),
            registry=self.registry,
        )
        self.unknown_ids = Counter(
            "distilrel_unknown_ids", "candidate ids not in the store", registry=self.registry
        )
        self.teacher_pairs = Counter(
            "distilrel_teacher_pairs", "pairs re-scored by the teacher", registry=self.registry
        )
        self.registry.register(_CacheCollector(cache_stats))

    def observe_stages(self, timings: dict[str, float]) -> None:
        for stage, seconds in timings.items():
            self.stages.labels(stage).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
