// Per host: memory cgroup IDs.
local g = import '../lib/grafana.libsonnet';
local common = import 'common.libsonnet';

{
  grafanaDashboards+:: {
    local c = $._config,
    local d = common.new(c),
    'memcg.json': d.dashboard(
      'kmem-memcg', 'Memory cgroups',
      'How close is this host to the 65535 memory cgroup limit, how fast is it getting there, and is kernel '
      + 'memory accounting leaking cgroups?',
      d.hostVariables,
      [
      g.row('Memory cgroup IDs'),
      g.add(g.gauge(
        'Memory cgroup IDs in use',
        'Memory cgroup IDs taken as a share of the kernel\'s limit of 65535. Kernels before 4.7: every memory '
          + 'cgroup the kernel holds, dying ones included; 4.7 and later: the online ones (a removed cgroup '
          + 'releases its ID). Orange above 80%, red above 95%: at 100% no container or pod can start on this host.',
        [d.target(
          'kmem_memcg_ids_in_use{' + d.host + '} / kmem_memcg_id_limit{' + d.host + '}',
          'in use')],
        'percentunit',
        steps=g.goodLow,
        min=0,
        max=1), 6, 6),
      g.add(g.stat(
        'Time until IDs run out',
        'At the rate of the last 6 hours (the slope predict_linear uses), how long until the memory cgroup IDs '
          + 'in use reach the limit: IDs left divided by IDs taken per second. Shown as 1 year when the count is '
          + 'flat or falling, 0 when no ID is left. Red below 1 day, orange below 1 week.',
        [d.target(
          'clamp_max(clamp_min(kmem_memcg_id_limit{' + d.host + '} - kmem_memcg_ids_in_use{' + d.host + '}, 0) / clamp_min(deriv(kmem_memcg_ids_in_use{' + d.host + '}[6h]), 1e-9), 31536000)',
          'time left')],
        's',
        steps=g.thresholds(
          ['red', null],
          ['orange', 86400],
          ['green', 604800]),
        colorMode='background'), 6, 6),
      g.add(g.stat(
        'kmem accounting',
        'How kernel memory accounting of memory cgroups works on this host: per-cgroup (3.10 and kernels '
          + 'before 4.6; switched on per cgroup by runc), always (4.6 and later, cgroup v2), or disabled '
          + '(cgroup.memory=nokmem). per-cgroup on a 3.10 kernel before 3.10.0-1075.el7 is the combination that '
          + 'leaks memory cgroups.',
        [d.target(
          'kmem_memcg_kmem_accounting_info{' + d.host + '} == 1',
          '{{mode}}')],
        'none',
        textMode='name'), 4, 6),
      g.add(g.stat(
        'Kernel',
        'The running kernel\'s release. 3.10.0 builds before 1075 (RHEL/CentOS 7.8) leak memory cgroups that '
          + 'have kmem accounting on.',
        [d.target(
          'kmem_kernel_info{' + d.host + '}',
          '{{release}}')],
        'none',
        textMode='name'), 4, 6),
      g.add(g.stat(
        'Booted with cgroup.memory=nokmem',
        'Whether the kernel command line turns kernel memory accounting off for all memory cgroups ("yes" is '
          + 'the safe setting on 3.10 hosts).',
        [d.target(
          'kmem_kernel_boot_nokmem{' + d.host + '}',
          'nokmem')],
        'none',
        mappings=g.valueMapping(
          [[0, 'no', 'text'], [1, 'yes', 'green']])), 4, 6),
      g.add(g.stat(
        'kmem-enabled cgroups',
        'Memory cgroups whose kernel memory is accounted. On a 3.10 kernel each of them is freed late or '
          + 'never after removal.',
        [d.target(
          'kmem_memcg_kmem_enabled_cgroups{' + d.host + '}',
          'kmem-enabled')],
        'none'), 8, 4),
      g.add(g.stat(
        'Dying cgroups',
        'Memory cgroups removed but not yet freed: memory is still charged to them (on kernels before 4.7 they '
          + 'hold an ID too). Orange above 1000, red above 10000.',
        [d.target(
          'kmem_memcg_dying_cgroups{' + d.host + '}',
          'dying')],
        'none',
        steps=g.thresholds(
          ['green', null],
          ['orange', 1000],
          ['red', 10000])), 8, 4),
      g.add(g.stat(
        'Cgroup walk age',
        'Seconds since the exporter\'s last completed walk of the cgroup tree (it runs in the background). The '
          + 'numbers above are that old; bad when much older than the walk interval.',
        [d.target(
          'time() - kmem_background_pass_timestamp_seconds{' + d.host + ', collector="memcg"}',
          'age')],
        's',
        steps=g.thresholds(
          ['green', null],
          ['orange', 300],
          ['red', 900])), 8, 4),
      g.row('Over time'),
      g.add(g.timeseries(
        'Memory cgroup IDs in use against the limit',
        'Memory cgroup IDs in use, the 65535 limit, where predict_linear puts the IDs 24 hours ahead from the '
          + 'last 6 hours, and the memory cgroups the kernel holds (dying ones included: from 4.7 on more than the '
          + 'IDs in use). Bad: the prediction line at or above the limit (the exhaustion alert fires then).',
        [d.target(
          'kmem_memcg_ids_in_use{' + d.host + '}',
          'IDs in use'), d.target(
          'kmem_memcg_id_limit{' + d.host + '}',
          'limit'), d.target(
          'clamp_min(predict_linear(kmem_memcg_ids_in_use{' + d.host + '}[6h], 86400), 0)',
          'predicted in 24 h'), d.target(
          'kmem_memcg_cgroups{' + d.host + '}',
          'cgroups held')],
        'none',
        min=0), 12, 9),
      g.add(g.timeseries(
        'Visible, dying and kmem-enabled cgroups',
        'Visible: memory cgroup directories that exist. Dying: removed but not freed (memory still charged to '
          + 'them). kmem-enabled: with kernel memory accounting. Bad: a dying line that only goes up while visible '
          + 'stays flat (the 3.10 leak of IDs; on 4.7 and later a leak of memory).',
        [d.target(
          'kmem_memcg_visible_cgroups{' + d.host + '}',
          'visible'), d.target(
          'kmem_memcg_dying_cgroups{' + d.host + '}',
          'dying'), d.target(
          'kmem_memcg_kmem_enabled_cgroups{' + d.host + '}',
          'kmem-enabled')],
        'none',
        min=0), 12, 9),
      g.add(g.timeseries(
        'Dying cgroups: change per hour',
        'How fast dying memory cgroups accumulate (per hour, from the last hour). Around 0 is normal; a '
          + 'sustained positive rate means removed cgroups are not being freed.',
        [d.target(
          'deriv(kmem_memcg_dying_cgroups{' + d.host + '}[1h]) * 3600',
          'dying per hour')],
        'none'), 24, 8),
      ],
    ),
  },
}
