"""Figures: the one module that imports matplotlib and seaborn. Each function takes reduced data
and returns a matplotlib Figure, for a notebook user to restyle or save.

Figures are built with matplotlib's object API (no pyplot state), so long runs leak nothing and no
display is needed. Annotated cells and marked cells carry a `gid` ("cell:<x>:<y>",
"marked:<status>:<x>:<y>", "partial:<x>:<y>"), which SVG output keeps and tests read.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from tiltsweep.trainers.oscillation import class_weights

MARK_COLOURS = {"diverged": "#d62728", "failed": "#7f3c8d", "missing": "#9e9e9e", "not measured": "#d0d0d0"}


def value_text(value) -> str:
    """Axis values as the grid file wrote them: 1000, not 1000.0."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def ordered(values: Sequence) -> list:
    """Grid values in ascending order when they are all numbers, else as given."""
    values = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
        return sorted(values)
    return values


def significant(row) -> bool:
    """Whether a reduced table's row is a cell whose gain tested significant (analysis.reduce)."""
    flag = row.get("significant")
    return isinstance(flag, (bool, np.bool_)) and bool(flag)


def cell_text(row, fmt: str, show_n: bool) -> str:
    status = row["cell_status"]
    if status != "ok":
        bad = row["n_diverged"] if status == "diverged" else row["n_failed"]
        return status if status in ("missing", "not measured") else f"{status}\n{bad}/{row['n_trials']}"
    spread = "±" + format(row["std"], fmt.lstrip("+")) if not math.isnan(row["std"]) else "(1 seed)"
    lines = [format(row["mean"], fmt), spread]
    if show_n:
        lines.append(f"n={row['n']}")
    if "p_adjusted" in row.index and row.get("test") != "baseline":
        lines.append(f"p={row['p_adjusted']:.2g}" + ("*" if significant(row) else "") if not math.isnan(row["p_adjusted"]) else f"no test: {row['test']}")
    problems = [f"{row['n_diverged']} div" if row["n_diverged"] else "", f"{row['n_failed']} fail" if row["n_failed"] else ""]
    if any(problems):
        lines.append(" ".join(p for p in problems if p))
    return "\n".join(lines)


def colour_range(tables, center: Optional[float]) -> tuple[float, float]:
    """One colour scale for every panel drawn from `tables` (so panels compare)."""
    finite = pd.concat([t["mean"] for t in tables]).dropna()
    vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    if center is not None:
        half = max(abs(vmin - center), abs(vmax - center), 1e-9)
        vmin, vmax = center - half, center + half
    return vmin, vmax


def phase_panel(panel, part: pd.DataFrame, x: str, y: str, style: dict, title: str = "") -> None:
    """One heatmap of part's `mean` over x (columns) and y (rows, ascending upward), each cell
    annotated with mean, ±std (and n when asked); cells without a completed seed hatched and
    labelled why. style: vmin, vmax, center, cmap, fmt, label, show_n."""
    xs, ys = ordered(part[x]), ordered(part[y])
    grid = part.set_index([y, x])
    means = np.array([[grid["mean"].get((yv, xv), np.nan) for xv in xs] for yv in ys], dtype=float)
    vmin, vmax, cmap = style["vmin"], style["vmax"], style["cmap"]
    sns.heatmap(
        means, ax=panel, cmap=cmap, vmin=vmin, vmax=vmax, center=style["center"], mask=np.isnan(means),
        cbar=True, cbar_kws={"label": style["label"]}, xticklabels=[value_text(v) for v in xs],
        yticklabels=[value_text(v) for v in ys], linewidths=0.5, linecolor="white",
    )
    panel.invert_yaxis()
    panel.set_xlabel(x)
    panel.set_ylabel(y)
    panel.set_title(title, fontsize=10)
    colours = matplotlib.colormaps[cmap]
    for (i, yv), (j, xv) in itertools.product(enumerate(ys), enumerate(xs)):
        if (yv, xv) not in grid.index:
            continue
        row = grid.loc[(yv, xv)]
        where = f"{value_text(xv)}:{value_text(yv)}"
        if row["cell_status"] != "ok":
            colour = MARK_COLOURS[row["cell_status"]]
            if row["cell_status"] == "not measured":  # no point of the sweep there: blank, not a result
                panel.add_patch(Rectangle((j, i), 1, 1, facecolor="white", edgecolor="none", gid=f"not-measured:{where}"))
            else:
                panel.add_patch(Rectangle((j, i), 1, 1, facecolor="#eeeeee", edgecolor=colour, hatch="///", linewidth=1.5, gid=f"marked:{row['cell_status']}:{where}"))
            text_colour = colour
        else:
            if row["n_diverged"] or row["n_failed"]:
                panel.add_patch(Rectangle((j + 0.04, i + 0.04), 0.92, 0.92, fill=False, edgecolor=MARK_COLOURS["diverged"], linewidth=2, gid=f"partial:{where}"))
            shade = colours((row["mean"] - vmin) / (vmax - vmin) if vmax > vmin else 0.5)
            text_colour = "black" if 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] > 0.5 else "white"
        backing = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5} if row["cell_status"] != "ok" else None
        panel.text(j + 0.5, i + 0.5, cell_text(row, style["fmt"], style["show_n"]), ha="center", va="center", fontsize=8,
                   color=text_colour, bbox=backing, gid=f"cell:{where}")
        if significant(row):
            panel.add_patch(Rectangle((j + 0.03, i + 0.03), 0.94, 0.94, fill=False, edgecolor="black", linewidth=2.5, gid=f"significant:{where}"))


