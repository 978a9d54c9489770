"""One check of whatever device JAX sees (a GPU, a TPU, or this CPU), written to one JSON file:

1. blocks of N vmapped width-20 spiral points (N = 64 to 4096; trainers.train_group, the path a
   sweep's worker takes, 3,000 steps after a 10-step call that compiles): time per step and
   point-steps per second; for the largest N, the block in each of the MLP's layouts side by
   side (feature-major, which XLA's CPU kernels favour, batch-major, and elementwise, a candidate
   for GPUs: trainers.models), the same block with `hessian_every`, and
   where its time goes: its operations' time per step, from a trace of JAX's profiler
   (benchmarks/device_profile.py, in a process of its own; its JSON and trace are written beside
   this one's, the trace for ui.perfetto.dev);
2. the 1,000-cell diagram of issue 30 (10 amplitudes x 10 periods x 10 seeds, width 20, 60,000
   steps) end to end through `tiltsweep run --no-plot`, on the device (`resources: {gpu: 1}` where
   there is a GPU), with Ray's start and an empty compilation cache; and last, where the budget
   allows and on a GPU, the same in the fastest layout where `auto` chose another, and without
   the warm-up (sweep.run.warmup, on by default for GPU trials);
3. Myrtle5 (64 channels, batch 512; alone and as a vmapped block of 8 points) and WRN-28-10
   (batch 128) training throughput in float32 and bfloat16 (mixed precision), in images per
   second (all the block's points' images);
4. the tests that touch the device (test_loss, test_models, test_train, test_packs; fast tier).

Made for a lent machine with a time budget: the JSON is written after every part (a part that
fails records its error and the next one runs), the diagram and the tests run with time limits
(150 s and 120 s; 120 s and 180 s with --quick; each at most what is left of --budget: default
330 s, 240 s with --quick), and a part that would start with the budget spent is recorded as
skipped. The CNN part has no limit of its own (its steps take seconds on an H200), so the 6
minutes are a target, not a bound. The commands run from a scratch folder, so a plain install of tiltsweep
works as well as an editable one. JAX is told not to take 75% of
a GPU's memory up front (XLA_PYTHON_CLIENT_PREALLOCATE=false, unless set): this process, the
tests' and the diagram's share the device.

    python benchmarks/accelerator.py [--budget SECONDS]   # on an accelerator: at most ~6 minutes (not yet measured)
    python benchmarks/accelerator.py --quick              # every part, shrunk: about a minute on 2 CPU cores
    python benchmarks/accelerator.py --table FILE.json    # a written report as benchmarks/README.md's table

Writes benchmarks/results/accelerator-<platform>[-quick].json, or into $BENCHMARK_RESULTS where it
is set (on a lent device machine: $OUT, the folder that comes back). On a machine without Ray,
pydantic or jsonschema, bring them as wheels first (benchmarks/README.md, "The accelerator check").
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # before JAX starts; the subprocesses inherit it

import jax  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.cnn_throughput import throughput  # noqa: E402
from benchmarks.common import markdown_table, results_folder, run_command, save, tables_asked  # noqa: E402
from benchmarks.device_profile import summary  # noqa: E402
from benchmarks.packs import configs  # noqa: E402
from conftest import write_cifar10_dir  # noqa: E402
from tiltsweep.trainers import train_group  # noqa: E402
from tiltsweep.trainers.config import MLP_LAYOUTS, TrialConfig  # noqa: E402
from tiltsweep.trainers.models import mlp_layout  # noqa: E402

DIAGRAM = """\
name: {name}
data: {{name: spiral, points_per_class: 100, classes: 3}}
model: {{name: mlp, width: 20, layout: {layout}}}
optimizer: {{name: sgd, learning_rate: 1.0, batch_size: full}}
schedule: {{name: constant}}
training: {{epochs: {epochs}, eval_every: {eval_every}}}
loss: {{name: dynamical_cross_entropy, amplitude: 1, period: 1000}}
grid:
  amplitude: {amplitudes}
  period: {periods}
  seed: {seeds}
