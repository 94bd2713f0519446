"""Replay benchmark: what `claire backtest` costs a user, phase by phase.

Every figure is measured on the path of the real command, never on a shortcut of its own:

- **imports**: a fresh interpreter imports the modules the real ``claire backtest`` command
  imports (found once per scenario with ``python -X importtime`` on that very command line);
- **load**, **engine**, **run files**: in this process, through what ``claire backtest
  --no-progress`` runs (``config.make_config``, ``marketdata.open_market_data``,
  ``runtime.backtest.run_backtest`` with the lean recorder, ``keep_events=False``, and the
  garbage collector paused by it, as in the command; between runs, outside the clock, the
  collector is restored to a fresh process's state: ``gc.unfreeze`` and a collection);
- **process**: wall clock, CPU (user + system) and peak memory (``ru_maxrss``) of the real
  command, started by a small launcher (a fresh interpreter that imports only ``os`` and
  ``time``): the peak of a child counts the pages of the process it was forked from, so a
  child forked from this process (which holds the in-process runs) would report their
  memory too.

Each figure is the median of ``repeat`` runs (all runs are in the JSON), runs of the
scenarios alternate, and every command line that was measured is printed with its figures.
Default scenarios: ``sma_cross --risk none`` and ``momentum`` with the default risk limits,
over the five bundled 1m files.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

DEFAULT_FILES = ["BTC_USDT-1m.feather", "ETH_USDT-1m.feather", "BNB_USDT-1m.feather",
                 "SOL_USDT-1m.feather", "XRP_USDT-1m.feather"]
#: (strategy, risk) of the default scenarios
DEFAULT_SCENARIOS: list[tuple[str, str]] = [("sma_cross", "none"), ("momentum", "default")]


def default_data_dir() -> Path:
    here = Path(__file__).resolve()
    for parent in [Path.cwd(), *here.parents]:
        if (parent / "data" / DEFAULT_FILES[0]).exists():
            return parent / "data"
    raise FileNotFoundError("bundled data/ folder not found: pass --data")


def _shown(p: Path) -> str:
    """A data path as a user would type it (relative to the working directory when inside it)."""
    try:
        return str(p.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def claire_argv() -> list[str]:
    """How to start the `claire` command of this installation."""
    exe = Path(sys.executable).with_name("claire")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "claire.cli.main"]


def backtest_argv(files: list[Path], strategy: str, risk: str, out: Path) -> list[str]:
    argv = [*claire_argv(), "backtest"]
    for p in files:
        argv += ["--data", _shown(p)]
    return [*argv, "--strategy", strategy, "--risk", risk, "--out", str(out), "--no-progress"]


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _rate(bars: int, seconds: float) -> int | None:
    return round(bars / seconds) if seconds > 0 else None


# --- imports ------------------------------------------------------------------------------


def command_imports(argv: list[str]) -> list[str]:
    """The top-level modules the command imports, in order (``python -X importtime``, the
    command started as its console script starts it)."""
    args = argv[1:] if argv[0] != sys.executable else argv[3:]  # after `claire` / `python -m claire.cli.main`
    cmd = [sys.executable, "-X", "importtime", "-c", _AS_SCRIPT, *args]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,  # noqa: S603 - our own interpreter and CLI, no shell
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    mods: list[str] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        name = line.rsplit("|", 1)[1]
        if name.startswith(" ") and not name.startswith("  "):  # top level: one space, no nesting
            name = name.strip()
            if name != "imported package" and name not in mods:
                mods.append(name)
    return mods


_AS_SCRIPT = "import sys; sys.argv[0] = 'claire'; from claire.cli.main import main; sys.exit(main())"

_IMPORT_TIMER = """
import importlib, sys, time
mods = sys.argv[1:]
t = time.perf_counter()
failed = 0
for m in mods:
    try:
        importlib.import_module(m)
    except Exception:
        failed += 1
