"""Everything between a grid file and a finished results directory, in four roles, each a folder;
imports run one way, down this list:

    commands/   the command line and each command (refine, trace, lr-range, interpolate, trackers,
                the live report); on top: nothing imports them
    run/        a sweep trained on Ray Tune workers and filed as its points finish
    grid/       grid files read, validated and expanded into typed points with their trial ids
    store/      the results directory: the only code that knows a path inside one

with analysis (tiltsweep.analysis: load, reduce, draw) between the store and the commands, and
errors.py, the refusals every role raises.
"""
