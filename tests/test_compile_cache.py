"""The persistent compilation cache: a fresh process loads what an earlier one compiled, trains
exactly the same, and counts the loaded program as its one compilation."""

import pytest

from conftest import spiral_config
from fresh_process import SHARED_PROGRAMS, how_built, outcome, start_training
from tiltsweep.trainers.compilation.cache import cache_directory, cpu_fingerprint, fingerprint, xla_flags_fingerprint


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


@pytest.mark.slow
def test_a_process_with_other_xla_flags_never_loads_a_program_built_under_others(tmp_path):
    """A restricted instruction set (or any other XLA flag) builds other machine code: a process
    running under one must compile, not load what a process under another stored."""
    config = spiral_config(training={"epochs": 100, "eval_every": 100})
    sse = "--xla_cpu_max_isa=SSE4_2"
    first = outcome(start_training(config, tmp_path / "cache", xla_flags=sse))
    other = outcome(start_training(config, tmp_path / "cache", xla_flags="--xla_cpu_max_isa=AVX2"))
    unrestricted = outcome(start_training(config, tmp_path / "cache", xla_flags=""))
    again = outcome(start_training(config, tmp_path / "cache", xla_flags=f" {sse} "))  # the same flags, spelled apart
    for run in (first, other, unrestricted):
        assert how_built(run) == dict.fromkeys(SHARED_PROGRAMS, "compiled")
    assert how_built(again) == dict.fromkeys(SHARED_PROGRAMS, "loaded")
    assert len(list((tmp_path / "cache").glob("cpu-*"))) == 3


def test_one_cache_folder_per_set_of_xla_flags(tmp_path):
    at = lambda flags: cache_directory({"TILTSWEEP_COMPILE_CACHE": str(tmp_path), "XLA_FLAGS": flags})
    assert at("--a=1 --b=2") == at(" --b=2  --a=1") == at("--a=1 --b=2")
    assert len({at(""), at("--xla_cpu_max_isa=AVX2"), at("--xla_cpu_max_isa=SSE4_2"), at("--xla_cpu_multi_thread_eigen=false")}) == 4


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
    folder = f"cpu-{cpu_fingerprint()}-xla-{xla_flags_fingerprint('')}"
    assert cache_directory({"TILTSWEEP_COMPILE_CACHE": str(tmp_path)}) == tmp_path / folder
    assert cache_directory({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "tiltsweep" / "xla" / folder
    assert cache_directory({"TILTSWEEP_COMPILE_CACHE": "off"}) is None
