"""Where a vmapped block's time goes: one trainers.train_group call of N width-20 spiral points,
traced by JAX's profiler (jax.profiler.trace, written as Perfetto's JSON: no TensorBoard needed),
its operations summed by name over the traced call.

For each operation (an event that names the XLA operation it runs, `hlo_op`, and holds no other:
a kernel on a GPU's streams; a thunk on the threads of XLA's CPU client, not the loop's around
them), per training step of the call:

    us_per_step    = (sum of its durations) / steps
    calls_per_step = (its launches) / steps

and for each thread its busy time per step (the sum over its operations: on a GPU stream, the
time the stream computes; the rest of the wall time per step is the device waiting on launches
and the host). The call's evaluations and transfers are in the totals too, divided by the steps
like the rest.

    python benchmarks/device_profile.py [--points N] [--steps S] [--name NAME]   # default 1,024 points, 300 steps

writes benchmarks/results/NAME.json (default profile-<platform>; or into $BENCHMARK_RESULTS) and,
beside it, the trace itself (NAME-trace.json.gz, for ui.perfetto.dev).
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import jax

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after the installed tiltsweep: the repository's tiltsweep/ holds its root alone

from benchmarks.common import results_folder, save  # noqa: E402
from benchmarks.packs import configs  # noqa: E402
from tiltsweep.trainers import train_group  # noqa: E402

TOP = 25


def traced(run, folder: Path) -> tuple[float, Path]:
    """Call `run` under JAX's profiler: its wall seconds and the Perfetto trace written in `folder`."""
    with jax.profiler.trace(str(folder), create_perfetto_trace=True):
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
    (trace,) = folder.glob("plugins/profile/*/perfetto_trace.json.gz")
    return seconds, trace


def leaves(events: list[dict]) -> list[dict]:
    """The events that hold no other event of their thread (on the CPU, a while loop's thunk
    holds its body's; on a GPU's streams, kernels do not nest)."""
    by_thread: dict[tuple, list[dict]] = defaultdict(list)
    for event in events:
        by_thread[(event["pid"], event.get("tid"))].append(event)
    found = []
    for members in by_thread.values():
        members.sort(key=lambda event: (event["ts"], -event.get("dur", 0.0)))
        found += [event for event, after in zip(members, members[1:] + [None])
                  if after is None or after["ts"] >= event["ts"] + event.get("dur", 0.0)]
    return found


def operations(events: list[dict], steps: int) -> dict:
    """The trace's operations summed by (thread, name), per step: the events that name the XLA
    operation they run (`hlo_op`) and hold no other, on the device's processes ("/device:...") or,
    where there is none (XLA on the CPU), on the host's."""
    processes = {event["pid"]: event["args"]["name"] for event in events if event.get("name") == "process_name"}
    threads = {(event["pid"], event["tid"]): event["args"]["name"] for event in events if event.get("name") == "thread_name"}
    devices = {pid for pid, name in processes.items() if name.startswith("/device:")}
    complete = [event for event in events if event.get("ph") == "X" and (event["pid"] in devices or not devices)]
    totals: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    named = [event for event in complete if "hlo_op" in event.get("args", {})]
    for event in leaves(named or (complete if devices else [])):  # a device's kernels, should their events not name the operation
        thread = threads.get((event["pid"], event.get("tid")), str(event.get("tid"))).split("/")[0]  # a pool's threads: "tf_XLAEigen/<id>"
        total = totals[(f"{processes.get(event['pid'], '')} {thread}".strip(), event["name"], event.get("args", {}).get("hlo_op", ""))]
        total[0] += event.get("dur", 0.0)
        total[1] += 1
    busy: dict[str, float] = defaultdict(float)
    for (thread, _, _), (microseconds, _) in totals.items():
        busy[thread] += microseconds / steps
    ranked = sorted(totals.items(), key=lambda item: -item[1][0])[:TOP]
    return {
        "source": "device" if devices else "host",
        "busy_us_per_step": dict(sorted(busy.items(), key=lambda item: -item[1])),
        "top": [{"thread": thread, "name": name, "hlo_op": op, "us_per_step": microseconds / steps, "calls_per_step": calls / steps}
                for (thread, name, op), (microseconds, calls) in ranked],
    }


def profile_block(points: int, steps: int, keep_trace: Path | None = None) -> dict:
    """A block of `points` width-20 points: compiled by a 10-step call, then `steps` steps traced."""
    train_group(configs(20, points, 10))
    with tempfile.TemporaryDirectory(prefix="tiltsweep-profile-") as scratch:
        seconds, trace = traced(lambda: train_group(configs(20, points, steps)), Path(scratch))
        events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
        if keep_trace is not None:
            shutil.copyfile(trace, keep_trace)
    return {"points": points, "steps": steps, "wall_us_per_step": 1e6 * seconds / steps, **operations(events, steps)}


def summary(found: dict, rows: int = TOP) -> str:
    """A few lines for a reader: the time a step, the busiest threads, and the costliest operations."""
    lines = [f"profile of {found['points']} points: {found['wall_us_per_step']:.0f} us a step; busy per step: "
             + ", ".join(f"{thread} {microseconds:.0f} us" for thread, microseconds in list(found["busy_us_per_step"].items())[:3])]
    lines += [f"  {row['us_per_step']:9.1f} us {row['calls_per_step']:6.2f}x  {row['name'][:90]}" for row in found["top"][:rows]]
    return "\n".join(lines)


def main() -> None:
    points = int(sys.argv[sys.argv.index("--points") + 1]) if "--points" in sys.argv else 1024
    steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 300
    name = sys.argv[sys.argv.index("--name") + 1] if "--name" in sys.argv else f"profile-{jax.devices()[0].platform}"
    found = profile_block(points, steps, results_folder() / f"{name}-trace.json.gz")
    save(name, found)
    print(summary(found))


if __name__ == "__main__":
    main()
