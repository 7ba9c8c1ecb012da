"""``cxreader screen`` over 1,000 SYNTHETIC images plus corrupt files, killed half way, then run again.

What it checks and prints (the screening issue's acceptance, at full size):

* every good image is stored exactly once (image rows = distinct contents = good images);
* every bad file is stored as failed with its reason;
* the run killed with SIGKILL half way leaves no duplicate, and the rerun screens only what is left and
  finishes, with the wall time of each run.

Run: ``python benchmarks/screening_kill_resume.py --checkpoint RUN/best.pt [--images 1000]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cxreader.synthetic.dataset import generate_synthetic_dataset


def stored(db: Path) -> tuple[int, int, int]:
    """(ok image rows, their distinct contents, failed rows) of a SQLite records file."""
    if not db.exists():
        return 0, 0, 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            ok, distinct = connection.execute(
                "SELECT count(*), count(DISTINCT content_sha256) FROM images WHERE status = 'ok'"
            ).fetchone()
            failed = connection.execute("SELECT count(*) FROM images WHERE status = 'failed'").fetchone()[0]
            return ok, distinct, failed
    except sqlite3.OperationalError:  # the schema is being created
        return 0, 0, 0


def write_bad_files(folder: Path, good: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    data = good.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "garbage.png").write_bytes(b"not an image " * 50)
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "bad-header.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    return {path.name: "" for path in folder.iterdir()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction stored before the kill")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cxreader-screen-resume-") as tmp:
        root = Path(tmp)
        generate_synthetic_dataset(
            root / "studies" / "synthetic", images=args.images, size=args.size, seed=11
        )
        good = sorted((root / "studies" / "synthetic" / "images").glob("*.png"))
        bad = write_bad_files(root / "studies" / "bad", good[0])
        db = root / "records.sqlite3"
        command = [
            sys.executable, "-m", "cxreader", "screen", str(root / "studies"), "--checkpoint", args.checkpoint,
            "--db", str(db), "--no-progress",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        target = int(args.images * args.kill_at)
        while stored(db)[0] < target:
            if process.poll() is not None:
                raise SystemExit(f"screening ended before the kill: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        first = time.perf_counter() - started
        at_kill = stored(db)
        started = time.perf_counter()
        rerun = subprocess.run(command, capture_output=True, text=True, env=env)
        second = time.perf_counter() - started
        final = stored(db)
        with sqlite3.connect(db) as connection:
            reasons = connection.execute(
                "SELECT source_path, failure_reason FROM images WHERE status = 'failed' ORDER BY source_path"
            ).fetchall()
    print(f"{args.images} SYNTHETIC {args.size}-px PNGs + {len(bad)} bad files, checkpoint {args.checkpoint}")
    print(
        f"killed (SIGKILL) after {first:.1f} s with {at_kill[0]} images stored, {at_kill[1]} distinct contents"
    )
    print(
        f"rerun: exit {rerun.returncode} in {second:.1f} s; {rerun.stdout.splitlines()[0] if rerun.stdout else ''}"
    )
    print(f"final: {final[0]} images stored, {final[1]} distinct contents, {final[2]} failed records")
    for path, reason in reasons:
        print(f"  failed: {Path(path).name}: {reason}")
    ok = at_kill[0] == at_kill[1] and final[0] == final[1] == args.images and final[2] == len(bad)
    print("every good image stored once, every bad file recorded: " + ("yes" if ok else "NO"))
    return 0 if ok and rerun.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
