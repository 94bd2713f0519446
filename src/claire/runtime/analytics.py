"""A run's analytics rows completed as it goes, the same way in every runtime.

- ``execution_analysis.price_after`` / ``market_impact_bps``: the fills' next prices (from the
  signal engine in one process, see :meth:`claire.strategy.SignalEngine.take_prices_after`) are
  handed to :meth:`RunAnalytics.prices_after` from any thread and written by :meth:`flush` once
  their rows are stored; at the end the fills without a later price say why.
- ``performance_metrics``: at each UTC day boundary of event time (a stored snapshot of a new
  day) the finished days, the week and the run to date are computed again from what the
  database holds (:func:`claire.reporting.period_metrics.period_rows`, the same function the
  runtimes use on their Recorder at the end), so a restarted writer loses nothing.

:class:`claire.runtime.distributed.runner.WriterService` drives it (paper and ``claire up``);
``claire backtest --db`` calls :meth:`finish` at its end.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

from claire.events.time import NS_PER_DAY
from claire.reporting.period_metrics import fill_of, period_rows
from claire.storage.analytics import complete_price_after, load_period_inputs, mark_no_price_after
from claire.storage.performance_metrics import write_performance

log = logging.getLogger("claire.analytics")


class RunAnalytics:
    """The analytics of one run in one database (see the module doc)."""

    def __init__(self, db: Any, run_id: str) -> None:
        self.db = db
        self.run_id = run_id
        self.inbox: deque[tuple[str, str, int]] = deque()  # appended from any thread
        self.waiting: list[tuple[str, str, int]] = []  # rows not stored yet (the flushing thread's)
        self.day: int | None = None  # the UTC day of the newest snapshot seen
        self.refreshed = 0  # performance refreshes done

    # --- price after ------------------------------------------------------------------------
    def prices_after(self, items: Iterable[tuple[str, str, int]]) -> None:
        """Fills' prices after, ``(trade id, price, event time)`` (thread-safe)."""
        self.inbox.extend(items)

    def flush(self) -> None:
        """Write the prices after whose rows are stored (the others wait for the next flush)."""
        inbox = self.inbox
        while inbox:
            self.waiting.append(inbox.popleft())
        if self.waiting:
            self.waiting = complete_price_after(self.db, self.run_id, self.waiting)

    # --- performance_metrics ----------------------------------------------------------------
    def snapshot_at(self, ts: int) -> int | None:
        """A snapshot at event time ``ts`` was stored: the start (ns) of the UTC day it begins,
        if it is the first of a new day (else None)."""
        d = ts // NS_PER_DAY
        if self.day is None:
            self.day = d
            return None
        if d > self.day:
            self.day = d
            return d * NS_PER_DAY
        return None

    def refresh_performance(self, until_ns: int | None = None, final: bool = False) -> int:
        """Compute the run's performance rows again from the database (until the day boundary
        ``until_ns``, or all with ``final``) and replace the stored ones; the rows written."""
        start, points, fills = load_period_inputs(self.db, self.run_id)
        if start is None or not points:
            return 0
        rows = period_rows(points, [fill_of(*f) for f in fills], start, until_ns=until_ns,
                           final_equity=points[-1][1] if final else None)
        self.refreshed += 1
        return write_performance(self.db, self.run_id, rows)

    def finish(self, performance: bool = True) -> None:
        """The end of the run: the last prices after, the reason of those that have none, and
        (``performance``) the final performance rows."""
        self.flush()
        mark_no_price_after(self.db, self.run_id)
        if performance:
            self.refresh_performance(final=True)
