"""The one exception type for mistakes in what a user asked for.

Every part of the library raises `UserError` (or a subclass: `ConfigError`, `DataError`,
`CheckpointError`) for bad arguments, options, files or checkpoints, with a one-line
message naming the argument and what was expected. The command line prints these on one
line; any other exception is a bug and keeps its traceback. It subclasses ValueError, so
`except ValueError` around library calls keeps working.
"""

import numbers


class UserError(ValueError):
    """A problem with the user's input, arguments, files or checkpoints (not a bug)."""


class Notice(UserWarning):
    """Something a user should know that does not stop the work (a damaged cache measured
    again, a run without a checkpoint started again); the command line prints it on one line."""


def is_integer(value) -> bool:
    """An integer, Python's or numpy's, and not a bool (True is no count, seed or size)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_count(value, name: str, minimum: int = 1) -> int:
    """`value` as a count of things (draws, rows, steps): an integer (`is_integer`) of at
    least `minimum`, else the one-line error every count argument gives."""
    if not is_integer(value) or value < minimum:
        raise UserError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
