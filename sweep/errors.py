"""Refusals: problems found before a command writes anything. The CLI prints their one-line
message and exits with code 2."""


class Refused(Exception):
    pass


STORAGE_ERRNOS = {28: "ENOSPC", 30: "EROFS", 13: "EACCES", 1: "EPERM", 122: "EDQUOT"}  # errno.* on Linux
# What pyarrow's S3 and GCS clients put in the message of an OSError that has no errno
STORE_REFUSALS = ("ACCESS_DENIED", "NO_SUCH_BUCKET", "NETWORK_CONNECTION", "PERMISSION_DENIED")


def storage_trouble(error: BaseException) -> bool:
    """A write failed because of where it wrote (a disk full, read-only or not permitted; a bucket
    gone, refused or out of reach), not because of what was written: the sweep cannot go on until
    someone fixes the store."""
    return isinstance(error, OSError) and (error.errno in STORAGE_ERRNOS or any(word in str(error) for word in STORE_REFUSALS))


def describe_trouble(error: BaseException, where: object) -> str:
    """What a write met, naming its file where the error does (else `where`)."""
    return f"{getattr(error, 'filename', None) or where}: {getattr(error, 'strerror', None) or error}"


class StorageTrouble(Exception):
    """The results directory stopped taking writes. The CLI prints the message (it names the
    directory and how to go on) and exits with code 3."""
