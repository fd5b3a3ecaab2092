// Building blocks of Grafana's dashboard JSON model (schemaVersion 39): panels, variables, a grid layout.
local datasource = { type: 'prometheus', uid: '${datasource}' };

{
  datasource:: datasource,

  // A Prometheus query; refIds are assigned when the panel is built.
  target(expr, legend='', instant=false):: {
    datasource: datasource,
    editorMode: 'code',
    expr: expr,
    legendFormat: if legend == '' then '__auto' else legend,
    range: !instant,
    instant: instant,
  },

  // Each step is [color, from value] (null: from the lowest).
  thresholds(first, second=null, third=null)::
    { mode: 'absolute', steps: [{ color: s[0], value: s[1] } for s in [first, second, third] if s != null] },
  goodLow:: self.thresholds(['green', null], ['orange', 0.8], ['red', 0.95]),
  neutral:: self.thresholds(['green', null]),

  // [[value, text, color], ...]
  valueMapping(texts):: [{
    type: 'value',
    options: { [std.toString(texts[i][0])]: { text: texts[i][1], color: texts[i][2], index: i }
               for i in std.range(0, std.length(texts) - 1) },
  }],

  local reduceLast = { calcs: ['lastNotNull'], fields: '', values: false },

  panel(kind, title, description, targets, defaults, options):: {
    type: kind,
    title: title,
    description: description,
    datasource: datasource,
    fieldConfig: { defaults: defaults, overrides: [] },
    options: options,
    targets: [targets[i] { refId: 'ABCDEFGH'[i] } for i in std.range(0, std.length(targets) - 1)],
  },

  timeseries(title, description, targets, unit, log=0, bars=false, min=null, max=null, stack=false,
             thresholdSteps=null, legendCalcs=['lastNotNull']):: self.panel(
    'timeseries', title, description, targets,
    {
      unit: unit,
      color: { mode: 'palette-classic' },
      custom: {
        drawStyle: if bars then 'bars' else 'line',
        lineWidth: 1,
        fillOpacity: if bars then 80 else 10,
        showPoints: 'never',
        spanNulls: false,
        axisPlacement: 'auto',
        scaleDistribution: if log != 0 then { type: 'log', log: log } else { type: 'linear' },
        stacking: { mode: if stack then 'normal' else 'none', group: 'A' },
        thresholdsStyle: { mode: if thresholdSteps != null then 'line' else 'off' },
      },
      thresholds: if thresholdSteps != null then thresholdSteps else $.neutral,
    } + (if min != null then { min: min } else {}) + (if max != null then { max: max } else {}),
    {
      legend: { displayMode: 'table', placement: 'bottom', showLegend: true, calcs: legendCalcs },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
  ),

  stat(title, description, targets, unit, steps=$.neutral, mappings=[], textMode='auto', colorMode='value',
       graph=false, decimals=null):: self.panel(
    'stat', title, description, targets,
    { unit: unit, color: { mode: 'thresholds' }, thresholds: steps, mappings: mappings }
    + (if decimals != null then { decimals: decimals } else {}),
    { reduceOptions: reduceLast, orientation: 'auto', textMode: textMode, colorMode: colorMode,
      graphMode: if graph then 'area' else 'none', justifyMode: 'auto' },
  ),

  gauge(title, description, targets, unit, steps, min, max):: self.panel(
    'gauge', title, description, targets,
    { unit: unit, min: min, max: max, color: { mode: 'thresholds' }, thresholds: steps },
    { reduceOptions: reduceLast, orientation: 'auto', showThresholdLabels: false, showThresholdMarkers: true },
  ),

  bargauge(title, description, targets, unit, steps=$.neutral):: self.panel(
    'bargauge', title, description, targets,
    { unit: unit, min: 0, color: { mode: 'thresholds' }, thresholds: steps },
    { reduceOptions: reduceLast, orientation: 'horizontal', displayMode: 'gradient', showUnfilled: true,
      valueMode: 'color', namePlacement: 'auto', sizing: 'auto' },
  ),

  // Each series is one row (bucket), named by its legend; numeric names are sorted numerically by Grafana.
  heatmap(title, description, targets, unit, yLabel):: self.panel(
    'heatmap', title, description, [t { format: 'time_series' } for t in targets],
    { unit: unit, custom: { scaleDistribution: { type: 'linear' },
                            hideFrom: { legend: false, tooltip: false, viz: false } } },
    {
      calculate: false,
      cellGap: 1,
      color: { mode: 'scheme', scheme: 'Spectral', scale: 'exponential', exponent: 0.2, steps: 64,
               reverse: true, fill: 'dark-orange' },
      filterValues: { le: 1e-9 },  // zero cells stay empty
      legend: { show: true },
      rowsFrame: { layout: 'unknown', value: 'free blocks' },
      showValue: 'never',
      tooltip: { mode: 'single', yHistogram: false, showColorScale: true },
      yAxis: { axisPlacement: 'left', axisLabel: yLabel, reverse: false },
    },
  ),

  // One table row per series of instant queries, their values as columns (merged on the labels); overrides
  // name the columns and link a column to another dashboard.
  table(title, description, targets, unit, overrides=[], sortBy=[], organize={}):: self.panel(
    'table', title, description, [t { format: 'table', instant: true, range: false } for t in targets],
    { unit: unit, custom: { align: 'auto', cellOptions: { type: 'auto' } }, thresholds: $.neutral },
    { showHeader: true, cellHeight: 'sm', footer: { show: false, reducer: ['sum'], fields: '' }, sortBy: sortBy },
  ) + {
    fieldConfig+: { overrides: overrides },
    transformations: [
      { id: 'merge', options: {} },
      { id: 'organize', options: organize },
    ],
  },

  // A layout item: a row starts a new line of the grid.
  row(title):: { row: title },
  // A layout item: a panel w columns wide and h high, placed after the previous one (or on a new line).
  add(panel, w, h):: { panel: panel, w: w, h: h },

  // Places the items left to right on Grafana's 24-column grid and numbers the panels from 1.
  layout(items)::
    local step(state, item) =
      if std.objectHas(item, 'row') then
        local y = state.y + state.lineHeight;
        state { x: 0, y: y + 1, lineHeight: 0,
                panels+: [{ type: 'row', title: item.row, collapsed: false, panels: [],
                            gridPos: { h: 1, w: 24, x: 0, y: y } }] }
      else
        local wrap = state.x + item.w > 24;
        local x = if wrap then 0 else state.x;
        local y = if wrap then state.y + state.lineHeight else state.y;
        local height = if wrap then 0 else state.lineHeight;
        state { x: x + item.w, y: y, lineHeight: std.max(height, item.h),
                panels+: [item.panel { gridPos: { h: item.h, w: item.w, x: x, y: y } }] };
    local placed = std.foldl(step, items, { x: 0, y: 0, lineHeight: 0, panels: [] }).panels;
    [placed[i] { id: i + 1 } for i in std.range(0, std.length(placed) - 1)],

  datasourceVariable:: {
    type: 'datasource', name: 'datasource', label: 'Data source', query: 'prometheus', current: {}, hide: 0,
    includeAll: false, multi: false, options: [], refresh: 1, regex: '', skipUrlSync: false,
  },

  queryVariable(name, label, query, multi=false, hide=0):: {
    type: 'query', name: name, label: label, datasource: datasource,
    definition: query, query: { query: query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
    current: {}, hide: hide, includeAll: multi, multi: multi, options: [], refresh: 2,
    regex: '', skipUrlSync: false, sort: if multi then 3 else 1,
  } + (if multi then { allValue: '.*' } else {}),

  customVariable(name, label, values, default):: {
    type: 'custom', name: name, label: label, query: std.join(',', values),
    current: { selected: true, text: default, value: default },
    options: [{ selected: v == default, text: v, value: v } for v in values],
    hide: 0, includeAll: false, multi: false, skipUrlSync: false,
  },

  dashboard(uid, title, description, variables, items, tags, refresh, from):: {
    uid: uid,
    title: title,
    description: description,
    tags: tags,
    editable: true,
    graphTooltip: 1,
    fiscalYearStartMonth: 0,
    liveNow: false,
    refresh: refresh,
    schemaVersion: 39,
    version: 1,
    time: { from: from, to: 'now' },
    timepicker: {},
    timezone: '',
    weekStart: '',
    annotations: { list: [{
      builtIn: 1, datasource: { type: 'grafana', uid: '-- Grafana --' }, enable: true, hide: true,
      iconColor: 'rgba(0, 211, 255, 1)', name: 'Annotations & Alerts', type: 'dashboard',
    }] },
    links: [{ type: 'dashboards', tags: tags, asDropdown: false, includeVars: true, keepTime: true,
              title: 'kmem-exporter dashboards', icon: 'external link', targetBlank: false, tooltip: '', url: '' }],
    templating: { list: [$.datasourceVariable] + variables },
    panels: $.layout(items),
  },
}