resources: {{cpu: 1, gpu: {gpu}}}
"""
FULL = {"budget": 330, "diagram_timeout": 150, "tests_timeout": 120, "sizes": (64, 256, 1024, 4096), "steps": 3000, "profile_steps": 300, "profile_timeout": 90, "diagram": dict(epochs=60000, eval_every=1000, amplitudes=[1, 2, 3, 5, 10, 20, 30, 50, 70, 100],
        periods=[100, 200, 500, 1000, 2000, 3000, 5000, 7000, 10000, 20000], seeds=list(range(10))),
        "cnns": {"myrtle5, 64 channels": ({"name": "myrtle5", "channels": 64}, 512, 20, 1), "myrtle5, 64 channels, block of 8": ({"name": "myrtle5", "channels": 64}, 512, 10, 8),
                 "wide_resnet 28-10": ({"name": "wide_resnet", "depth": 28, "widen_factor": 10}, 128, 10, 1)},
        "tests": ["tests/test_loss.py", "tests/test_models.py", "tests/test_train.py", "tests/test_packs.py"]}
QUICK = {"budget": 240, "diagram_timeout": 120, "tests_timeout": 180, "sizes": (1, 8, 32), "steps": 200, "profile_steps": 50, "profile_timeout": 90, "diagram": dict(epochs=2000, eval_every=1000, amplitudes=[1, 10], periods=[100, 1000], seeds=[0, 1]),
         "cnns": {"myrtle5, 8 channels, block of 4": ({"name": "myrtle5", "channels": 8}, 16, 2, 4),  # a block, and a point alone:
                  "wide_resnet 10-1": ({"name": "wide_resnet", "depth": 10, "widen_factor": 1}, 8, 2, 1)},  # both ways a CNN trains
         "tests": ["tests/test_loss.py"]}


def block(size: int, steps: int, layout: str = "auto", **training) -> dict:
    """A vmapped block of `size` width-20 points, the MLP in `layout`: compiled by a 10-step call, then timed."""
    def group(count: int) -> list[dict]:
        return [{**config, "model": {**config["model"], "layout": layout}, "training": {**config["training"], **training}}
                for config in configs(20, size, count)]

    train_group(group(10))
    started = time.perf_counter()
    train_group(group(steps))
    seconds = time.perf_counter() - started
    return {"points": size, "steps": steps, "us_per_step": 1e6 * seconds / steps, "point_steps_per_second": size * steps / seconds}


def layouts(size: int, steps: int) -> dict:
    """The block of `size` points trained in each of the MLP's layouts (MLP_LAYOUTS: feature-major,
    batch-major, and elementwise, a candidate for GPUs, where a vmapped product of 2- and 20-wide
    matrices may run as many tiny matrix kernels), side by side, and the layout `auto` takes for
    the block's (and the diagram's) points here."""
    found = {layout: block(size, steps, layout)["us_per_step"] for layout in MLP_LAYOUTS}
    point = TrialConfig.model_validate(configs(20, 1, 1)[0])
    return {"points": size, "us_per_step": found, "faster": min(found, key=found.get),
            "auto": mlp_layout(point.model, jax.numpy.dtype(point.training.dtype))}


def layout_to_try(platform: str, found: Optional[dict]) -> tuple[Optional[str], str]:
    """The layout to run the diagram in again (the layouts part's fastest, on a GPU, where `auto`
    took another), or None and why not."""
    if platform != "gpu":
        return None, "run on a GPU only (on this device the layouts row is the answer)"
    if not found:
        return None, "no layouts measured"
    if found["faster"] == found["auto"]:
        return None, "the diagram above ran in the fastest layout"
    return found["faster"], ""


def diagram(scale: dict, on_gpu: bool, timeout: float, warmup: str = "auto", layout: str = "auto") -> dict:
    """The diagram through `tiltsweep run` (at most `timeout` seconds) with an empty compilation
    cache of its own, TILTSWEEP_WARMUP=`warmup` and the MLP in `layout`: wall time and Ray's start
    as the run says them."""
    with tempfile.TemporaryDirectory(prefix="tiltsweep-accelerator-") as scratch:
        grid = Path(scratch) / "diagram.yaml"
        grid.write_text(DIAGRAM.format(name="diagram", gpu=1 if on_gpu else 0, layout=layout, **scale))
        env = {**os.environ, "TILTSWEEP_COMPILE_CACHE": str(Path(scratch) / "xla"), "TILTSWEEP_WARMUP": warmup}
        done = run_command([sys.executable, "-m", "tiltsweep", "run", str(grid), "--out", scratch, "--no-plot"], timeout, env=env)
    ready = re.search(r"Ray ready in ([0-9.]+) s", done["stdout"])
    return {"cells": len(scale["amplitudes"]) * len(scale["periods"]) * len(scale["seeds"]), "epochs": scale["epochs"], "exit": done["exit"],
            "warmup": warmup, "layout": layout, "timed_out": done["timed_out"], "timeout_seconds": timeout, "wall_seconds": done["seconds"],
            "ray_ready_seconds": float(ready.group(1)) if ready else None,
            "last_line": (done["stdout"].strip().splitlines() or [done["stderr"][-500:]])[-1]}


def profile(name: str, points: int, steps: int, timeout: float) -> dict:
    """benchmarks/device_profile.py's profile of a block, in a process of its own (at most
    `timeout` seconds): a profiler that hangs or crashes on a device costs this part alone. Its
    JSON and trace are written beside the check's, as `name`.json and `name`-trace.json.gz."""
    done = run_command([sys.executable, str(ROOT / "benchmarks" / "device_profile.py"), "--points", str(points), "--steps", str(steps),
                        "--name", name], timeout, env={**os.environ, "BENCHMARK_RESULTS": str(results_folder())})
    if done["exit"] != 0:
        raise RuntimeError(f"device_profile.py ended with {done['exit']}{' (timed out)' if done['timed_out'] else ''}: {done['stderr'][-1500:]}")
    found = json.loads((results_folder() / f"{name}.json").read_text())
    return {key: value for key, value in found.items() if key not in ("machine", "when")}


