"""Chains: how many groups of points one Tune trial trains in a row, and how a worker trains a
chain (real training, no Ray; the Ray side is in test_reliability.py)."""

import json

import pytest

from tiltsweep.sweep.chains import LONGEST, SHARE, chain_id, plan_chains
from tiltsweep.sweep.faults import InjectedFault
from tiltsweep.sweep.grid import load_grid
from tiltsweep.sweep.groups import plan_groups
from tiltsweep.sweep.runner import results_dir_for
from tiltsweep.sweep.worker import payload_for, run_chain
from sweep_helpers import write_grid


def test_chains_start_long_and_end_as_single_groups():
    groups = [f"g{i}" for i in range(96)]
    chains = plan_chains(groups, slots=2, retries=2)
    assert [group for chain in chains for group in chain] == groups  # each once, in grid order
    lengths = [len(chain) for chain in chains]
    assert lengths == sorted(lengths, reverse=True) and lengths[0] == LONGEST
    assert lengths[-SHARE * 2 :] == [1] * SHARE * 2  # the last share of every slot: one group each
    assert len(chains) < len(groups) / 3


def test_more_slots_shorter_chains_and_none_without_retries():
    groups = list(range(96))
    assert max(len(chain) for chain in plan_chains(groups, slots=16, retries=2)) == 2
    assert plan_chains(groups, slots=2, retries=0) == [[group] for group in groups]
    assert plan_chains(groups[:5], slots=2, retries=2) == [[group] for group in groups[:5]]


def test_a_chain_of_one_group_has_its_id():
    assert chain_id(["abc"]) == "abc"
    assert chain_id(["abc", "def"]) != chain_id(["def", "abc"])  # a chain is its groups in order
    assert chain_id(["abc", "def"]).startswith("c") and len(chain_id(["abc", "def"])) == 16


@pytest.mark.slow
def test_a_chain_skips_finished_points_trains_fresh_ones_first_and_raises_after_the_others(tmp_path, monkeypatch):
    spec = load_grid(write_grid(tmp_path, epochs=1000))
    results = results_dir_for(spec, tmp_path / "results")
    points = list(spec.points)[:4]
    done, tried, faulty, fresh = (point.trial_id for point in points)
    monkeypatch.setenv("TILTSWEEP_FAULTS", json.dumps([{"where": {"trial_id": faulty}, "epoch": 500, "action": "raise"}]))
    chain = [payload_for(members, spec, results, "test") for members in plan_groups(points)]
    run_chain(chain[:1], report=lambda result: None)  # `done` finished in an earlier attempt
    results.begin_attempt(tried)  # `tried` started in an earlier attempt (its worker died)

    reports = []
    with pytest.raises(InjectedFault):
        run_chain(chain, report=reports.append)
    boundaries = [r for r in reports if "running" in r]
    assert boundaries == [
        {"running": [faulty], "finished": []},
        {"running": [fresh], "finished": []},
        {"running": [tried], "finished": [fresh]},
        {"running": [], "finished": [tried]},
    ]
    assert {t: results.read_record(t)["status"] for t in (done, tried, fresh)} == dict.fromkeys((done, tried, fresh), "completed")
    assert faulty not in results.record_ids()

    reports.clear()  # Tune retries the chain: only the point that raised trains again
    run_chain(chain, report=reports.append)
    assert [r for r in reports if "running" in r] == [{"running": [faulty], "finished": []}, {"running": [], "finished": [faulty]}]
    attempts = {t: results.read_record(t)["attempts"] for t in (done, tried, faulty, fresh)}
    assert attempts == {done: 1, tried: 2, faulty: 2, fresh: 1}
