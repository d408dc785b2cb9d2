# syntax=docker/dockerfile:1
# attest: the admission webhook (under gunicorn, via `attest admission serve`)
# and the CLI, as a small non-root image.
#
# The base image is a build argument: any Debian-based image with python3 (>= 3.11)
# and the venv module, e.g. python:3.11-slim-bookworm or a local mmdebstrap image.
# Without a Docker engine:
#   buildah bud --isolation chroot --storage-driver vfs \
#     --build-arg BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm -t attest .
# Behind a TLS-inspecting proxy, hand pip its CA bundle without baking it in:
#   --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /src
COPY pyproject.toml README.md ./
COPY attest ./attest
COPY admission ./admission
COPY policies ./policies
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && python3 -m venv /opt/attest/venv \
 && /opt/attest/venv/bin/pip install --quiet ".[admission]" \
 && /opt/attest/venv/bin/pip uninstall --quiet --yes pip setuptools

FROM ${BASE_IMAGE}
COPY --from=build /opt/attest/venv /opt/attest/venv
# libatomic1: the embedded Rego engine (regopy's librego_shared.so) links against it
RUN apt-get -o APT::Sandbox::User=root update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get -o APT::Sandbox::User=root install -y -qq \
      --no-install-recommends libatomic1 >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && echo 'attest:x:65532:65532:attest:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'attest:x:65532:' >> /etc/group \
 && mkdir -p /var/lib/attest \
 && chown 65532:65532 /var/lib/attest
ENV PATH=/opt/attest/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /opt/attest
USER 65532:65532
# 8443: the webhook (API server → /validate, /mutate); 8444: ops (/metrics, decisions view);
# 8445: probes (/healthz, /readyz for the kubelet)
EXPOSE 8443 8444 8445
ENTRYPOINT ["attest"]
CMD ["admission", "serve", "--config", "/etc/attest/config/config.yaml", "--tls-cert", "/etc/attest/tls/tls.crt", "--tls-key", "/etc/attest/tls/tls.key", "--web-port", "8444", "--probe-port", "8445"]
