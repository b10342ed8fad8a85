# The orchestrator image: `web` (the default command) and `worker` / `migrate` (fly.toml's
# [processes] and release_command) from one image. The preview machines' image is
# sandbox/Dockerfile, built and pushed by .github/workflows/preview-image.yml.
#
#   docker build -t preview-orchestrator .
#   docker run -e DATABASE_URL=... -e REDIS_URL=... -e SUPABASE_JWT_SECRET=... \
#              -e PREVIEW_TOKEN_SECRET=... -p 8080:8080 preview-orchestrator

# --- ui: the npm packages browsers load from /ui/vendor (the panel's QR code renderer, the
# demo's CodeMirror), from app/ui's lockfile; dev tools (TypeScript) are not installed ------
FROM node:20.19.5-bookworm-slim AS ui
WORKDIR /ui
COPY app/ui/package.json app/ui/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts

# --- build: install the project and its runtime dependencies into a virtualenv ------------
FROM python:3.11.17-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
WORKDIR /src
# Versions come from pyproject.toml's ranges; every runtime dependency ships manylinux wheels,
# so no compiler is needed. Dev tools (pytest, ruff, linters) are not installed.
COPY pyproject.toml ./
COPY app ./app
COPY workers ./workers
COPY pool ./pool
COPY sql ./sql
COPY sandbox ./sandbox
RUN /opt/venv/bin/pip install . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib
# app.ui_assets serves them from the installed package's ui/ folder.
COPY --from=ui /ui/node_modules /opt/venv/lib/python3.11/site-packages/app/ui/node_modules

# --- runtime ---------------------------------------------------------------------------------
FROM python:3.11.17-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PREVIEW_DATA_DIR=/tmp/preview

RUN groupadd --system --gid 10001 orchestrator \
    && useradd --system --uid 10001 --gid orchestrator --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin orchestrator

COPY --from=build /opt/venv /opt/venv

WORKDIR /tmp
USER 10001:10001
EXPOSE 8080

# The HTTP API. fly.toml runs `preview-orchestrator worker` for the worker group and
# `preview-orchestrator migrate` as the release command, with this same image.
CMD ["preview-orchestrator", "web", "--host", "0.0.0.0", "--port", "8080"]
