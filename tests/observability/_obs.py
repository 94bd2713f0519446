"""Helpers of the observability tests: metric names of an exposition, PromQL metric names, the
deploy files, free ports, the distributed services' registries."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
RULES = PROM_DIR / "rules" / "claire.rules.yml"
RULE_TESTS = PROM_DIR / "tests" / "claire.rules.test.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"

#: series Prometheus makes itself (not exported by a component)
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

_SUFFIXES = {"histogram": ("_bucket", "_count", "_sum", "_created"), "summary": ("_count", "_sum", "_created"),
             "counter": ("", "_created"), "gauge": ("",), "untyped": ("",), "info": ("",)}




def exposed_names(text: str) -> set[str]:
    """Every sample name of a Prometheus text exposition, also of families without samples yet
    (a labelled counter nobody incremented: named by its # TYPE line)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            base = name[:-6] if kind == "counter" and name.endswith("_total") else name
            for suffix in _SUFFIXES.get(kind, ("",)):
                names.add(base + ("_total" if kind == "counter" and suffix == "" and name.endswith("_total") else suffix))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


_KEYWORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool",
             "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, label names and values,
    durations and numbers left out)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)  # label lists
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) of every panel query of the provisioned dashboards."""
    import json

    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dash = json.loads(path.read_text())
        panels = list(dash["panels"])
        while panels:
            p = panels.pop(0)
            panels += p.get("panels", [])
            for t in p.get("targets", []):
                out.append((path.name, p["title"], t["expr"]))
    return out


def rules() -> list[dict[str, Any]]:
    """Every alert rule of the rules file."""
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
