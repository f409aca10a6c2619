# syntax=docker/dockerfile:1
# The embedding service: NumPy + SciPy only (no torch in this image).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
COPY imgsearch ./imgsearch
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --prefix=/install ".[embedding]"

FROM python:3.11-slim
# The service's user owns each path docker-compose.yml mounts a volume on (/data/models): a
# fresh named volume takes the owner of the image's directory, and is root's if it is missing.
RUN useradd --create-home --uid 10001 imgsearch \
 && mkdir -p /data/models && chown -R imgsearch:imgsearch /data
COPY --from=build /install /usr/local
COPY config /app/config
WORKDIR /app
ENV IMGSEARCH_DATA_DIR=/data IMGSEARCH_EMBEDDING_HOST=0.0.0.0 IMGSEARCH_EMBEDDING_PORT=8101 \
    PYTHONUNBUFFERED=1
USER imgsearch
EXPOSE 8101
HEALTHCHECK --interval=15s --timeout=5s --start-period=900s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8101/readyz', timeout=4)"]
CMD ["imgsearch", "serve", "embedding"]
