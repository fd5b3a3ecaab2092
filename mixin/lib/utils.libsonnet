// Helpers that put the mixin's _config into PromQL and alert templates.
{
  new(c):: {
    local multi = c.showMultiCluster,
    local cluster = c.clusterLabel,

    // The labels that name one host: `instance, job`, after the cluster label with multi-cluster on.
    hostLabels:: (if multi then cluster + ', ' else '') + 'instance, job',
    // `instance`, after the cluster label with multi-cluster on.
    instanceLabels:: (if multi then cluster + ', ' else '') + 'instance',

    // Every non-empty `by (...)` and `on (...)` clause of expr gets the cluster label first, with multi-cluster on.
    clustered(expr)::
      if !multi then expr
      else
        local added = std.strReplace(std.strReplace(expr, ' by (', ' by (' + cluster + ', '),
                                     ' on (', ' on (' + cluster + ', ');
        std.strReplace(std.strReplace(added, ' on (' + cluster + ', )', ' on ()'),
                       ' by (' + cluster + ', )', ' by ()'),

    // An alert annotation: each `{{ $labels.instance }}` names the cluster too, with multi-cluster on.
    annotation(text)::
      if !multi then text
      else std.strReplace(text, '{{ $labels.instance }}',
                          '{{ $labels.instance }} in cluster {{ $labels.' + cluster + ' }}'),

    // A Go-template `printf` of a query about the alert's host, for `{{ with <this> | query }}`: each HOST in expr
    // becomes the selector and the host's matchers, filled from the alert's labels; extraArgs follow.
    lookup(expr, extraArgs='')::
      local matchers = c.kmemSelector + ',' + (if multi then cluster + '=%q,' else '') + 'instance=%q';
      local args = (if multi then ' $labels.' + cluster else '') + ' $labels.instance';
      local parts = std.split(expr, 'HOST');
      'printf `' + std.join(matchers, parts) + '`' + std.join('', std.repeat([args], std.length(parts) - 1))
      + extraArgs,

    // `{{ with <query> | query }}{{ . | first | <pipe> }}{{ end }}`: a value of the alert's host (see lookup).
    valueOf(expr, pipe='value | printf "%.0f"')::
      '{{ with ' + self.lookup(expr) + ' | query }}{{ . | first | ' + pipe + ' }}{{ end }}',

    // A Prometheus duration in words, as annotations use it: 5m -> "5 minutes", 1h -> "1 hour".
    words(duration)::
      local unit = duration[std.length(duration) - 1];
      local count = std.parseInt(duration[:std.length(duration) - 1]);
      local name = { s: 'second', m: 'minute', h: 'hour', d: 'day' }[unit];
      '%d %s%s' % [count, name, if count == 1 then '' else 's'],

    // A number as PromQL and people write it: 0.8, not std.toString's 0.80000000000000004.
    number(value):: if value == std.floor(value) then '%d' % value else '%g' % value,

    // The settings and extra, numbers written by number(), for `%` formats.
    formatArgs(extra={})::
      std.mapWithKey(function(key, value) if std.isNumber(value) then self.number(value) else value, c + extra),

    runbook(alert):: c.runbookURLPattern % std.asciiLower(alert),
  },
}
