"""Progress of a long job, shown the way the place it is written to can show it.

On a terminal a live tqdm bar redraws one line in place. Anywhere else (CI, ``nohup``, a log file, ``| cat``)
each redraw would become one more line, joined by carriage returns into lines thousands of characters long;
there :class:`Progress` writes a short plain line every :data:`EVERY_PERCENT` percent or every :data:`EVERY_S`
seconds (for slow jobs), whichever comes first, and a final line when it is closed. Both show the same
numbers, formatted by tqdm (count, percentage, elapsed time, time left, rate and the postfix).
"""

from __future__ import annotations

import math
import sys
from time import monotonic
from typing import Any, TextIO

from tqdm import tqdm

#: Plain lines are cut to this many characters (a long description or postfix must not make a log unreadable).
MAX_LINE = 200
#: Plain output: a line each time the count crosses another multiple of this percentage of the total, ...
EVERY_PERCENT = 10
#: ... or when this many seconds passed since the last line.
EVERY_S = 30.0


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an open interactive terminal (False for files, pipes and closed streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty(), or "I/O operation on closed file"
        return False


class Progress:
    """Count the steps of a job and show them on ``stream``: a tqdm bar on a terminal, plain lines elsewhere.

    Args:
        total: Number of steps expected (None when unknown: plain lines then come by time only).
        desc: Short label in front of the numbers, e.g. ``"epoch 2/10"``.
        unit: What one step is, e.g. ``"batch"`` or ``" files"`` (shown in the rate, ``files/s``).
        stream: Where to write (default ``sys.stderr`` at the time of the call).
        enabled: False counts the steps and writes nothing (``--no-progress``, processes but the primary one).
        leave: Keep the finished bar on a terminal (False clears it); plain lines always stay.
    """

    def __init__(
        self,
        total: int | None,
        *,
        desc: str = "",
        unit: str = "it",
        stream: TextIO | None = None,
        enabled: bool = True,
        leave: bool = True,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.plain = enabled and not is_terminal(self.stream)
        # One tqdm counts in every case. Off a terminal, or disabled, it never draws (tqdm's ``delay``: "don't
        # display until this many seconds have elapsed") and plain lines are formatted from its numbers.
        self._bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            file=self.stream,
            leave=leave,
            dynamic_ncols=True,
            mininterval=0.5,
            smoothing=0.1,
            delay=math.inf if self.plain or not enabled else 0,
        )
        self._last_time = monotonic()
        self._last_step = 0
        self._last_shown = self._state()  # the start needs no line of its own

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def n(self) -> int:
        """Steps counted so far."""
        return self._bar.n

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps; on plain output write a line when another step or interval is reached."""
        self._bar.update(n)
        if self.plain:
            step = self._percent_step()
            if step > self._last_step or monotonic() - self._last_time >= EVERY_S:
                self._last_step = step
                self._write_line()

    def advance_to(self, done: int, total: int | None = None) -> None:
        """Set the count to ``done`` and, when given, the total: fits a ``progress(done, total)`` callback."""
        if total is not None:
            self._bar.total = total
        self.update(done - self.n)

    def set_postfix(self, **values: Any) -> None:
        """Show ``key=value`` pairs after the numbers (on plain output: from the next line on)."""
        self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        """Finish: close the bar, or write a final plain line unless nothing changed since the last one."""
        self._bar.close()
        if self.plain and self._last_shown != self._state():
            self._write_line()

    def line(self) -> str:
        """The plain line for the current state, e.g. ``caching: 40% 400/1000 [00:05<00:07, 80.00img/s]``."""
        # tqdm: ncols "If 0, will not print any meter (only stats)"
        text = tqdm.format_meter(**{**self._bar.format_dict, "ncols": 0})
        text = " ".join(text.split())  # no newline or carriage return from a description or a value
        return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."

    def _state(self) -> tuple[int, str | None]:
        return self._bar.n, self._bar.postfix

    def _percent_step(self) -> int:
        total = self._bar.total
        if not total:
            return 0
        return int(min(self.n, total) * 100 / (total * EVERY_PERCENT))

    def _write_line(self) -> None:
        self.stream.write(self.line() + "\n")
        self.stream.flush()
        self._last_time = monotonic()
        self._last_shown = self._state()
