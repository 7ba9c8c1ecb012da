"""Progress of a long job, shown the way the place it is written to can show it.

On a terminal a live tqdm bar redraws one line in place. Anywhere else (CI, ``nohup``, a log file, ``| cat``)
each redraw would become one more line, joined by carriage returns into lines thousands of characters long;
there :class:`Progress` writes a short plain line every ``every_percent`` percent or every ``every_s``
seconds, whichever comes first, and a final line when it is closed. Both show the same numbers, formatted by
tqdm (count, percentage, elapsed time, time left, rate and the postfix).
"""

from __future__ import annotations

import sys
from time import monotonic
from typing import Any, TextIO

from tqdm import tqdm

#: Plain lines are cut to this many characters (a long description or postfix must not make a log unreadable).
MAX_LINE = 200


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
        every_percent: Plain output: a line each time the count crosses another multiple of this percentage.
        every_s: Plain output: a line when this many seconds passed since the last one, for slow jobs.
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
        every_percent: float = 10.0,
        every_s: float = 30.0,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.every_percent = every_percent
        self.every_s = every_s
        self.n = 0
        self.postfix = ""
        self.closed = False
        self._bar: tqdm | None = None
        if enabled and is_terminal(self.stream):
            self._bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                file=self.stream,
                leave=leave,
                dynamic_ncols=True,
                mininterval=0.5,
                smoothing=0.1,
            )
        self._started = self._last_time = monotonic()
        self._last_step = 0
        self._last_shown = (0, "")  # the start needs no line of its own

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps; on plain output write a line when another step or interval is reached."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled:
            step = self._percent_step()
            if step > self._last_step or monotonic() - self._last_time >= self.every_s:
                self._last_step = step
                self._write_line()

    def advance_to(self, done: int, total: int | None = None) -> None:
        """Set the count to ``done`` and, when given, the total: fits a ``progress(done, total)`` callback."""
        if total is not None and total != self.total:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
        self.update(done - self.n)

    def set_postfix(self, **values: Any) -> None:
        """Show ``key=value`` pairs after the numbers (on plain output: from the next line on)."""
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        """Finish: close the bar, or write a final plain line unless nothing changed since the last one."""
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self._last_shown != (self.n, self.postfix):
            self._write_line()

    def line(self) -> str:
        """The plain line for the current state, e.g. ``caching: 40% 400/1000 [00:05<00:07, 80.00img/s]``."""
        text = tqdm.format_meter(
            self.n,
            self.total,
            monotonic() - self._started,
            ncols=0,  # tqdm: "If 0, will not print any meter (only stats)"
            prefix=self.desc,
            unit=self.unit,
            postfix=self.postfix,
        )
        text = " ".join(text.split())  # no newline or carriage return from a description or a value
        return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."

    def _percent_step(self) -> int:
        if not self.total or self.every_percent <= 0:
            return 0
        return int(min(self.n, self.total) * 100 / (self.total * self.every_percent))

    def _write_line(self) -> None:
        self.stream.write(self.line() + "\n")
        self.stream.flush()
        self._last_time = monotonic()
        self._last_shown = (self.n, self.postfix)
