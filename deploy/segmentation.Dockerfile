# syntax=docker/dockerfile:1
# The segmentation service: MobileSAM on the CPU build of PyTorch (the only image with torch).
FROM python:3.11-slim AS build
# Where the +cpu builds of torch and torchvision come from, and everything else.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PYPI_INDEX_URL=https://pypi.org/simple
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
COPY imgsearch ./imgsearch
COPY deploy/torch-cpu.txt deploy/check_cpu_torch.py ./deploy/
# One resolver run for torch, torchvision and the whole group, the constraint holding torch and
# torchvision to their +cpu builds; then the build fails unless the result is CPU-only
# (torch.version.cuda is None, no nvidia-* or triton distribution).
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --prefix=/install --index-url "$TORCH_INDEX_URL" \
      --extra-index-url "$PYPI_INDEX_URL" --constraint deploy/torch-cpu.txt ".[segmentation]" \
 && PYTHONPATH=/install/lib/python3.11/site-packages \
    python deploy/check_cpu_torch.py --import /install/lib/python3.11/site-packages

FROM python:3.11-slim
# The service's user owns each path docker-compose.yml mounts a volume on (/data and
# /data/models): a fresh named volume takes the owner of the image's directory, and is root's
# if it is missing.
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 imgsearch \
 && mkdir -p /data/models && chown -R imgsearch:imgsearch /data
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
