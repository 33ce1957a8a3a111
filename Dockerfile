# syntax=docker/dockerfile:1
# Catalog Portal: one image for web, worker and beat (the command chooses; see deploy/kubernetes).
#   docker build -t catalog-portal:1.0 .
# The build stage installs the pinned dependencies into a virtual environment and collects the static files
# (hashed names, gzip copies); the final stage has that environment, the source and the collected files,
# no compiler or pip cache, and runs as an unprivileged user (uid 10001).

FROM python:3.11-slim AS build
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md manage.py ./
COPY catalog_portal catalog_portal
COPY teams teams
COPY brokers brokers
COPY instances instances
COPY telemetry telemetry
COPY devtools devtools
COPY templates templates
COPY static static
# Editable: the package points at /app, where the final stage has the same source (templates and static
# files are found next to it).
RUN pip install -e .
# Build-time settings only: throwaway keys in a folder the final stage does not copy.
RUN PORTAL_DATA_DIR=/tmp/build STATIC_ROOT=/app/staticfiles python manage.py collectstatic --noinput

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    PORTAL_DATA_DIR=/data STATIC_ROOT=/app/staticfiles
RUN groupadd --system --gid 10001 portal \
    && useradd --system --uid 10001 --gid portal --no-create-home --home-dir /nonexistent portal \
    && mkdir -p /data && chown portal:portal /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER 10001
EXPOSE 8000
CMD ["gunicorn", "-c", "python:catalog_portal.gunicorn", "catalog_portal.wsgi"]
