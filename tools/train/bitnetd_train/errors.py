"""The one error type of bitnetd-train: a message for the user and the exit status it means."""

from __future__ import annotations

BAD_INPUT = 1     # the data, the rules, the configuration or an option is wrong: fix the input
ENVIRONMENT = 2   # bitnetd, Python, the venv or the network is missing or broken: fix the machine


class Failure(Exception):
    """Ends the run: `message` is printed as `bitnetd-train: <message>` and the process exits with
    `status`. Messages name the file (and line, column) and say what to do."""

    def __init__(self, message: str, status: int = BAD_INPUT):
        super().__init__(message)
        self.message = message
        self.status = status


def bad_input(message: str) -> Failure:
    return Failure(message, BAD_INPUT)


def environment(message: str) -> Failure:
    return Failure(message, ENVIRONMENT)
