# pysup container image: one Habitat-style Supervisor per container, running the demo plan.
#
# Normal build (public base, dependencies from PyPI):
#     docker build -t pysup .
# Offline build, as scripts/build-image and the container tests do (podman, local base, host wheels):
#     podman build --format docker --build-arg BASE=localhost/debian-python:bookworm \
#         --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels -t localhost/pysup:latest .
#
# Wheelhouse design: the builder stage copies the whole build context (filtered by .dockerignore) to
# /src, so `wheelhouse/` comes along when it exists and nothing fails when it does not; /wheels is a
# link to /src/wheelhouse, the path PIP_FIND_LINKS points at. pysup itself is always built from the
# copied source (so a leftover wheelhouse can never install stale pysup code); its dependencies and
# the build backend (setuptools) come from the wheelhouse when PIP_NO_INDEX=1, else from the index.
# scripts/build-image recreates wheelhouse/ on every run with exactly those wheels.
#
# `--format docker` matters with podman: the default OCI format drops HEALTHCHECK.

ARG BASE=python:3.11-slim

# ---------------------------------------------------------------------------------------------------
FROM ${BASE} AS builder
# scripts/build-image prunes this stage's untagged image after each build.
LABEL org.pysup.stage=builder
# Empty means "not set"; pip rejects an empty PIP_NO_INDEX, so the RUN below unsets empty values.
ARG PIP_NO_INDEX=
ARG PIP_FIND_LINKS=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
COPY . /src
RUN set -eu; \
    [ -n "${PIP_NO_INDEX}" ] || unset PIP_NO_INDEX; \
    [ -n "${PIP_FIND_LINKS}" ] || unset PIP_FIND_LINKS; \
    mkdir -p /src/wheelhouse; \
    ln -s /src/wheelhouse /wheels; \
    python3 -m venv /opt/pysup; \
    /opt/pysup/bin/pip install /src; \
    /opt/pysup/bin/pip uninstall -y pip setuptools >/dev/null 2>&1 || true; \
    find /opt/pysup -name __pycache__ -prune -exec rm -rf {} +; \
    /opt/pysup/bin/python -c "import pysup"

# ---------------------------------------------------------------------------------------------------
FROM ${BASE}
# Habitat runs its supervisor as user hab, uid 42. Debian bases already own uid 42 (`_apt`, only
# needed to run apt, which this image never does) and gid 42 (`shadow`), so `_apt` is removed and
# hab gets its own group with HAB_GID. Kubernetes manifests: runAsUser 42, fsGroup = HAB_GID.
ARG HAB_UID=42
ARG HAB_GID=1042
# curl: real Habitat plans' health checks call {{pkgPathFor "core/curl"}}/bin/curl, which pysup
# resolves to /usr when core/curl is a dependency and /usr/bin/curl exists (pysup/service/pkgpaths.py;
# plans/habsuper is such a plan). The lists are removed again: the image never runs apt later.
RUN set -eu; \
    apt-get update -q >/dev/null; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends curl >/dev/null; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*; \
    curl --version | head -n1
RUN set -eu; \
    old="$(getent passwd "${HAB_UID}" | cut -d: -f1)"; \
    if [ -n "$old" ]; then userdel "$old"; fi; \
    groupadd --gid "${HAB_GID}" hab; \
    useradd -K UID_MIN=1 --uid "${HAB_UID}" --gid hab --home-dir /hab --no-create-home \
        --shell /usr/sbin/nologin hab; \
    mkdir -p /hab/sup /hab/svc /hab/plans /hab/hooks; \
    chown hab:hab /hab /hab/sup /hab/svc; \
    chmod 0711 /hab/sup

COPY --from=builder /opt/pysup /opt/pysup
# Every plan under plans/ (the demo plan is plans/habsup -> /hab/plans/habsup).
COPY plans/ /hab/plans/
# healthcheck (Docker HEALTHCHECK / k8s probes) and pre-stop (k8s preStop); executable in git.
COPY hooks/ /hab/hooks/

# PYSUP_DEFAULT_PLANS: `pysup run` loads these plan dirs when it is given no PLAN_DIR argument. It is
# needed because compose files and Kubernetes manifests pass only flags (`--topology leader --peer
# super`), and any command given to the container REPLACES CMD: a plan named in CMD would vanish
# exactly when users pass flags. So CMD stays empty and the plan comes from the environment.
ENV PATH=/opt/pysup/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYSUP_STATE_DIR=/hab/sup \
    PYSUP_DEFAULT_PLANS=/hab/plans/habsup

# Supervisor state (member id, incarnation, rumors) survives container restarts on this volume.
# Mode 0711 as pysup/statedir.py wants (others may reach svc/ but not list or read the state).
VOLUME ["/hab/sup"]
WORKDIR /hab
USER hab

# 9631 HTTP gateway; 9638 gossip (UDP SWIM probes and TCP rumors on the same port).
EXPOSE 9631 9638/tcp 9638/udp

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/hab/hooks/healthcheck"]

ENTRYPOINT ["pysup", "run"]
CMD []
