"""Query cache: key normalisation, the LRU's size bound and TTL, fallback without Redis, and the replay."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distilrel.serve.cache import LRUCache, RedisCache, cache_key, make_cache, normalize_query
from distilrel.serve.replay import plot_hit_rate, read_query_log, replay, zipf_stream


class FakeClock:
    """A settable clock (the cache reads time through an injectable function)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def vec(x: float) -> np.ndarray:
    return np.full(2, x, dtype=np.float32)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Red\tShoes\n", "red shoes"),
        ("ＲＥＤ　ｓｈｏｅｓ", "red shoes"),  # full-width letters and ideographic space (NFKC)
        ("STRASSE straße", "strasse strasse"),  # case-fold, not lower(): ß folds to ss
        ("ﬁle  №5", "file no5"),  # ligature and numero sign (NFKC)
        ("Ä vs A\u0308", "ä vs ä"),  # composed and decomposed forms meet
    ],
)
def test_normalize_query(raw: str, expected: str) -> None:
    assert normalize_query(raw) == expected


def test_cache_key_separates_models() -> None:
    assert cache_key("Red Shoes", "m1") == cache_key("red  shoes", "m1")
    assert cache_key("red shoes", "m1") != cache_key("red shoes", "m2")


def test_lru_evicts_the_least_recently_used() -> None:
    cache = LRUCache(max_items=2)
    cache.put("a", vec(1))
    cache.put("b", vec(2))
    assert cache.get("a") is not None  # a is now more recent than b
    cache.put("c", vec(3))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    s = cache.stats()
    assert (s.size, s.evictions, s.local_hits, s.misses) == (2, 1, 3, 1)
    assert s.hit_rate == pytest.approx(0.75)
    with pytest.raises(ValueError, match="max_items must be >= 1"):
        LRUCache(max_items=0)


def test_lru_ttl_expires_entries() -> None:
    clock = FakeClock()
    cache = LRUCache(max_items=10, ttl_s=5.0, clock=clock)
    cache.put("a", vec(1))
    clock.now = 4.9
    assert cache.get("a") is not None and "a" in cache
    clock.now = 5.0
    assert cache.get("a") is None and "a" not in cache
    cache.put("a", vec(2))  # rewriting restarts the clock
    clock.now = 9.0
    np.testing.assert_array_equal(cache.get("a"), vec(2))
    assert cache.stats().expirations == 1


