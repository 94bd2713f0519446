"""Container deployment: deploy/compose.yaml, the Dockerfile and .dockerignore (REQUIREMENTS O1, O4,
security).

* The compose file is read with PyYAML (merge keys resolved) and checked statically: the seed's
  containers, their ports and commands, health checks on every container, ``depends_on`` with
  ``service_healthy`` in the start order of the runtime (consumers first), volumes, one bridge
  network, Redis with AOF (``appendfsync always``) and ``requirepass``, and no secret value
  anywhere (every password is a ``${VAR:?...}`` reference, no URL carries credentials).
* A real compose client (``docker compose``; else Debian's/PyPI's ``docker-compose``, which
  ``make test`` installs) runs ``config``: it must accept the file with dummy credentials and
  resolve the same services, conditions, health checks, start order and volumes (Prometheus and
  Grafana with deploy/prometheus and deploy/grafana mounted); without the credentials it must
  refuse to start. No docker engine is needed for that. Without a client the tests fail (never skip).
* Prometheus' configuration lives in deploy/prometheus/ (prometheus.yml, rules/), Grafana's
  provisioning and dashboards in deploy/grafana/ (tests/observability checks their content).
* The Dockerfile: python:3.11-slim, a non-root USER in the final stage, entrypoint ``claire``, no
  ENV/ARG that holds a secret; .dockerignore keeps .env, .venv, .git and data out of the context.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

INFRA = {"cdb_postgres", "cdb_redis"}
MONITORING = {"cdb_prometheus", "cdb_grafana"}
# container -> (claire service, port) (seed 003, section 3)
CLAIRE = {
    "cdb_ws": ("marketdata", 8000),
    "cdb_core": ("signal", 8001),
    "cdb_risk": ("risk", 8002),
    "cdb_execution": ("execution", 8003),
    "cdb_portfolio": ("portfolio", 8004),
    "cdb_db_writer": ("writer", 8005),
}
# every claire service waits for the infrastructure; producers wait for their consumers
DEPENDS = {
    "cdb_db_writer": INFRA,
    "cdb_portfolio": INFRA,
    "cdb_execution": INFRA | {"cdb_portfolio", "cdb_db_writer"},
    "cdb_risk": INFRA | {"cdb_execution"},
    "cdb_core": INFRA | {"cdb_risk"},
    "cdb_ws": INFRA | {"cdb_core"},
    "cdb_grafana": {"cdb_prometheus"},
}
VOLUMES = {"postgres_data", "redis_data", "claire_logs"}
REQUIRED_SECRETS = {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}
DUMMY = {name: f"dummy-{name.lower().replace('_', '-')}" for name in REQUIRED_SECRETS}

SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|REDISCLI_AUTH|CREDENTIAL)", re.I)
VAR_REF = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(?::?[?][^}]*)?\}$")  # ${VAR} or ${VAR:?message}
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.I)


# --- helpers -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _scalars(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every scalar of the document with its path (dict keys included as their own entries)."""
    out: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((f"{path}/<key>", str(k)))
            out += _scalars(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _scalars(v, f"{path}[{i}]")
    elif node is not None:
        out.append((path, str(node)))
    return out


def _values_text(compose: dict[str, Any]) -> str:
    """Every value of the document (comments left out), one per line."""
    return "\n".join(v for _, v in _scalars(compose))


def _without_refs(value: str) -> str:
    """``${VAR}``/``${VAR:-default}`` replaced by a token, so that their ':' cannot look like user:password."""
    return re.sub(r"\$\{[^}]*\}", "X", value)


def _env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def _depends(svc: dict[str, Any]) -> dict[str, str]:
    dep = svc.get("depends_on") or {}
    if isinstance(dep, list):
        return {d: "service_started" for d in dep}
    return {k: (v or {}).get("condition", "service_started") for k, v in dep.items()}


def _command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def _health_text(svc: dict[str, Any]) -> str:
    test = (svc.get("healthcheck") or {}).get("test")
    return " ".join(test) if isinstance(test, list) else str(test or "")


def _mounts(svc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each volume entry, short or long syntax."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            out.append((str(v.get("source", "")), str(v.get("target", "")), "ro" if v.get("read_only") else "rw"))
        else:
            parts = str(v).split(":")
            # a source may itself hold ${VAR:-default}; split from the right
            if len(parts) >= 3 and parts[-1] in ("ro", "rw", "z", "Z"):
                out.append((":".join(parts[:-2]), parts[-2], parts[-1]))
            else:
                out.append((":".join(parts[:-1]), parts[-1], "rw"))
    return out


# --- compose.yaml, statically ------------------------------------------------------------------

def test_services_of_the_seed(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == INFRA | set(CLAIRE) | MONITORING
    for name, svc in services.items():
        assert svc.get("container_name") == name, f"{name}: container_name (the host name on the network)"
        assert svc.get("networks") == ["claire_network"], f"{name}: on claire_network"
        assert svc.get("restart") == "unless-stopped", f"{name}: restart unless-stopped"
        if name in MONITORING:
            assert svc.get("profiles") == ["monitoring"], f"{name}: only with --profile monitoring"
        else:
            assert not svc.get("profiles"), f"{name} must start without a profile"
    assert compose["networks"] == {"claire_network": {"driver": "bridge"}}


def test_claire_services_commands_ports_health(compose: dict[str, Any]) -> None:
    for name, (service, port) in CLAIRE.items():
        svc = compose["services"][name]
        cmd = _command(svc)
        assert cmd[:2] == ["service", service], f"{name}: {cmd}"
        assert cmd[cmd.index("--spec") + 1] == "/etc/claire/spec.json", name
        assert cmd[cmd.index("--port") + 1] == str(port), name
        assert f"127.0.0.1:{port}:{port}" in [str(p) for p in svc.get("ports", [])], f"{name}: port {port}"
        health = _health_text(svc)
        assert health.startswith("CMD python -c") and "urllib" in health, f"{name}: {health}"
        assert f"http://127.0.0.1:{port}/health" in health, f"{name}: {health}"
        hc = svc["healthcheck"]
        assert hc.get("interval") and hc.get("timeout") and hc.get("retries"), name
        mounts = {t: (s, m) for s, t, m in _mounts(svc)}
        assert mounts.get("/etc/claire/spec.json", ("", ""))[1] == "ro", f"{name}: spec mounted read-only"
        assert "spec.json" in mounts["/etc/claire/spec.json"][0]
        assert mounts.get("/var/log/claire", ("",))[0] == "claire_logs", f"{name}: logs volume"
        env = _env(svc)
        assert env["CLAIRE_REDIS_URL"].startswith("redis://cdb_redis:6379"), name
        assert "@cdb_postgres:5432/" in env["CLAIRE_DATABASE_URL"], name
        assert env["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?"), name
        assert env["PGPASSWORD"].startswith("${POSTGRES_PASSWORD:?"), name
        assert svc.get("image") and svc.get("build", {}).get("dockerfile") == "Dockerfile", name
    mounts = {t: s for s, t, _ in _mounts(compose["services"]["cdb_ws"])}
    assert "/data" in mounts, "cdb_ws replays market data files mounted at /data"


def test_every_container_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        hc = svc.get("healthcheck") or {}
        assert hc.get("test") and not hc.get("disable"), f"{name} has no health check"


def test_depends_on_service_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, expected in DEPENDS.items():
        dep = _depends(services[name])
        assert set(dep) == expected, f"{name}: depends_on {sorted(dep)}, expected {sorted(expected)}"
        assert set(dep.values()) == {"service_healthy"}, f"{name}: {dep}"
    for name in INFRA | {"cdb_prometheus"}:
        assert not services[name].get("depends_on"), f"{name} is level 1 (no dependency)"


def test_start_order_has_no_cycle_and_market_data_last(compose: dict[str, Any]) -> None:
    services = compose["services"]
    order: list[str] = []
    pending = {n: set(_depends(s)) for n, s in services.items()}
    while pending:
        ready = sorted(n for n, deps in pending.items() if deps <= set(order))
        assert ready, f"dependency cycle among {sorted(pending)}"
        order += ready
        for n in ready:
            del pending[n]
    claire_order = [n for n in order if n in CLAIRE]
    assert claire_order[-1] == "cdb_ws", claire_order
    assert claire_order.index("cdb_core") > claire_order.index("cdb_risk") > claire_order.index("cdb_execution")
    assert claire_order.index("cdb_execution") > max(claire_order.index("cdb_portfolio"),
                                                     claire_order.index("cdb_db_writer"))


def test_postgres(compose: dict[str, Any]) -> None:
    pg = compose["services"]["cdb_postgres"]
    assert pg["image"] == "postgres:15"
    assert "pg_isready" in _health_text(pg)
    assert ("postgres_data", "/var/lib/postgresql/data") in [(s, t) for s, t, _ in _mounts(pg)]
    assert "127.0.0.1:" in str(pg["ports"][0]) and str(pg["ports"][0]).endswith(":5432")
    env = _env(pg)
    assert env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_redis_persistent_and_authenticated(compose: dict[str, Any]) -> None:
    r = compose["services"]["cdb_redis"]
    assert r["image"] == "redis:7"
    cmd = _command(r)
    assert cmd[0] == "redis-server", "the image's entrypoint drops root only for redis-server"
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--appendfsync") + 1] == "always"
    assert cmd[cmd.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    health = _health_text(r)
    assert "redis-cli" in health and "ping" in health and "PONG" in health
    assert "-a " not in health, "the password goes through REDISCLI_AUTH, not the command line"
    assert _env(r)["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD")
    assert ("redis_data", "/data") in [(s, t) for s, t, _ in _mounts(r)]


def test_named_volumes(compose: dict[str, Any]) -> None:
    assert set(compose["volumes"]) >= VOLUMES
    used = {s for svc in compose["services"].values() for s, _, _ in _mounts(svc) if not s.startswith((".", "/", "$"))}
    assert used <= set(compose["volumes"]), f"undeclared volumes: {used - set(compose['volumes'])}"


def test_no_secret_values(compose: dict[str, Any]) -> None:
    text = _values_text(compose)
    for path, value in _scalars(compose):
        assert not URL_WITH_PASSWORD.search(_without_refs(value)), f"{path}: URL with a password: {value}"
    for name, svc in compose["services"].items():
        for key, value in _env(svc).items():
            if SECRET_NAME.search(key):
                assert VAR_REF.match(value), f"{name}: {key} must be ${{VAR:?message}}, not a value"
        cmd = _command(svc)
        for flag in ("--requirepass", "--masterauth", "-a"):
            if flag in cmd:
                assert VAR_REF.match(cmd[cmd.index(flag) + 1]), f"{name}: {flag} takes a literal"
    # every secret is mandatory (compose stops with a message), never defaulted
    for var in REQUIRED_SECRETS:
        refs = re.findall(r"\$\{" + var + r"([^}]*)\}", text)
        assert refs, f"{var} is not used"
        assert all(r.startswith(":?") for r in refs), f"{var}: ${{{var}{refs[0]}}} must be ${{{var}:?message}}"
    assert not re.search(r"\$\{[A-Z_]*(PASSWORD|SECRET|TOKEN)[A-Z_]*:-[^}]+\}", text), "a secret with a default"


def test_env_example_has_placeholders_only(compose: dict[str, Any]) -> None:
    example = DEPLOY / ".env.example"
    values = {}
    for line in example.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            values[k.strip()] = v.strip()
    text = _values_text(compose)
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    mandatory = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", text))
    assert mandatory <= set(values), f"not in .env.example: {sorted(mandatory - set(values))}"
    assert set(values) - {"COMPOSE_PROJECT_NAME"} <= used, "a variable compose does not use"
    for k, v in values.items():
        if SECRET_NAME.search(k):
            assert re.fullmatch(r"<[a-z0-9 -]+>", v), f"{k}={v!r} must be a <placeholder>"
    ignore = (DEPLOY / ".gitignore").read_text().split()
    assert ".env" in ignore and "spec.json" in ignore


def test_prometheus_scrapes_every_service() -> None:
    assert not (DEPLOY / "prometheus.yml").exists(), "moved to deploy/prometheus/prometheus.yml"
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    claire = jobs["claire"]
    targets = {t: sc.get("labels", {}).get("service") for sc in claire["static_configs"] for t in sc["targets"]}
    assert {f"{name}:{port}": service for name, (service, port) in CLAIRE.items()} == targets
    assert claire.get("honor_labels") is True, "the components' own service label (signal-N) must win"
    assert prom["rule_files"] == ["rules/*.yml"]
    assert list((DEPLOY / "prometheus" / "rules").glob("*.yml")), "no rule file"


# mounts of the monitoring containers: (source under deploy/, target, mode)
MONITORING_MOUNTS = {
    "cdb_prometheus": {("./prometheus", "/etc/prometheus", "ro"), ("prometheus_data", "/prometheus", "rw")},
    "cdb_grafana": {("./grafana/provisioning", "/etc/grafana/provisioning", "ro"),
                    ("./grafana/dashboards", "/etc/grafana/dashboards", "ro"), ("grafana_data", "/var/lib/grafana", "rw")},
}


def test_monitoring_mounts_the_deploy_files(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, expected in MONITORING_MOUNTS.items():
        assert set(_mounts(services[name])) == expected, f"{name}: {_mounts(services[name])}"
        for source, _, _ in expected:
            if source.startswith("./"):
                assert (DEPLOY / source).is_dir(), f"{name} mounts {source}, which does not exist"
    prom_cmd = _command(services["cdb_prometheus"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom_cmd
    assert services["cdb_prometheus"]["image"].startswith("prom/prometheus:")
    assert services["cdb_grafana"]["image"].startswith("grafana/grafana:")


# --- docker compose config ---------------------------------------------------------------------

def _compose_cmd() -> list[str]:
    """The compose client; a test without one fails, naming what to install."""
    cmd = _find_compose()
    if cmd is None:
        pytest.fail("no compose client: neither `docker compose` (the compose plugin) nor `docker-compose` works; "
                    "install Debian's docker-compose (`apt-get install docker-compose`, as `make test` does) "
                    "or `pip install docker-compose`")
    return cmd


def _find_compose() -> list[str] | None:
    if shutil.which("docker"):
        try:
            if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
                return ["docker", "compose"]
        except (OSError, subprocess.TimeoutExpired):
            pass
    if shutil.which("docker-compose"):
        try:
            if subprocess.run(["docker-compose", "version"], capture_output=True, timeout=30).returncode == 0:
                return ["docker-compose"]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def _run_config(cmd: list[str], env_extra: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **env_extra}
    if "DOCKER_CONFIG" in os.environ:
        env["DOCKER_CONFIG"] = os.environ["DOCKER_CONFIG"]
    # --env-file: an empty file, so a developer's deploy/.env cannot fill in what is missing
    empty = tmp_path / "empty.env"
    empty.write_text("")
    return subprocess.run([*cmd, "--env-file", str(empty), "-f", str(COMPOSE), "--profile", "monitoring", "config"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=str(ROOT))


def test_docker_compose_config(tmp_path: Path) -> None:
    cmd = _compose_cmd()
    res = _run_config(cmd, DUMMY, tmp_path)
    assert res.returncode == 0, f"{' '.join(cmd)} config failed:\n{res.stderr}"
    cfg = yaml.safe_load(res.stdout)
    services = cfg["services"]
    assert set(services) == INFRA | set(CLAIRE) | MONITORING
    for name, svc in services.items():
        assert _health_text(svc), f"{name}: no health check after config"
    for name, expected in DEPENDS.items():
        dep = _depends(services[name])
        assert set(dep) == expected and set(dep.values()) == {"service_healthy"}, f"{name}: {dep}"
    assert set(cfg["volumes"]) >= VOLUMES
    assert "claire_network" in cfg["networks"]
    # the dummy credentials arrive where they belong, interpolated
    redis_cmd = _command(services["cdb_redis"])
    assert redis_cmd[redis_cmd.index("--requirepass") + 1] == DUMMY["REDIS_PASSWORD"]
    assert _env(services["cdb_core"])["REDIS_PASSWORD"] == DUMMY["REDIS_PASSWORD"]
    assert _env(services["cdb_db_writer"])["PGPASSWORD"] == DUMMY["POSTGRES_PASSWORD"]
    assert _env(services["cdb_postgres"])["POSTGRES_PASSWORD"] == DUMMY["POSTGRES_PASSWORD"]
    for name in CLAIRE:
        assert _command(services[name])[0] == "service"
        targets = [t for _, t, _ in _mounts(services[name])]
        assert "/etc/claire/spec.json" in targets
        assert "/health" in _health_text(services[name]), name
    # the start order as the client resolves it: market data last, consumers before producers
    order, pending = [], {n: set(_depends(s)) for n, s in services.items()}
    while pending:
        ready = sorted(n for n, deps in pending.items() if deps <= set(order))
        assert ready, f"dependency cycle among {sorted(pending)}"
        order += ready
        pending = {n: d for n, d in pending.items() if n not in ready}
    claire_order = [n for n in order if n in CLAIRE]
    assert claire_order[-1] == "cdb_ws" and claire_order.index("cdb_core") > claire_order.index("cdb_risk")
    # Prometheus and Grafana get the deploy files, resolved to absolute paths, read-only
    for name, expected in MONITORING_MOUNTS.items():
        got = {(s, t, m) for s, t, m in _mounts(services[name])}
        want = {(str((DEPLOY / s).resolve()) if s.startswith("./") else s, t, m) for s, t, m in expected}
        assert want <= got, f"{name}: {sorted(got)}"
    assert _health_text(services["cdb_prometheus"]).endswith("/-/healthy")


def test_docker_compose_config_refuses_missing_secrets(tmp_path: Path) -> None:
    cmd = _compose_cmd()
    for missing in sorted(REQUIRED_SECRETS):
        env = {k: v for k, v in DUMMY.items() if k != missing}
        res = _run_config(cmd, env, tmp_path)
        assert res.returncode != 0, f"config accepted a missing {missing}"
        assert f"set {missing}" in res.stderr, res.stderr


# --- Dockerfile and .dockerignore --------------------------------------------------------------

def _instructions() -> list[tuple[str, str]]:
    lines, buf = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        op, _, rest = buf.partition(" ")
        lines.append((op.upper(), rest.strip()))
        buf = ""
    return lines


def test_dockerfile_base_user_entrypoint() -> None:
    ins = _instructions()
    args = dict(re.findall(r"^([A-Z_]+)=(\S+)$", "\n".join(r for op, r in ins if op == "ARG"), re.M))
    froms = [r.split()[0] for op, r in ins if op == "FROM"]
    resolved = [re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: args.get(m.group(1), m.group(0)), f) for f in froms]
    assert resolved and all(f == "python:3.11-slim" for f in resolved), resolved
    last_from = max(i for i, (op, _) in enumerate(ins) if op == "FROM")
    final = ins[last_from:]
    users = [r for op, r in final if op == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]} is root"
    entry = [r for op, r in final if op == "ENTRYPOINT"]
    assert entry and entry[-1].replace(" ", "") == '["claire"]'


def test_dockerfile_has_no_secret() -> None:
    for op, rest in _instructions():
        if op in ("ENV", "ARG", "LABEL"):
            for key in re.findall(r"([A-Za-z_][A-Za-z0-9_.]*)=", rest) + rest.split()[:1]:
                assert not SECRET_NAME.search(key), f"{op} {rest}: a secret does not belong in the image"
        assert not URL_WITH_PASSWORD.search(rest), f"{op} {rest}: URL with credentials"
    text = DOCKERFILE.read_text()
    assert not re.search(r"COPY[^\n]*\.env\b", text), "never copy .env into the image"


def test_dockerignore_keeps_secrets_and_bulk_out() -> None:
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    allowlist = patterns[0] in ("**", "*")
    for path in (".env", "deploy/.env", ".venv", ".git", "data", "runs", "tests"):
        if allowlist:
            reincluded = [p for p in patterns[1:] if p.startswith("!") and
                          (path == p[1:].rstrip("/") or path.startswith(p[1:].rstrip("/") + "/"))]
            assert not reincluded, f"{path} re-included by {reincluded}"
        else:
            assert any(p.rstrip("/") in (path, "**/" + path.rsplit("/", 1)[-1]) for p in patterns), f"{path} not ignored"
    if allowlist:
        assert {"!src", "!pyproject.toml", "!README.md"} <= {p.rstrip("/") for p in patterns}
