"""Server memory under simultaneous decompression-heavy uploads: 8 PNGs of 9,400 x 9,400 pixels, < 100 KB.

Starts the real service (``python -m cxreader serve``, uvicorn, in a subprocess) with a small checkpoint,
uploads all the PNGs at once (one thread each), samples the server process's resident memory every 50 ms
(psutil when installed, else ``VmRSS`` of ``/proc/PID/status``) and reports its baseline and peak RSS and
every upload's HTTP status and answer. Two variants, each on a fresh server:

* ``default budget``: the service's pixel budget (``CXREADER_MAX_UPLOAD_MEGAPIXELS`` unset); the uploads
  declare 88 MP in their header and are refused with 413 before anything is decoded;
* ``decoding``: a budget large enough to decode them (``--max-megapixels``, default 100), so that only the
  bound on concurrent decodes (``--max-concurrent``, default the service's: the CPU cores) holds memory.

Each PNG is one bright pixel on black: 88 MP of pixels in about 86 KB (deflate's limit is about 1,030 : 1),
each file distinct. The images hold no patient data.

Run: ``python benchmarks/service_upload_memory.py [--checkpoint CKPT] [--uploads 8] [--side 9400]
[--max-megapixels 100] [--max-concurrent N]``. The goal the issue sets: peak RSS under 2.5 GB, every upload
answered.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch

from cxreader.models import create_model
from cxreader.models.checkpoint import CheckpointContract, save_checkpoint
from cxreader.service.settings import default_concurrency

API_KEY = "benchmark-key-0123456789abcdef"
SAMPLE_SECONDS = 0.05


@dataclass(frozen=True)
class Answer:
    """One upload's HTTP status, what the server said, and how long it took."""

    status: int
    text: str
    seconds: float


@dataclass(frozen=True)
class Run:
    """One variant on a fresh server: its memory and the answers."""

    name: str
    budget: str
    concurrency: str
    baseline_mb: float
    peak_mb: float
    answers: list[Answer]
    seconds: float


# --- inputs ---------------------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: length, type, data, CRC-32 of type and data (ISO/IEC 15948, 5.3)."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def flat_png(side: int, seed: int) -> bytes:
    """A ``side x side`` 8-bit grey PNG of under 100 KB; ``seed`` places its one bright pixel in row one.

    Every other byte of the filtered image data is zero (black pixels, filter type None), the input deflate
    compresses best (about 1,030 : 1).
    """
    compressor = zlib.compressobj(9)
    first = bytearray(side + 1)  # filter type 0, then the pixels
    first[1 + seed % side] = 200
    parts = [compressor.compress(bytes(first))]
    black = bytes(side + 1)
    parts.extend(compressor.compress(black) for _ in range(side - 1))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale, not interlaced
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def small_checkpoint(folder: Path) -> Path:
    """A ``densenet_small`` checkpoint with random weights at 128 px, marked synthetic."""
    torch.manual_seed(0)
    contract = CheckpointContract(model_name="densenet_small", input_size=128, synthetic=True)
    path = folder / "random-densenet_small.pt"
    save_checkpoint(path, model=create_model("densenet_small", init="none"), contract=contract)
    return path


# --- the server and its memory --------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for process {pid}") from None
    return psutil.Process(pid).memory_info().rss / (1024 * 1024)


def settled_rss_mb(pid: int, samples: int = 10) -> float:
    """The median of a few RSS samples, :data:`SAMPLE_SECONDS` apart (the idle server's size)."""
    values = []
    for _ in range(samples):
        values.append(rss_mb(pid))
        time.sleep(SAMPLE_SECONDS)
    return statistics.median(values)


class Sampler(threading.Thread):
    """Samples a process's RSS every :data:`SAMPLE_SECONDS` until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append(rss_mb(self.pid))
            time.sleep(SAMPLE_SECONDS)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(checkpoint: Path, folder: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``cxreader serve`` on a free port over a fresh database and data directory; waits for /health."""
    port = _free_port()
    env = {
        **os.environ,
        "CXREADER_API_KEYS": API_KEY,
        "CXREADER_DATA_DIR": str(folder / "data"),
        "CXREADER_DEVICE": "cpu",
        **env_extra,
    }
    for name in (
        "CXREADER_DATABASE_URL",
        "CXREADER_MAX_UPLOAD_MEGAPIXELS",
        "CXREADER_MAX_CONCURRENT_DECODES",
    ):
        if name not in env_extra:
            env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "cxreader",
        "serve",
        "--checkpoint",
        str(checkpoint),
        "--port",
        str(port),
    ]
    command += ["--db", str(folder / "records.sqlite3"), "--log-level", "warning"]
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - the server writes to it for its whole life
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {process.returncode}: {(folder / 'server.log').read_text()}"
            )
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not answer /health within 180 s")


