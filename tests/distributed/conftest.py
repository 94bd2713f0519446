"""Fixtures of the distributed-runtime acceptance tests.

Every run gets its own state directory, Redis key prefix and PostgreSQL database; whatever a test
starts (service processes, keys) is stopped / deleted at teardown even when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN_URL, _pg_admin
from tests.distributed import _dist


class Cleanup:
    def __init__(self) -> None:
        self.state_dirs: list[Path] = []
        self.prefixes: list[tuple[str, str]] = []

    def services(self, state_dir: Path) -> Path:
        self.state_dirs.append(state_dir)
        return state_dir

    def keys(self, url: str, prefix: str) -> None:
        self.prefixes.append((url, prefix))

    def keys_of(self, state_dir: Path) -> None:
        """The prefix of a `claire up` run (derived from the run spec) from its spec.json."""
        spec = json.loads((state_dir / "spec.json").read_text())
        self.keys(spec["runtime"]["bus_url"], spec["runtime"]["prefix"])

    def run(self) -> None:
        for d in self.state_dirs:
            if (d / "pids.json").exists():
                _dist.stop_all(d)
            if (d / "spec.json").exists():
                spec = json.loads((d / "spec.json").read_text())
                self.prefixes.append((spec["runtime"]["bus_url"], spec["runtime"]["prefix"]))
        for url, prefix in dict.fromkeys(self.prefixes):
            with contextlib.suppress(Exception):  # a private Redis that is already gone
                _dist.delete_prefix(url, prefix)


@pytest.fixture()
def cleanup():
    c = Cleanup()
    yield c
    c.run()


@pytest.fixture(scope="module")
def cleanup_module():
    c = Cleanup()
    yield c
    c.run()


@pytest.fixture(scope="module")
def pg_database_module(run_token: str):
    """Like ``pg_database`` (a fresh PostgreSQL database, a SQLAlchemy URL) for a module's shared runs."""
    made: list[str] = []

    def make() -> str:
        name = f"claire_test_{run_token}_{uuid.uuid4().hex[:6]}"
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"

    yield make
    with _pg_admin() as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Keep ``xdist_group`` working under ``--dist loadgroup`` with pytest >= 9.

    pytest-xdist groups tests by an ``@group`` suffix it appends to ``item._nodeid``; pytest 9
    derives ``nodeid`` from ``item._id`` instead, so the suffix is lost and the tests of this
    folder (which share fixed ports, module fixtures and two CPU cores) would be spread over the
    workers. Only the items of this folder are touched.
    """
    if getattr(config.option, "dist", None) != "loadgroup" and not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # pytest < 9: xdist's own suffix works
        return
    here = Path(__file__).parent
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark is None or "@" in item.nodeid.rsplit("]", 1)[-1] or here not in Path(item.path).parents:
            continue
        if not hasattr(item, "_id"):
            return
        name = mark.args[0] if mark.args else mark.kwargs.get("name", "default")
        item._id = NodeId.parse(f"{item.nodeid}@{name}")
