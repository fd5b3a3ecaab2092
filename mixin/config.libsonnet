// Every setting of the mixin. Override any of them with
//   (import 'mixin.libsonnet') + { _config+:: { kmemSelector: 'job="node-kmem"', showMultiCluster: true } }
// The thresholds the exporter's `report` command and status page share (fragmentationOrder, extfragThresholdDefault,
// ignoredZones, fragmentationUnusableRatio, fragmentationFreeWatermarkFactor, memcgIds*Ratio, conntrackLeak*,
// conntrackTableRatio) are defined once, in the package's thresholds.yaml, and imported here.
local thresholds = std.parseYaml(importstr '../exporter/kmem_exporter/thresholds.yaml');

{
  _config+:: thresholds {
    // Label matchers every query carries: the scrape job(s) of kmem-exporter.
    kmemSelector: 'job="kmem-exporter"',

    // Several clusters behind one Thanos or Mimir: the label that names the cluster (an external label of each
    // Prometheus). When showMultiCluster is true it joins every `by`/`on` clause, the alert annotations and the
    // dashboards' variables.
    clusterLabel: 'cluster',
    showMultiCluster: false,

    // Where the runbooks are published; %s is the lower-cased alert name (the runbook's anchor).
    runbookURLPattern: 'https://kmem-exporter.invalid/docs/runbooks.md#%s',

    // The exporter's own health.
    exporterDownFor: '5m',
    exporterSeenWindow: '1d',  // a target that served kmem-exporter's metrics within this window and is now down
    collectorFailingFor: '10m',
    backgroundPassStaleSeconds: 900,
    backgroundPassStaleFor: '10m',

    // Fragmentation (the watched order and the extfrag limit: thresholds.yaml).
    fragmentationFor: '15m',
    // KmemHighOrderBlocksRunningOut also fires ahead, on the trend: the unusable free space index at the watched
    // order over this minimum and, on the line through the window, reaching 1 (no free block of that order left)
    // within the horizon. The minimum keeps busy hosts quiet: their index wanders by a tenth within minutes (the
    // line alone reached 1 on a healthy host), and sits near 0.6 at order 6 on some (the healthy RHEL 7 node).
    fragmentationTrendMinimumRatio: 0.7,
    fragmentationTrendWindow: '1h',
    fragmentationTrendHorizonSeconds: 21600,
    fragmentationRunningOutFor: '5m',
    compactionFailuresPerMinute: 1,
    compactionWindow: '15m',
    compactionFailingFor: '30m',
    allocationStallsPerMinute: 10,
    allocationStallsWindow: '15m',
    allocationStallsStep: '1m',  // the subquery's step: how often the summed counter is sampled
    allocationStallsFor: '30m',
    // Kernel-log alerts stay firing for this long after the last event (the window of their increase()).
    kernelLogWindow: '15m',

    // Memory cgroups.
    memcgIdsHighFor: '15m',
    // One minute: the count only rises with cgroups that stay, so a longer wait filters nothing and costs lead (the
    // kernel lab: with 5m it fired 1 to 3 field minutes before mkdir failed at 250 new cgroups a minute).
    memcgIdsCriticalFor: '1m',
    memcgPredictWindow: '6h',
    memcgPredictHorizonHours: 24,
    memcgPredictFor: '1h',
    memcgDyingPerHour: 50,
    memcgDyingWindow: '1h',  // the growth is measured over this window and the one before it
    memcgDyingMinimum: 1000,
    memcgDyingFor: '1h',
    kmemAccountingFor: '15m',

    // Slab caches and conntrack.
    conntrackLeakFor: '1h',
    conntrackTableFor: '5m',
    // The table also counts as nearly full when, over this share, the line through the window reaches the limit
    // within the horizon (a steady fill leaves less time than conntrackTableFor above conntrackTableRatio).
    conntrackFillMinimumRatio: 0.5,
    conntrackFillWindow: '15m',
    conntrackFillHorizonSeconds: 3600,

    // Dashboards.
    dashboardTags: ['kmem-exporter'],
    dashboardNamePrefix: 'kmem-exporter / ',
    dashboardRefresh: '1m',
    dashboardTimeFrom: 'now-6h',
    // The fleet dashboard reads the fleet recording rules (prometheusRules); false makes it query raw series.
    fleetUseRecordingRules: true,
    // How many nodes the fleet tables list.
    fleetTopNodes: 20,
  },
}
