# syntax=docker/dockerfile:1
# The catalog service: SQLAlchemy + alembic on MySQL 8 (or SQLite).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
COPY imgsearch ./imgsearch
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --prefix=/install ".[catalog]"

FROM python:3.11-slim
# The service's user owns its data dir (no volume in docker-compose.yml: the database is MySQL).
RUN useradd --create-home --uid 10001 imgsearch \
 && mkdir -p /data && chown -R imgsearch:imgsearch /data
COPY --from=build /install /usr/local
COPY config /app/config
WORKDIR /app
ENV IMGSEARCH_DATA_DIR=/data IMGSEARCH_CATALOG_HOST=0.0.0.0 IMGSEARCH_CATALOG_PORT=8104 \
    PYTHONUNBUFFERED=1
USER imgsearch
EXPOSE 8104
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8104/readyz', timeout=4)"]
CMD ["imgsearch", "serve", "catalog"]
