"""`tiltsweep refine DIR`: the points that tell most about a phase diagram, added to its sweep.

Two kinds of round, each proposing points from the results as they stand (the same results give
the same points) and recording them in DIR/refinements.json, so that `run` and `resume` know the
extended sweep:

- `--budget N`: the boundary. For every pair of neighbouring cells of the diagram over (x, y)
  (at equal other axes) whose seed-means both exist, z = |m1 - m2| / sqrt(se1^2 + se2^2) says how
  surely the metric changes between them (se = std / sqrt(n); a cell of one seed takes the
  diagram's median std), and the score z x w weighs it by w, the pair's gap as a share of its
  axis's range (in log on a geometric axis): a sure change across a wide gap says more about where
  the boundary lies than one already pinned between close cells, which z alone would keep
  splitting (benchmarks section 11). The pairs with the highest scores get a cell halfway between them
  (the geometric mean on an axis whose values are positive and span more than a decade, else the
  arithmetic mean; rounded to 3 significant digits, and to an integer on an integer axis), for
  every seed of the grid, until N trainings are spent. A halfway value closer than MIN_SPACING
  (relative) to either end, or a cell already in the sweep, is not proposed. A new period also
  gets its A = 1 cell, which costs nothing (A = 1 is one training at every period) and is the
  gain's baseline there.
- `--seeds-until SE [--max-seeds K]`: more seeds for the cells whose standard error of the mean
  exceeds SE, as many as their spread says they need ((std / SE)^2), at most K in all; a cell of
  one seed gets a second.
"""

from __future__ import annotations

import itertools
import math
from typing import Optional

import numpy as np

from tiltsweep.analysis.figures import ordered
from tiltsweep.analysis.load import Results
from tiltsweep.analysis.reduce import SEED, group_axes, reduce_seeds
from tiltsweep.sweep.errors import Refused

MIN_SPACING = 0.05
BASELINE, FREE_AT_BASELINE = "amplitude", "period"  # with A = 1 the period is irrelevant (sweep.grid.identity)


def geometric(values) -> bool:
    """Whether an axis is spaced geometrically: positive values spanning more than a decade."""
    numbers = [float(v) for v in values]
    return min(numbers) > 0 and max(numbers) / min(numbers) > 10


def halfway(a, b, values) -> Optional[float]:
    """The value between neighbours a and b on an axis of `values`, or None if too close to them."""
    middle = math.sqrt(a * b) if geometric(values) else (a + b) / 2
    middle = float(f"{middle:.3g}")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        middle = int(round(middle))
    if min(abs(middle - a), abs(b - middle)) < MIN_SPACING * abs(b - a) or middle in (a, b):
        return None
    return middle


def gap_share(values):
    """(a, b) -> the gap between a and b as a share of the axis's range (in log when geometric)."""
    numbers = [float(v) for v in values]
    if geometric(numbers):
        span = math.log(max(numbers) / min(numbers))
        return lambda a, b: abs(math.log(float(b) / float(a))) / span
    span = (max(numbers) - min(numbers)) or 1.0
    return lambda a, b: abs(float(b) - float(a)) / span


def cell_se(table, fallback_std: float) -> np.ndarray:
    std = table["std"].fillna(fallback_std).to_numpy(dtype=float)
    return std / np.sqrt(table["n"].clip(lower=1).to_numpy(dtype=float))


def propose_boundary(results: Results, budget: int, metric: str, x: str, y: str) -> list[dict]:
    """The points of a `--budget` round: {column: value} of every axis, seeds included."""
    seeds = list(results.axes.get(SEED, [None]))
    if budget < len(seeds):
        raise Refused(f"--budget {budget}: a new cell costs one training per seed, {len(seeds)} here")
    table = reduce_seeds(results.summary, metric, results.axes)
    table = table[table["cell_status"] == "ok"].reset_index(drop=True)
    fallback = float(table["std"].median()) if table["std"].notna().any() else 0.0
    table["se"] = cell_se(table, fallback)
    others = [axis for axis in group_axes(results.axes) if axis not in (x, y)]
    existing = {tuple(sorted(axes.items())) for axes in results.summary[group_axes(results.axes)].to_dict("records")}
    candidates = []
    for along, across in ((x, y), (y, x)):
        values = ordered(results.axes[along])
        share = gap_share(values)
        for key, line in table.groupby([across, *others], dropna=False):
            line = line.set_index(along)
            present = [v for v in values if v in line.index]
            for a, b in zip(present, present[1:]):
                middle = halfway(a, b, values)
                if middle is None:
                    continue
                first, second = line.loc[a], line.loc[b]
                score = share(a, b) * abs(first["mean"] - second["mean"]) / max(math.hypot(first["se"], second["se"]), 1e-12)
                cell = {**dict(zip([across, *others], key if isinstance(key, tuple) else (key,))), along: middle}
                candidates.append((-score, along, sorted(cell.items(), key=str), cell))
    chosen, spent = [], 0
    for _, along, _, cell in sorted(candidates, key=lambda c: (c[0], c[1], str(c[2]))):
        if spent + len(seeds) > budget:
            break
        if tuple(sorted(cell.items())) in existing or cell in chosen:
            continue
        chosen.append(cell)
        spent += len(seeds)
        baseline = {**cell, BASELINE: 1.0}
        known = baseline in chosen or tuple(sorted(baseline.items())) in existing
        if along == FREE_AT_BASELINE and 1.0 in [float(a) for a in results.axes.get(BASELINE, [])] and not known:
            chosen.append(baseline)  # the same trainings as A = 1 at the other periods: free, and the gain's baseline
    return [{**cell, SEED: seed} if seed is not None else cell for cell in chosen for seed in seeds]


def propose_seeds(results: Results, metric: str, se: float, max_seeds: int) -> list[dict]:
    """The points of a `--seeds-until` round."""
    if se <= 0 or max_seeds < 2:
        raise Refused(f"--seeds-until {se} --max-seeds {max_seeds}: need SE > 0 and at least 2 seeds")
    if SEED not in results.axes:
        raise Refused(f"{results.name}: no seed axis to add seeds to (add `seed: [0]` to the grid)")
    by = group_axes(results.axes)
    table = reduce_seeds(results.summary, metric, results.axes)
    points = []
    for _, cell in table[table["cell_status"] == "ok"].iterrows():
        std, n = cell["std"], int(cell["n"])
        wanted = min(max_seeds, n + 1 if math.isnan(std) else max(n, math.ceil((std / se) ** 2)))
        if wanted <= n or (not math.isnan(std) and std / math.sqrt(n) <= se):
            continue
        where = (results.summary[by] == cell[by]).all(axis=1) if by else slice(None)
        used = set(results.summary.loc[where, SEED])
        new_seeds = list(itertools.islice((seed for seed in itertools.count(max(used, default=-1) + 1) if seed not in used), wanted - n))
        points += [{**{axis: cell[axis] for axis in by}, SEED: seed} for seed in new_seeds]
    return points
