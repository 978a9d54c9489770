"""The `tiltsweep` command line.

Exit codes: 0 every point completed or diverged (or the command succeeded); 2 refused before
anything was written (bad grid file, bad command line, unreachable cluster, directory in use,
resources no node has); 3 the sweep ran but some points failed or did not finish; 130 and 143
stopped by SIGINT (Ctrl-C) or SIGTERM, the message saying how to resume; 1 an unexpected
internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from tiltsweep.sweep.errors import Refused

EXIT_OK, EXIT_INTERNAL, EXIT_REFUSED, EXIT_INCOMPLETE = 0, 1, 2, 3

DESCRIPTION = """\
Sweep dynamical (oscillating) loss functions over amplitude A and period T with Ray Tune.
Results go to OUT/<name>/ (summary.parquet, curves.parquet, figures/); a re-run or
`resume` runs only the points that have not finished."""

EPILOG = """\
exit codes: 0 done, 2 refused before writing anything (bad input), 3 some points failed
or did not finish, 130 / 143 stopped by Ctrl-C / SIGTERM (resume goes on), 1 internal error.
compiled programs are cached in ~/.cache/tiltsweep/xla (TILTSWEEP_COMPILE_CACHE=DIR moves
the cache, =off turns it off); for GPU trials the first ones compile while Ray starts
(TILTSWEEP_WARMUP=on|off|auto).
examples:
  tiltsweep run grids/quickstart.yaml
  tiltsweep status results/quickstart
  tiltsweep resume results/quickstart
  tiltsweep run grids/paper/spiral-phase-diagrams.yaml --address 10.0.0.5:6379 --out /shared/results
  tiltsweep submit grids/paper/supp-fig2-3-myrtle5-cifar10.yaml --address http://10.0.0.5:8265 --out /shared/results
  tiltsweep lr-range grids/digits-two-oscillations.yaml
  tiltsweep trace results/quickstart TRIAL
  tiltsweep refine results/quickstart --budget 12
  tiltsweep interpolate results/digits-two-oscillations TRIAL_A TRIAL_B"""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem (and still exit code 2)."""

    def error(self, message):
        self.exit(EXIT_REFUSED, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def whole_number(least: int):
    """An argparse type: an integer of at least `least` (an epoch 0 or more, a count 1 or more)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} is below {least}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tiltsweep", description=DESCRIPTION, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True

    run = commands.add_parser("run", help="run every point of a grid file not yet completed",
                              description="Run every point of GRID.yaml that has no completed or diverged result in OUT/<name>/.")
    run.add_argument("grid", metavar="GRID.yaml", type=Path, help="the grid file")
    run.add_argument("--smoke", action="store_true", help="run the grid file's smoke section instead: a seconds-long variant of the sweep (results in OUT/<name>-smoke/)")
    run.add_argument("--out", default="results", metavar="DIR", help="where results directories go: a folder, or s3://BUCKET/PREFIX, gs://BUCKET/PREFIX (default: ./results)")
    add_sweep_options(run)
    run.set_defaults(handler=command_run)

    resume = commands.add_parser("resume", help="finish a sweep from its results directory",
                                 description="Finish the sweep whose results directory is DIR, from the grid.yaml saved there.")
    resume.add_argument("directory", metavar="DIR", help="a results directory, e.g. results/quickstart or s3://bucket/results/quickstart")
    add_sweep_options(resume)
    resume.set_defaults(handler=command_resume)

    status = commands.add_parser("status", help="count completed / partial / pending / failed / diverged points",
                                 description="Where every point of the sweep in DIR stands. Reads files only; safe during a run.")
    status.add_argument("directory", metavar="DIR")
    status.add_argument("--json", action="store_true", help="print one JSON object (counts as keys, plus trial ids)")
    status.set_defaults(handler=command_status)

    plot = commands.add_parser("plot", help="draw phase diagrams, std bands and learning curves",
                               description="Draw the figures of the sweep in DIR into DIR/figures/, with the interactive report index.html.")
    plot.add_argument("directory", metavar="DIR")
    plot.add_argument("--watch", action="store_true",
                      help="while a sweep runs in DIR, redraw index.html as its points finish; then draw every figure")
    add_plot_options(plot)
    plot.set_defaults(handler=command_plot)

    lr_range = commands.add_parser("lr-range", help="learning-rate range test for a grid's setup",
                                   description="Train the grid's first point once with the learning rate rising from --min-lr to "
                                               "--max-lr (geometrically over more than a decade), evaluated --evaluations times; write the loss and accuracy against the rate to Parquet and a "
                                               "figure with the suggested base and max rates for a triangular schedule.")
    lr_range.add_argument("grid", metavar="GRID.yaml", type=Path)
    lr_range.add_argument("--out", default="results", metavar="DIR", help="results go to DIR/<name>/lr-range: a folder or an s3:// or gs:// URI (default: ./results)")
    lr_range.add_argument("--min-lr", type=float, default=1e-4, help="rate at the start (default 1e-4)")
    lr_range.add_argument("--max-lr", type=float, default=10.0, help="rate at the end (default 10)")
    lr_range.add_argument("--epochs", type=whole_number(1), help="length of the test (default: the grid's epochs)")
    lr_range.add_argument("--evaluations", type=int, default=200, metavar="N",
                          help="evaluations across the range, within epochs where need be (default 200)")
    lr_range.set_defaults(handler=command_lr_range)

    interpolate = commands.add_parser("interpolate", help="loss and accuracy between two trained models",
                                      description="Evaluate (1 - alpha) theta_A + alpha theta_B for alpha from -0.5 to 1.5 on both "
                                                  "splits; write DIR/interpolations/A__B.parquet and a figure. A and B are trial ids "
                                                  "(their final states) or TRIAL@EPOCH (states kept with training.keep_checkpoints).")
    interpolate.add_argument("directory", metavar="DIR")
    interpolate.add_argument("a", metavar="A")
    interpolate.add_argument("b", metavar="B")
    interpolate.set_defaults(handler=command_interpolate)

    trace = commands.add_parser("trace", help="replay one finished point densely into DIR/traces/",
                                description="Train one finished point of DIR again from its seed (the same steps, on the same "
                                            "machine) and record every N steps into DIR/traces/<trial>.parquet, with the curves' "
                                            "columns (and the Hessian's, when the grid tracks it). The trajectory figures draw it.")
    trace.add_argument("directory", metavar="DIR")
    trace.add_argument("trial", metavar="TRIAL", help="a trial id, or the start of exactly one (tiltsweep status DIR lists them)")
    trace.add_argument("--every", type=int, metavar="N",
                       help="optimizer steps between rows (default: ~2,000 rows, 50 a period, dividing the grid's eval_every)")
    trace.set_defaults(handler=command_trace)

    refine = commands.add_parser("refine", help="add the points that tell most about the phase diagram, and run them",
                                 description="Propose new points from the results in DIR, record them in DIR/refinements.json "
                                             "(run and resume then know the extended sweep) and run them. --budget N: at most N "
                                             "trainings between the neighbouring cells whose means differ most for their "
                                             "uncertainty (the boundary), for every seed. --seeds-until SE: more seeds where the "
                                             "standard error of a cell's mean exceeds SE, up to --max-seeds.")
    refine.add_argument("directory", metavar="DIR")
    kind = refine.add_mutually_exclusive_group(required=True)
    kind.add_argument("--budget", type=int, metavar="N", help="at most N new trainings at the boundary")
    kind.add_argument("--seeds-until", type=float, metavar="SE", help="add seeds until each cell's standard error is at most SE")
    refine.add_argument("--max-seeds", type=int, default=10, metavar="K", help="with --seeds-until: at most K seeds a cell (default 10)")
    refine.add_argument("--dry-run", action="store_true", help="print the proposals; record and run nothing")
    add_sweep_options(refine)
    refine.set_defaults(handler=command_refine)

    submit = commands.add_parser("submit", help="run a sweep as a Ray job on a running cluster",
                                 description="Submit `tiltsweep run GRID.yaml` to a Ray cluster's job server and print the job id.")
    submit.add_argument("grid", metavar="GRID.yaml", type=Path)
    submit.add_argument("--smoke", action="store_true", help="submit the grid file's smoke variant")
    submit.add_argument("--address", required=True, metavar="URL", help="the cluster's job server, e.g. http://HEAD:8265")
    submit.add_argument("--out", default="~/tiltsweep-results", metavar="DIR",
                        help="where results directories go, as the cluster sees it: a folder every node sees, or s3://BUCKET/PREFIX, "
                             "gs://BUCKET/PREFIX (default: ~/tiltsweep-results on the cluster)")
    add_log_to(submit)
    submit.set_defaults(handler=command_submit)
    return parser


def add_plot_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--metric", default="val_accuracy", help="summary column to draw (default: final val_accuracy; e.g. best_val_accuracy, train_loss)")
    command.add_argument("--epoch", type=whole_number(0), help="draw the metric's value at this epoch instead of the final one")
    command.add_argument("--x", help="phase-diagram x axis (default: period)")
    command.add_argument("--y", help="phase-diagram y axis (default: amplitude)")
    command.add_argument("--format", default="png", help="comma-separated: png, pdf, svg (default: png)")


def add_sweep_options(command: argparse.ArgumentParser) -> None:
    """The options of the commands that run a sweep (run, resume): where, how loudly, and the
    figures drawn at the end."""
    command.add_argument("--address", metavar="ADDR", help="join an existing Ray cluster (HOST:PORT, ray://HOST:PORT or auto); default: start Ray on this machine")
    command.add_argument("--verbose", action="store_true", help="show Ray's trial table and worker logs instead of the progress line")
    command.add_argument("--dashboard", action="store_true", help="start Ray's dashboard (on 127.0.0.1 only) for a local run")
    command.add_argument("--no-plot", action="store_true", help="do not draw the report while the sweep runs, nor the figures at the end")
    add_log_to(command)
    add_plot_options(command)


def add_log_to(command: argparse.ArgumentParser) -> None:
    command.add_argument("--log-to", metavar="TRACKER", help="log every finished point as a run: mlflow[:URI] (e.g. mlflow:sqlite:///mlflow.db) or wandb (offline)")


def formats_of(args) -> list[str]:
    return [f.strip() for f in args.format.split(",") if f.strip()]


def check_plot_options(spec, args) -> None:
    """Refuse plot options that could only fail after the sweep has run."""
    if args.no_plot:
        return
    from tiltsweep.analysis.report import PlotError, check_formats
    from tiltsweep.sweep.store.ledger import PLOTTABLE_COLUMNS

    try:
        check_formats(formats_of(args))
    except PlotError as error:
        raise Refused(str(error)) from None
    swept = [column for column in spec.columns if column != "seed"]
    for option, axis in (("--x", args.x), ("--y", args.y)):
        if axis is not None and axis not in swept:
            raise Refused(f"{option} {axis}: not a swept axis of {spec.name} (its axes: {', '.join(swept) or 'none'})")
    if args.metric not in PLOTTABLE_COLUMNS:
        raise Refused(f"--metric {args.metric}: not a result column (choose from {', '.join(PLOTTABLE_COLUMNS)})")


def execute(spec, results, args) -> int:
    from tiltsweep.sweep.commands.live import Follower
    from tiltsweep.sweep.errors import StorageTrouble, describe_trouble, storage_trouble
    from tiltsweep.sweep.run.runner import SweepStopped, format_outcome, run_sweep

    check_plot_options(spec, args)
    warn = lambda message: print(f"warning: {message}", flush=True)
    followers = [Follower(live_report(results.location, args), results, warn, "the live report")] if not args.no_plot else []
    if args.log_to:
        from tiltsweep.sweep.commands.trackers import open_tracker

        tracker = open_tracker(args.log_to, results, spec.name)
        followers.append(Follower(tracker.sync, results, warn, f"logging to {args.log_to}"))
    try:
        outcome = run_sweep(spec, results, args.address, args.verbose, args.dashboard, followers=followers)
    except SweepStopped as stopped:
        print(f"\ntiltsweep: {stopped}", file=sys.stderr, flush=True)
        return stopped.exit_code
    except (StorageTrouble, OSError) as error:
        if isinstance(error, OSError) and not storage_trouble(error):
            raise
        if isinstance(error, OSError) and not results.exists():  # nothing of the sweep written: nothing to resume
            raise Refused(f"{results}: cannot write there ({describe_trouble(error, results)})") from None
        where = error if isinstance(error, StorageTrouble) else f"{results}: cannot write ({describe_trouble(error, results)}); " \
            f"free space or make it writable, then `tiltsweep resume {results}`"
        print(f"\ntiltsweep: {where}", file=sys.stderr, flush=True)
        return EXIT_INCOMPLETE
    print(format_outcome(outcome), flush=True)
    if not args.no_plot and sum(outcome.counts.values()):
        draw(results.location, args)
    return EXIT_OK if outcome.all_final else EXIT_INCOMPLETE


def draw(directory: str, args) -> list[str]:
    from tiltsweep.analysis.report import PlotError, build_report

    try:
        paths = build_report(directory, args.metric, args.x, args.y, formats_of(args), args.epoch)
    except PlotError as error:
        raise Refused(str(error)) from None
    print(f"figures: {paths[-1]} ({len(paths) - 1} files)", flush=True)
    return paths


def live_report(directory: str, args):
    """write(live) of the report while a sweep runs; it imports the report on the follower's
    thread, not before the sweep starts."""
    def write(live: bool):
        from tiltsweep.analysis.report import write_live_index

        return write_live_index(directory, args.metric, args.x, args.y, live)

    return write


def watch(results, args) -> None:
    """Redraw the report as points finish while a run holds the directory's lock."""
    from tiltsweep.analysis.report import INDEX
    from tiltsweep.sweep.commands.live import Follower

    lock = results.lock()
    running = lambda: lock.holder() is not None
    if not running():
        print(f"{results}: no sweep is running there; drawing its figures once", flush=True)
        return
    page = results.figure_shown(INDEX)
    print(f"watching {results}: {page} is redrawn as points finish (Ctrl-C stops watching; the sweep goes on)", flush=True)
    live = Follower(live_report(results.location, args), results, on_problem=lambda message: print(f"warning: {message}", flush=True))
    try:
        while running():
            live.poll()
            time.sleep(Follower.POLL_SECONDS)
    except KeyboardInterrupt:
        live.poll(live=False, force=True)
        print(f"\nstopped watching; {page} shows the sweep as it was", flush=True)
        raise


def command_plot(args) -> int:
    results = existing_results(args.directory)
    if args.watch:
        try:
            watch(results, args)
        except KeyboardInterrupt:
            return EXIT_OK
    for path in draw(results.location, args)[:-1]:
        print(f"  {path}")
    return EXIT_OK


def command_run(args) -> int:
    return execute(*spec_to_run(args.grid, args.out, args.smoke), args)


def spec_to_run(grid: Path, out: str, smoke: bool = False):
    """(GridSpec, ResultsDir) of `tiltsweep run GRID --out OUT`: the grid file's points, and
    those `refine` added to its results directory."""
    from tiltsweep.sweep.grid import load_grid
    from tiltsweep.sweep.run.runner import results_dir_for

    spec = load_grid(grid, smoke=smoke)
    results = results_dir_for(spec, out)
    if results.described():
        results.description()  # OtherLayout (refused) for a directory of another layout
    if results.added_points():
        spec = load_grid(grid, smoke=smoke, added=results.added_points())
    return spec, results


def existing_results(directory: str):
    """The ResultsDir of an existing results directory of this layout, or Refused."""
    from tiltsweep.sweep.store import ResultsDir

    return ResultsDir(directory).opened()


def open_results(directory: str):
    """(GridSpec, ResultsDir) of an existing results directory, its grid.yaml parsed to run it."""
    from tiltsweep.sweep.grid import load_grid

    results = existing_results(directory)
    return load_grid(results.grid_shown(), base_dir=results.grid_base_dir(), added=results.added_points(), text=results.grid_text()), results


def command_resume(args) -> int:
    spec, results = open_results(args.directory)
    return execute(spec, results, args)


def command_status(args) -> int:
    from tiltsweep.sweep.store.status import sweep_status

    status = sweep_status(existing_results(args.directory))
    print(json.dumps(status.as_json()) if args.json else format_status(status, args.directory))
    return EXIT_OK


def shorten(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_status(status, root, listed: int = 8) -> str:
    """`tiltsweep status DIR`'s text: the counts, and the points of each category but completed."""
    from tiltsweep.sweep.store.status import CATEGORIES

    lines = [f"{status.name} ({root}): {status.total} points"]
    for category in CATEGORIES:
        ids = status.trials[category]
        lines.append(f"  {category:<10}{len(ids):>6}")
        if category != "completed":
            for trial_id in ids[:listed]:
                axes = ", ".join(f"{column}={value}" for column, value in status.points[trial_id].items())
                error = f": {shorten(status.errors[trial_id])}" if trial_id in status.errors else ""
                lines.append(f"              {trial_id}  {axes}{error}")
            if len(ids) > listed:
                lines.append(f"              ... and {len(ids) - listed} more")
    if status.outside_grid:
        lines.append(f"  {len(status.outside_grid)} recorded points are not in the current grid (kept, not counted)")
    for problem in status.unreadable:
        lines.append(f"  unreadable: {problem} (the next run moves it to quarantine/ and rebuilds it or re-runs its point)")
    return "\n".join(lines)


def command_submit(args) -> int:
    from tiltsweep.sweep.grid import load_grid
    from tiltsweep.sweep.store.files import Unreachable, is_object_uri, parse_location

    spec = load_grid(args.grid, check_data=False, smoke=args.smoke)  # the data lives on the cluster, not here
    try:
        parse_location(args.out)  # what no node could reach is refused here; the cluster's run checks the rest
    except Unreachable as error:
        raise Refused(f"--out {error}") from None
    written = spec.data_path_written
    if written and not is_object_uri(written) and not Path(parse_location(written)[1]).expanduser().is_absolute():
        raise Refused(f"{args.grid}: data.path: must be absolute or a URI for submit (it is read on the cluster), got {written!r}")
    from tiltsweep.sweep.run import executor

    if args.log_to:
        from tiltsweep.sweep.commands.trackers import parse_log_to

        parse_log_to(args.log_to)  # refused here, not in the job
    options = (["--smoke"] if args.smoke else []) + (["--log-to", args.log_to] if args.log_to else [])
    job_id = executor.submit_job(args.address, args.grid, args.out, options)
    print(f"submitted {spec.name} ({len(spec.points)} points) as Ray job {job_id}")
    print(f"follow it:  ray job logs --follow --address {args.address} {job_id}")
    print(f"status:     ray job status --address {args.address} {job_id}")
    print(f"results:    {args.out}/{spec.name} on the cluster (tiltsweep status there)")
    return EXIT_OK


def command_lr_range(args) -> int:
    from tiltsweep.sweep.commands.lr_range import run_range_test

    frame, suggestion, table, figure = run_range_test(args.grid, args.out, args.min_lr, args.max_lr, args.epochs, args.evaluations)
    print(f"range test over {frame['learning_rate'].iloc[0]:.3g} .. {frame['learning_rate'].iloc[-1]:.3g}: "
          f"suggested base_lr {suggestion['base_lr']:.3g}, max_lr {suggestion['max_lr']:.3g}")
    print(f"  {table}\n  {figure}")
    return EXIT_OK


def command_refine(args) -> int:
    from tiltsweep.analysis.figures import value_text
    from tiltsweep.analysis.load import load_results
    from tiltsweep.analysis.plots import phase_axes
    from tiltsweep.sweep.grid import load_grid
    from tiltsweep.sweep.commands.refine import propose_boundary, propose_seeds
    from tiltsweep.sweep.store.status import sweep_status

    spec, results = open_results(args.directory)
    status = sweep_status(results)
    if status.trials["pending"] or status.trials["partial"]:
        raise Refused(f"{results}: {len(status.trials['pending']) + len(status.trials['partial'])} points have not finished; "
                      f"`tiltsweep resume {results}` first (refining needs the results)")
    loaded = load_results(results.location)
    if args.budget is not None:
        x, y = phase_axes(loaded, args.x, args.y)
        if not (x and y):
            raise Refused(f"{spec.name}: refining a boundary needs two swept axes besides seed")
        points, how = propose_boundary(loaded, args.budget, args.metric, x, y), f"--budget {args.budget} --metric {args.metric} --x {x} --y {y}"
    else:
        points, how = propose_seeds(loaded, args.metric, args.seeds_until, args.max_seeds), f"--seeds-until {args.seeds_until} --max-seeds {args.max_seeds}"
    extended = load_grid(results.grid_shown(), base_dir=results.grid_base_dir(), added=results.added_points() + points, text=results.grid_text())
    print(f"{spec.name}: {len(points)} new points, {len(extended.points) - len(spec.points)} new trainings ({how})")
    for point in points:
        print("  " + ", ".join(f"{column}={value_text(value)}" for column, value in point.items()))
    if args.dry_run or not points:
        return EXIT_OK
    check_plot_options(extended, args)  # before the points are added: a refusal leaves the directory as it was
    if args.log_to:
        from tiltsweep.sweep.commands.trackers import parse_log_to

        parse_log_to(args.log_to)
    results.add_points(points, how)
    return execute(extended, results, args)  # the sweep as open_results now reads it


def command_trace(args) -> int:
    from tiltsweep.analysis import report
    from tiltsweep.sweep.commands.trace import trace_point

    existing_results(args.directory)
    trace = trace_point(args.directory, args.trial, args.every)
    trial_id = trace.frame["trial_id"].iloc[0]
    print(f"{trial_id}: {len(trace.frame)} rows, every {trace.every} steps -> {trace.path}")
    if trace.differing:
        print(f"  differs from the sweep's record at {trace.differing} of its {trace.checked} evaluations: this machine's replay "
              f"(trained on another CPU, by another tiltsweep version, or vmapped with other points, it takes other last bits)")
    else:
        print(f"  matches the sweep's record at all {trace.checked} of its evaluations")
    for path in report.draw_trial(args.directory, trial_id):
        print(f"  {path}")
    return EXIT_OK


def command_interpolate(args) -> int:
    from tiltsweep.sweep.commands.interpolate import interpolate_states

    existing_results(args.directory)
    frame, table, figure = interpolate_states(args.directory, args.a, args.b)
    ends = frame.set_index("alpha")["train_loss"]
    higher_end, highest = max(ends.loc[0.0], ends.loc[1.0]), frame.loc[frame["alpha"].between(0, 1), "train_loss"].max()
    verdict = "a bump: different minima" if highest > 1.05 * higher_end else "no bump of more than 5%"
    print(f"train loss {ends.loc[0.0]:.4g} at {args.a}, {ends.loc[1.0]:.4g} at {args.b}, "
          f"highest between them {highest:.4g} ({verdict})")
    print(f"  {table}\n  {figure}")
    return EXIT_OK


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except Refused as error:
        print(f"tiltsweep: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:  # outside a sweep (a sweep's own stop is SweepStopped, above)
        print("tiltsweep: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output was piped into a reader that stopped early (`| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush is quiet
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
