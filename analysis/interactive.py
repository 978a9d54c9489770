"""The interactive report, DIR/figures/index.html: the phase diagrams as Vega-Lite charts (built
with Altair; Vega, Vega-Lite and Vega-Embed inlined, so the page opens from file://, offline).

- One heatmap per panel: the whole grid, or one per sub-grid, or one per value of the axes
  besides x and y. Controls above them switch the metric (final or best validation accuracy,
  training accuracy, the gain over A = 1 at the same other axes) and the panel.
- Hovering a cell shows its mean, std and n over completed seeds, the 95% t interval of the mean
  (of the paired gain, for the gain), the p-value of its gain over A = 1 (paired t-test, Holm's
  adjustment over the panel's cells: analysis.reduce.significance_table) and the seeds that
  failed or diverged.
- Clicking a cell shows its seeds' learning curves (validation and training accuracy against
  epoch, the stop epoch marked), their trial ids, statuses and the cell's config.

Every number comes from analysis.reduce over the results directory (the tables the static
figures draw), none is computed in the browser. With `live`, the page says how far the sweep got
and reloads itself every REFRESH_SECONDS (the live report, sweep.commands.live, rewrites it as points
finish).
"""

from __future__ import annotations

import functools
import html
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from tiltsweep.analysis import plots
from tiltsweep.analysis.figures import ordered, value_text
from tiltsweep.analysis.load import Results
from tiltsweep.analysis.reduce import SEED, comparable, group_axes, reduce_seeds, t_interval

REFRESH_SECONDS = 10
CURVE_POINTS = 200  # at most this many epochs of a trial's curve go into the page (evenly strided)
LABELLED_CELLS = 400  # panels with more cells are drawn without the numbers in the cells
CURVES = {"val_accuracy": "validation", "train_accuracy": "training"}


@dataclass
class Panel:
    title: str
    results: Results  # the panel's trials, with the panel's axes (x, y and seed)
    x: str
    y: str
    # The tables are reduced over `source` and cut to `where` (the values of the other axes), so
    # that a panel of a faceted grid shows the static figures' numbers (Holm over all their cells)
    source: Optional[Results] = None
    where: dict = field(default_factory=dict)


def panels_of(results: Results, x: Optional[str], y: Optional[str]) -> list[Panel]:
    """The sub-grids of a list grid; else one panel per combination of the axes besides x and y."""
    if len(results.subgrids) > 1:
        panels = []
        for index, sub in enumerate(results.subgrids):
            sub_x, sub_y, axes = plots.subgrid_axes(sub)
            if sub_x:
                summary = results.summary[results.summary["trial_id"].isin(sub["trial_ids"])]
                panels.append(Panel(f"sub-grid {index + 1}: {sub_y} against {sub_x}", restricted(results, summary, axes), sub_x, sub_y))
        return panels
    x, y = plots.phase_axes(results, x, y)
    if not (x and y):
        return []
    axes = {a: v for a, v in results.axes.items() if a in (x, y, SEED)}
    others = [a for a in group_axes(results.axes) if a not in (x, y)]
    if not others:
        return [Panel(results.name, restricted(results, results.summary, axes), x, y, results)]
    panels = []
    for values in itertools.product(*([comparable(v) for v in results.axes[a]] for a in others)):
        where = dict(zip(others, values))
        chosen = np.logical_and.reduce([results.summary[a].map(comparable) == v for a, v in where.items()]) if len(results.summary) else []
        summary = results.summary[chosen] if len(results.summary) else results.summary
        title = ", ".join(f"{a} = {value_text(v)}" for a, v in where.items())
        panels.append(Panel(title, restricted(results, summary, axes, where), x, y, results, where))
    return panels


def restricted(results: Results, summary: pd.DataFrame, axes: dict, where: Optional[dict] = None) -> Results:
    """`results` with only `summary`'s rows and `axes`; a refined sweep's cells projected on them."""
    cells = None
    if results.cells is not None:
        by, kept = group_axes(results.axes), group_axes(axes)
        cells = {tuple(dict(zip(by, cell))[a] for a in kept) for cell in results.cells
                 if all(dict(zip(by, cell))[a] == v for a, v in (where or {}).items())}
    return Results(results.name, results.directory, summary.reset_index(drop=True), axes, [], results.store, cells)


