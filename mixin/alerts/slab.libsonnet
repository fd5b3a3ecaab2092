// Slab caches and nf_conntrack.
local utils = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local u = utils.new(c),
    local f = u.formatArgs({ sel: c.kmemSelector }),
    local number(metric) = u.valueOf(metric + '{HOST}'),
    groups+: [{
      name: 'kmem-slab',
      rules: [
        // On 3.10 kernels each network namespace has its own nf_conntrack_<id> cache; caches well beyond the live
        // namespaces were leaked. Modern kernels have one shared cache, so this never fires there.
        {
          alert: 'KmemConntrackSlabCacheLeak',
          expr: |||
            kmem_nf_conntrack_slab_caches{%(sel)s} - kmem_network_namespaces{%(sel)s} > %(conntrackLeakExcess)s
            and
            kmem_nf_conntrack_slab_caches{%(sel)s} > %(conntrackLeakFactor)s * kmem_network_namespaces{%(sel)s}
          ||| % f,
          'for': c.conntrackLeakFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: u.annotation(
              '{{ $value | printf "%.0f" }} nf_conntrack slab caches more than live network namespaces on '
              + '{{ $labels.instance }}.'
            ),
            description: u.annotation(
              '{{ $labels.instance }} has ' + number('kmem_nf_conntrack_slab_caches')
              + ' nf_conntrack slab caches but only ' + number('kmem_network_namespaces')
              + ' live network namespaces: the caches of removed namespaces were not freed (the RHEL 7 / 3.10 '
              + 'leak). Each new one needs a high-order allocation, and creating it fails once memory is fragmented.'
            ),
            runbook_url: u.runbook('KmemConntrackSlabCacheLeak'),
          },
        },
        {
          alert: 'KmemConntrackTableNearlyFull',
          // Over the ratio, or over the fill minimum and full within the horizon at the rate of the window. Both
          // branches give the share of the table in use.
          expr: |||
            kmem_nf_conntrack_entries{%(sel)s} / kmem_nf_conntrack_entries_limit{%(sel)s} > %(conntrackTableRatio)s
            or
            (
              kmem_nf_conntrack_entries{%(sel)s} / kmem_nf_conntrack_entries_limit{%(sel)s} > %(conntrackFillMinimumRatio)s
              and
              predict_linear(kmem_nf_conntrack_entries{%(sel)s}[%(conntrackFillWindow)s], %(conntrackFillHorizonSeconds)s) >= kmem_nf_conntrack_entries_limit{%(sel)s}
            )
          ||| % f,
          'for': c.conntrackTableFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: u.annotation(
              'The conntrack table on {{ $labels.instance }} is {{ $value | humanizePercentage }} full.'
            ),
            description: u.annotation(
              number('kmem_nf_conntrack_entries') + ' of ' + number('kmem_nf_conntrack_entries_limit')
              + ' conntrack entries are in use on {{ $labels.instance }}: over '
              + u.number(c.conntrackTableRatio * 100) + '%, or filling so fast that it is full within '
              + u.words(if c.conntrackFillHorizonSeconds % 3600 == 0 then '%dh' % (c.conntrackFillHorizonSeconds / 3600)
                        else '%ds' % c.conntrackFillHorizonSeconds)
              + ' at the rate of the last '
              + u.words(c.conntrackFillWindow) + '. When the table is full the kernel drops new connections '
              + '("nf_conntrack: table full, dropping packet").'
            ),
            runbook_url: u.runbook('KmemConntrackTableNearlyFull'),
          },
        },
        // The kernel logged "nf_conntrack: table full, dropping packet": new connections are being dropped now.
        {
          alert: 'KmemConntrackTableFull',
          expr: $.prometheusAlerts.kernelLogAlert('nf_conntrack_table_full'),
          'for': '0m',
          labels: { severity: 'critical' },
          annotations: {
            summary: u.annotation(
              'The conntrack table on {{ $labels.instance }} is full: new connections are dropped.'
            ),
            description: u.annotation(
              'The kernel log of {{ $labels.instance }} reported "nf_conntrack: table full, dropping packet" '
              + '{{ $value | printf "%.0f" }} time(s) in the last ' + u.words(c.kernelLogWindow) + ' (the kernel '
              + 'rate-limits the message, so more packets were dropped). Connections through this node fail until '
              + 'entries expire or the table grows.'
            ),
            runbook_url: u.runbook('KmemConntrackTableFull'),
          },
        },
      ],
    }],
  },
}
