"""kmem-exporter: Prometheus metrics for Linux kernel memory fragmentation, slab caches and memory cgroups."""

__version__ = "0.1.0"