def test_lru_is_thread_safe() -> None:
    cache = LRUCache(max_items=50)

    def work(t: int) -> None:
        for i in range(2000):
            key = f"k{(i * 7 + t) % 120}"
            if cache.get(key) is None:
                cache.put(key, vec(i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = cache.stats()
    assert len(cache) == 50 and s.local_hits + s.misses == 8 * 2000


def test_redis_cache_without_a_server_answers_from_the_local_cache() -> None:
    # Port 1 on loopback: nothing listens, connections are refused at once.
    clock = FakeClock()
    cache = RedisCache("redis://127.0.0.1:1/0", local=LRUCache(10), retry_after_s=30, clock=clock)
    cache.put("a", vec(1))
    np.testing.assert_array_equal(cache.get("a"), vec(1))
    assert cache.get("b") is None
    s = cache.stats()
    # One failed call marks Redis down; the following calls skip it until retry_after_s has passed.
    assert (s.remote_up, s.remote_errors, s.fallbacks, s.local_hits, s.misses) == (False, 1, 2, 1, 1)
    clock.now = 31.0
    assert cache.get("c") is None and cache.stats().remote_errors == 2  # tried again, still down
    assert not cache.ping()
    assert isinstance(make_cache(10), LRUCache) and isinstance(
        make_cache(10, redis_url="redis://x:1"), RedisCache
    )


# --- replay -----------------------------------------------------------------------------------------------


def test_zipf_stream_is_seeded_and_heavy_tailed() -> None:
    distinct = [f"query {i}" for i in range(1000)]
    a, b = zipf_stream(distinct, 20_000, s=1.0, seed=3), zipf_stream(distinct, 20_000, s=1.0, seed=3)
    assert a.queries == b.queries and a.queries != zipf_stream(distinct, 20_000, s=1.0, seed=4).queries
    counts = pd.Series(a.queries).value_counts()
    # Zipf s=1 over 1000 ranks: the top query takes 1/H(1000) ~ 13% of the traffic, rank 10 a tenth of it.
    assert counts.iloc[0] / 20_000 == pytest.approx(1 / sum(1 / r for r in range(1, 1001)), rel=0.1)
    assert counts.iloc[0] / counts.iloc[9] == pytest.approx(10, rel=0.35)
    assert "simulation" in a.description and "s=1" in a.description


def test_replay_hit_rate_grows_with_size_up_to_the_ceiling(tmp_path: Path) -> None:
    stream = zipf_stream([f"q{i}" for i in range(500)], 10_000, s=1.0, seed=0)
    table = replay(stream, [1, 10, 100, 1000])
    bounded = table[table["size"] > 0]
    assert bounded["hit_rate"].is_monotonic_increasing
    ceiling = table.loc[table["size"] == -1].iloc[0]
    assert ceiling["hit_rate"] == pytest.approx(1 - ceiling["distinct"] / 10_000)
    # A cache bigger than the distinct queries misses only first occurrences: it reaches the ceiling.
    assert bounded.iloc[-1]["hit_rate"] == pytest.approx(ceiling["hit_rate"])
    assert bounded.iloc[-1]["evictions"] == 0 and bounded.iloc[0]["evictions"] > 0
    png = plot_hit_rate(table, tmp_path / "plot.png", stream.description)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_of_a_timestamped_log_applies_the_ttl(tmp_path: Path) -> None:
    log = pd.DataFrame(
        {
            "user_query": ["Drill", "drill ", "DRILL", "saw", "drill"],
            "ts": pd.to_datetime(
                [
                    "2024-01-01 00:00:00",
                    "2024-01-01 00:00:10",
                    "2024-01-01 00:02:00",
                    "2024-01-01 00:02:01",
                    "2024-01-01 00:02:30",
                ]
            ),
        }
    ).sample(frac=1.0, random_state=1)  # out of order on disk: the replay sorts by time
    path = tmp_path / "log.parquet"
    log.to_parquet(path)
    stream = read_query_log(path, "user_query", "ts")
    assert stream.times is not None and list(stream.times) == [0, 10, 120, 121, 150]
    # TTL 60 s: 00:00:10 hits; at 00:02:00 the entry (written at 00:00:00) has expired; 00:02:30 hits again.
    row = replay(stream, [10], ttl_s=60).iloc[0]
    assert (row["hits"], row["misses"], row["expirations"]) == (2, 3, 1)
    assert replay(stream, [10]).iloc[0]["hits"] == 3  # without TTL every repeat hits
    with pytest.raises(ValueError, match="a TTL needs timestamps"):
        replay(zipf_stream(["a"], 5), [1], ttl_s=1)
    with pytest.raises(ValueError, match="no column 'query'"):
        read_query_log(path)


def test_cache_replay_cli(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from distilrel.cli.serve import cache_app

    log = tmp_path / "queries.txt"
    log.write_text("red shoe\nRed Shoe\nblue lamp\n\nred  shoe\n", encoding="utf-8")
    root = typer.Typer()
    root.add_typer(cache_app, name="cache")
    root.command()(lambda: None)  # a second command keeps `cache` a sub-command group
    out = tmp_path / "replay"
    res = CliRunner().invoke(
        root, ["cache", "replay", "--log", str(log), "--sizes", "1,2", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    table = pd.read_csv(out / "hit_rate.csv")
    assert table.set_index("size")["hits"].to_dict() == {1: 1, 2: 2, -1: 2}
    assert json.loads((out / "replay.json").read_text())["stream"].startswith("log queries.txt")
    assert (out / "hit_rate.png").stat().st_size > 1000
