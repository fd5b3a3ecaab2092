// Per host: slab caches and nf_conntrack.
local g = import '../lib/grafana.libsonnet';
local common = import 'common.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local d = common.new(c),
    'slab-conntrack.json': d.dashboard(
      'kmem-slab-conntrack', 'Slab and conntrack',
      'Which slab caches hold kernel memory, and are nf_conntrack caches leaking (RHEL 7 / 3.10)?',
      d.hostVariables,
      [
      g.row('nf_conntrack caches and network namespaces'),
      g.add(g.stat(
        'nf_conntrack slab caches',
        'Slab caches that belong to conntrack. On RHEL/CentOS 7 (3.10) each network namespace has its own '
          + 'nf_conntrack_<id> cache; modern kernels have one shared cache. Bad: far more than live network '
          + 'namespaces (next panel).',
        [d.target(
          'kmem_nf_conntrack_slab_caches{' + d.host + '}',
          'caches')],
        'none'), 6, 5),
      g.add(g.stat(
        'Live network namespaces',
        'Distinct network namespaces held by processes or bind mounts, from the exporter\'s background walk of '
          + '/proc. Each running container (pod) has one, the host one more.',
        [d.target(
          'kmem_network_namespaces{' + d.host + '}',
          'namespaces')],
        'none'), 6, 5),
      g.add(g.stat(
        'Caches beyond live namespaces',
        'nf_conntrack caches minus live network namespaces (0 when fewer): on a 3.10 kernel, caches of '
          + 'removed namespaces that were never freed. Orange above 0, red above 5 (the leak alert also needs '
          + 'twice the namespaces). Meaningless on modern kernels, where it stays 0.',
        [d.target(
          'clamp_min(kmem_nf_conntrack_slab_caches{' + d.host + '} - kmem_network_namespaces{' + d.host + '}, 0)',
          'leaked')],
        'none',
        steps=g.thresholds(
          ['green', null],
          ['orange', 1],
          ['red', 6]),
        colorMode='background'), 6, 5),
      g.add(g.gauge(
        'Conntrack table fill',
        'Conntrack entries in use as a share of nf_conntrack_max. Orange above 75%, red above 90%: when full, '
          + 'the kernel drops packets of new connections.',
        [d.target(
          'kmem_nf_conntrack_entries{' + d.host + '} / kmem_nf_conntrack_entries_limit{' + d.host + '}',
          'table fill')],
        'percentunit',
        steps=g.thresholds(
          ['green', null],
          ['orange', 0.75],
          ['red', 0.9]),
        min=0,
        max=1), 6, 5),
      g.add(g.timeseries(
        'nf_conntrack caches against network namespaces',
        'Both counts over time. On a 3.10 kernel the lines should move together; a cache line that climbs '
          + 'away from the namespace line is the leak.',
        [d.target(
          'kmem_nf_conntrack_slab_caches{' + d.host + '}',
          'nf_conntrack caches'), d.target(
          'kmem_network_namespaces{' + d.host + '}',
          'network namespaces')],
        'none',
        min=0), 12, 8),
      g.add(g.timeseries(
        'Conntrack entries',
        'Conntrack entries in use and the table\'s limit (nf_conntrack_max). Bad: entries close to the limit.',
        [d.target(
          'kmem_nf_conntrack_entries{' + d.host + '}',
          'entries'), d.target(
          'kmem_nf_conntrack_entries_limit{' + d.host + '}',
          'limit')],
        'none',
        min=0), 12, 8),
      g.row('Slab caches'),
      g.add(g.bargauge(
        'Top slab caches by bytes',
        'The 15 slab caches (or cache families: per-namespace and per-cgroup copies are folded into one) '
          + 'holding the most memory now. Slab memory cannot be moved by compaction, so large and growing caches '
          + 'fragment memory; dentry and inode caches can be freed by dropping caches, others cannot.',
        [d.target(
          'topk(15, kmem_slab_bytes{' + d.host + '})',
          '{{cache}}',
          instant=true)],
        'bytes'), 12, 12),
      g.add(g.bargauge(
        'Caches per family',
        'How many slab caches each series stands for: per-network-namespace nf_conntrack caches and '
          + 'per-memory-cgroup copies (dentry(1234:docker-abc)) are folded into their family. Bad: families with '
          + 'thousands of caches, which grow with containers started, not with containers running.',
        [d.target(
          'topk(15, kmem_slab_caches{' + d.host + '})',
          '{{cache}}',
          instant=true)],
        'none'), 12, 12),
      g.add(g.timeseries(
        'Top slab caches over time',
        'Memory held over time by the 10 slab caches that are largest at the end of the time range. Bad: a '
          + 'cache that grows steadily and never shrinks (a leak), or one that grows with container churn.',
        [d.target(
          'kmem_slab_bytes{' + d.host + '} and on (cache) topk(10, kmem_slab_bytes{' + d.host + '} @ end())',
          '{{cache}}')],
        'bytes',
        min=0), 12, 9),
      g.add(g.timeseries(
        'nf_conntrack slab objects',
        'Objects in all nf_conntrack caches: active (tracked connections) and allocated. Many allocated but '
          + 'few active objects spread over many caches is memory held by leaked caches.',
        [d.target(
          'kmem_nf_conntrack_slab_objects_active{' + d.host + '}',
          'active'), d.target(
          'kmem_nf_conntrack_slab_objects{' + d.host + '}',
          'allocated')],
        'none',
        min=0), 12, 9),
      ],
    ),
  },
}
