# syntax=docker/dockerfile:1
#
# digest's weekly scheduler in a container.
#
#   docker build -t digest .
#   docker run -d --name digest --env-file digest.env \
#     -v "$PWD/config:/config:ro" -v digest-data:/data digest
#
# The config is mounted at /config (DIGEST_CONFIG points at /config/config.toml) and must set
# `[store] data_dir = "/data"`; /data holds the SQLite database, the feed cache and the outbox.
# Secrets (DIGEST_SECRET, SENDGRID_API_KEY, DIGEST_DATABASE_URL, ...) come from the environment
# at run time, never from this file. See deploy/README-deployment.md.

# --- build: the project's wheel and wheels of all its dependencies -------------------------------
# Every dependency is published as a wheel for CPython 3.11 on manylinux (psycopg[binary],
# pydantic-core, lxml, nh3, ...), so no compiler is needed; building here keeps pip's build
# backend and caches out of the image that runs.
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# README.md is the package's long description; templates/email is force-included in the wheel.
COPY pyproject.toml README.md ./
COPY templates ./templates
COPY src ./src
RUN pip wheel --wheel-dir /wheels .

# --- run -------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DIGEST_CONFIG=/config/config.toml

RUN groupadd --system --gid 10001 digest \
 && useradd --system --uid 10001 --gid digest --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin digest

# Install from the builder's wheels only (no index): the image gets exactly what was built.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels digest

# Created and owned by digest before VOLUME, so a new named volume starts writable by uid 10001.
RUN mkdir -p /config /data && chown digest:digest /data
VOLUME ["/config", "/data"]
WORKDIR /data

USER digest

# The scheduler stops on SIGTERM after the batch in flight; give it time: `docker stop -t 120`.
STOPSIGNAL SIGTERM
# Healthy while the scheduler's heartbeat in the database is fresh (it beats every 30 s).
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s --retries=3 CMD ["digest", "health"]

ENTRYPOINT ["digest"]
CMD ["schedule"]
