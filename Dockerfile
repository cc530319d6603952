# scopedns image (docs/deployment.md). `make image` builds it with no network: the wheels of
# scopedns and its dependencies are built on the host into build/wheels (image/build.sh) and
# installed here with --no-index. BASE is any Debian-based image with python3 (3.11, the
# wheels' version) and its venv module; when the default cannot be pulled, `make image` builds
# scopedns-base:bookworm locally with debootstrap (image/build-base.sh) and passes it here.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS install
COPY build/wheels /wheels
RUN python3 -m venv /opt/scopedns \
 && /opt/scopedns/bin/pip install --no-index --no-cache-dir --find-links /wheels scopedns \
 && rm -rf /opt/scopedns/lib/python3*/site-packages/pip* \
           /opt/scopedns/lib/python3*/site-packages/setuptools* \
           /opt/scopedns/lib/python3*/site-packages/pkg_resources \
           /opt/scopedns/lib/python3*/site-packages/_distutils_hack \
           /opt/scopedns/lib/python3*/site-packages/distutils-precedence.pth /opt/scopedns/bin/pip*

FROM ${BASE}
COPY --from=install /opt/scopedns /opt/scopedns
# Not root. Port 53 needs no capability: Docker 20.10+ starts every container that has its own
# network namespace with net.ipv4.ip_unprivileged_port_start=0. With --network host (or an
# older engine) pass --sysctl net.ipv4.ip_unprivileged_port_start=53 or listen above 1023.
# The engine socket is root:docker 0660: give the user its group (--group-add <gid>).
RUN useradd --system --uid 10053 --user-group --no-create-home --shell /usr/sbin/nologin scopedns
USER 10053:10053
# --http on loopback (docs/operations.md): the HEALTHCHECK asks /healthz; publish or widen it
# (SCOPEDNS_HTTP=0.0.0.0:9153) only on a management network, since /v1/clients reveals the table.
ENV PATH=/opt/scopedns/bin:$PATH PYTHONDONTWRITEBYTECODE=1 SCOPEDNS_LISTEN=0.0.0.0:53 \
    SCOPEDNS_HTTP=127.0.0.1:9153
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s CMD ["python3", "-c", \
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9153/healthz', timeout=2)"]
ENTRYPOINT ["scopedns"]
CMD ["serve"]
