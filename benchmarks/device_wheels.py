"""Wheels for an accelerator machine without a package registry: what tiltsweep's runs need there
beyond what its image has (Ray alone, its own needs being there; pydantic and jsonschema with theirs), for Python 3.12 on
x86-64 Linux, downloaded here into a folder to carry (.whl/, which git ignores through
.git/info/exclude). Ray's wheel is rewritten without what tiltsweep never loads (its Java jars,
RLlib, Serve, LLM), which brings it under a carried tree's 64 MiB.

    python benchmarks/device_wheels.py [FOLDER]    # default .whl; prints the folder's size

There, before `python3 benchmarks/accelerator.py`:
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
    python3 -m pip install -q --no-deps --no-build-isolation -e .
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
            "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"]
RAY = "ray==2.60.0"
WITH_NEEDS = ["pydantic>=2.6", "jsonschema"]  # and what they need, resolved for the platform
LEFT_OUT = ("ray/jars/", "ray/rllib/", "ray/serve/", "ray/llm/")


def download(folder: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", *PLATFORM, "-d", str(folder), *args], check=True)


def slimmed(wheel: Path) -> None:
    """The wheel rewritten without LEFT_OUT (its RECORD too)."""
    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            if item.filename.startswith(LEFT_OUT):
                continue
            data = source.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                data = b"".join(line for line in data.splitlines(keepends=True) if not line.decode().startswith(LEFT_OUT))
            target.writestr(item, data)
    slim.replace(wheel)


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else ".whl")
    folder.mkdir(exist_ok=True)
    download(folder, "--no-deps", RAY)
    download(folder, *WITH_NEEDS)
    for wheel in folder.glob("ray-*.whl"):
        slimmed(wheel)
    size = sum(path.stat().st_size for path in folder.iterdir())
    print(f"{folder}: {len(list(folder.iterdir()))} wheels, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
