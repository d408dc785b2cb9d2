# attest: the admission webhook and CLI as a small non-root image.
# Build without a Docker engine:
#   buildah bud --isolation chroot --storage-driver vfs --build-arg BASE_IMAGE=<python3.11 base> -t attest .
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/attest
COPY pyproject.toml README.md ./
COPY attest ./attest
COPY admission ./admission
COPY policies ./policies
RUN python3 -m venv /opt/attest/venv \
 && /opt/attest/venv/bin/pip install --no-compile . \
 && useradd --system --uid 65532 --home-dir /nonexistent --shell /usr/sbin/nologin attest

ENV PATH=/opt/attest/venv/bin:$PATH
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["attest"]
CMD ["admission", "serve", "--config", "/etc/attest/config.yaml", "--tls-cert", "/etc/attest/tls/tls.crt", "--tls-key", "/etc/attest/tls/tls.key"]
