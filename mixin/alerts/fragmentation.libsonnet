// Memory fragmentation: high-order allocations that cannot be served although memory is free.
local utils = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local u = utils.new(c),
    local f = u.formatArgs({ sel: c.kmemSelector, host: u.hostLabels, inst: u.instanceLabels }),
    local kernelLogAlert(events) = u.clustered(|||
      increase(kmem_kernel_log_events_total{%(sel)s, event=~"%(events)s"}[%(window)s]) > 0
      or
      (
        kmem_kernel_log_events_total{%(sel)s, event=~"%(events)s"} + 0 > 0
        unless
        kmem_kernel_log_events_total{%(sel)s, event=~"%(events)s"} offset %(window)s
      )
    ||| % f { events: events, window: c.kernelLogWindow }),
    kernelLogAlert:: kernelLogAlert,
    groups+: [{
      name: 'kmem-fragmentation',
      rules: [
        // The order KmemHighOrderFragmentation watches, as a series (value N, label order="N"). To watch another
        // order on one host, record a series of the same name with that host's `instance` label in a rule file of
        // your own (one per instance); it beats this default.
        {
          record: 'kmem:fragmentation_alert_order',
          expr: 'vector(%d)' % c.fragmentationOrder,
          labels: { order: std.toString(c.fragmentationOrder) },
        },
        // The watched order of each scraped instance: its own series when it has one, else the default above.
        {
          record: 'kmem:fragmentation_alert_order:per_instance',
          expr: u.clustered(|||
            kmem:fragmentation_alert_order{instance!=""}
            or on (instance)
            (
              group by (instance) (kmem_buddy_largest_free_order{%(sel)s})
              * on () group_left (order)
              kmem:fragmentation_alert_order{instance=""}
            )
          ||| % f),
        },
        // A zone has no free block of the watched order or more, and the kernel's own test says fragmentation,
        // not lack of memory, is why: the extfrag index at the watched order is above vm.extfrag_threshold / 1000
        // (the kernel's default when the sysctl is not exported). A zone without free memory has index 0 and
        // stays silent: that is memory pressure (KmemAllocationStalls). DMA and HighMem do not serve the
        // kernel's high-order allocations and are left out.
        {
          alert: 'KmemHighOrderFragmentation',
          expr: u.clustered(|||
            kmem_extfrag_index{%(sel)s, zone!~"%(ignoredZones)s"}
              > on (instance, job) group_left ()
              (
                max by (instance, job) (kmem_vm_sysctl{%(sel)s, sysctl="extfrag_threshold"}) / 1000
                or on (instance, job)
                %(extfragThresholdDefault)s * group by (instance, job) (kmem_extfrag_index{%(sel)s})
              )
            and on (instance, order)
            kmem:fragmentation_alert_order:per_instance
            and on (instance, job, node, zone)
            (
              kmem_buddy_largest_free_order{%(sel)s}
                < on (instance) group_left ()
              kmem:fragmentation_alert_order:per_instance
            )
          ||| % f),
          'for': c.fragmentationFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: u.annotation(
              'No free order-{{ $labels.order }} block in zone {{ $labels.zone }} (node {{ $labels.node }}) of '
              + '{{ $labels.instance }}: memory is fragmented.'
            ),
            description: u.annotation(
              'The largest free block in zone {{ $labels.zone }} of NUMA node {{ $labels.node }} on '
              + '{{ $labels.instance }} is of order '
              + '{{ with ' + u.lookup('kmem_buddy_largest_free_order{HOST,node=%q,zone=%q}', ' $labels.node $labels.zone')
              + ' | query }}{{ . | first | value }}{{ end }}'
              + ', so an order-{{ $labels.order }} allocation (a block of 2^{{ $labels.order }} contiguous pages) '
              + 'must wait for compaction and may fail. The extfrag index at order {{ $labels.order }} is '
              + '{{ $value | printf "%.3f" }}, above vm.extfrag_threshold ('
              + '{{ with ' + u.lookup('kmem_vm_sysctl{HOST,sysctl="extfrag_threshold"}')
              + ' | query }}{{ . | first | value | printf "%.0f" }}{{ else }}not exported: the default, '
              + u.number(c.extfragThresholdDefault * 1000) + '{{ end }} thousandths): the allocation fails '
              + 'because free memory is fragmented, not because it is short.'
            ),
            runbook_url: u.runbook('KmemHighOrderFragmentation'),
          },
        },
        // High-order blocks running out while memory is plentiful, before the first allocation fails. The extfrag
        // index cannot say it: the kernel's __fragmentation_index is -1 as long as one block of the order is free.
        // The unusable free space index (unusable_free_index: the share of free memory in blocks smaller than the
        // order) rises as unmovable allocations scattered through the zone cut its free memory small: above
        // fragmentationUnusableRatio now, or above fragmentationTrendMinimumRatio and reaching 1 within the horizon
        // on the line through the window. Only while the zone's free memory is above fragmentationFreeWatermarkFactor
        // times its high watermark: nearer the watermarks memory is short, not cut small (KmemAllocationStalls).
        {
          alert: 'KmemHighOrderBlocksRunningOut',
          expr: u.clustered(|||
            (
              kmem_unusable_index{%(sel)s, zone!~"%(ignoredZones)s"} > %(fragmentationUnusableRatio)s
              or
              (
                kmem_unusable_index{%(sel)s, zone!~"%(ignoredZones)s"} > %(fragmentationTrendMinimumRatio)s
                and
                predict_linear(kmem_unusable_index{%(sel)s, zone!~"%(ignoredZones)s"}[%(fragmentationTrendWindow)s], %(fragmentationTrendHorizonSeconds)s) >= 1
              )
            )
            and on (instance, order)
            kmem:fragmentation_alert_order:per_instance
            and on (instance, job, node, zone)
            (
              kmem_zone_free_bytes{%(sel)s}
                > on (instance, job, node, zone)
              %(fragmentationFreeWatermarkFactor)s * kmem_zone_watermark_bytes{%(sel)s, watermark="high"}
            )
          ||| % f),
          'for': c.fragmentationRunningOutFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: u.annotation(
              'Free blocks of order {{ $labels.order }} and more are running out in zone {{ $labels.zone }} '
              + '(node {{ $labels.node }}) of {{ $labels.instance }}, with memory free.'
            ),
            description: u.annotation(
              '{{ $value | humanizePercentage }} of the free memory in zone {{ $labels.zone }} of NUMA node '
              + '{{ $labels.node }} on {{ $labels.instance }} ('
              + '{{ with ' + u.lookup('kmem_zone_free_bytes{HOST,node=%q,zone=%q}', ' $labels.node $labels.zone')
              + ' | query }}{{ . | first | value | humanize1024 }}{{ end }}'
              + 'B, more than ' + u.number(c.fragmentationFreeWatermarkFactor) + ' times the high watermark) is in '
              + 'blocks smaller than order {{ $labels.order }} (the unusable free space index): over '
              + u.number(c.fragmentationUnusableRatio * 100) + '%, or over '
              + u.number(c.fragmentationTrendMinimumRatio * 100) + '% and rising to 100% within '
              + u.words(if c.fragmentationTrendHorizonSeconds % 3600 == 0 then '%dh' % (c.fragmentationTrendHorizonSeconds / 3600)
                        else '%ds' % c.fragmentationTrendHorizonSeconds)
              + ' at the pace of the last '
              + u.words(c.fragmentationTrendWindow) + '. Memory is not short but cut small, usually by unmovable '
              + 'kernel allocations scattered through the zone: order-{{ $labels.order }} allocations will fail '
              + 'once the last such blocks are gone.'
            ),
            runbook_url: u.runbook('KmemHighOrderBlocksRunningOut'),
          },
        },
        {
          alert: 'KmemCompactionFailing',
          expr: |||
            rate(kmem_vmstat_compact_fail_total{%(sel)s}[%(compactionWindow)s]) * 60 > %(compactionFailuresPerMinute)s
            and
            rate(kmem_vmstat_compact_fail_total{%(sel)s}[%(compactionWindow)s]) > rate(kmem_vmstat_compact_success_total{%(sel)s}[%(compactionWindow)s])
          ||| % f,
          'for': c.compactionFailingFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: u.annotation('Direct compaction keeps failing on {{ $labels.instance }}.'),
            description: u.annotation(
              '{{ $value | printf "%.1f" }} direct compactions per minute failed on {{ $labels.instance }} over '
              + 'the last ' + u.words(c.compactionWindow) + ', more than succeeded: allocations of higher orders '
              + 'stall and then fail.'
            ),
            runbook_url: u.runbook('KmemCompactionFailing'),
          },
        },
        // allocstall is one counter up to 4.7 kernels and one per zone type later. Their sum is a counter too;
        // the subquery takes its rate (rate() of several counters at once would clash once their names go).
        {
          alert: 'KmemAllocationStalls',
          expr: u.clustered(|||
            rate(
              sum by (instance, job) ({%(sel)s, __name__=~"kmem_vmstat_allocstall(_[a-z0-9]+)?_total"})[%(allocationStallsWindow)s:%(allocationStallsStep)s]
            ) * 60 > %(allocationStallsPerMinute)s
          ||| % f),
          'for': c.allocationStallsFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: u.annotation('Processes stall in direct reclaim on {{ $labels.instance }}.'),
            description: u.annotation(
              '{{ $value | printf "%.1f" }} allocations per minute entered direct reclaim (allocstall) on '
              + '{{ $labels.instance }} over the last ' + u.words(c.allocationStallsWindow) + ': the kernel '
              + 'cannot keep enough free memory above the watermarks, and the allocating processes wait.'
            ),
            runbook_url: u.runbook('KmemAllocationStalls'),
          },
        },
        // Kernel log events: any one matters. The first branch sees counters that grew within the window; an
        // order above the kernel's usual ones gets its series with its first event, which the second branch
        // catches. The window keeps the alert firing after the last event, so `for: 0m` does not flap.
        {
          alert: 'KmemPageAllocationFailure',
          expr: kernelLogAlert('page_allocation_failure|slub_allocation_failure'),
          'for': '0m',
          labels: { severity: 'warning' },
          annotations: {
            summary: u.annotation(
              'The kernel on {{ $labels.instance }} failed an allocation ({{ $labels.event }}{{ if $labels.order }}'
              + ', order {{ $labels.order }}{{ end }}).'
            ),
            description: u.annotation(
              'The kernel log of {{ $labels.instance }} reported {{ $value | printf "%.0f" }} {{ $labels.event }} '
              + 'event(s){{ if $labels.order }} of order {{ $labels.order }}{{ end }} in the last '
              + u.words(c.kernelLogWindow) + '. Something in the kernel (a driver, a new network namespace, a '
              + 'container start) did not get its memory.'
            ),
            runbook_url: u.runbook('KmemPageAllocationFailure'),
          },
        },
        {
          alert: 'KmemSlabCacheCreationFailure',
          expr: kernelLogAlert('slab_cache_create_failure|nf_conntrack_cache_failure'),
          'for': '0m',
          labels: { severity: 'critical' },
          annotations: {
            summary: u.annotation(
              'The kernel on {{ $labels.instance }} could not create a slab cache ({{ $labels.event }}); '
              + 'containers fail to start.'
            ),
            description: u.annotation(
              'The kernel log of {{ $labels.instance }} reported {{ $value | printf "%.0f" }} {{ $labels.event }} '
              + 'event(s) in the last ' + u.words(c.kernelLogWindow) + '. On RHEL 7 this is the nf_conntrack '
              + "cache of a new network namespace: the container's start fails (\"setns process ... exit status 6\")."
            ),
            runbook_url: u.runbook('KmemSlabCacheCreationFailure'),
          },
        },
      ],
    }],
  },
}