def metrics_of(results: Results, metric: str) -> dict[str, str]:
    """{key: label} of the metrics the report switches between; the gain is `<metric>_gain`."""
    chosen = [m for m in dict.fromkeys([metric, "val_accuracy", "best_val_accuracy", "train_accuracy"])
              if m in results.summary.columns or results.summary.empty]
    labels = {m: plots.metric_label(m) for m in chosen}
    if plots.can_gain(results):
        labels[f"{metric}_gain"] = f"gain in {plots.metric_label(metric)} over A = 1"
    return labels


def number(value, fmt: str = ".4f") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def cell_key(panel_index: int, row, panel: Panel) -> str:
    return f"{panel_index}|{value_text(row[panel.x])}|{value_text(row[panel.y])}"


def not_completed(summary: pd.DataFrame, x: str, y: str) -> dict[tuple, str]:
    """{(x, y): 'seed 1 failed (reason); seed 2 diverged'} of the cells with such trials."""
    said: dict[tuple, list[str]] = {}
    for row in summary[summary["status"] != "completed"].to_dict("records"):
        error = row.get("error")
        reason = f" ({error[:60]})" if isinstance(error, str) and error else ""
        said.setdefault((row[x], row[y]), []).append(f"seed {row.get(SEED, '?')} {row['status']}{reason}")
    return {cell: "; ".join(parts) for cell, parts in said.items()}


def cell_rows(panel_index: int, panel: Panel, labels: dict[str, str], metric: str) -> list[dict]:
    """The heatmap's data: a row per cell and metric, every shown number formatted here."""
    results, x, y = panel.results, panel.x, panel.y
    source = panel.source or results
    live_empty = results.summary.empty
    tables = {}
    for key in labels:
        gain = key.endswith("_gain") and key not in results.summary.columns
        if live_empty:  # no point of the panel finished yet: every cell pending
            tables[key] = reduce_seeds(results.summary, key, results.axes, results.cells)
            continue
        table = plots.phase_table(source, metric if gain else key, gain=gain)
        for axis, value in panel.where.items():
            table = table[table[axis].map(comparable) == value]
        tables[key] = table.reset_index(drop=True)
    tested = tables.get(f"{metric}_gain")
    test_of = {(t[x], t[y]): t for t in tested.to_dict("records")} if tested is not None and not live_empty else {}
    unfinished = not_completed(results.summary, x, y)
    rows = []
    for key, table in tables.items():
        gain = tested is not None and table is tested
        low_end, high_end = table["mean"].min(), table["mean"].max()
        for row in table.to_dict("records"):
            low, high = (row.get("ci_low", math.nan), row.get("ci_high", math.nan)) if gain else t_interval(row["mean"], row["std"], row["n"])
            test = test_of.get((row[x], row[y]))
            p = test["p_adjusted"] if test is not None else math.nan
            status = row["cell_status"]
            shown = {"ok": number(row["mean"], "+.3f" if gain else ".3f"), "missing": "not run yet"}.get(status, status)
            rows.append({
                "metric": key, "cell": cell_key(panel_index, row, panel), "x": value_text(row[x]), "y": value_text(row[y]),
                "mean": None if math.isnan(row["mean"]) else float(row["mean"]), "label": shown, "status": status,
                "light": bool(high_end > low_end and (row["mean"] - low_end) / (high_end - low_end) > 0.55),  # viridis' yellow end
                "significant": bool(gain and test is not None and test["significant"]),
                "tooltip_mean": number(row["mean"]), "tooltip_std": number(row["std"]), "tooltip_n": int(row["n"]),
                "tooltip_ci": "–" if math.isnan(low) else f"[{low:.4f}, {high:.4f}]",
                "tooltip_p": "–" if math.isnan(p) else f"{p:.3g}" + (" (significant)" if test is not None and test["significant"] else ""),
                "tooltip_not_completed": unfinished.get((row[x], row[y]), "none"),
            })
    return rows


