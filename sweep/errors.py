"""Refusals: problems found before a command writes anything. The CLI prints their one-line
message and exits with code 2."""


class Refused(Exception):
    pass
