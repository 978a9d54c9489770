"""The accelerator check (benchmarks/accelerator.py) runs whole on this CPU in its quick form, so
that it is ready, not rotten, when a GPU or TPU is there to run it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_accelerator_check_runs_every_part_and_writes_one_json(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "accelerator.py"), "--quick"], capture_output=True, text=True,
                          env={**os.environ, "BENCHMARK_RESULTS": str(tmp_path)}, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (written,) = tmp_path.glob("accelerator-*-quick.json")
    report = json.loads(written.read_text())
    assert [row["points"] for row in report["blocks"]] == [1, 8, 32] and all(row["point_steps_per_second"] > 0 for row in report["blocks"])
    assert report["block_with_hessian"]["points"] == 32 and report["layouts"]["faster"] in ("feature-major", "batch-major")
    assert report["diagram"]["exit"] == 0 and report["diagram"]["cells"] == 8 and "6/6 completed" in report["diagram"]["last_line"]  # A = 1 is one training at both periods
    assert sorted(report["cnns"]) == ["myrtle5, 8 channels, bfloat16", "myrtle5, 8 channels, float32", "wide_resnet 10-1, bfloat16", "wide_resnet 10-1, float32"]
    assert all(row["images_per_second"] > 0 for row in report["cnns"].values())
    assert report["tests"]["exit"] == 0 and " passed" in report["tests"]["summary"]
