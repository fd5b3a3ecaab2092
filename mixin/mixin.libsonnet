// The kmem-exporter monitoring mixin: prometheusAlerts, prometheusRules and grafanaDashboards, set by _config.
(import 'config.libsonnet')
+ (import 'alerts/exporter.libsonnet')
+ (import 'alerts/fragmentation.libsonnet')
+ (import 'alerts/memcg.libsonnet')
+ (import 'alerts/slab.libsonnet')
+ (import 'dashboards/fragmentation.libsonnet')
+ (import 'dashboards/slab-conntrack.libsonnet')
+ (import 'dashboards/memcg.libsonnet')
+ { prometheusRules+:: { groups+: [] } }
