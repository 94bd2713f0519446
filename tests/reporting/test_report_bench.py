"""`claire bench report` on a small synthetic PostgreSQL run: it loads, reports and measures."""

from __future__ import annotations

import pytest

from claire.benchmarks.report import bench_report, format_report


@pytest.mark.postgres
def test_bench_report_small_run() -> None:
    res = bench_report(snapshots=3_000, trades=50, repeat=1)
    assert res["snapshots"] == 3_000 and res["round_trips"] == 50 and res["fills"] == 100
    assert res["report_seconds_median"] > 0 and res["peak_rss_mib_median"] > 50
    assert res["html_bytes"] > 100_000
    assert "claire bench report --snapshots 3000 --trades 50 --repeat 1" in format_report(res)
