"""The persistent compilation cache: a fresh process loads what an earlier one compiled, trains
exactly the same, and counts the loaded program as its one compilation."""

import pytest

from conftest import spiral_config
from fresh_process import SHARED_PROGRAMS, how_built, outcome, start_training
from trainers.compile_cache import cache_directory, cpu_fingerprint, fingerprint


@pytest.mark.slow
def test_a_second_process_loads_the_compiled_programs_and_trains_the_same(tmp_path):
    config = spiral_config(training={"epochs": 300, "eval_every": 100})
    first = outcome(start_training(config, tmp_path / "cache"))
    second = outcome(start_training(config, tmp_path / "cache"))
    assert all(how == "compiled" for _, how in first["programs"])
    assert how_built(second) == dict.fromkeys(SHARED_PROGRAMS, "loaded")
    assert first["loop_compilations"] == second["loop_compilations"] == 1
    assert second["history"] == first["history"]
    assert list((tmp_path / "cache").glob("cpu-*/*-cache"))


CPUINFO = """processor\t: {core}
model name\t: AMD EPYC
cpu MHz\t\t: {mhz}
flags\t\t: fpu sse2 avx2{extra}
"""


def test_one_fingerprint_per_instruction_set_not_per_core_or_clock():
    two_cores = CPUINFO.format(core=0, mhz=2000.1, extra="") + "\n" + CPUINFO.format(core=1, mhz=2999.9, extra="")
    same = fingerprint(CPUINFO.format(core=0, mhz=2450.0, extra=""), "x86_64")
    assert fingerprint(two_cores, "x86_64") == same
    assert fingerprint(CPUINFO.format(core=0, mhz=2450.0, extra=" avx512f"), "x86_64") != same
    assert fingerprint(CPUINFO.format(core=0, mhz=2450.0, extra=""), "aarch64") != same
    assert len(same) == 16


def test_cache_folder_per_cpu_and_switch(tmp_path):
    folder = f"cpu-{cpu_fingerprint()}"
    assert cache_directory({"TILTSWEEP_COMPILE_CACHE": str(tmp_path)}) == tmp_path / folder
    assert cache_directory({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "tiltsweep" / "xla" / folder
    assert cache_directory({"TILTSWEEP_COMPILE_CACHE": "off"}) is None
