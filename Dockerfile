# syntax=docker/dockerfile:1
# One image for every Mockex service; the container's command names the service:
#   docker run IMAGE engine_svc      (engine_svc, gateway_svc, stream_svc, store_svc, data_svc)
# Built from the repository root: docker build -t mockex .   (docs/deployment.md)

ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

# ---- build: the pinned runtime packages and the generated protobuf code ------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /app
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

# scripts/build-protos.sh (what `make proto` runs) expects the interpreter at .venv, as on a
# developer's machine; the runtime stage keeps that layout, so the .pth it writes stays valid.
COPY requirements.txt deploy/image/dev-only.txt ./
RUN python -m venv .venv \
    && grep -vE "^($(grep -vE '^(#|$)' dev-only.txt | paste -sd '|'))(\[[^]]*\])?==" \
        requirements.txt >runtime-requirements.txt \
    && .venv/bin/pip install --quiet -r runtime-requirements.txt

COPY proto/ proto/
COPY scripts/build-protos.sh scripts/lib.sh scripts/
COPY mockex/ mockex/
RUN scripts/build-protos.sh \
    && .venv/bin/pip uninstall --quiet --yes grpcio-tools \
    && rm -rf build/third_party

# ---- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="mockex" \
      org.opencontainers.image.description="Mockex services: engine_svc, gateway_svc, stream_svc, store_svc, data_svc"
WORKDIR /app
RUN groupadd --system --gid 10001 mockex \
    && useradd --system --uid 10001 --gid mockex --no-create-home --shell /usr/sbin/nologin mockex
ENV PATH=/app/.venv/bin:${PATH} \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MOCKEX_DATA_DIR=/var/lib/mockex
COPY --from=build /app/.venv .venv
COPY --from=build /app/build build
COPY pyproject.toml ./
COPY mockex/ mockex/
COPY engine_svc/ engine_svc/
COPY gateway_svc/ gateway_svc/
COPY stream_svc/ stream_svc/
COPY store_svc/ store_svc/
COPY data_svc/ data_svc/
COPY scenarios/ scenarios/
RUN install -d -o mockex -g mockex -m 0700 /var/lib/mockex
USER 10001:10001
# gateway (public gRPC), engine, stream gRPC, store, stream WebSocket, data (settings.PORTS)
EXPOSE 50051 50052 50053 50054 50055 50056
# Readiness of the service this container runs (gRPC health service ""); Kubernetes uses its
# own gRPC probes instead (helm/mockex).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "mockex.healthcheck"]
ENTRYPOINT ["python", "-m", "mockex.container"]
CMD ["gateway_svc"]
