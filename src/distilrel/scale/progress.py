"""The progress bar of the batch jobs: done / total, items per second, elapsed and remaining time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


@contextmanager
def progress_bar(
    total: int,
    completed: int,
    enabled: bool,
    console: Console | None = None,
    *,
    what: str = "labelling",
    unit: str = "pairs",
) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n_items)``; shows a rich bar ``{what} ... {rate} {unit}/s`` (items already done
    before this run count towards the bar, not towards the rate). Disabled: a no-op."""
    if not enabled:
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn(f"{{task.fields[rate]}} {unit}/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    t0 = time.perf_counter()
    fresh = 0
    with Progress(*columns, console=console or Console(stderr=True)) as progress:
        task = progress.add_task(what, total=total, completed=completed, rate="-")

        def advance(n: int) -> None:
            nonlocal fresh
            fresh += n
            rate = fresh / max(time.perf_counter() - t0, 1e-9)
            progress.update(task, advance=n, rate=f"{rate:,.1f}" if rate < 100 else f"{rate:,.0f}")

        yield advance
