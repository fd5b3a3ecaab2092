// Fleet aggregates: one series per host where the raw data has many (zones x orders, events x orders), so that a
// fleet panel over 1,000 nodes reads 1,000 recorded series instead of every raw series of every node.
local utils = import '../lib/utils.libsonnet';

{
  // Each aggregate's expression, given the label matchers its raw series are read with: the selector here, the
  // selector and a dashboard's matchers in the fleet dashboard when fleetUseRecordingRules is false.
  fleetAggregates:: {
    local c = $._config,
    local u = utils.new(c),
    local failures = 'page_allocation_failure|slub_allocation_failure|slab_cache_create_failure|nf_conntrack_cache_failure',
    local f(m) = u.formatArgs({ m: m, failures: failures }),

    // The largest free block of each host, in the zones that serve the kernel's high-order allocations.
    'instance:kmem_buddy_largest_free_order:max'(m)::
      u.clustered('max by (instance, job) (kmem_buddy_largest_free_order{%(m)s, zone!~"%(ignoredZones)s"})' % f(m)),
    // The worst extfrag index of each host and order, in the same zones.
    'instance_order:kmem_extfrag_index:max'(m)::
      u.clustered('max by (instance, job, order) (kmem_extfrag_index{%(m)s, zone!~"%(ignoredZones)s"})' % f(m)),
    // Memory cgroup IDs in use (kmem_memcg_ids_in_use: dying cgroups count before 4.7 only), as a share of the limit.
    'instance:kmem_memcg_ids_used:ratio'(m)::
      u.clustered('max by (instance, job) (kmem_memcg_ids_in_use{%(m)s}) / max by (instance, job) (kmem_memcg_id_limit{%(m)s})'
                  % f(m)),
    // Seconds until the memory cgroup IDs run out at the rate of the prediction window (1 year when flat or falling).
    'instance:kmem_memcg_ids_exhaustion:seconds'(m):: u.clustered(|||
      clamp_max(
        clamp_min(max by (instance, job) (kmem_memcg_id_limit{%(m)s}) - max by (instance, job) (kmem_memcg_ids_in_use{%(m)s}), 0)
        / clamp_min(max by (instance, job) (deriv(kmem_memcg_ids_in_use{%(m)s}[%(memcgPredictWindow)s])), 1e-9),
        31536000
      )
    ||| % f(m)),
    // nf_conntrack slab caches beyond the live network namespaces (the 3.10 leak; 0 or less elsewhere).
    'instance:kmem_nf_conntrack_slab_caches_beyond_netns:count'(m)::
      u.clustered('max by (instance, job) (kmem_nf_conntrack_slab_caches{%(m)s}) - max by (instance, job) (kmem_network_namespaces{%(m)s})'
                  % f(m)),
    // Allocation failures the kernel logged in the kernel-log window.
    'instance:kmem_kernel_allocation_failures:increase'(m)::
      u.clustered('sum by (instance, job) (increase(kmem_kernel_log_events_total{%(m)s, event=~"%(failures)s"}[%(kernelLogWindow)s]))'
                  % f(m)),
    // Collectors failing now.
    'instance:kmem_collectors_failing:count'(m)::
      u.clustered('sum by (instance, job) (kmem_collector_success{%(m)s} == bool 0)' % f(m)),
    // 1 while a target that served kmem-exporter's metrics fails its scrapes, else 0.
    'instance:kmem_exporter_down:bool'(m)::
      u.clustered('max by (instance, job) (up{%(m)s} == bool 0) and on (instance, job) max_over_time(kmem_exporter_build_info{%(m)s}[%(exporterSeenWindow)s])'
                  % f(m)),
  },

  prometheusRules+:: {
    groups+: [{
      name: 'kmem-fleet',
      rules: [
        { record: name, expr: $.fleetAggregates[name]($._config.kmemSelector) }
        for name in std.objectFieldsAll($.fleetAggregates)
      ],
    }],
  },
}
