import hashlib
import os
import stat

import pytest

from cxreader.files import (
    atomic_write,
    printable_path,
    sha256_bytes,
    sha256_file,
    spreadsheet_safe,
    write_bytes_atomic,
    write_text_atomic,
)


def test_atomic_write_replaces_the_file_with_shared_permissions(tmp_path):
    path = tmp_path / "new" / "folder" / "out.bin"
    with atomic_write(path) as handle:
        handle.write(b"abc")
        assert not path.exists(), "the target appears only when the block ends"
    assert path.read_bytes() == b"abc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["out.bin"]


def test_an_error_inside_the_block_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_write(path) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    path = tmp_path / "x.pt"
    with pytest.raises(KeyboardInterrupt), atomic_write(path):
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_finished_files_are_readable_by_all(tmp_path):
    path = tmp_path / "shared"
    with atomic_write(path) as handle:
        handle.write(b"x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600


def test_write_text_and_bytes(tmp_path):
    text_path = write_text_atomic(tmp_path / "a.txt", "Pneumothorax — left\n")
    assert text_path.read_bytes() == "Pneumothorax — left\n".encode()
    assert write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    write_text_atomic(tmp_path / "a.txt", "second")  # overwriting an existing file
    assert text_path.read_text() == "second"


def test_sha256_of_a_known_string(tmp_path):
    known = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2: SHA-256("abc")
    assert sha256_bytes(b"abc") == known
    path = write_bytes_atomic(tmp_path / "abc", b"abc")
    assert sha256_file(path) == known
    big = bytes(range(256)) * 9000  # over one 1 MiB read chunk
    assert sha256_file(write_bytes_atomic(tmp_path / "big", big)) == hashlib.sha256(big).hexdigest()


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://x","y")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_are_neutralised(cell: str) -> None:
    assert spreadsheet_safe(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["P001", "", "0.5", 3, None, "a=b"])
def test_other_cells_are_left_alone(cell: object) -> None:
    assert spreadsheet_safe(cell) == cell


def test_a_path_that_is_not_utf8_becomes_printable_text() -> None:
    path = os.fsdecode(b"/data/caf\xe9.png")
    text = printable_path(path)
    assert text == "/data/caf\\xe9.png"
    text.encode("utf-8")  # no surrogates left
    assert printable_path("/data/ok.png") == "/data/ok.png"
