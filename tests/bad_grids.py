"""Malformed grid files and what tiltsweep must say about each (a fragment of its message).

Each case is (title, grid text, expected fragment). `{cifar}` in a text is replaced by a real
tiny cifar-10-batches-py directory. Used by test_grid.py; `python tests/bad_grids.py` prints the table in
README.md.
"""

GOOD = """\
name: ok
data: {name: spiral, points_per_class: 20, classes: 3}
model: {name: mlp, width: 8}
optimizer: {name: sgd, learning_rate: 1.0, batch_size: full}
training: {epochs: 100, eval_every: 50}
loss: {name: dynamical_cross_entropy, amplitude: 1, period: 50}
grid:
  amplitude: [1, 10]
  seed: [0, 1]
"""


def replace(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


CASES = [
    ("unknown top-level section", GOOD + "optimiser: {name: adam}\n", "optimiser: unknown section (did you mean 'optimizer'?)"),
    ("unknown setting in a section", replace("width: 8", "widht: 8"), "model.widht: unknown setting (did you mean 'width'?)"),
    ("wrong type", replace("epochs: 100", "epochs: lots"), "training.epochs: Input should be a valid integer"),
    ("amplitude below 1 in the grid", replace("amplitude: [1, 10]", "amplitude: [0.5, 10]"), "grid.amplitude: value 0.5: Input should be greater than or equal to 1"),
    ("amplitude below 1 in the base", replace("amplitude: 1,", "amplitude: 0,").replace("amplitude: [1, 10]", "period: [10, 20]"), "loss.amplitude: Input should be greater than or equal to 1"),
    ("period of zero", replace("period: 50}", "period: 0}"), "loss.period: Input should be greater than 0"),
    ("negative period in the grid", GOOD + "  period: [100, -5]\n", "grid.period: value -5: Input should be greater than 0"),
    ("empty axis", replace("seed: [0, 1]", "seed: []"), "grid.seed: is empty"),
    ("axis that is not a list", replace("seed: [0, 1]", "seed: 3"), "grid.seed: must be a list of values"),
    ("duplicate axis values", replace("amplitude: [1, 10]", "amplitude: [1, 10, 10.0]"), "grid.amplitude: value 10.0 appears twice"),
    ("same axis twice", GOOD + "  loss.amplitude: [3]\n", "grid.loss.amplitude: is the same axis as 'amplitude' (loss.amplitude): give it once"),
    ("axis on an unknown path", GOOD + "  model.depthh: [1, 2]\n", "grid.model.depthh: value 1: unknown setting (did you mean 'depth'?)"),
    ("stop epoch past the end", replace("period: 50}", "period: 50, stop_oscillation_epoch: 500}"), "loss.stop_oscillation_epoch (500) is past the end of training"),
    ("missing CIFAR-10 directory", replace("data: {name: spiral, points_per_class: 20, classes: 3}", "data: {name: cifar10, path: /nonexistent/cifar-10-batches-py}").replace("model: {name: mlp, width: 8}", "model: {name: myrtle5, channels: 8}"), "data.path: /nonexistent/cifar-10-batches-py: CIFAR-10 directory not found"),
    ("data kind missing", replace("data: {name: spiral, points_per_class: 20, classes: 3}", "data: {points_per_class: 20}"), "data.name: is required"),
    ("unknown data kind", replace("name: spiral,", "name: mnist,"), "data.name: unknown kind 'mnist' (expected one of 'spiral', 'digits', 'cifar10')"),
    ("unreadable YAML", GOOD + "grid: [unclosed\n", "unreadable YAML at line"),
    ("not a mapping", "- just\n- a list\n", "must be a YAML mapping of sections"),
    ("empty file", "", "is empty"),
    ("name missing", replace("name: ok\n", ""), "name: is required"),
    ("name with a slash", replace("name: ok", "name: ../escape"), "name: must be letters, digits"),
    ("name ending in a newline", replace("name: ok", 'name: "ok\\n"'), "name: must be letters, digits"),
    ("batch larger than the data", replace("batch_size: full", "batch_size: 500"), "optimizer.batch_size: 500 is larger than the training set (60 examples)"),
    ("negative GPU share", GOOD + "resources: {cpu: 1, gpu: -1}\n", "resources.gpu: Input should be greater than or equal to 0"),
    ("unknown resource", GOOD + "resources: {cpu: 1, gpus: 1}\n", "resources.gpus: unknown setting (did you mean 'gpu'?)"),
    ("Nesterov without momentum", replace("batch_size: full}", "batch_size: full, nesterov: true}"), "nesterov needs momentum > 0"),
    ("CNN on vectors", replace("model: {name: mlp, width: 8}", "model: {name: myrtle5}"), "model myrtle5 needs images"),
    ("section that is not a mapping", replace("training: {epochs: 100, eval_every: 50}", "training: 100"), "training: must be a mapping of settings"),
    ("section given twice (YAML keeps the last)", GOOD + "grid:\n  period: [5]\n", "grid: given twice (lines 7 and 10): give it once"),
    ("setting given twice in one mapping", replace("width: 8}", "width: 8, width: 16}"), "model.width: given twice (lines 3 and 3)"),
    ("axis given twice in a sub-grid", replace("grid:\n  amplitude: [1, 10]\n  seed: [0, 1]\n", "grid:\n  - {seed: [0]}\n  - {seed: [1], seed: [2]}\n"),
     "grid[1].seed: given twice (lines 9 and 9)"),
    ("grid path through a setting", GOOD + "  model.width.foo: [1, 2]\n", "grid.model.width.foo: is not a config path (model.width is not a section)"),
    ("infinite period", replace("period: 50}", "period: .inf}"), "loss.period: must be a finite number, got inf"),
    ("not-a-number in the grid", GOOD + "  loss.period: [.nan]\n", "grid.loss.period: value nan: must be a finite number, got nan"),
    ("boolean amplitude in the grid", replace("amplitude: [1, 10]", "amplitude: [1, true]"), "grid.amplitude: value True: must be a number or a name, not the boolean true"),
    ("boolean seed", replace("seed: [0, 1]", "period: [10]").replace("name: ok\n", "name: ok\nseed: yes\n"), "seed: must be a number or a name, not the boolean true"),
    ("boolean epochs", replace("epochs: 100", "epochs: true"), "training.epochs: must be a number or a name, not the boolean true"),
    ("four billion points", replace("seed: [0, 1]", "seed: " + str(list(range(2000))) + "\n  period: " + str(list(range(1, 1001)))) + "  model.width: " + str(list(range(1, 1001))) + "\n",
     "grid: has 4,000,000,000 points, more than the limit of 1,000,000 (set TILTSWEEP_MAX_POINTS to allow more)"),
]


def laughs(levels: int = 9) -> list[str]:
    """A "billion laughs": `levels` anchors, each a list of nine aliases of the one before, so
    the last stands for 9 ** levels items (PyYAML shares what an alias names: the file is small)."""
    return ["&l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]


def merged_laughs(levels: int = 9) -> str:
    """The same through merge keys, as block mappings indented by four: each mapping merges nine
    aliases of the one before (PyYAML copies the merged keys in, 9 ** levels of them)."""
    lines = ["    m0: &m0 {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1}"]
    lines += [f"    m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}]}}" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


NODES = "grows the file past the limit of 100,000 YAML nodes, an alias counting as all its anchor holds"
DEEP = "is nested past the limit of 100 levels"

# Refused while the YAML is composed, before any of it is built (test_grid.py checks that): files
# that would otherwise hang, fill the memory, or end in a RecursionError or ValueError.
REFUSED_WHILE_COMPOSING = [
    ("alias bomb (billion laughs), as reported", "".join(f"x{i}: {anchor}\n" for i, anchor in enumerate(laughs())) + GOOD, f"x5: {NODES}"),
    ("alias bomb in a grid axis", GOOD + f"  model.width: [{', '.join(laughs())}]\n", f"grid.model.width: {NODES}"),
    ("alias bomb in a setting", replace("width: 8}", f"width: [{', '.join(laughs())}]}}"), f"model.width: {NODES}"),
    ("alias bomb through merge keys (<<:)", replace("model: {name: mlp, width: 8}", "model:\n  name: mlp\n  bag:\n" + merged_laughs()), f"model.bag.m4.<<: {NODES}"),
    ("alias inside its own anchor", replace("seed: [0, 1]", "seed: &r [0, *r]"), "grid.seed: alias *r names a node that contains it, so it never ends"),
    ("flow sequence nested 10,000 deep", replace("seed: [0, 1]", "seed: " + "[" * 10_000 + "0" + "]" * 10_000), f"grid.seed: {DEEP}"),
    ("aliases stacked 1,080 deep", replace("width: 8}", "width: 8, x: [" + ", ".join(
        [f"&d0 {'[' * 90}0{']' * 90}"] + [f"&d{i} {'[' * 90}*d{i - 1}{']' * 90}" for i in range(1, 12)]) + "]}"),
     f"model.x: {DEEP} through alias *d0"),
    ("block mappings nested 200 deep", GOOD + "resources:\n" + "".join(" " * depth + "k:\n" for depth in range(1, 201)) + " " * 201 + "0\n",
     f"resources.k.k.k.k.k.k.k...: {DEEP}"),
    ("integer of 5,000 digits", replace("epochs: 100", "epochs: " + "9" * 5000), "training.epochs: an integer of 5,000 characters, past the limit of 1,000"),
    ("hexadecimal integer of 5,000 digits", replace("epochs: 100", "epochs: 0x" + "f" * 5000), "training.epochs: an integer of 5,002 characters, past the limit of 1,000"),
]

CASES += REFUSED_WHILE_COMPOSING + [
    ("grid file over 64 KiB", GOOD + "#" + " " * 64 * 1024 + "\n", "is larger than the limit of 65,536 characters (64 KiB) for a grid file"),
    ("integer tag on text", replace("epochs: 100", 'epochs: !!int "lots"'), "unreadable YAML at line 5, column 20: cannot read 'lots' as an integer"),
    ("name of 300 characters", replace("name: ok", "name: " + "n" * 300), "name: is 300 bytes long, more than the 255 a results directory's name may have"),
]


def markdown_table() -> str:
    """Run `tiltsweep run bad.yaml` on every case and tabulate what it prints (for README.md)."""
    import os
    import subprocess
    import sys
    import tempfile

    rows = ["| # | grid file problem | exit | message |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as scratch:
        for number, (title, text, _) in enumerate(CASES, 1):
            with open(os.path.join(scratch, "bad.yaml"), "w") as handle:
                handle.write(text)
            run = subprocess.run([sys.executable, "-m", "tiltsweep", "run", "bad.yaml"], cwd=scratch, capture_output=True, text=True)
            message = run.stderr.strip().replace("|", "\\|")
            rows.append(f"| {number} | {title} | {run.returncode} | `{message}` |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
