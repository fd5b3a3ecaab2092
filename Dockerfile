# kmem-exporter container image.
#
#   docker build -t kmem-exporter:0.1.0 .
#
# Run it as the README's Deployment section shows: the host's /proc, /sys, debugfs and /dev/kmsg under /host,
# where the default flags in CMD look for them (the flags, not the image, decide what is read). The default user
# is nobody, which serves only the collectors that need no privilege (README, "Privileges").
#
# PYTHON_IMAGE is any Debian-like image with python3 (with venv and pip in the build stage). Without a registry,
# deploy/image/local-base.sh builds one with debootstrap.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kmem_exporter ./kmem_exporter
# A virtualenv holding the exporter and its dependencies only; pip itself is removed from it afterwards.
RUN python3 -m venv /opt/kmem-exporter \
    && /opt/kmem-exporter/bin/pip install --no-cache-dir /src \
    && /opt/kmem-exporter/bin/pip uninstall --yes --quiet pip setuptools \
    && /opt/kmem-exporter/bin/kmem-exporter --version

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="kmem-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Linux kernel memory fragmentation, slab caches and memory cgroups" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/kmem-exporter /opt/kmem-exporter
ENV PATH=/opt/kmem-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# nobody:nogroup. Collectors that read root-only files need the container to run as root with a few
# capabilities instead: see the README's Privileges table and deploy/kubernetes/daemonset.yaml.
USER 65534:65534
EXPOSE 9792
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9792/-/healthy', timeout=4).status != 200)"]
ENTRYPOINT ["kmem-exporter"]
CMD ["serve", "--path.procfs=/host/proc", "--path.sysfs=/host/sys", "--path.debugfs=/host/sys/kernel/debug", \
     "--path.cgroupfs=/host/sys/fs/cgroup", "--path.kmsg=/host/dev/kmsg"]
