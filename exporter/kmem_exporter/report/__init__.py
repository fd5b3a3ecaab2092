"""The node's verdict: one collection's metric families in (from the kernel files or a running exporter's /metrics),
the node's state and its findings out, as plain text, as JSON and as the status page's data.

Pure: it reads no kernel file and knows no collector, only the metric names of the metric reference
(docs/metrics.md). Its rules are those of the alert rules in `alerts/`, with the thresholds of thresholds.yaml.
"""
