"""Write the Grafana dashboards of dashboards/*.json as ConfigMaps, the dashboards component's dashboards.yaml.

    python deploy/kubernetes/generate_dashboards.py            # rewrite the file
    python deploy/kubernetes/generate_dashboards.py --check    # exit 1 when the file is out of date

One ConfigMap per dashboard, named after its file and labelled `grafana_dashboard: "1"`, the label Grafana's
sidecar looks for (kube-prometheus-stack's included); each stays far below the 256 KiB that `kubectl apply` can
record. The JSON is taken as it is, whatever produces it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from generated_file import PROJECT, dump, header, main

DASHBOARDS = PROJECT / "dashboards"
OUTPUT = Path(__file__).resolve().parent / "components" / "dashboards" / "dashboards.yaml"
HEADER = header("dashboards/*.json", "generate_dashboards.py", "dashboard-configmaps")


def configmap(path: Path) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"kmem-exporter-dashboard-{path.stem}",
            "labels": {"grafana_dashboard": "1", "app.kubernetes.io/name": "kmem-exporter",
                       "app.kubernetes.io/component": "dashboards", "app.kubernetes.io/part-of": "kmem-exporter"},
        },
        "data": {path.name: path.read_text(encoding="utf-8")},
    }


def render(dashboards: Path = DASHBOARDS) -> str:
    return HEADER + dump([configmap(path) for path in sorted(dashboards.glob("*.json"))])


if __name__ == "__main__":
    sys.exit(main(__doc__.splitlines()[0], OUTPUT, render, "dashboard-configmaps"))
