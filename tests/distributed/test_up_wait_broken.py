"""`claire up --wait` stops waiting at once when the run can no longer finish (not at its timeout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from claire.runtime.distributed.report import broken_run


def _state(tmp_path, **fields):
    (tmp_path / "supervisor.json").write_text(json.dumps(fields))
    return tmp_path


def test_a_healthy_run_is_not_broken(tmp_path):
    assert broken_run(None) is None
    assert broken_run(tmp_path) is None  # no supervisor state yet
    st = _state(tmp_path, pid=os.getpid(), state="running",
                components={"signal": {"gave_up": False, "restarts": 2}})
    assert broken_run(st) is None


def test_a_component_given_up_breaks_the_run(tmp_path):
    st = _state(tmp_path, pid=os.getpid(), state="running",
                components={"risk": {"gave_up": False}, "signal": {"gave_up": True, "reason": "killed by SIGKILL"}})
    assert broken_run(st) == "signal keeps crashing and was given up (killed by SIGKILL)"


def test_a_dead_or_failed_supervisor_breaks_the_run(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert broken_run(_state(tmp_path, pid=dead.pid, state="running")) == f"the supervisor (pid {dead.pid}) is gone"
    assert broken_run(_state(tmp_path, pid=os.getpid(), state="failed", error="writer: database")) == \
        "the supervisor failed: writer: database"
