"""The command line and the configuration: clear errors, the documented run files."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from claire.cli.main import app
from claire.config import ConfigError, load_dotenv, redact_url, risk_config_from_env

runner = CliRunner()


def test_env_limits_are_read_and_validated():
    cfg = risk_config_from_env({"MAX_POSITION_PCT": "0.2", "DATA_STALE_TIMEOUT_SEC": "30", "ALLOW_SHORT": "yes"})
    assert cfg.max_position_pct == Decimal("0.2") and cfg.data_stale_timeout_sec == 30 and cfg.allow_short is True
    assert risk_config_from_env({}).max_total_exposure_pct == Decimal("0.30")
    with pytest.raises(ConfigError) as exc:
        risk_config_from_env({"MAX_POSITION_PCT": "ten", "MAX_SLIPPAGE_PCT": "nan", "ALLOW_SHORT": "maybe"})
    msg = str(exc.value)
    assert "MAX_POSITION_PCT='ten': not a number" in msg
    assert "MAX_SLIPPAGE_PCT" in msg and "ALLOW_SHORT" in msg
    with pytest.raises(ConfigError, match=r"MAX_DAILY_DRAWDOWN_PCT.*\(0, 1\]"):
        risk_config_from_env({"MAX_DAILY_DRAWDOWN_PCT": "5"})


def test_dotenv_and_redaction(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("# comment\nexport MAX_POSITION_PCT=0.05\nREDIS_PASSWORD='s3cr3t'\n\nBROKEN LINE\n")
    assert load_dotenv(env) == {"MAX_POSITION_PCT": "0.05", "REDIS_PASSWORD": "s3cr3t"}
    assert redact_url("postgresql+psycopg://claire:s3cr3t@db:5432/claire") == "postgresql+psycopg://claire:***@db:5432/claire"
    assert "s3cr3t" not in redact_url("redis://:s3cr3t@127.0.0.1:6379/0")


def test_backtest_reports_bad_input_clearly(data_dir: Path):
    btc = str(data_dir / "BTC_USDT-1m.feather")
    cases = [
        (["--data", "nope.feather"], "market data file not found: nope.feather"),
        (["--data", btc, "--fill", "tomorrow"], "--fill must be next_open or close"),
        (["--data", btc, "--strategy", "nosuch"], "nosuch"),
        (["--data", btc, "--strategy", "sma_cross", "--param", "fast=x"], "fast"),
        (["--data", btc, "--quantity", "-1"], "--quantity must be > 0"),
        (["--data", btc, "--risk", "some"], "--risk must be default or none"),
    ]
    for args, text in cases:
        res = runner.invoke(app, ["backtest", *args])
        assert res.exit_code == 2, (args, res.output)
        assert text in " ".join(res.output.split()), (args, res.output)


def test_backtest_with_bad_env_names_the_variable(data_dir: Path, monkeypatch):
    monkeypatch.setenv("MAX_TOTAL_EXPOSURE_PCT", "lots")
    res = runner.invoke(app, ["backtest", "--data", str(data_dir / "BTC_USDT-1m.feather")])
    assert res.exit_code == 2 and "MAX_TOTAL_EXPOSURE_PCT='lots'" in res.output


def test_issue_command_writes_the_documented_run_files(data_dir: Path, tmp_path: Path):
    out = tmp_path / "btc"
    res = runner.invoke(app, ["backtest", "--data", str(data_dir / "BTC_USDT-1m.feather"), "--strategy", "sma_cross",
                              "--param", "fast=10", "--param", "slow=30", "--quantity", "0.1", "--fee-bps", "10",
                              "--fill", "next_open", "--risk", "none", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} >= {"trades.csv", "fills.csv", "equity.csv", "risk_events.csv", "summary.json"}
    rows = list(csv.DictReader((out / "trades.csv").open()))
    assert list(rows[0]) == ["symbol", "side", "quantity", "entry_time", "entry_price", "exit_time", "exit_price",
                             "fees", "pnl"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trades"] == sum(1 for r in rows if r["exit_time"]) == 898
    # 86770.95 before the volume cap stopped looking ahead (a fill at an open is capped by the
    # previous bar's volume): a few 0.1 BTC orders now fill over two bars
    assert summary["final_equity"] == "86771.32"
    for key in ("win_rate", "realized_pnl_gross", "realized_pnl_net", "net_pnl", "fees", "max_drawdown", "sharpe"):
        assert key in summary
    assert "Run summary" in res.output and "final equity" in res.output


def test_strategies_lists_builtins():
    res = runner.invoke(app, ["strategies"])
    assert res.exit_code == 0 and "sma_cross" in res.output and "momentum" in res.output


def test_run_commands_share_their_options_and_defaults():
    """backtest, paper, up and spec take the shared run options with the same defaults (momentum)."""
    import typer.main

    from claire.config import RunOptions

    group = typer.main.get_command(app)
    defaults = {name: {p.name: p.default for p in group.commands[name].params}  # type: ignore[attr-defined]
                for name in ("backtest", "paper", "up", "spec")}
    shared = set.intersection(*(set(d) for d in defaults.values()))
    assert {"strategy", "param", "quantity", "fee_bps", "fill", "risk", "start_cash", "max_volume_share"} <= shared
    for option in shared:
        assert len({repr(d[option]) for d in defaults.values()}) == 1, option
    assert {d["strategy"] for d in defaults.values()} == {RunOptions().strategy} == {"momentum"}
