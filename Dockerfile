# kmem-exporter container image.
#
#   make image            # tags kmem-exporter:<version>, with the version, revision and creation time as labels
#
# Run it as docs/deployment.md shows: the host's /proc, /sys, debugfs and /dev/kmsg under /host,
# where the default flags in CMD look for them (the flags, not the image, decide what is read). The default user
# is nobody, which serves only the collectors that need no privilege (docs/deployment.md, "Privileges").
#
# PYTHON_IMAGE is any Debian-like image with python3 (with venv and pip in the build stage). Without a registry,
# deploy/image/local-base.sh builds one with debootstrap. VERSION, REVISION and CREATED (RFC 3339) label the image;
# `make image` derives them from exporter/kmem_exporter/__init__.py, git and the clock. A VERSION that is not the
# package's fails the build; REVISION is recorded in the package for kmem_exporter_build_info.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG VERSION
ARG REVISION=unknown
WORKDIR /src
COPY pyproject.toml LICENSE ./
COPY exporter ./exporter
# A virtualenv holding the exporter and its dependencies only; pip itself is removed from it afterwards.
RUN printf '%s\n' "${REVISION}" > exporter/kmem_exporter/REVISION \
    && python3 -m venv /opt/kmem-exporter \
    && /opt/kmem-exporter/bin/pip install --no-cache-dir /src \
    && /opt/kmem-exporter/bin/pip uninstall --yes --quiet pip setuptools \
    && installed="$(/opt/kmem-exporter/bin/kmem-exporter --version)" \
    && if [ -n "${VERSION}" ] && [ "${installed}" != "kmem-exporter ${VERSION}" ]; then \
         echo "VERSION=${VERSION}, but the package is ${installed}" >&2; exit 1; \
       fi

FROM ${PYTHON_IMAGE}
ARG VERSION
ARG REVISION=unknown
ARG CREATED
LABEL org.opencontainers.image.title="kmem-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Linux kernel memory fragmentation, slab caches and memory cgroups" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="The kmem-exporter authors"
COPY --from=build /opt/kmem-exporter /opt/kmem-exporter
COPY LICENSE /usr/share/doc/kmem-exporter/LICENSE
ENV PATH=/opt/kmem-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# nobody:nogroup. Collectors that read root-only files need the container to run as root with a few
# capabilities instead: see the Privileges table of docs/deployment.md and deploy/kubernetes/base/daemonset.yaml.
USER 65534:65534
EXPOSE 9792
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9792/-/healthy', timeout=4).status != 200)"]
ENTRYPOINT ["kmem-exporter"]
CMD ["serve", "--path.procfs=/host/proc", "--path.sysfs=/host/sys", "--path.debugfs=/host/sys/kernel/debug", \
     "--path.cgroupfs=/host/sys/fs/cgroup", "--path.kmsg=/host/dev/kmsg"]