print(time.perf_counter() - t, failed)
"""


def time_imports(mods: list[str]) -> tuple[float, int]:
    """Seconds a fresh interpreter takes to import ``mods`` (after its own start-up), failures."""
    proc = subprocess.run([sys.executable, "-c", _IMPORT_TIMER, *mods],  # noqa: S603 - our own interpreter, module names, no shell
                          capture_output=True, text=True, check=True)
    secs, failed = proc.stdout.split()
    return float(secs), int(failed)


# --- in process: load, engine, run files -----------------------------------------------------


def run_in_process(files: list[Path], strategy: str, risk: str, out: Path) -> dict[str, Any]:
    """One `claire backtest --no-progress` in this process, phase by phase: the steps of
    ``run_backtest_cli`` without a database (lean recorder, GC paused by ``run_backtest``,
    summary.json written)."""
    # start-up time: the core and its readers only for the command that runs them
    from claire.config import RunOptions, make_config
    from claire.marketdata import open_market_data
    from claire.runtime.backtest import run_backtest

    cfg = make_config(RunOptions(data=list(files), strategy=strategy, risk=risk, out=out))
    # a fresh process's collector: nothing frozen by the previous run, its garbage collected
    gc.unfreeze()
    gc.collect()
    t0 = time.perf_counter()
    data = open_market_data(cfg.data.paths, cfg.data.symbol)
    getattr(data, "count", None)
    t1 = time.perf_counter()
    result = run_backtest(cfg, events=data, forward=None, keep_events=False)
    result.summary["engine_seconds"] = round(result.seconds, 3)
    result.summary["events_per_sec"] = round(result.events / result.seconds) if result.seconds else None
    (out / "summary.json").write_text(json.dumps(result.summary, indent=2, default=str) + "\n")
    t2 = time.perf_counter()
    rec = result.recorder
    return {
        "load": t1 - t0, "engine": result.seconds, "run_files": (t2 - t1) - result.seconds, "bars": result.events,
        "signals": rec.signal_count, "orders": rec.order_count, "fills": len(rec.fills),
        "snapshots": rec.snapshot_count, "risk_events": len(rec.risk_events),
        "final_equity": str(result.portfolio.equity().quantize(Decimal("0.01"))),
    }


# --- the real command -------------------------------------------------------------------------


#: Started as ``python -S -c _LAUNCHER argv...``: runs ``argv`` once (stdout to /dev/null, stderr
#: to fd 3 of its own) and prints wall seconds, user + system CPU seconds, peak RSS in KiB and the
#: exit code of that child. A launcher of ~10 MB instead of this process: a child's ``ru_maxrss``
#: includes the pages of the process it was forked from.
_LAUNCHER = """
import os, sys, time
argv = sys.argv[1:]
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t
print(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def run_command(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB, ``ru_maxrss``) of one run of
    ``argv``, started by a small launcher process (see ``_LAUNCHER``)."""
    argv = [*argv]
    if not os.path.isabs(argv[0]):
        argv[0] = shutil.which(argv[0]) or argv[0]
    cmd = [sys.executable, "-S", "-c", _LAUNCHER, *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603 - our own interpreter and CLI, no shell
    parts = proc.stdout.split()
    if proc.returncode != 0 or len(parts) != 4 or parts[3] != "0":
        raise RuntimeError(f"{shlex.join(argv)} failed ({parts[3] if len(parts) == 4 else proc.returncode}):\n"
                           f"{proc.stderr[-2000:]}")
    return float(parts[0]), float(parts[1]), int(parts[2]) / 1024


# --- the benchmark ----------------------------------------------------------------------------


def bench_replay(files: list[Path] | None = None, strategy: str | None = None, repeat: int = 5,
                 risk: str | None = None, log: Any = None, json_out: bool = True) -> dict[str, Any]:
    """Phases of `claire backtest` per scenario (medians of ``repeat`` runs). ``strategy`` (and
    ``risk``, default: ``none`` for sma_cross, ``default`` otherwise) picks one scenario instead
    of the default two. ``log(text)`` receives progress lines; ``json_out`` only names the
    benchmark's own command line in the result."""
    paths = [Path(p) for p in files] if files else [default_data_dir() / f for f in DEFAULT_FILES]
    if strategy is not None:
        scenarios = [(strategy, risk or ("none" if strategy == "sma_cross" else "default"))]
    else:
        scenarios = [(s, risk or r) for s, r in DEFAULT_SCENARIOS]
    repeat = max(1, repeat)
    say = log or (lambda text: None)
    res: dict[str, Any] = {"bench": "replay", "files": [_shown(p) for p in paths], "repeat": repeat,
                           "statistic": "median", "python": sys.version.split()[0], "cpus": os.cpu_count(),
                           "load_avg_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="claire-bench-") as tmp:
        scen: list[dict[str, Any]] = []
        for i, (strat, rk) in enumerate(scenarios):
            argv = backtest_argv(paths, strat, rk, Path(tmp) / f"cli-{i}")
            say(f"[{strat} --risk {rk}] finding the command's imports: python -X importtime ...")
            scen.append({"name": f"{strat} --risk {rk}", "strategy": strat, "risk": rk, "argv": argv,
                         "modules": command_imports(argv), "runs": {k: [] for k in
                         ("imports", "load", "engine", "run_files", "process", "process_cpu", "max_rss_mb",
                          "command_engine")}})
        # what the command imports is timed on its own (a fresh interpreter): here it is imported
        # before the clock runs, so that no phase in this process pays for a first import
        for sc in scen:
            for m in sc["modules"]:
                try:
                    importlib.import_module(m)
                except Exception:  # noqa: S112 - counted by the imports phase (import_failures)
                    continue
        for r in range(repeat):  # the scenarios alternate, run after run
            for i, sc in enumerate(scen):
                say(f"run {r + 1}/{repeat} {sc['name']}")
                secs, failed = time_imports(sc["modules"])
                sc["runs"]["imports"].append(secs)
                sc["import_failures"] = failed
                one = run_in_process(paths, sc["strategy"], sc["risk"], Path(tmp) / f"inproc-{i}")
                for k in ("load", "engine", "run_files"):
                    sc["runs"][k].append(one.pop(k))
                sc["result"] = one
                wall, cpu, rss = run_command(sc["argv"])
                sc["runs"]["process"].append(wall)
                sc["runs"]["process_cpu"].append(cpu)
                sc["runs"]["max_rss_mb"].append(rss)
                # the engine time the command itself measured (its summary.json): a cross-check
                summary = json.loads((Path(sc["argv"][sc["argv"].index("--out") + 1]) / "summary.json").read_text())
                sc["runs"]["command_engine"].append(float(summary.get("engine_seconds") or 0.0))
        out = []
        for sc in scen:
            runs = sc["runs"]
            bars = sc["result"]["bars"]
            med = {k: _median(v) for k, v in runs.items()}
            phases = {k: {"seconds": round(med[k], 4), "bars_per_sec": _rate(bars, med[k]),
                          "runs": [round(x, 4) for x in runs[k]]}
                      for k in ("imports", "load", "engine", "run_files")}
            measured = sum(med[k] for k in ("imports", "load", "engine", "run_files"))
            out.append({
                "scenario": sc["name"],
                "command": shlex.join(sc["argv"]),
                "bars": bars,
                "phases": phases,
                "process": {"seconds": round(med["process"], 4), "bars_per_sec": _rate(bars, med["process"]),
                            "runs": [round(x, 4) for x in runs["process"]],
                            # user + system CPU of the command (less load-dependent than the wall)
                            "cpu_seconds": round(med["process_cpu"], 4),
                            "cpu_runs": [round(x, 4) for x in runs["process_cpu"]],
                            # interpreter start-up, argument parsing, summary, output: the rest of the
                            # wall clock (medians of different runs: it can come out < 0 under load)
                            "other_seconds": round(med["process"] - measured, 4),
                            # `engine_seconds` of the command's own summary.json
                            "engine_seconds": round(med["command_engine"], 4),
                            "engine_bars_per_sec": _rate(bars, med["command_engine"]),
                            "engine_runs": [round(x, 4) for x in runs["command_engine"]]},
                "max_rss_mb": {"median": round(med["max_rss_mb"], 1), "max": round(max(runs["max_rss_mb"]), 1),
                               "runs": [round(x, 1) for x in runs["max_rss_mb"]]},
                "imported_modules": len(sc["modules"]),
                "import_failures": sc["import_failures"],
                "in_process": "make_config + open_market_data + run_backtest(keep_events=False), GC paused by "
                              "run_backtest, summary.json (what `claire backtest --no-progress` runs)",
                **sc["result"],
            })
    res["scenarios"] = out
    res["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    res["command"] = "claire bench replay" + (f" --strategy {strategy}" if strategy else "") + (
        f" --risk {risk}" if risk else "") + f" --repeat {repeat}" + (" --json" if json_out else "")
    return res


def format_report(res: dict[str, Any]) -> str:
    """The figures as text, with the command lines they come from."""
    lines = [f"claire bench replay: median of {res['repeat']} runs, python {res['python']}, {res['cpus']} cpus, "
             f"load avg {res['load_avg_before']} -> {res['load_avg_after']}"]
    for sc in res["scenarios"]:
        lines.append("")
        lines.append(f"{sc['scenario']}: {sc['bars']:,} bars, {sc['signals']:,} signals, {sc['orders']:,} orders, "
                     f"{sc['fills']:,} fills, {sc['snapshots']:,} snapshots, final equity {sc['final_equity']}")
        lines.append(f"  measured command: {sc['command']}")
        for name, ph in sc["phases"].items():
            lines.append(f"  {name:<10} {ph['seconds']:8.3f} s  {ph['bars_per_sec'] or 0:>12,} bars/s")
        pr = sc["process"]
        lines.append(f"  {'process':<10} {pr['seconds']:8.3f} s  {pr['bars_per_sec'] or 0:>12,} bars/s  "
                     f"(wall clock of the command; start-up and output {pr['other_seconds']:.3f} s; "
                     f"CPU {pr['cpu_seconds']:.3f} s)")
        lines.append(f"  {'':<10} {pr['engine_seconds']:8.3f} s  {pr['engine_bars_per_sec'] or 0:>12,} bars/s  "
                     "(engine, as the command reports it: engine_seconds of its summary.json)")
        lines.append(f"  peak memory {sc['max_rss_mb']['median']} MB (max {sc['max_rss_mb']['max']} MB, ru_maxrss of the "
                     "command started from a small launcher)")
    lines.append("")
    lines.append(f"this benchmark: {res['command']}")
    return "\n".join(lines)
