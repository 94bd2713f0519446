# syntax=docker/dockerfile:1
# Claire de Binare: one image for every service of the distributed runtime.
#   docker build -t claire:latest .
#   docker run --rm claire:latest --help
#   docker run --rm claire:latest service risk --spec /etc/claire/spec.json
# No secret is baked in: Redis/PostgreSQL credentials come from the environment at run time
# (REDIS_PASSWORD, PGPASSWORD / CLAIRE_DATABASE_URL), see deploy/compose.yaml and deploy/.env.example.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtualenv with the dependencies, then the package --------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/claire
WORKDIR /src
# dependencies first (their own layer: rebuilt only when pyproject.toml changes)
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && /opt/claire/bin/pip install -r /tmp/requirements.txt
# then the package itself (no dependency resolution again)
COPY README.md ./
COPY src ./src
RUN /opt/claire/bin/pip install --no-deps . \
 && /opt/claire/bin/python -c "import claire.cli.main, claire.runtime.distributed.app, claire.storage"

# --- runtime: the virtualenv only, a non-root user ------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="claire" \
      org.opencontainers.image.description="Claire de Binare: event-driven crypto paper trading (distributed runtime)"
ENV PATH=/opt/claire/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TZ=UTC
RUN groupadd --system --gid 10001 claire \
 && useradd --system --uid 10001 --gid claire --home-dir /home/claire --create-home --shell /usr/sbin/nologin claire \
 && mkdir -p /etc/claire /var/log/claire /data \
 && chown claire:claire /var/log/claire
COPY --from=build /opt/claire /opt/claire
WORKDIR /home/claire
USER 10001:10001
# /health, /ready, /metrics of marketdata, signal, risk, execution, portfolio, writer
EXPOSE 8000 8001 8002 8003 8004 8005
STOPSIGNAL SIGTERM
ENTRYPOINT ["claire"]
CMD ["--help"]