def cnns(models: dict) -> dict:
    found = {}
    with tempfile.TemporaryDirectory() as scratch:
        cifar = write_cifar10_dir(Path(scratch) / "cifar-10-batches-py", per_batch=max(batch for _, batch, _, _ in models.values()) // 5 + 20)
        for name, (model, batch, steps, points) in models.items():
            for dtype in ("float32", "bfloat16"):
                found[f"{name}, {dtype}"] = throughput(cifar, model, batch, steps, dtype, points)
    return found


def tests(files: list[str], timeout: float) -> dict:
    """The fast tier of `files` (paths in the repository), by absolute path from a scratch folder:
    pytest still finds the repository's pyproject.toml and tests/conftest.py from the paths."""
    done = run_command([sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider", *(str(ROOT / name) for name in files)],
                       timeout)
    summary = (done["stdout"].strip().splitlines() or [""])[-1]
    return {"files": files, "exit": done["exit"], "timed_out": done["timed_out"], "timeout_seconds": timeout, "seconds": done["seconds"],
            "summary": summary, "failed": [line for line in done["stdout"].splitlines() if line.startswith("FAILED")]}


class Check:
    """The report, written whole after every part; a part that raises records its error, and one
    that would start after the deadline is recorded as skipped."""

    def __init__(self, name: str, report: dict, budget: float):
        self.name, self.report = name, report
        self.started = time.perf_counter()
        self.deadline = self.started + budget
        report.update(budget_seconds=budget, parts={})

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def limit(self, seconds: float) -> float:
        """A part's time limit: `seconds`, or what is left of the budget where that is less (at least 1 s)."""
        return min(seconds, max(self.left(), 1))

    def skip(self, key: str, why: str) -> None:
        """A part that would measure nothing here, recorded as skipped, saying why."""
        self.part(key, lambda: None, skipped=why)

    def part(self, key: str, measure: Callable[[], object], skipped: str = "") -> None:
        started = time.perf_counter()
        if skipped or self.left() <= 0:
            self.report["parts"][key] = {"status": "skipped", "why": skipped or "the budget was spent"}
        else:
            try:
                self.report[key] = json.loads(json.dumps(measure()))
                self.report["parts"][key] = {"status": "done"}
            except Exception as error:  # noqa: BLE001 -- recorded; the next part runs
                self.report["parts"][key] = {"status": "error", "error": f"{type(error).__name__}: {error}",
                                             "traceback": traceback.format_exc()[-3000:]}
        self.report["parts"][key]["seconds"] = time.perf_counter() - started
        self.report["seconds"] = time.perf_counter() - self.started
        path = save(self.name, self.report)
        print(f"{key}: {self.report['parts'][key]['status']} in {self.report['parts'][key]['seconds']:.1f} s -> {path}", flush=True)


def table(report: dict) -> str:
    """The report as benchmarks/README.md's Markdown table: one row a part, its numbers as measured."""
    rows = []
    if "blocks" in report:
        def each(key: str, form: str = ",.0f") -> str:
            return " / ".join(format(row[key], form) for row in report["blocks"])

        rows.append((f"block of {each('points', 'd')} points", f"{each('us_per_step')} us a step ({each('point_steps_per_second')} point-steps/s)"))
    if "block_with_hessian" in report:
        row = report["block_with_hessian"]
        rows.append((f"block of {row['points']} with `hessian_every`", f"{row['us_per_step']:,.0f} us a step"))
    if "layouts" in report:
        found = report["layouts"]
        rows.append((f"layouts at {found['points']} points (a block's step)",
                     ", ".join(f"{name} {us:,.0f} us" for name, us in found["us_per_step"].items()) + f" (auto: {found['auto']})"))
    if "profile" in report:
        traced = report["profile"]
        rows.append((f"profile of {traced['points']} points ({traced['source']})",
                     f"{traced['wall_us_per_step']:,.0f} us a step; costliest: "
                     + ", ".join(f"`{row['name'][:40]}` {row['us_per_step']:,.1f} us x{row['calls_per_step']:.2f}" for row in traced["top"][:4])))
    for key in ("diagram", "diagram_fastest_layout", "diagram_warmup_off"):
        if key in report:
            row = report[key]
            rows.append((f"{row['cells']}-cell diagram, {row['epochs']:,} steps, warm-up {row['warmup']}, layout {row['layout']}",
                         f"{row['wall_seconds']:.1f} s, exit {row['exit']}{' (timed out)' if row['timed_out'] else ''} (Ray ready in {row['ray_ready_seconds']} s)"))
    by_model: dict[str, list[str]] = {}
    for name, row in report.get("cnns", {}).items():
        model, dtype = name.rsplit(", ", 1)
        by_model.setdefault(model, []).append(f"{dtype} {row['images_per_second']:,.0f} images/s")
    rows += [(model, ", ".join(found)) for model, found in by_model.items()]
    if "tests" in report:
        rows.append(("tests", f"{report['tests']['summary']} (exit {report['tests']['exit']})"))
    rows += [(key, f"{part['status']}: {part.get('error') or part.get('why')}") for key, part in report["parts"].items() if part["status"] != "done"]
    device = f"{report['device_kind'] or report['platform']}{', quick' if report['quick'] else ''} ({report.get('when', '')}, {report['seconds']:.0f} s)"
    return markdown_table(["part", device], rows)


def main() -> None:
    if files := tables_asked():
        print(table(files[0]))
        return
    quick = "--quick" in sys.argv
    scale = QUICK if quick else FULL
    budget = float(sys.argv[sys.argv.index("--budget") + 1]) if "--budget" in sys.argv else scale["budget"]
    device = jax.devices()[0]
    report = {"platform": device.platform, "device": str(device), "device_kind": getattr(device, "device_kind", ""), "quick": quick}
    check = Check(f"accelerator-{device.platform}{'-quick' if quick else ''}", report, budget)
    check.part("blocks", lambda: [block(size, scale["steps"]) for size in scale["sizes"]])
    # a third of the steps (at least 200): a layout that does badly on the device must not eat the budget
    check.part("layouts", lambda: layouts(scale["sizes"][-1], max(scale["steps"] // 3, 200)))
    check.part("block_with_hessian", lambda: block(scale["sizes"][-1], scale["steps"], hessian_every=scale["steps"] // 4, hessian_top_k=1,
                                                   hessian_order=10))
    check.part("profile", lambda: profile(f"{check.name}-profile", scale["sizes"][-1], scale["profile_steps"], check.limit(scale["profile_timeout"])))
    check.part("diagram", lambda: diagram(scale["diagram"], device.platform == "gpu", check.limit(scale["diagram_timeout"])))
    check.part("cnns", lambda: cnns(scale["cnns"]))
    check.part("tests", lambda: tests(scale["tests"], check.limit(scale["tests_timeout"])))
    # last, where the budget allows: the same diagram in the fastest layout where `auto` took
    # another, then without the warm-up (on by default for GPU trials only)
    fastest, why_not = layout_to_try(device.platform, report.get("layouts"))
    if fastest:
        check.part("diagram_fastest_layout", lambda: diagram(scale["diagram"], True, check.limit(scale["diagram_timeout"]), layout=fastest))
    else:
        check.skip("diagram_fastest_layout", why_not)
    if device.platform == "gpu":
        check.part("diagram_warmup_off", lambda: diagram(scale["diagram"], True, check.limit(scale["diagram_timeout"]), "off"))
    else:
        check.skip("diagram_warmup_off", "the diagram above had no warm-up either (auto warms GPU trials only)")
    if "profile" in report:
        print(summary(report["profile"], rows=10))
    print(table({**report, "when": time.strftime("%Y-%m-%d %H:%M")}))
    print(f"{report['seconds']:.0f} s in all; " + ", ".join(f"{key} {part['status']}" for key, part in report["parts"].items()))
    if any(part["status"] == "error" for part in report["parts"].values()):
        raise SystemExit(1)  # every part ran and is in the JSON; this says that one of them failed


if __name__ == "__main__":
    main()