def upload(url: str, data: bytes) -> Answer:
    """POST one PNG as the raw body; the server's answer in one line."""
    started = time.perf_counter()
    try:
        response = httpx.post(
            f"{url}/api/studies",
            content=data,
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "image/png"},
            timeout=600,
        )
    except httpx.HTTPError as exc:
        return Answer(0, f"no answer: {type(exc).__name__}: {exc}", time.perf_counter() - started)
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if "detail" in body:
        text = str(body["detail"])
    elif "id" in body:
        text = f"study {body['id']}, created {body['created']}, positive {body['positive_findings']}"
    else:
        text = response.text[:200]
    return Answer(response.status_code, text, time.perf_counter() - started)


def run_variant(
    name: str, checkpoint: Path, files: list[bytes], env_extra: dict[str, str], budget: str, concurrency: str
) -> Run:
    """One fresh server, all uploads at once, its RSS sampled throughout."""
    with tempfile.TemporaryDirectory(prefix="cxreader-bench-server-") as scratch:
        process, url = start_server(checkpoint, Path(scratch), env_extra)
        try:
            time.sleep(1.0)  # let start-up settle before the baseline
            baseline = settled_rss_mb(process.pid)
            sampler = Sampler(process.pid)
            sampler.start()
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=len(files)) as pool:
                answers = list(pool.map(lambda data: upload(url, data), files))
            elapsed = time.perf_counter() - started
            time.sleep(0.2)
            sampler.done.set()
            sampler.join()
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return Run(name, budget, concurrency, baseline, max(sampler.samples), answers, elapsed)


# --- report ---------------------------------------------------------------------------------------------------


def print_report(runs: list[Run], files: list[bytes], side: int, goal_mb: float) -> None:
    print(f"Python {sys.version.split()[0]}, {platform.machine()}, {os.cpu_count()} CPUs visible")
    sizes = [len(data) / 1024 for data in files]
    print(
        f"{len(files)} PNGs of {side:,} x {side:,} = {side * side / 1e6:.1f} MP, "
        f"{min(sizes):.1f}-{max(sizes):.1f} KB each, uploaded at once\n"
    )
    print(
        "| variant | pixel budget | decode slots | baseline RSS | peak RSS | peak - base | answers | wall |"
    )
    print("|---|---|---:|---:|---:|---:|---|---:|")
    for run in runs:
        statuses = Counter(answer.status for answer in run.answers)
        counts = ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items()))
        print(
            f"| {run.name} | {run.budget} | {run.concurrency} | {run.baseline_mb:,.0f} MB "
            f"| {run.peak_mb:,.0f} MB | {run.peak_mb - run.baseline_mb:,.0f} MB | {counts} "
            f"| {run.seconds:.1f} s |"
        )
    for run in runs:
        print(f"\n{run.name}: every upload's answer")
        for index, answer in enumerate(run.answers):
            print(f"  {index + 1}. HTTP {answer.status} in {answer.seconds:.1f} s: {answer.text}")
    print()
    for run in runs:
        answered = all(answer.status != 0 for answer in run.answers)
        verdict = "meets" if run.peak_mb < goal_mb and answered else "MISSES"
        print(
            f"{run.name}: peak {run.peak_mb / 1024:.2f} GB, every upload answered: "
            f"{'yes' if answered else 'NO'} ({verdict} the goal of < {goal_mb / 1024:.1f} GB, all answered)"
        )
    if len(runs) == 2:
        print(f"peak ratio decoding / default budget: {runs[1].peak_mb / runs[0].peak_mb:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", help="model to serve (default: densenet_small, random weights, 128 px)"
    )
    parser.add_argument("--uploads", type=int, default=8, help="PNGs uploaded at once (default 8)")
    parser.add_argument("--side", type=int, default=9400, help="side of each PNG in pixels (default 9400)")
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=100.0,
        help="pixel budget of the decoding variant (default 100)",
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        help="concurrent decodes of both variants (default: the service's, the CPU cores)",
    )
    parser.add_argument("--goal-gb", type=float, default=2.5, help="peak RSS goal (default 2.5 GB)")
    parser.add_argument("--only", choices=("default", "decoding"), help="run one variant only")
    args = parser.parse_args(argv)

    files = [flat_png(args.side, seed) for seed in range(args.uploads)]
    concurrency_env = {}
    concurrency = f"{default_concurrency()} (cores)"
    if args.max_concurrent:
        concurrency_env = {"CXREADER_MAX_CONCURRENT_DECODES": str(args.max_concurrent)}
        concurrency = str(args.max_concurrent)
    with tempfile.TemporaryDirectory(prefix="cxreader-bench-") as scratch:
        checkpoint = Path(args.checkpoint) if args.checkpoint else small_checkpoint(Path(scratch))
        runs = []
        if args.only in (None, "default"):
            runs.append(
                run_variant("default budget", checkpoint, files, concurrency_env, "default", concurrency)
            )
        if args.only in (None, "decoding"):
            env = {**concurrency_env, "CXREADER_MAX_UPLOAD_MEGAPIXELS": f"{args.max_megapixels:g}"}
            runs.append(
                run_variant("decoding", checkpoint, files, env, f"{args.max_megapixels:g} MP", concurrency)
            )
    print_report(runs, files, args.side, args.goal_gb * 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