def heatmap_spec(panel: Panel, rows: list[dict], metric: str) -> dict:
    """The Vega-Lite spec of one panel: rects coloured by `mean` (grey where there is none), the
    numbers in the cells, significant gains outlined; the `metric` param chooses which rows are
    drawn. The rows go in as the spec's `cells` dataset after Altair's to_dict, which would
    otherwise walk every value (the tests validate the spec)."""
    import altair as alt

    chosen = alt.param(name="metric", value=metric)
    x_order = [value_text(v) for v in ordered(panel.results.axes[panel.x])]
    y_order = [value_text(v) for v in reversed(ordered(panel.results.axes[panel.y]))]
    tooltip = [
        alt.Tooltip("x:N", title=panel.x), alt.Tooltip("y:N", title=panel.y), alt.Tooltip("tooltip_mean:N", title="mean"),
        alt.Tooltip("tooltip_std:N", title="std"), alt.Tooltip("tooltip_n:Q", title="n (completed seeds)"),
        alt.Tooltip("tooltip_ci:N", title="95% CI"), alt.Tooltip("tooltip_p:N", title="p, gain ≠ 0 (Holm)"),
        alt.Tooltip("tooltip_not_completed:N", title="not completed"),
    ]
    cells = len(x_order) * len(y_order)
    side = max(18, min(60, int(560 / max(len(x_order), len(y_order)))))
    base = alt.Chart(alt.NamedData(name="cells")).transform_filter(alt.datum.metric == chosen).encode(
        x=alt.X("x:N", sort=x_order, title=panel.x, axis=alt.Axis(labelAngle=0)), y=alt.Y("y:N", sort=y_order, title=panel.y),
        tooltip=tooltip, description=alt.Description("cell:N"))
    layers = [
        base.mark_rect().encode(color=alt.Color("mean:Q", scale=alt.Scale(scheme="viridis"), title="value")),
        base.transform_filter("!isValid(datum.mean)").mark_rect(color="#e0e0e0"),
        base.transform_filter(alt.datum.significant).mark_rect(fillOpacity=0, stroke="black", strokeWidth=2),
    ]
    if cells <= LABELLED_CELLS:
        layers.append(base.mark_text(fontSize=10 if side >= 40 else 8).encode(
            text="label:N", color=alt.condition("!isValid(datum.mean) || datum.light", alt.value("#222"), alt.value("white"))))
    spec = alt.layer(*layers).add_params(chosen).properties(
        width=side * len(x_order), height=side * len(y_order), title=panel.title).to_dict(validate=False)
    spec["datasets"] = {"cells": rows}
    return spec


def curves_spec():
    """The clicked cell's curves: two named data sets the page fills (`curves`, `stops`)."""
    import altair as alt

    lines = alt.Chart(alt.NamedData(name="curves")).mark_line(strokeWidth=1.5).encode(
        x=alt.X("epoch:Q", title="epoch"), y=alt.Y("value:Q", title="accuracy", scale=alt.Scale(zero=False)),
        color=alt.Color("seed:N", title="seed"), strokeDash=alt.StrokeDash("curve:N", title="curve"), detail="trial_id:N",
        tooltip=["trial_id:N", "seed:N", "curve:N", "epoch:Q", alt.Tooltip("value:Q", format=".4f")])
    stops = alt.Chart(alt.NamedData(name="stops")).mark_rule(color="firebrick", strokeDash=[4, 3]).encode(
        x="epoch:Q", tooltip=[alt.Tooltip("epoch:Q", title="oscillations stop at epoch")])
    return (alt.layer(lines, stops).properties(width=560, height=280, autosize=alt.AutoSizeParams(type="pad", resize=True))  # lays out again when filled
            .configure_legend(orient="bottom", labelLimit=0))


def trial_details(panel_index: int, panel: Panel, curves: pd.DataFrame) -> tuple[dict, dict]:
    """({cell: {trials, config, stop}}, {trial_id: {epoch, validation, training}}) for the clicks."""
    cells = {}
    summary = panel.results.summary
    if summary.empty:
        return cells, {}
    for (x_value, y_value), trials in summary.groupby([panel.x, panel.y], dropna=False):
        row = {panel.x: x_value, panel.y: y_value}
        config = json.loads(trials["config"].iloc[0])
        config.pop("seed", None)
        cells[cell_key(panel_index, row, panel)] = {
            "trials": [{"trial_id": t["trial_id"], "seed": str(t.get(SEED, "")), "status": t["status"],
                        "error": t["error"] if isinstance(t["error"], str) else ""} for t in trials.to_dict("records")],
            "where": f"{panel.x} = {value_text(x_value)}, {panel.y} = {value_text(y_value)}",
            "config": json.dumps(config, indent=1, sort_keys=True),
            "stop": config.get("loss", {}).get("stop_oscillation_epoch"),
        }
    return cells, curves_of(curves[curves["trial_id"].isin(set(summary["trial_id"]))] if len(curves) else curves)


