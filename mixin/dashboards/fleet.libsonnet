// The fleet: which nodes cannot serve high-order allocations now, run out of memory cgroup IDs, leak nf_conntrack
// caches, log allocation failures, or are not watched at all. It reads the fleet recording rules (rules/fleet.libsonnet)
// unless fleetUseRecordingRules is false.
local g = import '../lib/grafana.libsonnet';
local common = import 'common.libsonnet';
local utils = import '../lib/utils.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local d = common.new(c),
    local u = utils.new(c),
    local top = u.number(c.fleetTopNodes),
    local multi = c.showMultiCluster,

    // An aggregate of the fleet rules, for the hosts of the chosen cluster and job (extra: more matchers).
    local S(name, extra='') =
      if c.fleetUseRecordingRules then '%s{%s%s}' % [name, d.fleet, extra]
      else '(' + std.stripChars($.fleetAggregates[name](d.fleet + extra), '\n') + ')',
    local largest = S('instance:kmem_buddy_largest_free_order:max'),
    local extfrag = S('instance_order:kmem_extfrag_index:max', ', order="$order"'),
    local memcgUsed = S('instance:kmem_memcg_ids_used:ratio'),
    local memcgLeft = S('instance:kmem_memcg_ids_exhaustion:seconds'),
    local conntrack = S('instance:kmem_nf_conntrack_slab_caches_beyond_netns:count'),
    local failures = S('instance:kmem_kernel_allocation_failures:increase'),
    local collectors = S('instance:kmem_collectors_failing:count'),
    local down = S('instance:kmem_exporter_down:bool'),
    local count(expr) = 'count(%s) or vector(0)' % expr,
    local ratio(value) = u.number(value * 100) + '%',

    // Links from a table's instance column to a per-host dashboard.
    local hostLinks = {
      matcher: { id: 'byName', options: 'instance' },
      properties: [{ id: 'links', value: [
        { title: 'Memory fragmentation of ${__value.raw}', url: '/d/kmem-fragmentation/?${datasource:queryparam}&var-job=${__data.fields.job}&var-instance=${__value.raw}' + (if multi then '&var-cluster=${__data.fields.' + c.clusterLabel + '}' else '') },
        { title: 'Memory cgroups of ${__value.raw}', url: '/d/kmem-memcg/?${datasource:queryparam}&var-job=${__data.fields.job}&var-instance=${__value.raw}' + (if multi then '&var-cluster=${__data.fields.' + c.clusterLabel + '}' else '') },
        { title: 'Slab and conntrack of ${__value.raw}', url: '/d/kmem-slab-conntrack/?${datasource:queryparam}&var-job=${__data.fields.job}&var-instance=${__value.raw}' + (if multi then '&var-cluster=${__data.fields.' + c.clusterLabel + '}' else '') },
      ] }],
    },
    local columns(names) = { excludeByName: { Time: true }, renameByName: names },

    'fleet.json': d.dashboard(
      'kmem-fleet', 'Fleet',
      'Across every node: which cannot serve an order-N allocation now, which run out of memory cgroup IDs, leak '
      + 'nf_conntrack caches or log allocation failures, and which exporters are down or failing.',
      d.fleetVariables + [g.customVariable('order', 'Order needed', [std.toString(o) for o in std.range(1, 10)],
                                           std.toString(c.fragmentationOrder))],
      [
        g.row('Which nodes cannot allocate order-$order blocks now?'),
        g.add(g.stat(
          'Nodes that cannot serve order-$order',
          'Nodes with no free block of order $order or more in any zone that serves the kernel\'s high-order '
          + 'allocations (DMA32, Normal): an order-$order allocation there waits for compaction and may fail. Red '
          + 'from 1. Choose the order in the `order` variable; the table below names the nodes.',
          [d.target(count('%s < $order' % largest), 'nodes')], 'none',
          steps=g.thresholds(['green', null], ['red', 1]), colorMode='background'), 6, 6),
        g.add(g.stat(
          'Nodes reporting',
          'Nodes whose exporter reports its free blocks now: the fleet the panels of this dashboard cover. Fewer '
          + 'than you run means exporters are down (see the last row).',
          [d.target('count(%s)' % largest, 'nodes')], 'none'), 6, 6),
        g.add(g.timeseries(
          'Nodes that cannot serve order-$order over time',
          'How many nodes had no free block of order $order or more, over time. Bad: a line that climbs and stays: '
          + 'memory fragments across the fleet faster than compaction repairs it.',
          [d.target(count('%s < $order' % largest), 'cannot serve order $order')], 'none', min=0), 12, 6),
        g.add(g.table(
          'Nodes at risk: no free order-$order block, by extfrag index',
          'The nodes that cannot serve order $order now, the most fragmented first (extfrag index at order $order: '
          + 'towards 1 the allocation fails because memory is fragmented, towards 0 because it is short). Click a '
          + 'node for its dashboards.',
          [d.target('sort_desc(%s and on (instance, job) (%s < $order))' % [extfrag, largest], instant=true),
           d.target('%s < $order' % largest, instant=true)], 'none',
          overrides=[hostLinks],
          sortBy=[{ displayName: 'extfrag index at order $order', desc: true }],
          organize=columns({ 'Value #A': 'extfrag index at order $order', 'Value #B': 'largest free order' })),
          24, 9),

        g.row('Fragmentation across the fleet'),
        g.add(g.timeseries(
          'Nodes by extfrag index at order $order',
          'Nodes counted by their worst extfrag index at order $order: -1, the allocation succeeds now; 0 to '
          + u.number(c.extfragThresholdDefault) + ', it would fail for lack of memory; above, it fails because '
          + 'memory is fragmented. Bad: the fragmented band growing.',
          [d.target(count('%s < 0' % extfrag), 'can allocate'),
           d.target(count('%s >= 0 < %s' % [extfrag, u.number(c.extfragThresholdDefault)]), 'short of memory'),
           d.target(count('%s >= %s' % [extfrag, u.number(c.extfragThresholdDefault)]), 'fragmented')],
          'none', min=0, stack=true), 12, 9),
        g.add(g.bargauge(
          'Most fragmented nodes at order $order',
          'The ' + top + ' nodes with the highest extfrag index at order $order now (-1: the allocation succeeds). '
          + 'Bad: values near 1.',
          [d.target('topk(%s, %s)' % [top, extfrag], '{{instance}}', instant=true)], 'none',
          steps=g.thresholds(['green', null], ['orange', 0], ['red', c.extfragThresholdDefault])), 12, 9),

        g.row('Memory cgroup IDs'),
        g.add(g.stat(
          'Nodes above ' + ratio(c.memcgIdsHighRatio) + ' of memory cgroup IDs',
          'Nodes whose memory cgroup IDs in use (online cgroups; dying ones too on kernels before 4.7) exceed '
          + ratio(c.memcgIdsHighRatio) + ' of the 65535 IDs the kernel has; at 100% no container can start there.',
          [d.target(count('%s > %s' % [memcgUsed, u.number(c.memcgIdsHighRatio)]), 'nodes')], 'none',
          steps=g.thresholds(['green', null], ['red', 1]), colorMode='background'), 6, 9),
        g.add(g.bargauge(
          'Memory cgroup IDs used: worst nodes',
          'The ' + top + ' nodes using the largest share of their memory cgroup IDs now. Orange above 80%, red '
          + 'above 95%.',
          [d.target('topk(%s, %s)' % [top, memcgUsed], '{{instance}}', instant=true)], 'percentunit',
          steps=g.goodLow), 9, 9),
        g.add(g.bargauge(
          'Time until memory cgroup IDs run out: soonest',
          'The ' + top + ' nodes whose memory cgroup IDs run out first at the rate of the last '
          + c.memcgPredictWindow + ' (nodes with a flat or falling count are left out). Red below 1 day, orange '
          + 'below 1 week.',
          [d.target('bottomk(%s, %s < 31536000)' % [top, memcgLeft], '{{instance}}', instant=true)], 's',
          steps=g.thresholds(['red', null], ['orange', 86400], ['green', 604800])), 9, 9),

        g.row('nf_conntrack caches'),
        g.add(g.stat(
          'Nodes leaking nf_conntrack caches',
          'Nodes with more than ' + u.number(c.conntrackLeakExcess) + ' nf_conntrack slab caches beyond their '
          + 'live network namespaces: on 3.10 kernels, caches of removed namespaces that were never freed.',
          [d.target(count('%s > %s' % [conntrack, u.number(c.conntrackLeakExcess)]), 'nodes')], 'none',
          steps=g.thresholds(['green', null], ['red', 1]), colorMode='background'), 6, 8),
        g.add(g.timeseries(
          'nf_conntrack caches beyond live network namespaces: worst nodes',
          'At each point, the ' + top + ' nodes whose nf_conntrack caches most exceed their live network '
          + 'namespaces. Bad: lines that only climb (the RHEL 7 / 3.10 leak).',
          [d.target('topk(%s, %s > 0)' % [top, conntrack], '{{instance}}')], 'none', min=0), 18, 8),

        g.row('Kernel allocation failures and exporter health'),
        g.add(g.timeseries(
          'Kernel allocation-failure events per node',
          'Page, SLUB and slab-cache allocation failures each node\'s kernel logged in the ' + c.kernelLogWindow
          + ' before each point; only nodes with failures are shown. Any is bad: order 4-6 points at '
          + 'fragmentation, order 0 at memory pressure (the per-host dashboard shows the orders).',
          [d.target('%s > 0' % failures, '{{instance}}')], 'short', bars=true, min=0), 12, 8),
        g.add(g.stat(
          'Exporters down',
          'Targets that served kmem-exporter\'s metrics and now fail their scrapes: every kmem alert is blind '
          + 'for those nodes.',
          [d.target(count('%s == 1' % down), 'down')], 'none',
          steps=g.thresholds(['green', null], ['red', 1]), colorMode='background'), 4, 8),
        g.add(g.table(
          'Exporters down or with failing collectors',
          'Each node whose exporter is down (1 in "down") or has collectors failing now (how many). A failing '
          + 'collector\'s metrics are missing, and the alerts built on them cannot fire; its log names the file.',
          [d.target('%s == 1' % down, instant=true), d.target('%s > 0' % collectors, instant=true)], 'none',
          overrides=[hostLinks],
          sortBy=[{ displayName: 'down', desc: true }],
          organize=columns({ 'Value #A': 'down', 'Value #B': 'failing collectors' })), 8, 8),
      ],
    ),
  },
}
