import io

import cxreader.progress as progress_module
from cxreader.progress import MAX_LINE, Progress, is_terminal


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal, as stderr does in an interactive shell."""

    def isatty(self) -> bool:
        return True


def lines_of(stream: io.StringIO) -> list[str]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return text.splitlines()


def test_plain_output_is_a_few_short_lines_without_carriage_returns():
    stream = io.StringIO()
    with Progress(10_000, desc="epoch 1/3", unit="batch", stream=stream) as progress:
        for step in range(10_000):
            progress.update(1)
            if step % 100 == 0:
                progress.set_postfix(loss=f"{1 / (step + 1):.4f}", note="x" * 500)
    text = stream.getvalue()
    assert "\r" not in text
    lines = lines_of(stream)
    assert 10 <= len(lines) <= 11  # one line per 10 %, and the final one when the postfix changed after 100 %
    assert all(len(line) <= MAX_LINE < 300 for line in lines)
    assert lines[0].startswith("epoch 1/3:") and "1000/10000" in lines[0] and "batch/s" in lines[0]
    assert "10000/10000" in lines[-1]


def test_plain_output_also_comes_by_time_for_slow_jobs(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(progress_module, "monotonic", lambda: now[0])
    stream = io.StringIO()
    progress = Progress(1000, desc="slow", unit="img", stream=stream)
    for _ in range(5):  # 0.5 % of the job per minute: only the clock asks for lines
        now[0] += 60.0
        progress.update(1)
    assert len(lines_of(stream)) == 5
    progress.update(0)  # nothing new and no time passed: no line
    progress.close()
    assert len(lines_of(stream)) == 5, "the last line already showed the final state"


def test_callbacks_that_report_done_and_total():
    stream = io.StringIO()
    progress = Progress(None, desc="caching", unit="img", stream=stream)
    progress.advance_to(256, 1000)
    progress.advance_to(1000, 1000)
    progress.close()
    lines = lines_of(stream)
    assert len(lines) == 2 and "1000/1000" in lines[-1] and "100%" in lines[-1]


def test_nothing_is_written_when_disabled_or_when_nothing_happened():
    stream = io.StringIO()
    with Progress(100, stream=stream, enabled=False) as progress:
        progress.update(100)
    assert progress.n == 100 and stream.getvalue() == ""
    with Progress(0, stream=stream):
        pass
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_live_tqdm_bar():
    terminal = FakeTerminal()
    with Progress(50, desc="screening", unit=" files", stream=terminal) as progress:
        for _ in range(50):
            progress.update(1)
        progress.set_postfix(ok=50, failed=0)
    text = terminal.getvalue()
    assert "\r" in text and "100%|" in text, "a bar redrawn in place"
    assert "screening" in text and "50/50" in text and "files/s" in text


def test_only_open_terminals_count_as_terminals(tmp_path):
    closed = open(tmp_path / "log.txt", "w")  # noqa: SIM115
    closed.close()
    assert not any(is_terminal(stream) for stream in (io.StringIO(), object(), closed))
    assert is_terminal(FakeTerminal())
