"""Where a results directory can be: OUT/<name>, with OUT a local or shared disk's folder or an
object-storage URI (store.files.files_at), refused (Unplaceable, a refusal naming `--out` or the
grid file's `name`) where it cannot hold the store's files, before anything is written:

- on a disk: OUT is a file, or OUT/<name> is; a part of OUT, or the name, is longer than NAME_MAX
  of the file system there; or OUT/<name>/ plus the longest path the store writes inside
  (layout.LONGEST_INSIDE) reaches PATH_MAX there. Each length is counted in bytes of the absolute
  path, the limits read with os.pathconf where OUT (or its nearest existing folder) is, PATH_MAX
  and NAME_MAX below where it cannot tell;
- on object storage: a scheme tiltsweep does not reach, a bucket that is not there (or that these
  credentials cannot see), a key longer than KEY_MAX, or the client the run's lease needs (boto3
  for S3, google-cloud-storage for GCS: the extras `s3` and `gcs`) not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

from tiltsweep.sweep.errors import Refused
from tiltsweep.sweep.store import layout
from tiltsweep.sweep.store.directory import ResultsDir
from tiltsweep.sweep.store.files import ObjectFiles, Unreachable, files_at, parse_location

PATH_MAX, NAME_MAX = 4096, 255  # bytes, where os.pathconf cannot tell
KEY_MAX = 1024  # bytes of an object's key, on S3 and GCS alike


class Unplaceable(Refused):
    """A results directory that cannot be where it was asked for."""


def results_directory(out, name: str, source) -> ResultsDir:
    """The results directory `name` (a grid file `source`'s) under `out`; nothing is written."""
    try:
        files = files_at(out)
    except Unreachable as error:
        raise Unplaceable(f"--out {error}") from None
    if isinstance(files, ObjectFiles):
        return object_results_directory(files, name, source)
    out = Path(parse_location(out)[1]).expanduser()  # file://PATH as PATH
    refuse_paths_too_long(out, name, source)
    if out.exists() and not out.is_dir():
        raise Unplaceable(f"--out {out}: is a file, not a directory")
    results = ResultsDir(out / name)
    if results.root.exists() and not results.root.is_dir():
        raise Unplaceable(f"{results.root}: is a file, not a results directory")
    return results


def object_results_directory(files: ObjectFiles, name: str, source) -> ResultsDir:
    bucket = files.base.split("/")[0]
    results = ResultsDir(f"{files.uri}/{name}")
    try:
        results.lock()  # its lease's client, which an extra installs
    except Unreachable as error:
        raise Unplaceable(f"--out {error}") from None
    key = len(f"{files.base}/{name}/".encode()) - len(bucket) - 1 + layout.LONGEST_INSIDE
    if key > KEY_MAX:
        raise Unplaceable(f"--out {files.uri}: the keys of {name}'s results there would reach {key:,} bytes, past the "
                          f"limit of {KEY_MAX:,}: choose a shorter --out")
    try:
        there = files.filesystem.get_file_info(bucket).type == files.FOLDER
    except OSError as error:
        raise Unplaceable(f"--out {files.uri}: cannot reach it ({' '.join(str(error).split())[:300]})") from None
    if not there:
        raise Unplaceable(f"--out {files.uri}: no bucket {bucket!r} there (or none these credentials can see)")
    return results


def refuse_paths_too_long(out: Path, name: str, source) -> None:
    where = Path(os.path.abspath(out))
    path_max, name_max = path_limits(where)
    for part in where.parts:
        if len(os.fsencode(part)) > name_max:
            raise Unplaceable(f"--out {shown(out)}: has a part of {len(os.fsencode(part)):,} bytes, more than the {name_max} a name may have there")
    if len(os.fsencode(name)) > name_max:
        raise Unplaceable(f"{source}: name: is {len(os.fsencode(name)):,} bytes long, more than the {name_max} a name may have in {shown(out)}")
    longest = len(os.fsencode(str(where / name))) + 1 + layout.LONGEST_INSIDE
    if longest >= path_max:
        raise Unplaceable(f"--out {shown(out)}: the paths of {name}'s results there would reach {longest:,} bytes, past the "
                          f"limit of {path_max - 1:,} (PATH_MAX {path_max:,}): choose a shorter --out")


def path_limits(path: Path) -> tuple[int, int]:
    """(PATH_MAX, NAME_MAX) in bytes on the file system of `path`'s nearest existing folder, as
    os.pathconf says, where it can; PATH_MAX and NAME_MAX above otherwise."""
    place = next((folder for folder in (path, *path.parents) if os.path.isdir(folder)), None)

    def limit(name: str, fallback: int) -> int:
        try:
            value = os.pathconf(place, name)
        except (AttributeError, TypeError, ValueError, OSError):  # no pathconf (Windows), no such name, no place
            return fallback
        return value if value > 0 else fallback  # -1: no limit it knows of

    return limit("PC_PATH_MAX", PATH_MAX), limit("PC_NAME_MAX", NAME_MAX)


def shown(path: Path, keep: int = 60) -> str:
    """`path` as given, its middle left out where it is longer than `keep` characters."""
    text = str(path)
    return text if len(text) <= keep else f"{text[:keep // 2]}...{text[-(keep // 2):]}"
