# syntax=docker/dockerfile:1
# Celery workers and beat: HTTP clients of the other services, Pillow for thumbnails.
# No torch and no faiss here: the prefork pool must never inherit them.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
COPY imgsearch ./imgsearch
RUN pip install --no-cache-dir --prefix=/install ".[workers]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 imgsearch && mkdir -p /data && chown imgsearch /data
COPY --from=build /install /usr/local
COPY config /app/config
WORKDIR /app
ENV IMGSEARCH_DATA_DIR=/data PYTHONUNBUFFERED=1
USER imgsearch
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=5 \
  CMD ["celery", "-A", "services.workers.app:app", "inspect", "ping", "--timeout", "8"]
CMD ["celery", "-A", "services.workers.app:app", "worker", "--loglevel", "INFO", "--concurrency", "2"]
