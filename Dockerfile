# syntax=docker/dockerfile:1.7
# The one image every plantfed process runs (exchange, operator, agent, training and aggregation
# Jobs); the charts always set `command: [plantfed, <subcommand>, ...]`.
#
# CUDA comes from the pinned torch wheels (torch bundles the CUDA runtime, cuDNN and NCCL as
# nvidia-* wheels, see constraints.txt); the GPU driver is injected by the NVIDIA container
# toolkit at run time. So a plain Python base is CUDA-capable, and torch's CUDA build is exactly
# the one the tests ran against, not whatever a CUDA base image happened to ship.
#
#   docker build -t ghcr.io/plantfed/plantfed:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src/ src/
RUN python -m venv /opt/plantfed \
 && /opt/plantfed/bin/pip install --upgrade pip \
 && /opt/plantfed/bin/pip install -c constraints.txt . \
 && /opt/plantfed/bin/plantfed --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="plantfed" \
      org.opencontainers.image.description="Federated training across manufacturing plants, run as a Kubernetes operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/plantfed/plantfed"
# Numeric uid/gid so `runAsNonRoot` can verify them; the charts' securityContext uses the same ids.
RUN groupadd --system --gid 10001 plantfed \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/plantfed --no-create-home --shell /usr/sbin/nologin plantfed \
 && install -d -o 10001 -g 10001 /var/lib/plantfed
COPY --from=build /opt/plantfed /opt/plantfed
ENV PATH=/opt/plantfed/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /var/lib/plantfed
ENTRYPOINT ["plantfed"]
CMD ["--help"]
