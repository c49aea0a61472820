"""The one exception type for mistakes in what a user asked for.

Every part of the library raises `UserError` (or a subclass: `ConfigError`, `DataError`,
`CheckpointError`) for bad arguments, options, files or checkpoints, with a one-line
message naming the argument and what was expected. The command line prints these on one
line; any other exception is a bug and keeps its traceback. It subclasses ValueError, so
`except ValueError` around library calls keeps working.
"""


class UserError(ValueError):
    """A problem with the user's input, arguments, files or checkpoints (not a bug)."""


class Notice(UserWarning):
    """Something a user should know that does not stop the work (a damaged cache measured
    again, a run without a checkpoint started again); the command line prints it on one line."""