def curves_of(curves: pd.DataFrame) -> dict[str, dict]:
    """{trial_id: {epoch: [...], validation: [...], training: [...]}}, at most CURVE_POINTS
    evaluations a trial (evenly strided), rounded to 4 decimals; one sort for all trials."""
    if curves.empty:
        return {}
    curves = curves.sort_values(["trial_id", "epoch"], kind="stable")
    ids, epochs = curves["trial_id"].to_numpy(), curves["epoch"].to_numpy()
    values = {name: curves[column].to_numpy(dtype=float).round(4) for column, name in CURVES.items() if column in curves}
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    found = {}
    for start, end in zip(starts, np.r_[starts[1:], len(ids)]):
        take = start + np.unique(np.linspace(0, end - start - 1, min(end - start, CURVE_POINTS)).round().astype(int))
        found[ids[start]] = {"epoch": epochs[take].astype(int).tolist(),
                             **{name: [None if math.isnan(v) else v for v in column[take].tolist()] for name, column in values.items()}}
    return found


@functools.lru_cache(maxsize=1)
def vega_javascript() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script (vl-convert's bundle, ~0.9 MB), kept in
    $XDG_CACHE_HOME/tiltsweep/ because bundling takes seconds."""
    import vl_convert

    from tiltsweep.sweep.store.files import atomic_write

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tiltsweep"
    path = cache / f"vega-{vl_convert.get_vega_version()}-lite-{vl_convert.get_vegalite_versions()[-1]}-embed-{vl_convert.get_vega_embed_version()}.js"
    try:
        return path.read_text()
    except OSError:
        pass
    bundle = vl_convert.javascript_bundle()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write(path, bundle.encode())
    except OSError:
        pass  # a read-only home: bundle again next time
    return bundle


def script_json(value) -> str:
    """JSON safe inside <script>: no '</' can close the tag."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def report_page(results: Results, metric: str = "val_accuracy", x: Optional[str] = None, y: Optional[str] = None,
                live: bool = False, static_html: str = "") -> str:
    """The whole index.html: the interactive part, then `static_html` (the figures for papers)."""
    panels = panels_of(results, x, y)
    labels = [metrics_of(panel.results, metric) for panel in panels]  # a sub-grid without A = 1 has no gain
    shown = [metric if metric in own else next(iter(own)) for own in labels]
    specs, cells, curves = [], {}, {}
    all_curves = results.curves if not results.summary.empty else pd.DataFrame()
    for index, panel in enumerate(panels):
        specs.append(heatmap_spec(panel, cell_rows(index, panel, labels[index], metric), shown[index]))
        panel_cells, panel_curves = trial_details(index, panel, all_curves)
        cells.update(panel_cells)
        curves.update(panel_curves)
    data = {"panels": specs, "curves_spec": curves_spec().to_dict(validate=False), "cells": cells, "curves": curves,
            "metric": shown[0] if panels else metric, "metrics": [list(own.items()) for own in labels]}
    counts = results.trials["status"].value_counts().to_dict() if len(results.summary) else {}
    description = results.store.description() if results.store else None
    total = len(description.points) if description else len(results.trials)
    finished = sum(counts.get(s, 0) for s in ("completed", "diverged", "failed"))
    state = (f"running: {finished} of {total} points finished; this page reloads every {REFRESH_SECONDS} s" if live
             else f"{finished} of {total} points finished")
    options = lambda items: "".join(f"<option value='{html.escape(k)}'>{html.escape(v)}</option>" for k, v in items)
    return PAGE.format(
        title=html.escape(results.name), refresh=f"<meta http-equiv='refresh' content='{REFRESH_SECONDS}'>" if live else "",
        state=html.escape(state), counts=html.escape(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no point finished yet"),
        metric_options=options(labels[0].items() if panels else []), panel_options=options((str(i), p.title) for i, p in enumerate(panels)),
        panel_control="" if len(panels) > 1 else "hidden",
        panel_divs="".join(f"<div class='panel' id='panel-{i}'{'' if i == 0 else ' hidden'}></div>" for i in range(len(panels)))
        or "<p>No phase diagram: the grid needs two swept axes besides seed.</p>",
        vega=vega_javascript().replace("</script", "<\\/script"), data=script_json(data), script=SCRIPT, static=static_html)


# [hidden] is forced: vega-embed's own `.vega-embed {display: inline-block}` would show hidden panels.
PAGE = """<!doctype html>
<html><head><meta charset='utf-8'>{refresh}<title>{title}</title>
<style>
body{{font-family:sans-serif;margin:1.5em 2em;max-width:1250px;color:#222}}
[hidden]{{display:none !important}}
.controls{{margin:.6em 0;display:flex;gap:1.5em;align-items:center}}
#detail{{border-top:1px solid #ccc;margin-top:1em;padding-top:.5em}}
pre{{background:#f6f6f6;padding:.5em;max-height:18em;overflow:auto;font-size:12px}}
table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}
img{{max-width:100%;border:1px solid #ddd}} details{{margin-top:2em}} summary{{font-size:1.3em;cursor:pointer}}
</style></head><body>
<h1>{title}</h1>
<p id='state'>{state} ({counts}).</p>
<div class='controls'>
<label>metric <select id='metric'>{metric_options}</select></label>
<label {panel_control}>panel <select id='panel'>{panel_options}</select></label>
<span id='shown'></span>
</div>
<p>Hover a cell for its numbers; click it for its seeds. Means over completed seeds, std with ddof = 1,
95% t intervals; p: the paired t-test of the cell's gain over A = 1, Holm-adjusted over the panel's cells
(outlined on the gain: p below 0.05). Grey cells have no completed seed.</p>
{panel_divs}
<div id='detail' hidden>
<h2 id='detail-title'></h2>
<div id='curves'></div>
<table id='trials'><thead><tr><th>trial id</th><th>seed</th><th>status</th><th>error</th></tr></thead><tbody></tbody></table>
<p>the cell's config (seed aside):</p><pre id='config'></pre>
</div>
<script>{vega}</script>
<script type='application/json' id='report-data'>{data}</script>
<script>{script}</script>
{static}
</body></html>
"""

SCRIPT = """
const report = JSON.parse(document.getElementById('report-data').textContent);
const views = [];
let curvesView = null;
const options = {renderer: 'svg', actions: false};
function showMetric(metric) {
  for (const view of views) view.signal('metric', metric).runAsync();
  const select = document.getElementById('metric');
  document.getElementById('shown').textContent = 'shown: ' + select.options[select.selectedIndex].text;
}
function showCell(key) {
  const cell = report.cells[key];
  if (!cell) return;
  document.getElementById('detail').hidden = false;
  document.getElementById('detail-title').textContent = cell.where + ': ' + cell.trials.length + ' seeds';
  const rows = [];
  for (const trial of cell.trials) {
    const curve = report.curves[trial.trial_id];
    if (!curve) continue;
    for (const name of ['validation', 'training']) {
      if (!curve[name]) continue;
      curve.epoch.forEach((epoch, i) => { if (curve[name][i] !== null) rows.push({trial_id: trial.trial_id, seed: trial.seed, curve: name, epoch: epoch, value: curve[name][i]}); });
    }
  }
  const stops = cell.stop === null || cell.stop === undefined ? [] : [{epoch: cell.stop}];
  curvesView.data('curves', rows).data('stops', stops).runAsync();
  const body = document.querySelector('#trials tbody');
  body.replaceChildren(...cell.trials.map(trial => {
    const tr = document.createElement('tr');
    for (const value of [trial.trial_id, trial.seed, trial.status, trial.error]) {
      const td = document.createElement('td'); td.textContent = value; tr.appendChild(td);
    }
    tr.className = 'trial'; return tr;
  }));
  document.getElementById('config').textContent = cell.config;
}
async function start() {
  curvesView = (await vegaEmbed('#curves', report.curves_spec, options)).view;
  for (let i = 0; i < report.panels.length; i++) {
    const view = (await vegaEmbed('#panel-' + i, report.panels[i], options)).view;
    view.addEventListener('click', (event, item) => { if (item && item.datum && item.datum.cell) showCell(item.datum.cell); });
    views.push(view);
  }
  const metric = document.getElementById('metric');
  metric.value = report.metric;
  metric.addEventListener('change', () => showMetric(metric.value));
  document.getElementById('panel').addEventListener('change', event => {
    const panel = Number(event.target.value), kept = metric.value;
    document.querySelectorAll('.panel').forEach((div, i) => { div.hidden = i !== panel; });
    metric.replaceChildren(...report.metrics[panel].map(([key, label]) => new Option(label, key)));  // the panel's own metrics
    metric.value = report.metrics[panel].some(([key]) => key === kept) ? kept : report.metrics[panel][0][0];
    showMetric(metric.value);
  });
  showMetric(metric.value);
  document.body.dataset.ready = 'yes';
}
start();
"""
