// The exporter's own health: a failing collector means the other alerts are blind for its metrics.
local utils = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local u = utils.new(c),
    local f = u.formatArgs({ sel: c.kmemSelector, host: u.hostLabels }),
    groups+: [{
      name: 'kmem-exporter',
      rules: [
        // A target that served kmem-exporter's metrics in the last day and now fails its scrapes. A target that
        // never came up is not caught here (Prometheus's own target health shows it).
        {
          alert: 'KmemExporterDown',
          expr: u.clustered(|||
            up{%(sel)s} == 0
            and on (%(host)s)
            max_over_time(kmem_exporter_build_info{%(sel)s}[%(exporterSeenWindow)s])
          ||| % f),
          'for': c.exporterDownFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: u.annotation('Prometheus cannot scrape kmem-exporter on {{ $labels.instance }}.'),
            description: u.annotation(
              'Scrapes of kmem-exporter on {{ $labels.instance }} (job {{ $labels.job }}) have failed for '
              + u.words(c.exporterDownFor) + ': every kmem alert for this host is blind until it is back. The '
              + 'target page of Prometheus ({{ $externalURL }}/targets) shows the scrape error.'
            ),
            runbook_url: u.runbook('KmemExporterDown'),
          },
        },
        {
          alert: 'KmemExporterCollectorFailing',
          expr: 'kmem_collector_success{%(sel)s} == 0' % f,
          'for': c.collectorFailingFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: u.annotation(
              'The {{ $labels.collector }} collector of kmem-exporter fails on {{ $labels.instance }}.'
            ),
            description: u.annotation(
              'The {{ $labels.collector }} collector on {{ $labels.instance }} has failed every scrape for '
              + u.words(c.collectorFailingFor) + '; its metrics are missing and the alerts built on them cannot '
              + "fire. The exporter's log names the file and the reason."
            ),
            runbook_url: u.runbook('KmemExporterCollectorFailing'),
          },
        },
        {
          alert: 'KmemExporterBackgroundPassStale',
          expr: 'time() - kmem_background_pass_timestamp_seconds{%(sel)s} > %(backgroundPassStaleSeconds)s' % f,
          'for': c.backgroundPassStaleFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: u.annotation(
              'The {{ $labels.collector }} background pass of kmem-exporter on {{ $labels.instance }} is stale.'
            ),
            description: u.annotation(
              'The last completed {{ $labels.collector }} pass on {{ $labels.instance }} is '
              + '{{ $value | humanizeDuration }} old: the exporter serves old numbers for it.'
            ),
            runbook_url: u.runbook('KmemExporterBackgroundPassStale'),
          },
        },
      ],
    }],
  },
}
