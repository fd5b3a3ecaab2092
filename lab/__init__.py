"""The kernel lab: field failures reproduced on real kernels under QEMU, judged by a real Prometheus (docs/lab.md)."""
