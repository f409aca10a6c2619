# syntax=docker/dockerfile:1
# The public gateway, with the web app built in a Node stage and served at /.
FROM node:20-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web ./
RUN npm run build

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
COPY imgsearch ./imgsearch
RUN pip install --no-cache-dir --prefix=/install ".[gateway]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 imgsearch && mkdir -p /data && chown imgsearch /data
COPY --from=build /install /usr/local
COPY config /app/config
COPY --from=web /web/dist /app/web/dist
WORKDIR /app
ENV IMGSEARCH_DATA_DIR=/data IMGSEARCH_GATEWAY_HOST=0.0.0.0 IMGSEARCH_GATEWAY_PORT=8000 \
    PYTHONUNBUFFERED=1
USER imgsearch
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["imgsearch", "serve", "gateway"]
