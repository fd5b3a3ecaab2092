// Per host: can it serve high-order allocations?
local g = import '../lib/grafana.libsonnet';
local common = import 'common.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local d = common.new(c),
    'fragmentation.json': d.dashboard(
      'kmem-fragmentation', 'Memory fragmentation',
      'Can this host serve high-order allocations? Free blocks per order, fragmentation indices, watermarks, '
      + 'compaction and allocation failures.',
      d.hostVariables + d.zoneVariables
    + [g.customVariable('order', 'Order needed', [std.toString(o) for o in std.range(1, 10)],
                        std.toString(c.fragmentationOrder))],
      [
      g.row('Can this host allocate order-$order blocks now?'),
      g.add(g.stat(
        'Order-$order allocation possible',
        'Per zone: is there a free block of order $order or higher (2^$order contiguous pages)? "no" means an '
          + 'allocation of that order has to wait for compaction or reclaim and may fail, like the order:6 '
          + 'allocations that stop container starts on RHEL 7. Choose the order in the `order` variable. The DMA '
          + 'zone (16 MiB for old devices) usually says yes but serves only GFP_DMA allocations: what counts is '
          + 'DMA32 and Normal.',
        [d.target(
          'kmem_buddy_largest_free_order{' + d.zone + '} >= bool $order',
          'node {{node}} {{zone}}')],
        'none',
        steps=g.thresholds(
          ['red', null],
          ['green', 1]),
        mappings=g.valueMapping(
          [[0, 'no', 'red'], [1, 'yes', 'green']]),
        colorMode='background'), 8, 5),
      g.add(g.stat(
        'Largest free order',
        'Per zone: the highest order with at least one free block (-1: no free block at all). Orange and red '
          + 'mark zones that cannot serve order-4 and order-2 allocations; on a healthy host the Normal zone '
          + 'shows 9 or 10.',
        [d.target(
          'kmem_buddy_largest_free_order{' + d.zone + '}',
          'node {{node}} {{zone}}')],
        'none',
        steps=g.thresholds(
          ['red', null],
          ['orange', 2],
          ['green', 4])), 8, 5),
      g.add(g.stat(
        'Free memory',
        'Per zone: free memory in all orders together. Fragmentation is when this is large while the largest '
          + 'free order is small; when this is small too, the host is short of memory, not fragmented.',
        [d.target(
          'kmem_zone_free_bytes{' + d.zone + '}',
          'node {{node}} {{zone}}')],
        'bytes'), 8, 5),
      g.row('Free blocks'),
      g.add(g.timeseries(
        'Free blocks by order (log scale)',
        'Free blocks of each order, summed over the selected nodes and zones, on a log scale. A healthy host '
          + 'has free blocks up to order 9-10; on a fragmented host the high orders drop to 0 (they vanish from '
          + 'the log scale) while orders 0-2 hold thousands.',
        [d.target(
          'sum by (order) (kmem_buddy_free_blocks{' + d.zone + '})',
          'order {{order}}')],
        'short',
        log=2), 12, 9),
      g.add(g.timeseries(
        'Largest free order over time',
        'The largest free order per zone over time. A falling line that stays below the order your workload '
          + 'needs (see the stat above) is fragmentation building up; a jump back up follows compaction or a drop '
          + 'of caches.',
        [d.target(
          'kmem_buddy_largest_free_order{' + d.zone + '}',
          'node {{node}} {{zone}}')],
        'none',
        min=-1,
        max=11,
        thresholdSteps=g.thresholds(
          ['transparent', null],
          ['red', 4])), 12, 9),
      g.add(g.heatmap(
        'Free blocks by order over time (heatmap)',
        'One row per order (0 at the bottom), one column per interval; the colour is the number of free '
          + 'blocks on an exponential scale, and an empty cell means none. A healthy host is coloured up to the '
          + 'top rows; on a fragmented host the upper rows are empty while the bottom ones glow.',
        [d.target(
          'sum by (order) (kmem_buddy_free_blocks{' + d.zone + '})',
          '{{order}}')],
        'short',
        yLabel='order'), 24, 8),
      g.row('Fragmentation indices'),
      g.add(g.timeseries(
        'Extfrag index by order',
        'The kernel\'s fragmentation index per zone and order: -1 means an allocation of that order succeeds '
          + 'now; from 0 to 1, why it would fail: towards 0 lack of memory, towards 1 fragmentation. Above the '
          + 'dashed `extfrag_threshold` line (the sysctl / 1000, default 0.5) the kernel compacts instead of '
          + 'reclaiming. Bad: values near 1 at the orders you need.',
        [d.target(
          'kmem_extfrag_index{' + d.zone + ', order=~"[4-9]|10"}',
          'node {{node}} {{zone}} order {{order}}'), d.target(
          'kmem_vm_sysctl{' + d.host + ', sysctl="extfrag_threshold"} / 1000',
          'extfrag_threshold')],
        'none',
        min=-1,
        max=1), 8, 9),
      g.add(g.timeseries(
        'Unusable free index by order',
        'The share of free memory that cannot serve an allocation of the order, per zone (orders 4 and up). '
          + '0: every free page is in a block large enough; 1: none is. Bad: values near 1 at the orders you need '
          + 'while free memory is plentiful.',
        [d.target(
          'kmem_unusable_index{' + d.zone + ', order=~"[4-9]|10"}',
          'node {{node}} {{zone}} order {{order}}')],
        'percentunit',
        min=0,
        max=1), 8, 9),
      g.add(g.timeseries(
        'Unusable free space index at order $order',
        'What the alert KmemHighOrderBlocksRunningOut watches (at its order, ' + c.fragmentationOrder + ' by '
          + 'default): the share of each zone\'s free memory in blocks smaller than order $order. It rises while '
          + 'unmovable allocations cut free memory small, long before the last block of the order goes and the '
          + 'largest free order falls. Red: above ' + std.toString(c.fragmentationUnusableRatio * 100) + '%. '
          + 'It matters only while free memory is well above the high watermark (panel "Free memory against '
          + 'watermarks"); near the watermarks memory is short, not cut small.',
        [d.target(
          'kmem_unusable_index{' + d.zone + ', order="$order"}',
          'node {{node}} {{zone}}')],
        'percentunit',
        min=0,
        max=1,
        thresholdSteps=g.thresholds(
          ['transparent', null],
          ['red', c.fragmentationUnusableRatio])), 8, 9),
      g.row('Reclaim and compaction'),
      g.add(g.timeseries(
        'Free memory against watermarks',
        'Free memory per zone against its min, low and high watermarks. Below low, kswapd reclaims in the '
          + 'background; at min, allocating processes reclaim themselves (allocation stalls). Bad: free memory '
          + 'hugging the low or min line. Raise min_free_kbytes or watermark_scale_factor to lift the lines.',
        [d.target(
          'kmem_zone_free_bytes{' + d.zone + '}',
          'node {{node}} {{zone}} free'), d.target(
          'kmem_zone_watermark_bytes{' + d.zone + '}',
          'node {{node}} {{zone}} {{watermark}}')],
        'bytes',
        min=0), 12, 9),
      g.add(g.timeseries(
        'Direct compaction',
        'Direct compactions per second: stalls (a process had to compact before it got its pages), and how '
          + 'they ended. Bad: failures as frequent as stalls, sustained.',
        [d.target(
          'rate(kmem_vmstat_compact_stall_total{' + d.host + '}[$__rate_interval])',
          'stalls'), d.target(
          'rate(kmem_vmstat_compact_fail_total{' + d.host + '}[$__rate_interval])',
          'failed'), d.target(
          'rate(kmem_vmstat_compact_success_total{' + d.host + '}[$__rate_interval])',
          'succeeded')],
        'ops',
        min=0), 12, 9),
      g.add(g.timeseries(
        'Allocation stalls (direct reclaim)',
        'Allocations per second that entered direct reclaim: one counter on kernels before 4.8, one per zone '
          + 'type later. A few are normal under memory pressure; a sustained rate means kswapd cannot keep free '
          + 'memory above the watermarks and processes wait.',
        [
          d.target(
          'rate(kmem_vmstat_allocstall' + p[0] + '_total{' + d.host + '}[$__rate_interval])',
          p[1])
          for p in [['', 'all zones (before 4.8)'], ['_dma', 'DMA'], ['_dma32', 'DMA32'], ['_normal', 'Normal'], ['_movable', 'Movable']]
        ],
        'ops',
        min=0), 12, 9),
      g.add(g.timeseries(
        'Allocation failures in the kernel log',
        'Allocation failures and stalls the kernel logged, per event and order: each bar is the number in the '
          + 'rate interval before it, so one event shows in a few neighbouring bars. Any bar is bad: something in '
          + 'the kernel did not get its memory; order 4-6 points at fragmentation, order 0 at memory pressure.',
        [d.target(
          'sum by (event, order) (increase(kmem_kernel_log_events_total{' + d.host + ', event=~"page_allocation_failure|page_allocation_stall|slub_allocation_failure"}[$__rate_interval]))',
          '{{event}} order {{order}}')],
        'short',
        bars=true,
        min=0), 12, 9),
      ],
    ),
  },
}
