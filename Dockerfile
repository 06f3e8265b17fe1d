# syntax=docker/dockerfile:1
#
# opsbot container image.
#
#   docker build -t opsbot .
#   docker build -t opsbot --build-arg WITH_DOCKER_CLI=1 .   # for the Docker Compose deploy target
#
#   docker run --rm -p 3000:3000 --env-file .env \
#     -v "$PWD/opsbot.yml:/app/opsbot.yml:ro" opsbot
#
# The image runs `opsbot run` as an unprivileged user (uid 10001) from /app, so the default catalog
# path (OPSBOT_CONFIG=opsbot.yml) and the default SQLite database (opsbot.db) resolve under /app.
# Use PostgreSQL (DATABASE_URL=postgresql+asyncpg://...) for anything beyond a trial.

# python:3.11-slim, pinned to its Debian release (13, trixie) so that the optional docker-cli and
# docker-compose packages below exist (Debian 12 has neither docker-cli nor Compose v2).
ARG PYTHON_IMAGE=python:3.11-slim-trixie

# ---- build: install opsbot and its dependencies into a virtualenv -------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
# constraints.txt pins every package (pip and setuptools too) to the versions CI tested and
# `make audit` checks; the base image's own pip and setuptools are replaced by those.
COPY constraints.txt ./
RUN pip install -c constraints.txt --upgrade pip setuptools
# Only what `pip install .` needs, so edits to tests or docs do not invalidate this layer.
COPY pyproject.toml README.md ./
COPY bot/ bot/
COPY handlers/ handlers/
COPY playbooks/ playbooks/
RUN pip install -c constraints.txt .

# ---- runtime -------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# The Docker Compose deploy target runs `docker compose` (an argument list, never a shell string),
# so it needs the docker CLI and its compose plugin in the image, plus the host's Docker socket
# mounted (-v /var/run/docker.sock:/var/run/docker.sock --group-add <socket gid>). The Kubernetes
# and Lambda targets do not, so it is off by default to keep the image lean.
ARG WITH_DOCKER_CLI=0
RUN if [ "${WITH_DOCKER_CLI}" = "1" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends docker-cli docker-compose \
        && rm -rf /var/lib/apt/lists/* \
        && docker compose version; \
    fi

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH="/opt/venv/bin:${PATH}"

# A numeric uid/gid so Kubernetes' runAsNonRoot can verify the user without reading /etc/passwd.
RUN groupadd --system --gid 10001 opsbot \
    && useradd --system --uid 10001 --gid opsbot --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin opsbot

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# Playbooks are data, not a Python package, so `pip install .` does not carry them: ship them here.
COPY --chown=10001:10001 playbooks/ /app/playbooks/
RUN chown 10001:10001 /app

USER 10001:10001

# HTTP mode: Slack's requests arrive at /slack/events. Both modes serve /healthz, /readyz, /metrics.
EXPOSE 3000

# Uses Python rather than curl (not in the slim image). Honours PORT if the operator changed it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; \
        port = os.environ.get('PORT', '3000'); \
        urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)" || exit 1

ENTRYPOINT ["opsbot"]
CMD ["run"]
