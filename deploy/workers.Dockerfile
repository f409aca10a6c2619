# syntax=docker/dockerfile:1
# Celery workers and beat: HTTP clients of the other services, Pillow for thumbnails.
# No torch and no faiss here: the prefork pool must never inherit them.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
COPY imgsearch ./imgsearch
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --prefix=/install ".[workers]"

FROM python:3.11-slim
# The service's user owns each path docker-compose.yml mounts a volume on (/data): a fresh
# named volume takes the owner of the image's directory, and is root's if it is missing.
RUN useradd --create-home --uid 10001 imgsearch \
 && mkdir -p /data && chown -R imgsearch:imgsearch /data
COPY --from=build /install /usr/local
COPY config /app/config
WORKDIR /app
ENV IMGSEARCH_DATA_DIR=/data PYTHONUNBUFFERED=1
USER imgsearch
# This container's own worker answers (celery@<its hostname>, the worker's default node name),
# not any worker on the broker.
HEALTHCHECK --interval=30s --timeout=15s --start-period=30s --retries=5 \
  CMD celery -A services.workers.app:app inspect ping --timeout 8 -d "celery@$(hostname)"
# Worker processes: workers.concurrency (IMGSEARCH_WORKERS_CONCURRENCY).
CMD ["imgsearch", "worker", "--loglevel", "INFO"]
