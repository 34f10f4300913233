# clipserve service image. UNTESTED: docker cannot run on our development machines, so this has
# never been built; issue 8 builds, tests and slims it properly.
#
# The torch wheel pinned in constraints.txt is a CUDA build that carries its own CUDA libraries,
# so a plain Python base is enough; on a GPU host run it with the NVIDIA container toolkit
# (`docker run --gpus all ...`). Without a GPU it runs on the CPU.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1

RUN useradd --create-home --uid 10001 clipserve

WORKDIR /app
COPY pyproject.toml constraints.txt README.md clipserve_cli.py ./
COPY models ./models
COPY training ./training
COPY service ./service
# The same install as `make install`, without the development extras.
RUN pip install -c constraints.txt .

# Checkpoints (and local backbone weights) are mounted here; see docker-compose.yml.
RUN mkdir /checkpoints && chown clipserve /checkpoints
VOLUME /checkpoints
ENV CLIPSERVE_CHECKPOINT_DIR=/checkpoints

USER clipserve
EXPOSE 8000
CMD ["clipserve", "serve"]
