"""Run results: round trips, statistics, run files."""

from claire.reporting.recorder import Recorder, RoundTrip
from claire.reporting.stats import summarize

__all__ = ["Recorder", "RoundTrip", "summarize"]
