# syntax=docker/dockerfile:1
# clipserve images. UNTESTED: docker cannot run on the machines this was written on, so neither
# target has ever been built; CI checks only that the install steps below match `make install`
# (tests/deploy/test_dockerfile.py). See docs/OPERATIONS.md, "Build the image".
#
#   docker build -t clipserve .                          # target serve (the default): the service
#   docker build -t clipserve-train --target train .     # `clipserve train/eval/export`, torchrun
#
# Base: NVIDIA's CUDA runtime image for CUDA 13.0, the CUDA of the torch wheel pinned in
# constraints.txt (torch 2.14.1+cu130; host driver >= 580). The torch wheels carry their own CUDA
# libraries, so the smaller `-base-` flavour works as well:
#   docker build --build-arg CUDA_IMAGE=nvidia/cuda:13.0.0-base-ubuntu24.04 -t clipserve .
# On a machine without a GPU the same image runs on the CPU (CLIPSERVE_DEVICE=cpu).
#
# There is no torch-free ONNX Runtime target: backend=onnx replaces only the shared image tower;
# the service still builds the open_clip backbone in torch (text encoder, preprocessing, the
# probe that checks the ONNX file against torch, the lanes of MaPLe/CoCoOp/GOPro).
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04

# -- Python 3.12 from Ubuntu 24.04, shared by every stage -----------------------------------------
FROM ${CUDA_IMAGE} AS python
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# -- build: the virtual environment, installed as `make install` does ------------------------------
FROM python AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/clipserve
WORKDIR /src
COPY pyproject.toml constraints.txt README.md clipserve_cli.py ./
COPY models ./models
COPY training ./training
COPY service ./service
# The steps of `make install` (Makefile), with the package installed as a wheel (not -e) and
# without the dev extra; constraints.txt pins torch and torchvision.
RUN /opt/clipserve/bin/python -m pip install --quiet --upgrade pip \
 && /opt/clipserve/bin/python -m pip install --quiet -c constraints.txt .

FROM build AS build-train
RUN /opt/clipserve/bin/python -m pip install --quiet -c constraints.txt ".[train]"

# -- what both images share at run time: a non-root user, the checkpoint volume, settings -----------
FROM python AS runtime
RUN groupadd --gid 10001 clipserve \
 && useradd --create-home --uid 10001 --gid 10001 clipserve \
 && mkdir /checkpoints \
 && chown clipserve:clipserve /checkpoints
# All settings come from CLIPSERVE_* variables (clipserve serve --help lists them). No network
# by default: CLIPSERVE_PRETRAINED names a weights file in the volume; set HF_HUB_OFFLINE=0 to
# download an open_clip tag into HF_HOME instead.
ENV PATH=/opt/clipserve/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/home/clipserve/.cache/huggingface \
    CLIPSERVE_HOST=0.0.0.0 \
    CLIPSERVE_PORT=8000 \
    CLIPSERVE_CHECKPOINT_DIR=/checkpoints
VOLUME /checkpoints
WORKDIR /home/clipserve
USER clipserve
ENTRYPOINT ["clipserve"]

# -- train: clipserve train/eval/export (+ tqdm, matplotlib); run it under torchrun for several GPUs
FROM runtime AS train
COPY --from=build-train /opt/clipserve /opt/clipserve
CMD ["--help"]

# -- serve (the default target) ---------------------------------------------------------------------
FROM runtime AS serve
COPY --from=build /opt/clipserve /opt/clipserve
EXPOSE 8000
# Liveness only: /health/live answers once the HTTP server is up; models load behind it and
# /health/ready (for load balancers) turns 200 when they are warm.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('CLIPSERVE_PORT', '8000'), timeout=4)"]
CMD ["serve"]