def phase_style(tables, label: str, fmt: str, cmap: str, center: Optional[float]) -> dict:
    vmin, vmax = colour_range(tables, center)
    counts = pd.concat([t.loc[t["cell_status"] == "ok", "n"] for t in tables])
    return {"vmin": vmin, "vmax": vmax, "center": center, "cmap": cmap, "fmt": fmt, "label": label, "show_n": counts.nunique() > 1}


def phase_diagram(
    reduced: pd.DataFrame, x: str = "period", y: str = "amplitude", title: str = "", label: str = "",
    fmt: str = ".3f", cmap: str = "viridis", center: Optional[float] = None,
) -> Figure:
    """Heatmaps of `mean` over x and y (phase_panel), one panel per value of every other axis in
    `reduced`, on one colour scale."""
    facets = [c for c in reduced.columns[: list(reduced.columns).index("mean")] if c not in (x, y)]
    facet_values = list(itertools.product(*(ordered(reduced[f]) for f in facets))) or [()]
    xs, ys = ordered(reduced[x]), ordered(reduced[y])
    style = phase_style([reduced], label, fmt, cmap, center)
    columns = min(len(facet_values), 3)
    rows = math.ceil(len(facet_values) / columns)
    figure = Figure(figsize=(columns * (1.15 * len(xs) + 2.2), rows * (0.85 * len(ys) + 1.6)), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for panel, key in zip(axes.flat, facet_values):
        part = reduced
        for facet, value in zip(facets, key):
            part = part[part[facet] == value]
        phase_panel(panel, part, x, y, style, ", ".join(f"{f} = {value_text(v)}" for f, v in zip(facets, key)))
    for panel in list(axes.flat)[len(facet_values):]:
        panel.set_visible(False)
    figure.suptitle(title, wrap=True)
    return figure


def side_by_side(panels: list[tuple[str, pd.DataFrame, str, str]], title: str = "", label: str = "",
                 fmt: str = ".3f", cmap: str = "viridis", center: Optional[float] = None) -> Figure:
    """Phase diagrams of several sub-grids [(panel title, reduced, x, y)] side by side, on one
    colour scale: e.g. the dynamical loss over (T, A) beside a cyclical learning rate over
    (2 step_size, max_lr / base_lr). Panels' cell gids are prefixed with their index: "0/cell:..."."""
    style = phase_style([table for _, table, _, _ in panels], label, fmt, cmap, center)
    width = sum(1.15 * len(ordered(table[x])) + 2.2 for _, table, x, _ in panels)
    height = max(0.85 * len(ordered(table[y])) + 1.8 for _, table, _, y in panels)
    figure = Figure(figsize=(width, height), layout="constrained")
    for index, (panel, (name, table, x, y)) in enumerate(zip(figure.subplots(1, len(panels), squeeze=False).flat, panels)):
        phase_panel(panel, table, x, y, style, name)
        for artist in panel.findobj(lambda a: bool(a.get_gid())):
            artist.set_gid(f"{index}/{artist.get_gid()}")
    figure.suptitle(title, wrap=True)
    return figure


def std_band(reduced: pd.DataFrame, x: str = "amplitude", hue: Sequence[str] = ("period",), title: str = "", label: str = "") -> Figure:
    """Mean against x with a ±1 std band over seeds; one line per combination of the `hue`
    columns. Points with diverged or failed seeds get a red x and their count."""
    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    panel = figure.subplots()
    hue = list(hue)
    keys = list(itertools.product(*(ordered(reduced[h]) for h in hue))) or [()]
    palette = sns.color_palette("viridis", len(keys))
    floor = np.nanmin(reduced["mean"]) if reduced["mean"].notna().any() else 0.0
    for colour, key in zip(palette, keys):
        part = reduced
        for column, value in zip(hue, key):
            part = part[part[column] == value]
        part = part.sort_values(x)
        name = ", ".join(f"{h} = {value_text(v)}" for h, v in zip(hue, key)) or None
        panel.plot(part[x], part["mean"], marker="o", color=colour, label=name)
        panel.fill_between(part[x], part["mean"] - part["std"], part["mean"] + part["std"], color=colour, alpha=0.2, linewidth=0)
        for _, row in part[(part["n_diverged"] + part["n_failed"]) > 0].iterrows():
            level = row["mean"] if not math.isnan(row["mean"]) else floor
            where = ":".join([value_text(row[x]), *(value_text(v) for v in key)])
            panel.plot([row[x]], [level], marker="x", color=MARK_COLOURS["diverged"], markersize=10, mew=2, gid=f"marked:{where}")
            panel.annotate(f"{row['n_diverged'] + row['n_failed']}/{row['n_trials']} lost", (row[x], level),
                           textcoords="offset points", xytext=(4, -12), fontsize=8, color=MARK_COLOURS["diverged"])
    values = reduced[x].astype(float)
    if (values > 0).all() and values.max() / values.min() >= 20:
        panel.set_xscale("log")
    panel.set_xticks(ordered(reduced[x]), [value_text(v) for v in ordered(reduced[x])])
    panel.set_xlabel(x)
    panel.set_ylabel(label)
    figure.suptitle(title, wrap=True)
    if hue:
        panel.legend(fontsize=7, ncol=2 if len(keys) > 6 else 1)
    panel.grid(alpha=0.3)
    return figure


def learning_curves(
    bands: pd.DataFrame, metric: str, hue: Optional[str], facet: Optional[str], stop_epoch: Optional[float] = None, title: str = ""
) -> Figure:
    """`bands` has epoch, mean, std (and hue/facet columns): one line with its ±1 std band per hue
    value, one panel per facet value; a dashed line where the oscillations stopped."""
    facets = ordered(bands[facet]) if facet else [None]
    columns = min(len(facets), 3)
    rows = math.ceil(len(facets) / columns)
    figure = Figure(figsize=(5 * columns, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    hues = ordered(bands[hue]) if hue else [None]
    palette = sns.color_palette("viridis", len(hues))
    for panel, facet_value in zip(axes.flat, facets):
        part = bands if facet is None else bands[bands[facet] == facet_value]
        for colour, value in zip(palette, hues):
            line = (part if hue is None else part[part[hue] == value]).sort_values("epoch")
            panel.plot(line["epoch"], line["mean"], color=colour, label=f"{hue} = {value_text(value)}" if hue else None, linewidth=1.2)
            panel.fill_between(line["epoch"], line["mean"] - line["std"], line["mean"] + line["std"], color=colour, alpha=0.2, linewidth=0)
        if stop_epoch is not None:
            panel.axvline(stop_epoch, color="black", linestyle="--", linewidth=1, label="oscillations stop", gid="stop-epoch")
        panel.set_title(f"{facet} = {value_text(facet_value)}" if facet else "", fontsize=10)
        panel.set_xlabel("epoch")
        panel.set_ylabel(metric)
        panel.grid(alpha=0.3)
    for panel in list(axes.flat)[len(facets):]:
        panel.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    figure.suptitle(title, wrap=True)
    return figure


@dataclass(frozen=True)
class Oscillation:
    """What Gamma_i(t) of one trial is made of (trainers.oscillation), in optimizer steps."""

    num_classes: int
    amplitude: float
    period: float
    stop_step: Optional[float]
    shape: str = "triangle"

    def weights(self, steps) -> np.ndarray:
        """Gamma_i(t) at these steps, (len(steps), C)."""
        stop = np.inf if self.stop_step is None else self.stop_step
        return class_weights(np.asarray(steps), self.num_classes, self.amplitude, self.period, stop, self.shape)


@dataclass(frozen=True)
class TrialView:
    """One trial as its trajectory figures draw it."""

    trial_id: str
    curve: pd.DataFrame  # its evaluations: the sweep's curve, or its trace
    oscillation: Oscillation
    title: str
    source: str = "curve"  # or "trace"


# Fewer evaluations a period than this cannot show how F(t) oscillates: lines between them
# would draw a slower, false oscillation (aliasing).
EVALUATIONS_PER_PERIOD = 4
GAMMA_SAMPLES = 100_000


def too_sparse(view: TrialView) -> Optional[str]:
    """Why the view's evaluations cannot draw its oscillation, or None."""
    steps = np.sort(view.curve["step"].to_numpy())
    if view.oscillation.amplitude <= 1 or view.oscillation.stop_step == 0 or len(steps) < 2:
        return None
    spacing = float(np.median(np.diff(steps)))
    if spacing * EVALUATIONS_PER_PERIOD <= view.oscillation.period:
        return None
    return (f"evaluated every {value_text(spacing)} steps, period T = {value_text(view.oscillation.period)}: too sparse to draw "
            f"without aliasing.\n`tiltsweep trace DIR {view.trial_id}` replays it densely.")


def gamma_panel(panel, view: TrialView) -> None:
    """Gamma_i(t) of every class from its formula, at every step (or GAMMA_SAMPLES of them)."""
    last = int(view.curve["step"].max()) if len(view.curve) else 0
    steps = np.arange(0, last + 1, max(1, -(-(last + 1) // GAMMA_SAMPLES)))
    gamma = view.oscillation.weights(steps)
    palette = sns.color_palette("deep", view.oscillation.num_classes)
    for c in range(view.oscillation.num_classes):
        panel.plot(steps, gamma[:, c], "-", linewidth=0.8, color=palette[c], label=f"class {c}")
    panel.set_ylabel(r"$\Gamma_i$")
    panel.legend(fontsize=7, ncol=min(view.oscillation.num_classes, 5))


def evaluations_panel(panel, view: TrialView, sparse: Optional[str], draw) -> None:
    """draw(panel, curve) unless the evaluations are too sparse for the oscillation; then the
    reason, written on the panel."""
    if sparse:
        panel.text(0.5, 0.5, sparse, transform=panel.transAxes, ha="center", va="center", fontsize=8, gid="too-sparse")
    else:
        draw(panel, view.curve)


def weighted_loss_panel(panel, curve: pd.DataFrame) -> None:
    panel.semilogy(curve["step"], curve["weighted_loss"], ".-", markersize=2, linewidth=0.5)


def accuracy_panel(panel, curve: pd.DataFrame, sparse: Optional[str] = None) -> None:
    """Train and validation accuracy; points alone (no lines between them) where sparse."""
    style = "." if sparse else ".-"
    panel.plot(curve["step"], curve["train_accuracy"], style, markersize=2, linewidth=0.5, label="train")
    panel.plot(curve["step"], curve["val_accuracy"], style, markersize=2, linewidth=0.5, label="validation")
    panel.set_ylabel("accuracy")
    panel.legend(fontsize=7)


def loss_change_panel(panel, curve: pd.DataFrame) -> None:
    panel.plot(curve["step"], curve["weighted_loss_change"], ".-", markersize=2, linewidth=0.5)


def finish_panels(panels, view: TrialView) -> None:
    for panel in panels:
        panel.grid(alpha=0.3)
        if view.oscillation.stop_step is not None:
            panel.axvline(view.oscillation.stop_step, color="black", linestyle="--", linewidth=1)
    panels[-1].set_xlabel("step t" + (" (trace)" if view.source == "trace" else ""))


def trajectory(view: TrialView) -> Figure:
    """One trial over steps, as the paper's Fig. 4: the class weights Gamma_i(t) (from their
    formula), the dynamical loss F(t), its change F(t) - F(t-1), and the accuracies; F(t) and its
    change say so instead when the evaluations are too sparse for the period."""
    view = replace(view, curve=view.curve.sort_values("step"))
    sparse = too_sparse(view)
    figure = Figure(figsize=(9, 9), layout="constrained")
    weights, loss, change, accuracy = figure.subplots(4, 1, sharex=True)
    gamma_panel(weights, view)
    evaluations_panel(loss, view, sparse, weighted_loss_panel)
    loss.set_ylabel(r"$\mathcal{F}(t)$")
    evaluations_panel(change, view, sparse, loss_change_panel)
    change.set_ylabel(r"$\mathcal{F}(t) - \mathcal{F}(t-1)$")
    accuracy_panel(accuracy, view.curve, sparse)
    finish_panels([weights, loss, change, accuracy], view)
    figure.suptitle(view.title, wrap=True)
    return figure


def hessian_trajectory(view: TrialView, instabilities: dict, note: str = "") -> Figure:
    """The supplementary's Fig. 1: Gamma_i(t), F(t) - F(t-1), accuracy and the top Hessian
    eigenvalues against step; the instabilities' starts (green) and ends (red) dashed, and the
    threshold (the mean top eigenvalue there) as a horizontal dashed line."""
    view = replace(view, curve=view.curve.sort_values("step"))
    curve = view.curve
    figure = Figure(figsize=(9, 10), layout="constrained")
    weights, change, accuracy, spectrum = figure.subplots(4, 1, sharex=True)
    gamma_panel(weights, view)
    sparse = too_sparse(view)
    evaluations_panel(change, view, sparse, loss_change_panel)
    change.set_ylabel(r"$\mathcal{F}(t) - \mathcal{F}(t-1)$")
    accuracy_panel(accuracy, curve, sparse)
    measured = curve.dropna(subset=["hessian_eig_1"])
    columns = sorted((c for c in curve.columns if c.startswith("hessian_eig_")), key=lambda c: int(c.rsplit("_", 1)[1]))
    for column, colour in zip(columns, sns.color_palette("deep", len(columns))):
        spectrum.plot(measured["step"], measured[column], ".", markersize=3, color=colour, label=rf"$\lambda_{{{column.rsplit('_', 1)[1]}}}$")
    spectrum.set_ylabel("Hessian eigenvalues")
    if not math.isnan(instabilities["threshold"]):
        spectrum.axhline(instabilities["threshold"], color="black", linestyle="--", linewidth=1,
                         label=f"threshold {instabilities['threshold']:.3g}", gid="threshold")
    for panel in (change, accuracy, spectrum):
        for step in instabilities["starts"]:
            panel.axvline(step, color="green", linestyle="--", linewidth=0.8, gid="instability-start")
        for step in instabilities["ends"]:
            panel.axvline(step, color="red", linestyle="--", linewidth=0.8, gid="instability-end")
    spectrum.legend(fontsize=7)
    finish_panels([weights, change, accuracy, spectrum], view)
    figure.suptitle(f"{view.title}; {note}" if note else view.title, wrap=True)
    return figure


def interpolation(frame: pd.DataFrame, title: str = "") -> Figure:
    """Loss and accuracy of (1 - alpha) theta_1 + alpha theta_2 against alpha; the two models at
    alpha = 0 and 1 are marked."""
    figure = Figure(figsize=(8, 4.2), layout="constrained")
    loss, accuracy = figure.subplots(1, 2)
    ends = frame[frame["alpha"].isin([0.0, 1.0])]
    for panel, metric in ((loss, "loss"), (accuracy, "accuracy")):
        for split, colour in (("train", "tab:blue"), ("val", "tab:orange")):
            panel.plot(frame["alpha"], frame[f"{split}_{metric}"], color=colour, label="train" if split == "train" else "validation")
            panel.plot(ends["alpha"], ends[f"{split}_{metric}"], "o", color=colour)
        for end in (0.0, 1.0):
            panel.axvline(end, color="grey", linewidth=0.8, linestyle=":")
        panel.set_xlabel(r"$\alpha$")
        panel.set_ylabel(metric)
        panel.grid(alpha=0.3)
    loss.set_yscale("log")
    loss.legend(fontsize=8)
    figure.suptitle(title, fontsize=10, wrap=True)
    return figure


def lr_range(frame: pd.DataFrame, suggestion: dict, title: str = "", log_rate: bool = False) -> Figure:
    """The learning-rate range test: training loss and accuracies against the rising learning
    rate (on a log scale with log_rate), with the suggested base and maximum rates marked."""
    figure = Figure(figsize=(8, 4.2), layout="constrained")
    loss, accuracy = figure.subplots(1, 2, sharex=True)
    loss.plot(frame["learning_rate"], frame["train_loss"], color="tab:blue")
    loss.set_ylabel("training loss")
    loss.set_yscale("log")
    accuracy.plot(frame["learning_rate"], frame["train_accuracy"], color="tab:blue", label="train")
    accuracy.plot(frame["learning_rate"], frame["val_accuracy"], color="tab:orange", label="validation")
    accuracy.set_ylabel("accuracy")
    accuracy.legend(fontsize=8)
    for panel in (loss, accuracy):
        for name, colour in (("base_lr", "green"), ("max_lr", "red")):
            panel.axvline(suggestion[name], color=colour, linestyle="--", linewidth=1, label=f"{name} {suggestion[name]:.3g}", gid=name)
        panel.set_xlabel("learning rate")
        panel.grid(alpha=0.3)
        if log_rate:
            panel.set_xscale("log")
    loss.legend(fontsize=8)
    figure.suptitle(title, fontsize=10, wrap=True)
    return figure


def save(figure: Figure, format: str) -> bytes:
    """The figure encoded as png, pdf or svg."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=format, dpi=130)
    return buffer.getvalue()
