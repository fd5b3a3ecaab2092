// Memory cgroups: the kernel has 65535 memory cgroup IDs. The ID alerts judge kmem_memcg_ids_in_use: on kernels before
// 4.7 cgroups removed but not yet freed ("dying") keep their IDs; from 4.7 on they release them (they cost memory,
// not IDs), so only the online memory cgroups count.
local utils = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local u = utils.new(c),
    local f = u.formatArgs({ sel: c.kmemSelector, host: u.hostLabels }),
    local number(metric) = u.valueOf(metric + '{HOST}'),
    local inUse =
      number('kmem_memcg_ids_in_use') + ' memory cgroup IDs are taken on {{ $labels.instance }}, of a limit of '
      + number('kmem_memcg_id_limit') + ' (the kernel holds ' + number('kmem_memcg_cgroups') + ' memory cgroups, '
      + number('kmem_memcg_dying_cgroups') + ' of them dying; dying ones hold an ID only on kernels before 4.7).',
    local share(ratio, duration, severity, name, summaryTail, descriptionTail) = {
      alert: name,
      expr: 'kmem_memcg_ids_in_use{%(sel)s} / kmem_memcg_id_limit{%(sel)s} > %(ratio)s' % f { ratio: u.number(ratio) },
      'for': duration,
      labels: { severity: severity },
      annotations: {
        summary: u.annotation(
          '{{ $value | humanizePercentage }} of the memory cgroup IDs are in use on {{ $labels.instance }}'
          + summaryTail
        ),
        description: u.annotation(inUse + ' ' + descriptionTail),
        runbook_url: u.runbook(name),
      },
    },
    groups+: [{
      name: 'kmem-memcg',
      rules: [
        share(c.memcgIdsHighRatio, c.memcgIdsHighFor, 'warning', 'KmemMemcgIdsHigh', '.',
              'When none is left, no new container or pod can start on this node.'),
        share(c.memcgIdsCriticalRatio, c.memcgIdsCriticalFor, 'critical', 'KmemMemcgIdsCritical',
              '; container starts will fail.', 'Drain the node before it refuses new containers.'),
        // The straight line through the last hours reaches the limit within the horizon while the count grows. A
        // flat count, even one close to the limit, does not fire (the share alerts above cover it).
        {
          alert: 'KmemMemcgIdsExhaustionPredicted',
          expr: |||
            predict_linear(kmem_memcg_ids_in_use{%(sel)s}[%(memcgPredictWindow)s], %(memcgPredictHorizonHours)s * 3600) >= kmem_memcg_id_limit{%(sel)s}
            and
            deriv(kmem_memcg_ids_in_use{%(sel)s}[%(memcgPredictWindow)s]) > 0
          ||| % f,
          'for': c.memcgPredictFor,
          labels: { severity: 'warning' },
          annotations: {
            local horizon = u.words('%dh' % c.memcgPredictHorizonHours),
            summary: u.annotation(
              'Memory cgroup IDs on {{ $labels.instance }} run out within ' + horizon + ' at the current rate.'
            ),
            description: u.annotation(
              'At the rate of the last ' + u.words(c.memcgPredictWindow) + ', {{ $labels.instance }} will have '
              + '{{ $value | printf "%.0f" }} memory cgroup IDs taken in ' + horizon + ', at or above the limit of '
              + number('kmem_memcg_id_limit') + ' (now ' + number('kmem_memcg_ids_in_use')
              + '): the IDs run out in about '
              + u.valueOf('(kmem_memcg_id_limit{HOST} - kmem_memcg_ids_in_use{HOST}) / deriv(kmem_memcg_ids_in_use{HOST}['
                          + c.memcgPredictWindow + '])', 'value | humanizeDuration')
              + '.'
            ),
            runbook_url: u.runbook('KmemMemcgIdsExhaustionPredicted'),
          },
        },
        // Growth in each of the last two windows of memcgDyingWindow (deriv over two disjoint windows, one hour each), not a single jump:
        // removing many containers at once (a node drain) turns them dying together, a step that lies in one
        // window only and is freed again later. With `for: 1h`, a steady leak fires about two hours after it starts.
        {
          alert: 'KmemMemcgDyingGrowing',
          expr: |||
            deriv(kmem_memcg_dying_cgroups{%(sel)s}[%(memcgDyingWindow)s]) * 3600 > %(memcgDyingPerHour)s
            and
            deriv(kmem_memcg_dying_cgroups{%(sel)s}[%(memcgDyingWindow)s] offset %(memcgDyingWindow)s) * 3600 > %(memcgDyingPerHour)s
            and
            kmem_memcg_dying_cgroups{%(sel)s} > %(memcgDyingMinimum)s
          ||| % f,
          'for': c.memcgDyingFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: u.annotation('Dying memory cgroups pile up on {{ $labels.instance }}.'),
            description: u.annotation(
              'Dying memory cgroups (removed, but not freed) on {{ $labels.instance }} have grown by '
              + 'about {{ $value | printf "%.0f" }} an hour for at least two hours, now '
              + number('kmem_memcg_dying_cgroups')
              + '. They are not being freed: each one keeps memory charged to it (page cache, kernel memory), and '
              + 'on kernels before 4.7 its ID too, so there the memory cgroup IDs run out at this pace.'
            ),
            runbook_url: u.runbook('KmemMemcgDyingGrowing'),
          },
        },
        // 3.10 kernels before 3.10.0-1075.el7 (CentOS/RHEL 7.8) leak memory cgroups with kmem accounting on.
        {
          alert: 'KmemKmemAccountingOnBuggyKernel',
          expr: u.clustered(|||
            kmem_memcg_kmem_enabled_cgroups{%(sel)s} > 0
            and on (instance, job)
            kmem_memcg_kmem_accounting_info{%(sel)s, mode="per-cgroup"} == 1
            and on (instance, job)
            kmem_kernel_info{%(sel)s, release=~`3\.10\.0-([0-9]{1,3}|10[0-6][0-9]|107[0-4])([.-].*)?`}
          ||| % f),
          'for': c.kmemAccountingFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: u.annotation(
              'Kernel memory accounting is on for {{ $value | printf "%.0f" }} memory cgroups on a 3.10 kernel '
              + 'that leaks them ({{ $labels.instance }}).'
            ),
            description: u.annotation(
              '{{ $labels.instance }} runs kernel ' + u.valueOf('kmem_kernel_info{HOST}', 'label "release"')
              + ' and {{ $value | printf "%.0f" }} of its memory cgroups have kmem accounting switched on (usually '
              + 'by runc or the kubelet). On 3.10 kernels before 3.10.0-1075.el7 such cgroups are not freed after '
              + 'removal, so the 65535 memory cgroup IDs run out, and per-cgroup slab caches fail to be created.'
            ),
            runbook_url: u.runbook('KmemKmemAccountingOnBuggyKernel'),
          },
        },
      ],
    }],
  },
}
