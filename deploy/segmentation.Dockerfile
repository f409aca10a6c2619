# syntax=docker/dockerfile:1
# The segmentation service: MobileSAM on the CPU build of PyTorch (the only image with torch).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
COPY imgsearch ./imgsearch
# The CPU wheels first, so the segmentation group's torch pin is already satisfied by them.
RUN pip install --no-cache-dir --prefix=/install \
      --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
 && pip install --no-cache-dir --prefix=/install ".[segmentation]"

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 imgsearch && mkdir -p /data && chown imgsearch /data
COPY --from=build /install /usr/local
COPY config /app/config
WORKDIR /app
ENV IMGSEARCH_DATA_DIR=/data IMGSEARCH_SEGMENTATION_HOST=0.0.0.0 \
    IMGSEARCH_SEGMENTATION_PORT=8102 PYTHONUNBUFFERED=1
USER imgsearch
EXPOSE 8102
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8102/readyz', timeout=4)"]
CMD ["imgsearch", "serve", "segmentation"]
