# depin images: one Dockerfile, two targets that share every layer up to the last few lines.
#   docker build -t depin/worker .                                       # the default (last) target
#   docker build --target coordinator -t depin/coordinator .
#   docker run -d --init --name depin-worker --restart unless-stopped --stop-timeout 300 \
#       -e DEPIN_COORDINATOR=http://coordinator.example:8642 -v depin-worker:/data depin/worker
#   docker run -d --init --name depin-coordinator --restart unless-stopped -p 8642:8642 \
#       -v depin-coordinator:/data depin/coordinator
# deploy/README.md has the rest (the owner's page, settings, bind mounts, compose). `make lint-deploy` lints this
# with hadolint (.hadolint.yaml) and checks, in tests/deploy/, that every package pyproject.toml declares is copied.
#
# Both architectures: python:*-slim-bookworm is published for amd64 and arm64 (Raspberry Pi OS 64-bit), and every
# dependency (numba, llvmlite, numpy, PyNaCl, aiohttp, msgpack, Pillow) has manylinux wheels for both, so no stage
# needs a compiler. The tag is pinned to a Python minor and a Debian release; pin a digest too where the registry
# can be reached to read it.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtual environment in /opt/depin, then only that is carried forward ------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/depin
WORKDIR /src
# pyproject.toml names README.md as the package's readme: the build needs it.
COPY pyproject.toml README.md ./
COPY depin ./depin
COPY coordinator ./coordinator
COPY worker ./worker
RUN /opt/depin/bin/pip install --no-cache-dir .

# ---- runtime: what both images share -------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="depin" \
      org.opencontainers.image.description="depin: a compute marketplace on spare hardware" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed uid/gid (not root, above the range distributions give out) so a bind-mounted data dir can be chowned to
# it ahead of time: `chown 10001:10001 DIR`. Named volumes take /data's ownership from the image.
RUN groupadd --system --gid 10001 depin \
    && useradd --system --no-log-init --uid 10001 --gid depin --home-dir /home/depin --create-home \
        --shell /usr/sbin/nologin depin \
    && install -d -o depin -g depin -m 0750 /data
COPY --from=build /opt/depin /opt/depin
ENV PATH=/opt/depin/bin:$PATH \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]

# ---- the coordinator -----------------------------------------------------------------------------------------
FROM runtime AS coordinator
EXPOSE 8642
# Healthy = answering HTTP. /v1/info (its key, protocol and kernels) needs no signature and reads no database.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8642/v1/info', timeout=4)"]
# SIGTERM (Docker's default) stops it cleanly: every answered request was already committed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["depin", "coordinator", "--data-dir", "/data", "--host", "0.0.0.0", "--port", "8642"]
CMD []

# ---- the worker (the default target) -------------------------------------------------------------------------
FROM runtime AS worker
# The worker puts numba's cache in --data-dir by default; saying so here too keeps the compiled kernels on the
# volume even for a command that does not take --data-dir, so a restarted container skips the JIT.
# MALLOC_MMAP_THRESHOLD_: results of several MiB go to mmap and back to the system once freed, instead of staying
# in glibc's heap (an idle worker kept ~80 MiB after a job without it; benchmarks/RESULTS.md section 5).
ENV NUMBA_CACHE_DIR=/data/numba-cache \
    MALLOC_MMAP_THRESHOLD_=131072
# Healthy = its owner's page answers (on the container's own 127.0.0.1:8643, the worker's default --page-port).
# A paused worker is healthy: the page says why it is paused. A long start-period covers the first JIT on a Pi.
HEALTHCHECK --interval=60s --timeout=10s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8643/api/status', timeout=8)"]
# On SIGTERM the worker finishes the task in hand, gives its other leases back and exits: give it time to
# (`docker stop -t 300`, `--stop-timeout 300`, compose `stop_grace_period: 5m`); Docker's default is 10 s.
STOPSIGNAL SIGTERM
# As the systemd unit does: lowest CPU and I/O priority, so the machine's owner never waits for depin. All three
# exec the next program, so depin is still the process that gets the signals (with --init, tini forwards them).
ENTRYPOINT ["chrt", "--idle", "0", "ionice", "-c", "3", "nice", "-n", "19", "depin", "worker", "--data-dir", "/data"]
CMD []
