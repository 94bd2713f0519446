"""`claire bench replay`: measures the real command's path (one small run, structure only)."""

from __future__ import annotations

from pathlib import Path

from claire.benchmarks.replay import bench_replay, format_report

DATA = Path(__file__).resolve().parents[2] / "data" / "XRP_USDT-1m.feather"


def test_bench_replay_phases_and_commands(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = bench_replay([DATA], strategy="sma_cross", repeat=1, json_out=False)
    (sc,) = res["scenarios"]
    assert sc["scenario"] == "sma_cross --risk none" and res["statistic"] == "median"
    assert sc["bars"] > 40_000
    assert set(sc["phases"]) == {"imports", "load", "engine", "run_files"}
    for ph in sc["phases"].values():
        assert ph["seconds"] > 0 and ph["bars_per_sec"] > 0 and len(ph["runs"]) == 1
    # the exact command line that was measured: the real `claire backtest`
    assert " backtest --data " in sc["command"] and "--strategy sma_cross --risk none --out " in sc["command"]
    assert sc["process"]["seconds"] > sc["phases"]["engine"]["seconds"]
    assert sc["max_rss_mb"]["max"] > 50
    assert sc["imported_modules"] > 5 and sc["import_failures"] == 0
    text = format_report(res)
    assert sc["command"] in text and "bars/s" in text
    assert res["command"] == "claire bench replay --strategy sma_cross --repeat 1"
