// What the kmem-exporter dashboards share: the selector and matchers of their queries, their variables, and
// dashboard() with the tags, refresh and time range of _config.
local g = import '../lib/grafana.libsonnet';
local utils = import '../lib/utils.libsonnet';

{
  new(c):: {
    local u = utils.new(c),
    local multi = c.showMultiCluster,
    local clusterMatcher = if multi then ', ' + c.clusterLabel + '="$cluster"' else '',

    // Matchers of every query: the selector, the cluster and job chosen; `host` adds the instance, `zone` the
    // NUMA nodes and zones chosen.
    fleet:: c.kmemSelector + clusterMatcher + ', job="$job"',
    host:: self.fleet + ', instance="$instance"',
    zone:: self.host + ', node=~"$node", zone=~"$zone"',

    // A query; its by/on clauses name the cluster with multi-cluster on.
    target(expr, legend='', instant=false):: g.target(u.clustered(expr), legend, instant),

    // cluster (with multi-cluster on) and job.
    fleetVariables::
      (if multi then [g.queryVariable('cluster', 'Cluster',
                                      'label_values(kmem_exporter_build_info{%s}, %s)'
                                      % [c.kmemSelector, c.clusterLabel])] else [])
      + [g.queryVariable('job', 'Job', 'label_values(kmem_exporter_build_info{%s%s}, job)'
                                        % [c.kmemSelector, clusterMatcher])],
    hostVariables:: self.fleetVariables + [
      g.queryVariable('instance', 'Host', 'label_values(kmem_exporter_build_info{%s}, instance)' % self.fleet),
    ],
    zoneVariables:: [
      g.queryVariable('node', 'NUMA node', 'label_values(kmem_buddy_free_blocks{%s}, node)' % self.host,
                      multi=true),
      g.queryVariable('zone', 'Zone', 'label_values(kmem_buddy_free_blocks{%s}, zone)' % self.host, multi=true),
    ],

    dashboard(uid, title, description, variables, items)::
      g.dashboard(uid, c.dashboardNamePrefix + title, description, variables, items, c.dashboardTags,
                  c.dashboardRefresh, c.dashboardTimeFrom),
  },
}
