"""Grid files: expansion, trial identity, and refusals that name the file and the field."""

import re
import tempfile
from pathlib import Path

import pytest
import yaml

from bad_grids import CASES, GOOD, REFUSED_WHILE_COMPOSING, laughs
from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.commands.cli import main
from tiltsweep.sweep.grid import GridError, load_grid
from tiltsweep.sweep.grid.reading import MAX_DEPTH, MAX_INTEGER_CHARS, MAX_NODES, StrictLoader, read_yaml_mapping
from tiltsweep.sweep.store.layout import LONGEST_INSIDE
from tiltsweep.sweep.store.location import path_limits
from tiltsweep.trainers.config import TrialConfig

GRIDS = Path(__file__).resolve().parent.parent / "grids"


def write(tmp_path, text, name="grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_is_the_product_of_its_axes(tmp_path):
    spec = load_grid(write(tmp_path, GOOD + "  model.width: [8, 16]\n"))
    assert spec.name == "ok" and len(spec.points) == 2 * 2 * 2
    assert spec.columns == {"amplitude": "loss.amplitude", "seed": "seed", "model.width": "model.width"}
    assert spec.points[0].axes == {"loss.amplitude": 1.0, "seed": 0, "model.width": 8}
    assert {p.config.loss.amplitude for p in spec.points} == {1.0, 10.0}
    assert {p.config.model.width for p in spec.points} == {8, 16}
    assert len({p.trial_id for p in spec.points}) == 8


def test_trial_id_ignores_spelling_order_checkpoint_frequency_and_layout(tmp_path):
    first = load_grid(write(tmp_path, GOOD, "a.yaml"))
    respelled = GOOD.replace("amplitude: [1, 10]", "loss.amplitude: [10.0, 1]").replace("seed: [0, 1]", "seed: [1, 0]")
    respelled = respelled.replace("eval_every: 50}", "eval_every: 50, checkpoint_every: 25}").replace("width: 8}", "width: 8, layout: elementwise}")
    second = load_grid(write(tmp_path, respelled, "b.yaml"))
    assert {p.trial_id for p in first.points} == {p.trial_id for p in second.points}
    assert {p.config.model.layout for p in second.points} == {"elementwise"}
    changed = load_grid(write(tmp_path, GOOD.replace("learning_rate: 1.0", "learning_rate: 0.5"), "c.yaml"))
    assert not {p.trial_id for p in first.points} & {p.trial_id for p in changed.points}


OVER_PERIODS = GOOD.replace("amplitude: [1, 10]", "amplitude: [1, 10]\n  period: [50, 100]")


def test_amplitude_one_at_several_periods_is_one_training_per_seed(tmp_path):
    spec = load_grid(write(tmp_path, OVER_PERIODS))
    assert len(spec.points) == 2 + 2 * 2  # A = 1: one per seed; A = 10: one per (T, seed)
    plain = [p for p in spec.points if p.config.loss.amplitude == 1]
    assert [[axes["loss.period"] for axes in p.stands_for] for p in plain] == [[50, 100], [50, 100]]
    assert spec.description().shared == {p.trial_id: [{"period": 100.0}] for p in plain}
    # The ids tiltsweep 0.1 gave these points (pinned at 4c1a266): its results directories keep
    # their finished points only while the identity stays the same.
    assert sorted(p.trial_id for p in spec.points) == ["154b7912b525bf46", "24f7239f2f352112", "47bd9f1cded7040e",
                                                       "4921f78013a28412", "8eb03820feb4bbc6", "b3387547b45de097"]
    oscillating = {p.trial_id for p in spec.points if p.config.loss.amplitude == 10}
    for setting in ("shape: cosine", "stop_oscillation_epoch: 20", "period_unit: epochs"):
        changed = load_grid(write(tmp_path, OVER_PERIODS.replace("period: 50}", f"period: 50, {setting}}}"), "changed.yaml"))
        assert {p.trial_id for p in changed.points if p.config.loss.amplitude == 1} == {p.trial_id for p in plain}, setting
        assert not {p.trial_id for p in changed.points} & oscillating, setting


def test_relative_data_path_is_read_from_the_grid_files_folder(tmp_path, cifar_dir):
    text = GOOD.replace("data: {name: spiral, points_per_class: 20, classes: 3}", f"data: {{name: cifar10, path: {cifar_dir.name}}}")
    text = text.replace("model: {name: mlp, width: 8}", "model: {name: myrtle5, channels: 4}")
    spec = load_grid(write(cifar_dir.parent, text))
    assert spec.points[0].config.data.path == str(cifar_dir.resolve())


@pytest.mark.parametrize("path", sorted(GRIDS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(GRIDS)))
def test_shipped_grid_files_are_valid(path):
    spec = load_grid(path, check_data=False)  # the CIFAR-10 grids point at a directory users provide
    assert spec.points
    assert_configs_survive_a_round_trip(spec)
    if "smoke" in yaml.safe_load(path.read_text()):
        smoke = load_grid(path, check_data=False, smoke=True)
        assert smoke.name == f"{spec.name}-smoke" and 0 < len(smoke.points) <= 8
        assert_configs_survive_a_round_trip(smoke)
        saved = write(Path(tempfile.mkdtemp()), smoke.text)  # what the results directory keeps
        assert [p.config for p in load_grid(saved, check_data=False, base_dir=path.parent).points] == [p.config for p in smoke.points]


def test_the_smoke_section_merges_settings_and_replaces_the_grid(tmp_path):
    text = GOOD + "smoke:\n  training: {epochs: 10}\n  grid: {amplitude: [1]}\n"
    spec, smoke = load_grid(write(tmp_path, text)), load_grid(write(tmp_path, text), smoke=True)
    assert smoke.axes == {"loss.amplitude": [1.0]} and len(spec.points) > 1
    config = smoke.points[0].config
    assert config.training.epochs == 10 and config.training.eval_every == spec.points[0].config.training.eval_every
    assert "smoke" not in yaml.safe_load(smoke.text)


@pytest.mark.parametrize("smoke, expected", [
    ("", "smoke: no such section: --smoke needs one"),
    ("smoke: 3\n", "smoke: must be a mapping of sections, got int 3"),
    ("smoke: {trainig: {epochs: 1}}\n", "smoke.trainig: cannot be overridden (did you mean 'training'?)"),
    ("smoke: {training: {epochz: 1}}\n", "training.epochz: unknown setting (did you mean 'epochs'?)"),
])
def test_a_bad_smoke_section_is_refused_naming_it(tmp_path, smoke, expected):
    with pytest.raises(GridError, match=re.escape(expected)):
        load_grid(write(tmp_path, GOOD + smoke), smoke=True)


def assert_configs_survive_a_round_trip(spec):
    """Records store resolved configs as JSON; workers and `interpolate` validate them again."""
    for point in spec.points:
        assert TrialConfig.model_validate(point.config.model_dump(mode="json")) == point.config


@pytest.mark.parametrize("title,text,expected", CASES, ids=[case[0] for case in CASES])
def test_bad_grid_is_refused_with_one_line_naming_file_and_field(tmp_path, capsys, tally, title, text, expected):
    grid = write(tmp_path, text, "bad.yaml")
    with pytest.raises(GridError) as caught:
        load_grid(grid)
    assert expected in str(caught.value)
    out = tmp_path / "results"
    assert main(["run", str(grid), "--out", str(out)]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and str(grid) in message and expected in message
    assert not out.exists()  # nothing written
    tally.refusal("bad grid file")


def test_the_point_limit_is_counted_before_expanding_and_can_be_raised(tmp_path, monkeypatch):
    grid = write(tmp_path, GOOD, "four.yaml")  # 2 amplitudes x 2 seeds
    monkeypatch.setenv("TILTSWEEP_MAX_POINTS", "3")
    with pytest.raises(GridError, match="grid: has 4 points, more than the limit of 3"):
        load_grid(grid)
    monkeypatch.setenv("TILTSWEEP_MAX_POINTS", "4")
    assert len(load_grid(grid).points) == 4
    monkeypatch.setenv("TILTSWEEP_MAX_POINTS", "lots")
    with pytest.raises(Refused, match="TILTSWEEP_MAX_POINTS='lots': not a whole number of points"):
        load_grid(grid)


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["run"], "the following arguments are required: GRID.yaml"),
        (["launch", "x.yaml"], "invalid choice: 'launch'"),
        (["run", "missing.yaml"], "missing.yaml: no such grid file"),
        (["status", "nowhere"], "nowhere: no such results directory"),
        (["resume", "."], "not a tiltsweep results directory"),
        (["run", "{good}", "--out", "{file}"], "is a file, not a directory"),
        (["run", "{good}", "--address", "127.0.0.1:9"], "cannot reach a Ray cluster at 127.0.0.1:9"),
        (["run", "{good}", "--address", "nonsense"], "not a Ray address"),
        (["run", "{good}", "--epochs", "3"], "unrecognized arguments: --epochs 3"),
        (["run", "{longest}", "--smoke"], "name: is 261 bytes long with --smoke's '-smoke', more than the 255 a results directory's name may have"),
        (["run", "{good}", "--out", "{deep}"], "the paths of ok's results there would reach"),
        (["run", "{good}", "--out", "{long_part}"], "has a part of 300 bytes, more than the 255 a name may have there"),
        (["run", "{long_part}.yaml"], ".yaml: cannot be read (File name too long)"),
        (["run", "{good}", "--epoch", "-3"], "argument --epoch: -3 is below 0"),
        (["plot", "{file}", "--epoch", "three"], "argument --epoch: 'three' is not a whole number"),
        (["lr-range", "{good}", "--epochs", "0"], "argument --epochs: 0 is below 1"),
        (["run", "{good}", "--out", "/sys/kernel/tiltsweep-test"], "cannot write there"),  # a place no one may write (sysfs)
        (["submit", "{relative}", "--address", "http://127.0.0.1:9"],
         "relative.yaml: data.path: must be absolute or a URI for submit (it is read on the cluster), got 'cifar-10-batches-py'"),
    ],
    ids=lambda value: value if isinstance(value, str) else " ".join(value).replace("{", "").replace("}", ""),
)
def test_bad_command_lines_exit_2_with_one_line(tmp_path, capsys, monkeypatch, tally, argv, expected):
    monkeypatch.chdir(tmp_path)
    good = write(tmp_path, GOOD, "good.yaml")
    (tmp_path / "a-file").write_text("")
    # a name of 255 bytes, the most a file name has, with a smoke section that would append -smoke
    longest = write(tmp_path, GOOD.replace("name: ok", "name: " + "n" * 255) + "smoke:\n  training: {epochs: 10}\n", "longest.yaml")
    path_max = path_limits(tmp_path)[0]
    deep = tmp_path  # OUT/ok fits in PATH_MAX, the files tiltsweep writes below it do not
    while len(str(deep)) < path_max - LONGEST_INSIDE // 2 - 200:
        deep = deep / ("d" * 200)
    deep = deep / ("e" * (path_max - LONGEST_INSIDE // 2 - len(str(deep))))
    relative = write(tmp_path, GOOD.replace("data: {name: spiral, points_per_class: 20, classes: 3}",
                                            "data: {name: cifar10, path: cifar-10-batches-py, classes: [0, 1]}"), "relative.yaml")
    paths = dict(good=good, file=tmp_path / "a-file", longest=longest, deep=deep, long_part=tmp_path / ("x" * 300), relative=relative)
    argv = [arg.format(**paths) for arg in argv]
    before = sorted(tmp_path.iterdir())
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert sorted(tmp_path.iterdir()) == before  # nothing written
    tally.refusal("bad command line")


UNBOUNDED = REFUSED_WHILE_COMPOSING + [
    ("alias bomb of 9 ** 20 items", GOOD + f"  model.width: [{', '.join(laughs(20))}]\n", "grid.model.width: grows the file past the limit"),
]


@pytest.mark.parametrize("title,text,expected", UNBOUNDED, ids=[case[0] for case in UNBOUNDED])
def test_unbounded_yaml_is_refused_while_it_is_composed(tmp_path, monkeypatch, title, text, expected):
    """Aliases are counted as all that their anchors hold, nesting and integer literals measured,
    as PyYAML composes the document: the refusal comes before any of it is built (let alone
    walked, copied or printed), whatever the document would grow to."""
    monkeypatch.setattr(StrictLoader, "construct_document", lambda self, node: pytest.fail("built the document"))
    with pytest.raises(GridError, match=re.escape(expected)):
        load_grid(write(tmp_path, text))


def test_yaml_at_the_limits_is_read(tmp_path):
    """Each limit is the most allowed: a document at it is read (and a grid file nested as deep
    goes through validation, copies and --smoke's dump without a RecursionError), one past it is not."""
    anchor = "a: &a [" + ", ".join(["0"] * 99) + "]\n"  # the root, the key, the list and its 99 items: 102 nodes
    for extra, refused in ((0, False), (1, True)):
        items = ["*a"] * ((MAX_NODES - 104) // 100) + ["0"] * ((MAX_NODES - 104) % 100 + extra)
        path = write(tmp_path, anchor + f"b: [{', '.join(items)}]\n", "nodes.yaml")  # + key b and its list
        if refused:
            with pytest.raises(GridError, match=f"nodes.yaml: grows the file past the limit of {MAX_NODES:,} YAML nodes"):  # the root's node
                read_yaml_mapping(path)
        else:
            assert len(read_yaml_mapping(path)["b"]) == len(items)
    deep = lambda levels: "[" * levels + "0" + "]" * levels
    smoke = "smoke:\n  training: {epochs: 10}\n"
    with pytest.raises(GridError, match=re.escape("model.deep: unknown setting")):  # root, model, deep: 3 levels
        load_grid(write(tmp_path, GOOD.replace("width: 8}", f"width: 8, deep: {deep(MAX_DEPTH - 3)}}}") + smoke), smoke=True)
    with pytest.raises(GridError, match=re.escape(f"model.deep: is nested past the limit of {MAX_DEPTH} levels")):
        load_grid(write(tmp_path, GOOD.replace("width: 8}", f"width: 8, deep: {deep(MAX_DEPTH - 2)}}}")))
    anchor = f"a: &a {deep(MAX_DEPTH - 3)}\n"  # 97 lists around a number: 98 levels high, from level 2
    assert read_yaml_mapping(write(tmp_path, anchor + "b: [*a]\n"))["b"][0] is not None  # 1 + 1 + 98 levels
    with pytest.raises(GridError, match=re.escape(f"b: is nested past the limit of {MAX_DEPTH} levels through alias *a")):
        read_yaml_mapping(write(tmp_path, anchor + "b: [[*a]]\n"))
    assert read_yaml_mapping(write(tmp_path, "seed: " + "9" * MAX_INTEGER_CHARS))["seed"] == 10 ** MAX_INTEGER_CHARS - 1
    with pytest.raises(GridError, match=f"seed: an integer of {MAX_INTEGER_CHARS + 1:,} characters"):
        read_yaml_mapping(write(tmp_path, "seed: " + "9" * (MAX_INTEGER_CHARS + 1)))


def test_anchors_aliases_and_merge_keys_still_work(tmp_path):
    text = GOOD.replace("training: {epochs: 100, eval_every: 50}", "training: &training {epochs: 100, eval_every: 50}")
    text = text.replace("seed: [0, 1]", "seed: &seeds [0, 1]") + "smoke:\n  training: {<<: *training, epochs: 10}\n  grid: {amplitude: [10], seed: *seeds}\n"
    spec, smoke = load_grid(write(tmp_path, text)), load_grid(write(tmp_path, text), smoke=True)
    assert len(spec.points) == 4 and [p.axes["seed"] for p in smoke.points] == [0, 1]
    assert {(p.config.training.epochs, p.config.training.eval_every) for p in smoke.points} == {(10, 50)}


def test_a_merge_key_may_override_what_an_anchor_merged_in_itself(tmp_path):
    """PyYAML rewrites a mapping that is merged in elsewhere (`<<: *m`) with the keys it merges
    itself; its own override (`x: 2` over `*b`'s) is not a key given twice."""
    import yaml

    deeper = "a: &b {x: 1}\nb: {c: {d: &m {<<: *b, x: 2}}}\nc: {<<: *m}\n"
    # read as PyYAML reads it (which value `c.x` gets differs between PyYAML 6.0.3 and 6.0.4)
    assert read_yaml_mapping(write(tmp_path, deeper)) == yaml.safe_load(deeper)


SUBGRIDS = GOOD.replace("""grid:
  amplitude: [1, 10]
  seed: [0, 1]
""", """grid:
  - amplitude: [1, 10]
    period: [50, 100]
  - schedule.name: [triangular]
    schedule.base_lr: [1.0]
    schedule.ratio: [1, 4]
    schedule.period: [50, 100]
  - amplitude: [1]
    period: [50]
""")


def test_a_list_of_mappings_is_the_union_of_sub_grids(tmp_path):
    spec = load_grid(write(tmp_path, SUBGRIDS))
    assert [len(sub.trial_ids) for sub in spec.subgrids] == [3, 4, 1]  # A = 1 at T = 50 and 100 is one training
    assert len(spec.points) == 7  # the third sub-grid's point is the first's (A=1, T=50): it runs once
    assert spec.subgrids[2].trial_ids[0] in spec.subgrids[0].trial_ids
    assert list(spec.columns) == ["amplitude", "period", "schedule.name", "schedule.base_lr", "schedule.ratio", "schedule.period"]
    clr = [p for p in spec.points if p.config.schedule.name == "triangular"]
    assert sorted((p.config.schedule.max_lr, p.config.schedule.step_size) for p in clr) == [(1.0, 25), (1.0, 50), (4.0, 25), (4.0, 50)]
    assert_configs_survive_a_round_trip(spec)


@pytest.mark.parametrize("text,expected", [
    (SUBGRIDS.replace("schedule.ratio: [1, 4]", "schedule.ratio: [0.5, 4]"), "grid[1].schedule.ratio: value 0.5: Input should be greater than or equal to 1"),
    (SUBGRIDS.replace("  - amplitude: [1]\n    period: [50]\n", "  - 7\n"), "grid[2]: must map config paths to lists of values, got int"),
    (GOOD.replace("grid:\n  amplitude: [1, 10]\n  seed: [0, 1]\n", "grid: []\n"), "grid: is an empty list"),
])
def test_bad_sub_grids_are_named_by_their_index(tmp_path, text, expected):
    with pytest.raises(GridError, match=re.escape(expected)):
        load_grid(write(tmp_path, text))


@pytest.mark.parametrize("mode", ["disabled", "DISABLED"])
def test_a_local_ray_without_token_authentication_is_refused(tmp_path, monkeypatch, capsys, tally, mode):
    """Ray's servers listen on every interface, so a local Ray without its token would admit
    anyone who reaches the machine: refused before Ray starts, unless the user says it is theirs."""
    grid = write(tmp_path, GOOD, "open.yaml")
    out = tmp_path / "results"
    monkeypatch.setenv("RAY_AUTH_MODE", mode)
    assert main(["run", str(grid), "--out", str(out)]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and f"RAY_AUTH_MODE={mode}" in message and "TILTSWEEP_OPEN_RAY=1" in message
    assert not out.exists()
    from tiltsweep.sweep.run.executor import refuse_open_local_ray

    refuse_open_local_ray({"RAY_AUTH_MODE": mode, "TILTSWEEP_OPEN_RAY": "1"})  # the user's choice, said
    refuse_open_local_ray({"RAY_AUTH_MODE": "token"})
    refuse_open_local_ray({})
    tally.refusal("local Ray without token authentication")
