# syntax=docker/dockerfile:1
# The public gateway, with the web app built in a Node stage and served at /.
FROM node:20-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY web ./
RUN npm run build

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
COPY imgsearch ./imgsearch
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --prefix=/install ".[gateway]"

FROM python:3.11-slim
# The service's user owns each path docker-compose.yml mounts a volume on (/data): a fresh
# named volume takes the owner of the image's directory, and is root's if it is missing.
RUN useradd --create-home --uid 10001 imgsearch \
 && mkdir -p /data && chown -R imgsearch:imgsearch /data
COPY --from=build /install /usr/local
COPY config /app/config
COPY --from=web /web/dist /app/web/dist
WORKDIR /app
ENV IMGSEARCH_DATA_DIR=/data IMGSEARCH_GATEWAY_HOST=0.0.0.0 IMGSEARCH_GATEWAY_PORT=8000 \
    IMGSEARCH_GATEWAY_WEB_DIST=/app/web/dist PYTHONUNBUFFERED=1
USER imgsearch
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["imgsearch", "serve", "gateway"]
