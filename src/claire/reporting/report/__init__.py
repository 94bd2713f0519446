"""The final report of a run (A4): verdict, confidence, charts, tables, in one HTML file.

:func:`render_report` makes it from a :class:`RunData` (from the run files:
:func:`load_run_files`; from the database: ``claire.runtime.report``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from claire.reporting.report.charts import write_charts
from claire.reporting.report.figures import Report, build
from claire.reporting.report.html import SECTIONS, render_html
from claire.reporting.report.load import NotARunDir, load_run_files
from claire.reporting.report.model import RunData
from claire.reporting.verdict import Verdict, VerdictThresholds

__all__ = ["SECTIONS", "NotARunDir", "Rendered", "Report", "RunData", "build", "load_run_files", "render_report"]


@dataclass(frozen=True)
class Rendered:
    html: Path
    pngs: list[Path]
    verdict: Verdict
    report: Report


def render_report(data: RunData, out_dir: Path, thresholds: VerdictThresholds | None = None) -> Rendered:
    """``out_dir/report.html`` (self-contained) and the PNGs in ``out_dir/report/``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rep = build(data, thresholds)
    pngs = write_charts(rep, out_dir / "report")
    html = out_dir / "report.html"
    html.write_text(render_html(rep, pngs), encoding="utf-8")
    return Rendered(html=html, pngs=list(pngs.values()), verdict=rep.verdict, report=rep)
