"""Packs: how many points one Tune trial trains, in which blocks, and how a worker trains a pack
(real training, no Ray; the Ray side is in test_sweep_ray.py and test_reliability.py)."""

import json

import pytest

from tiltsweep.sweep.run.executor import payload_for
from tiltsweep.sweep.run.faults import InjectedFault
from tiltsweep.sweep.grid import load_grid
from tiltsweep.sweep.run.packs import LONGEST, MOST_VMAPPED, SHARE, Pack, block_width, pack_id, plan_packs
from tiltsweep.sweep.run.runner import results_dir_for
from tiltsweep.sweep.run.worker import PackRun, blocks, run_pack
from sweep_helpers import write_grid


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    directory = tmp_path_factory.mktemp("grid")
    return load_grid(write_grid(directory, amplitudes=str(list(range(1, 33))), epochs=1000))  # 96 points


def test_packs_start_long_and_end_as_single_points(spec):
    points = list(spec.points)
    packs = plan_packs(points, slots=2, retries=2, on_accelerator=False)
    assert [p for pack in packs for p in pack.points] == points  # each once, in grid order (one signature)
    sizes = [len(pack.points) for pack in packs]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == min(LONGEST, 96 // (SHARE * 2))
    assert sizes[-SHARE * 2 :] == [1] * SHARE * 2  # the last share of every slot: one point each
    assert len(packs) < len(points) / 3


def test_more_slots_smaller_packs_and_single_blocks_without_retries(spec):
    points = list(spec.points)
    assert max(len(pack.points) for pack in plan_packs(points, slots=16, retries=2, on_accelerator=False)) == 2
    assert [len(pack.points) for pack in plan_packs(points, slots=2, retries=0, on_accelerator=False)] == [1] * 96
    on_gpu = plan_packs(points, slots=1, retries=2, on_accelerator=True)  # one block of up to MOST_VMAPPED
    assert len(on_gpu) == 1 and len(on_gpu[0].points) == 96


def test_on_an_accelerator_the_slots_share_the_points_in_blocks_of_a_power_of_two(spec):
    """A block of a few hundred points takes an accelerator about the time of one: each slot
    gets one wide block (its share, rounded up to a power of two) rather than a queue of narrow ones."""
    points = list(spec.points)
    sizes = lambda slots: [len(pack.points) for pack in plan_packs(points, slots=slots, retries=2, on_accelerator=True)]
    assert sizes(4) == [32, 32, 32]  # 96 / 4 = 24 -> 32: one round, three slots
    assert sizes(16) == [8] * 12
    assert sizes(3) == [32, 32, 32]
    assert [len(pack.points) for pack in plan_packs(points * 12, slots=1, retries=2, on_accelerator=True)] == [MOST_VMAPPED, 1152 - MOST_VMAPPED]


def test_a_pack_is_named_by_its_points_in_order(spec):
    a, b = spec.points[:2]
    assert pack_id([a, b]) != pack_id([b, a]) and pack_id([a]).startswith("p") and len(pack_id([a])) == 16


def test_auto_block_width_is_one_on_a_cpu_and_what_fits_on_an_accelerator():
    assert block_width("auto", point_bytes=10_000, device_bytes=0) == 1  # CPU
    assert block_width(3, point_bytes=10_000, device_bytes=0) == 3  # as asked
    assert block_width("auto", point_bytes=10**9, device_bytes=40 * 10**9) == 20  # e.g. half of an 80 GB GPU (gpu: 0.5)
    assert block_width("auto", point_bytes=10**3, device_bytes=80 * 10**9) == MOST_VMAPPED
    assert block_width("auto", point_bytes=10**12, device_bytes=80 * 10**9) == 1


def test_a_block_holds_points_of_one_signature_resuming_from_one_epoch(tmp_path):
    """Blocks (of batch_points 3 here) never mix points that resume from different epochs, and
    points checkpointed at the same epoch share one."""
    grid = write_grid(tmp_path, epochs=2000)
    grid.write_text(grid.read_text().replace("checkpoint_every: 1000}", "checkpoint_every: 1000, batch_points: 3}"))
    spec = load_grid(grid)
    results = results_dir_for(spec, tmp_path / "results")
    points = list(spec.points)
    for point in points[:2]:
        results.checkpoints.save(point.trial_id, 1000, b"state")
    results.checkpoints.save(points[2].trial_id, 500, b"state")
    run = PackRun(payload_for(Pack(pack_id(points), tuple(points)), spec, results, "test"))
    configs = {point.trial_id: point.config for point in points}
    ids = [point.trial_id for point in points]
    assert blocks(run, configs) == [(ids[:2], 3), (ids[2:3], 3), (ids[3:6], 3)]


@pytest.mark.slow
def test_a_pack_skips_finished_points_trains_fresh_ones_first_and_raises_after_the_others(tmp_path, monkeypatch):
    spec = load_grid(write_grid(tmp_path, epochs=1000))
    results = results_dir_for(spec, tmp_path / "results")
    points = list(spec.points)[:4]
    done, tried, faulty, fresh = (point.trial_id for point in points)
    monkeypatch.setenv("TILTSWEEP_FAULTS", json.dumps([{"where": {"trial_id": faulty}, "epoch": 500, "action": "raise"}]))
    payload = payload_for(Pack(pack_id(points), tuple(points)), spec, results, "test")
    first = {**payload, "members": payload["members"][:1]}
    run_pack(first, report=lambda result: None)  # `done` finished in an earlier attempt
    book = results.records.read(payload["pack_id"])
    book.attempts[tried] = 1  # `tried` started in an earlier attempt (its worker died)
    results.records.write(book)

    reports = []
    with pytest.raises(InjectedFault):
        run_pack(payload, report=reports.append, report_every=0)
    pack = payload["pack_id"]
    assert reports == [
        {"pack": pack, "running": [faulty], "finished": []},
        {"pack": pack, "running": [fresh], "finished": []},
        {"pack": pack, "running": [tried], "finished": [fresh]},
        {"pack": pack, "running": [], "finished": [tried]},
    ]
    records = results.records.read(pack).records
    assert {t: records[t].status for t in (done, tried, faulty, fresh)} == {done: "completed", tried: "completed", faulty: "failed", fresh: "completed"}
    assert records[faulty].error == "InjectedFault: injected fault at epoch 500" and results.checkpoints.names(faulty) == []

    reports.clear()  # Tune retries the pack: only the point that raised trains again
    run_pack(payload, report=reports.append, report_every=0)
    assert reports == [{"pack": pack, "running": [faulty], "finished": []}, {"pack": pack, "running": [], "finished": [faulty]}]
    records = results.records.read(pack).records
    assert {t: records[t].attempts for t in (done, tried, faulty, fresh)} == {done: 1, tried: 2, faulty: 2, fresh: 1}
    assert records[faulty].status == "completed"


def test_a_block_ends_with_one_rewrite_of_its_records_and_one_append_of_its_states(tmp_path, monkeypatch):
    """A block's points end together: their records are written in one rewrite of the pack's
    file and their final states in one append (a write a point made a block's end quadratic in
    its width), and their checkpoints are gone."""
    from tiltsweep.sweep.store.files import LocalFiles

    grid = write_grid(tmp_path, amplitudes="[2, 3]", epochs=1000)
    grid.write_text(grid.read_text().replace("checkpoint_every: 1000}", "checkpoint_every: 500, batch_points: 6}"))
    spec = load_grid(grid)
    results = results_dir_for(spec, tmp_path / "results")
    points = list(spec.points)
    payload = payload_for(Pack(pack_id(points), tuple(points)), spec, results, "test")
    writes, appends = [], []
    real_write, real_append = LocalFiles.write, LocalFiles.append
    monkeypatch.setattr(LocalFiles, "write", lambda self, name, data: (writes.append(name), real_write(self, name, data))[1])
    monkeypatch.setattr(LocalFiles, "append", lambda self, name, data: (appends.append(name), real_append(self, name, data))[1])

    run_pack(payload, report=lambda result: None)

    book = results.records.read(payload["pack_id"])
    assert len(points) == 6 and {record.status for record in book.records.values()} == {"completed"}
    assert {record.trained_with for record in book.records.values()} == {6}
    records_file = [name for name in writes if name.startswith("records/")]
    assert len(records_file) == 2 and len(set(records_file)) == 1  # the starts, then the ends
    assert sum(name.endswith(".ckpt") for name in writes) == 6  # each point's checkpoint at epoch 500
    assert len(appends) == 1 and set(results.states.kept(payload["pack_id"])) == {(p.trial_id, None) for p in points}
    assert results.checkpoints.trials() == []


def test_a_points_bytes_count_its_activations_not_only_its_state():
    """What block_width divides the device's memory by: a point's state and gradients, and what
    its step and evaluation make (a full-batch MLP's activations dwarf its parameters)."""
    from tiltsweep.trainers import TrialConfig
    from tiltsweep.trainers.training import point_bytes

    def config(width: int, depth: int, **training) -> TrialConfig:
        return TrialConfig.model_validate({"data": {"name": "digits"}, "model": {"name": "mlp", "width": width, "depth": depth},
                                           "optimizer": {"name": "sgd", "learning_rate": 0.1, "batch_size": "full"},
                                           "training": {"epochs": 1, **training}})

    wide = config(1000, 3)
    parameters = 64 * 1000 + 2 * 1000 * 1000 + 1000 * 10
    hidden_activations = 3 * 1347 * 1000 * 4  # the training split (75% of 1,797 digits), float32
    assert point_bytes(wide) >= 2 * 4 * parameters + hidden_activations
    assert point_bytes(config(20, 1)) < point_bytes(wide) / 50
    assert point_bytes(config(20, 1, hessian_every=10)) > point_bytes(config(20, 1))  # the Lanczos steps' vectors
    assert block_width("auto", point_bytes(wide), device_bytes=16 * 10**9) < 64  # a 16 GB GPU
