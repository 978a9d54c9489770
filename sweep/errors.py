"""Refusals: problems found before a command writes anything. The CLI prints their one-line
message and exits with code 2."""


class Refused(Exception):
    pass


STORAGE_ERRNOS = {28: "ENOSPC", 30: "EROFS", 13: "EACCES", 1: "EPERM", 122: "EDQUOT"}  # errno.* on Linux


def storage_trouble(error: BaseException) -> bool:
    """A write failed because of where it wrote (full, read-only, not permitted), not because of
    what was written: the sweep cannot go on until someone fixes the disk."""
    return isinstance(error, OSError) and error.errno in STORAGE_ERRNOS


class StorageTrouble(Exception):
    """The results directory stopped taking writes. The CLI prints the message (it names the
    directory and how to go on) and exits with code 3."""
