"""Stop requests: SIGINT and SIGTERM become a stop at the end of the current step.

A training loop runs inside `StopRequests` and asks `requested` after each step; when a
signal came, it writes a checkpoint at that step (so a run stopped before its first
checkpoint is not lost, and a stopped run resumes where it stopped) and calls `deliver`,
which hands the signal to the handler that was installed before — Ctrl-C's
KeyboardInterrupt, the command line's SIGTERM exit, or the default action. A second signal
while the first is pending is delivered at once: a user who insists is not kept waiting
for a step or a checkpoint. Handlers can be set only from the main thread; elsewhere (and
for signals that were being ignored) nothing changes.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """A context manager catching SIGINT/SIGTERM as requests; see the module docstring."""

    def __init__(self):
        self.signum, self.previous = None, {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self.previous[signum] = signal.signal(signum, self._request)
        return self

    def _request(self, signum, frame) -> None:
        if self.signum is not None:
            self.deliver(signum)
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)   # None: set outside Python
        self.previous = {}

    def deliver(self, signum: int | None = None) -> None:
        """Put the previous handlers back and raise `signum` (default: the one that came)
        for them; under their default action the process ends here."""
        signum = signum or self.signum or signal.SIGTERM
        self._restore()
        signal.raise_signal(signum)

    def __exit__(self, *exc) -> None:
        self._restore()
