"""What runs inside a lab guest: the exporter, Prometheus and one scenario; results go to the run directory."""
