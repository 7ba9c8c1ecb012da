"""The DICOM node end to end: studies per minute through ``cxreader dicom listen``, and what writing the results
as DICOM costs per image.

Part 1, end to end (3 interleaved rounds, medians). A DenseNet-121 at 224 px with random weights (a SYNTHETIC
model: the work per image is CheXNet's, its outputs mean nothing) is exported by ``cxreader export --format onnx
--quantize int8`` (calibrated on a few SYNTHETIC phantoms). N studies, each one DX instance of a SYNTHETIC chest
phantom (``cxreader.synthetic.findings.draw_chest``, drawn once at the chosen size and stored as 12-bit
MONOCHROME2 with a window) with fresh Study, Series and SOP Instance UIDs, are written to a folder once. Per
round, each variant runs on fresh records and output folders:

* ``screen --dicom-out`` (the baseline): ``cxreader screen FOLDER --checkpoint model.onnx --dicom-out DIR`` over
  the files on disk, no network; its own ``seconds`` (``--summary-json``: from the start of the run to the last
  commit, after the model is loaded) and the process's wall time;
* ``listen --dicom-out``: the real ``cxreader dicom listen --port 0 --ready-file F ... --dicom-out DIR`` as a
  subprocess, started and loaded before the clock starts; a pynetdicom SCU in this process sends the N files
  (C-STORE from the files, over ``--associations`` concurrent associations); the time runs from the first
  C-STORE to the moment all N image rows are in the SQLite database (polled every 0.1 s); the node is then
  stopped with SIGTERM;
* ``listen`` without ``--dicom-out`` (``--no-plain-listen`` skips it): the same without writing results.

The SCU shares the machine's cores with the node (a modality would not): the CPU seconds of this process during
the sending, and the node's own CPU seconds for the N studies (``/proc/PID/stat``), are printed beside the times.

Part 2, in process: the cost per image of the DICOM results of one stored result (median ms over ``--reps``
repetitions): a realistic ImageResult of 14 findings, three above threshold with boxes and grounded
descriptions, class activation maps for those three, a 1024-px display rendition: SR build
(``measurement_report``), SR write (``write_whole``), overlay build and write (``overlay_capture``), KOS build and
write (``triage_selection``); the same SR and overlay as the ONNX node writes them (no boxes, no maps); and, for
the per-study breakdown, reading the source header as the sink does, decoding and preparing the DICOM
(``prepare_image``: decode, evaluation preset, display rendition), and the int8 model per image in batches of 16.

Before every timed round (and before part 2) the 1-minute load average is checked; above ``--max-load`` (1.0)
the script sleeps 20 s, up to 10 minutes, and says in the output when it measured under load. Every image and model here is SYNTHETIC;
the generated patient identifiers are never printed.

Run: ``python benchmarks/dicom_node.py [--studies 200] [--size 2048] [--rounds 3] [--associations 1]``.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import platform
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from _rounds import random_checkpoint
from cxreader.labels import FINDINGS
from cxreader.synthetic.findings import draw_chest

DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
PHANTOM_FINDINGS = (("Effusion", "Cardiomegaly"), ("Nodule",), (), ("Pneumothorax", "Atelectasis"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOAD_POLL_S = 20.0
LOAD_WAIT_MAX_S = 600.0

# --- setup: model, studies --------------------------------------------------------------------------------


def run_cli(*arguments: str, **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cxreader", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(arguments[:2])} failed ({done.returncode}): {done.stderr[-3000:]}")
    return done


def int8_model(scratch: Path, input_size: int) -> Path:
    """A DenseNet-121 with random weights (SYNTHETIC), exported to ONNX int8 by ``cxreader export``."""
    checkpoint = random_checkpoint(scratch / "densenet121.pt", input_size)
    calibration = scratch / "calibration"
    calibration.mkdir()
    for index in range(8):
        pixels = draw_chest(100 + index, size=256, findings=PHANTOM_FINDINGS[index % 4]).pixels
        PILImage.fromarray(pixels).save(calibration / f"synthetic_{index:02d}.png")
    onnx = scratch / "model.onnx"
    run_cli("export", "--checkpoint", str(checkpoint), "--format", "onnx", "--quantize", "int8",
            "--calibration", str(calibration), "--out", str(onnx))  # fmt: skip
    return onnx


def phantom_dataset(pixels8: np.ndarray, seed: int) -> Dataset:
    """A SYNTHETIC DX instance (12 bits stored, MONOCHROME2, window 2048/4096) of an 8-bit phantom."""
    rng = np.random.default_rng(seed)
    pixels = pixels8.astype(np.uint16) * 16 + rng.integers(0, 16, pixels8.shape, dtype=np.uint16)
    rows, columns = pixels.shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "SYNTHETIC^PHANTOM"
    ds.PatientID = "SYNTH-0000"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = ""
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "SYNTHETIC chest phantom"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    spacing = 0.139 * 2048 / max(rows, columns)  # a 28.5 cm field whatever the matrix
    ds.PixelSpacing = [round(spacing, 4), round(spacing, 4)]
    ds.ImagerPixelSpacing = ds.PixelSpacing
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.PixelData = pixels.tobytes()
    return ds


def write_studies(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` one-instance studies (fresh Study/Series/SOP UIDs each) cycling over a few phantoms."""
    folder.mkdir(parents=True)
    phantoms = [
        phantom_dataset(draw_chest(7 + index, size=size, findings=findings).pixels, seed=index)
        for index, findings in enumerate(PHANTOM_FINDINGS)
    ]
    paths = []
    for index in range(count):
        ds = copy.copy(phantoms[index % len(phantoms)])  # shallow: the pixel bytes are shared
        ds.file_meta = copy.deepcopy(ds.file_meta)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.PatientID = f"SYNTH-{index + 1:04d}"
        ds.AccessionNumber = f"SYNTHACC{index + 1:05d}"
        path = folder / f"study_{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# --- the load check ---------------------------------------------------------------------------------------


class LoadLog:
    """The 1-minute load average before every timed round, and whether one had to start under load."""

    def __init__(self, limit: float):
        self.limit = limit
        self.entries: list[tuple[str, float, float, bool]] = []  # (what, load at start, waited s, loaded)
        self.after_runs: list[float] = []  # the load at the end of every timed run (information)

    def wait(self, what: str) -> float:
        waited = 0.0
        load = os.getloadavg()[0]
        while load > self.limit and waited < LOAD_WAIT_MAX_S:
            time.sleep(LOAD_POLL_S)
            waited += LOAD_POLL_S
            load = os.getloadavg()[0]
        loaded = load > self.limit
        self.entries.append((what, load, waited, loaded))
        note = " (MEASURED UNDER LOAD)" if loaded else ""
        print(f"  {what}: load {load:.2f} at start, waited {waited:.0f} s{note}", file=sys.stderr, flush=True)
        return load

    def summary(self) -> str:
        loads = [entry[1] for entry in self.entries]
        loaded = [entry[0] for entry in self.entries if entry[3]]
        waited = sum(entry[2] for entry in self.entries)
        text = (
            f"1-minute load average at the start of the {len(loads)} timed rounds and part 2: {min(loads):.2f} to "
            f"{max(loads):.2f} (median {statistics.median(loads):.2f}); waited {waited:.0f} s in all for it "
            f"to fall below {self.limit}."
        )
        if loaded:
            text += f" MEASURED UNDER LOAD (still above {self.limit} after 10 minutes): {', '.join(loaded)}."
        else:
            text += " Nothing started under load."
        if self.after_runs:
            text += (
                f" At the end of the runs (this benchmark's own load included): {min(self.after_runs):.2f} to "
                f"{max(self.after_runs):.2f}."
            )
        return text


# --- part 1: end to end ----------------------------------------------------------------------------------


def records(db: Path) -> tuple[int, int, int, int]:
    """(image rows, rows 'ok', rows 'refused', DICOM object rows) of a records database."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT count(*) FROM images").fetchone()[0]
        ok = connection.execute("SELECT count(*) FROM images WHERE status = 'ok'").fetchone()[0]
        refused = connection.execute("SELECT count(*) FROM images WHERE status = 'refused'").fetchone()[0]
        objects = connection.execute("SELECT count(*) FROM dicom_objects").fetchone()[0]
    return rows, ok, refused, objects


def image_rows(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5.0) as connection:
            return connection.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def send_studies(port: int, paths: list[Path], associations: int) -> list[int]:
    """C-STORE every file (sent from the file, not re-encoded), ``paths`` split over concurrent associations."""
    from concurrent.futures import ThreadPoolExecutor

    from pynetdicom import AE

    def one_association(share: list[Path]) -> list[int]:
        ae = AE(ae_title="BENCHSCU")
        ae.add_requested_context(DX_PRESENTATION, ExplicitVRLittleEndian)
        association = ae.associate("127.0.0.1", port, ae_title="CXREADER")
        if not association.is_established:
            raise SystemExit("the node refused the association")
        try:
            return [int(association.send_c_store(path).Status) for path in share]
        finally:
            association.release()

    shares = [paths[index::associations] for index in range(associations)]
    with ThreadPoolExecutor(max_workers=associations) as pool:
        return [status for statuses in pool.map(one_association, shares) for status in statuses]


def run_listen(model: Path, paths: list[Path], scratch: Path, *, dicom_out: bool, associations: int) -> dict:
    """One timed run of ``cxreader dicom listen``: N studies sent, wait for N image rows."""
    for stale in ("records.sqlite3", "records.sqlite3-wal", "records.sqlite3-shm", "ready"):
        (scratch / stale).unlink(missing_ok=True)
    db, ready = scratch / "records.sqlite3", scratch / "ready"
    command = [sys.executable, "-m", "cxreader", "dicom", "listen", "--host", "127.0.0.1", "--port", "0",
               "--ready-file", str(ready), "--checkpoint", str(model), "--db", str(db),
               "--spool", str(scratch / "spool")]  # fmt: skip
    if dicom_out:
        command += ["--dicom-out", str(scratch / "out")]
    with open(scratch / "node.log", "w") as log:
        node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            measured = _measure_node(node, ready, db, scratch, paths, associations)
        finally:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=120)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
    if node.returncode != 0:
        raise SystemExit(f"the node exited {node.returncode}: {(scratch / 'node.log').read_text()[-3000:]}")
    rows, ok, refused, objects = records(db)
    return {
        **measured,
        "rows": rows,
        "ok": ok,
        "refused": refused,
        "objects": objects,
    }


def _measure_node(
    node: subprocess.Popen, ready: Path, db: Path, scratch: Path, paths: list[Path], associations: int
) -> dict:
    """Wait for the node to listen, send the studies, wait for their rows; the times and CPU seconds."""
    deadline = time.monotonic() + 180
    while not ready.exists():
        if node.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the node did not start: {(scratch / 'node.log').read_text()[-3000:]}")
        time.sleep(0.1)
    port = int(ready.read_text())
    cpu_node_before, cpu_self_before = process_cpu_s(node.pid), self_cpu_s()
    started = time.perf_counter()
    statuses = send_studies(port, paths, associations)
    sent = time.perf_counter()
    cpu_self = self_cpu_s() - cpu_self_before
    if any(status != 0 for status in statuses):
        raise SystemExit(f"C-STORE statuses other than success: {sorted(set(statuses))}")
    deadline = time.monotonic() + 1800
    while image_rows(db) < len(paths):
        if node.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the node stopped screening: {(scratch / 'node.log').read_text()[-3000:]}")
        time.sleep(0.1)
    stored = time.perf_counter()
    return {
        "seconds": stored - started,
        "send_s": sent - started,
        "node_cpu_s": process_cpu_s(node.pid) - cpu_node_before,
        "scu_cpu_s": cpu_self,
    }


def run_screen(model: Path, folder: Path, scratch: Path) -> dict:
    """One timed run of ``cxreader screen FOLDER --dicom-out DIR`` (files on disk, no network)."""
    for stale in ("records.sqlite3", "records.sqlite3-wal", "records.sqlite3-shm"):
        (scratch / stale).unlink(missing_ok=True)
    db, summary = scratch / "records.sqlite3", scratch / "summary.json"
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run_cli("screen", str(folder), "--checkpoint", str(model), "--db", str(db), "--dicom-out",
            str(scratch / "out"), "--no-progress", "--summary-json", str(summary))  # fmt: skip
    wall = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = json.loads(summary.read_text())
    rows, ok, refused, objects = records(db)
    return {
        "seconds": float(report["seconds"]),
        "wall_s": wall,
        "cpu_s": (children.ru_utime - children_before.ru_utime)
        + (children.ru_stime - children_before.ru_stime),
        "rows": rows,
        "ok": ok,
        "refused": refused,
        "objects": objects,
    }


def end_to_end(args: argparse.Namespace, model: Path, folder: Path, paths: list[Path], scratch: Path,
               load: LoadLog) -> None:  # fmt: skip
    variants: dict[str, Callable[[Path], dict]] = {
        "screen --dicom-out (files on disk; baseline)": lambda work: run_screen(model, folder, work),
        "dicom listen --dicom-out": lambda work: run_listen(
            model, paths, work, dicom_out=True, associations=args.associations
        ),
    }
    if args.plain_listen:
        variants["dicom listen (no --dicom-out)"] = lambda work: run_listen(
            model, paths, work, dicom_out=False, associations=args.associations
        )
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        names = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        load.wait(f"round {round_index + 1}")
        for name in names:
            work = scratch / "run"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            outcome = variants[name](work)
            outcome["load"] = os.getloadavg()[0]
            load.after_runs.append(outcome["load"])
            results[name].append(outcome)
            print(
                f"    round {round_index + 1}, {name}: {outcome['seconds']:.1f} s, "
                f"{len(paths) / outcome['seconds'] * 60:.0f} studies/min, rows "
                f"{outcome['rows']} (ok {outcome['ok']}, not read {outcome['refused']}), DICOM objects "
                f"{outcome['objects']}",
                file=sys.stderr,
                flush=True,
            )
            if outcome["rows"] != len(paths):
                raise SystemExit(f"{name}: {outcome['rows']} image rows for {len(paths)} studies")
            shutil.rmtree(work, ignore_errors=True)

    n = len(paths)
    base = statistics.median(r["seconds"] for r in next(iter(results.values())))
    print(f"\n### Part 1: {n} SYNTHETIC one-instance DX studies, {args.size}x{args.size} 12-bit, ONNX int8 "
          f"DenseNet-121 at {args.input_size} px (SYNTHETIC random weights), median of {args.rounds} rounds\n")  # fmt: skip
    print("| variant | s per run (rounds) | median s | studies/min | ms/study | x baseline | C-STOREs answered s | "
          "node CPU s/study | SCU CPU s | image rows (ok / not read) | DICOM objects |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for name, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        rounds_text = " / ".join(f"{r['seconds']:.1f}" for r in runs)
        if "send_s" in runs[0]:
            send = f"{statistics.median(r['send_s'] for r in runs):.1f}"
            node_cpu = f"{statistics.median(r['node_cpu_s'] for r in runs) / n:.3f}"
            scu_cpu = f"{statistics.median(r['scu_cpu_s'] for r in runs):.1f}"
        else:
            send, scu_cpu = "—", "—"
            node_cpu = f"{statistics.median(r['cpu_s'] for r in runs) / n:.3f} (whole process)"
        last = runs[-1]
        print(
            f"| {name} | {rounds_text} | {seconds:.1f} | {n / seconds * 60:.0f} | {seconds / n * 1000:.0f} | "
            f"{base / seconds:.2f} | {send} | "
            f"{node_cpu} | {scu_cpu} | {last['rows']} ({last['ok']} / {last['refused']}) | {last['objects']} |"
        )
    screen_runs = next(iter(results.values()))
    wall = statistics.median(r["wall_s"] for r in screen_runs)
    print(f"\n`screen` process wall time (start-up and model load included): median {wall:.1f} s "
          f"({n / wall * 60:.0f} studies/min); the table's figure for it is the run's own `seconds` "
          f"(`--summary-json`). x baseline = baseline seconds / variant seconds (above 1: faster).")  # fmt: skip


# --- part 2: the cost of the DICOM results per image ------------------------------------------------------


def median_ms(function: Callable[[], object], reps: int, warmup: int = 2) -> tuple[float, float, object]:
    value = None
    for _ in range(warmup):
        value = function()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        value = function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), float(np.percentile(times, 90)), value


def realistic_result(source: Dataset, *, with_locations: bool):
    """14 findings; Effusion, Cardiomegaly and Nodule above threshold (with boxes and grounded descriptions when
    ``with_locations``, as a PyTorch model writes them; without, as the ONNX node does)."""
    from cxreader.storage.records import FindingResult, ImageResult, StudyInfo

    columns, rows = int(source.Columns), int(source.Rows)
    positives = {
        "Effusion": (0.874, [int(0.08 * columns), int(0.62 * rows), int(0.30 * columns), int(0.22 * rows)],
                     {"side": "right", "zone": "lower", "organ": "pleura", "extent": 0.21, "severity": "moderate",
                      "sentence": "Moderate right pleural effusion, lower zone."}),
        "Cardiomegaly": (0.712, [int(0.36 * columns), int(0.45 * rows), int(0.34 * columns), int(0.28 * rows)],
                         {"side": "midline", "zone": "cardiac", "organ": "heart", "extent": 0.18,
                          "severity": "mild", "sentence": "Mild cardiomegaly."}),
        "Nodule": (0.633, [int(0.62 * columns), int(0.25 * rows), int(0.06 * columns), int(0.06 * rows)],
                   {"side": "left", "zone": "upper", "organ": "lung", "extent": 0.01, "severity": "mild",
                    "sentence": "Mild left nodule, upper zone."}),
    }  # fmt: skip
    spacing = float(source.PixelSpacing[1]), float(source.PixelSpacing[0])
    findings = []
    for index, name in enumerate(FINDINGS):
        if name in positives:
            probability, box, words = positives[name]
            if with_locations:
                size_cm = round(max(box[2] * spacing[0], box[3] * spacing[1]) / 10, 1)
                data = {"finding": name, "probability": probability, "box": box, "size_cm": size_cm, **words}
                findings.append(FindingResult(name, probability, 0.5, description=words["sentence"],
                                              description_data=data, box=tuple(box)))  # fmt: skip
            else:
                findings.append(FindingResult(name, probability, 0.5))
        else:
            findings.append(FindingResult(name, 0.02 + 0.025 * index, 0.5))
    return ImageResult(
        source_path="/SYNTHETIC/study.dcm",
        content_sha256="0" * 64,
        checkpoint_id=1,
        findings=findings,
        study=StudyInfo(patient_id=str(source.PatientID), study_instance_uid=str(source.StudyInstanceUID)),
        sop_instance_uid=str(source.SOPInstanceUID),
        view_position="PA",
        modality="DX",
        width=columns,
        height=rows,
        pixel_spacing=spacing,
        synthetic=True,
    )


def per_image_costs(
    args: argparse.Namespace, model: Path, sample: Path, scratch: Path, load: LoadLog
) -> None:
    import torch

    from cxreader.dicom.capture import overlay_capture
    from cxreader.dicom.identifiers import result_instance_uid, result_series_uid
    from cxreader.dicom.outputs import SERIES_NUMBERS, algorithm_of, write_whole
    from cxreader.dicom.selection import triage_selection
    from cxreader.inference.backends import load_backend
    from cxreader.screening.engine import prepare_image

    backend = load_backend(model)
    algorithm = algorithm_of(backend)
    data = sample.read_bytes()
    source = pydicom.dcmread(sample, stop_before_pixels=True, force=True)
    study, instance, sha = (
        str(source.StudyInstanceUID),
        str(source.SOPInstanceUID),
        algorithm.checkpoint_sha256,
    )

    def uids(kind: str) -> dict:
        return {
            "series_instance_uid": result_series_uid(study, sha, kind),
            "sop_instance_uid": result_instance_uid(instance, sha, kind),
            "series_number": SERIES_NUMBERS[kind],
        }

    located = realistic_result(source, with_locations=True)
    plain = realistic_result(source, with_locations=False)
    rng = np.random.default_rng(0)
    size = backend.contract.input_size
    maps = {}
    for name in ("Effusion", "Cardiomegaly", "Nodule"):
        coarse = rng.random((7, 7)).astype(np.float32)
        smooth = np.asarray(PILImage.fromarray(coarse).resize((size, size), PILImage.Resampling.BILINEAR))
        maps[name] = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    out = scratch / "objects"
    out.mkdir()
    reps = args.reps

    from cxreader.dicom.report import measurement_report

    load.wait("part 2 (in process)")
    rows: list[tuple[str, float, float, str]] = []

    def add(what: str, function: Callable[[], object], note: str = "", repetitions: int = reps) -> object:
        median, p90, value = median_ms(function, repetitions)
        rows.append((what, median, p90, note))
        print(f"  {what}: {median:.1f} ms", file=sys.stderr, flush=True)
        return value

    prepared = add(
        f"decode + prepare the {args.size}x{args.size} 12-bit DX (prepare_image: pixels, preset, display)",
        lambda: prepare_image("study.dcm", data, transform=backend.transform, keep_display=True),
        repetitions=max(10, reps // 3),
    )
    add(
        "the same without the display rendition (what `listen` without --dicom-out does)",
        lambda: prepare_image("study.dcm", data, transform=backend.transform, keep_display=False),
        repetitions=max(10, reps // 3),
    )
    display = prepared.display
    batch = torch.stack([prepared.tensor] * 16)
    median, p90, _ = median_ms(lambda: backend.predict(batch), max(10, reps // 3))
    rows.append(
        ("ONNX int8 DenseNet-121, per image in a batch of 16", median / 16, p90 / 16, "batch time / 16")
    )
    print(f"  model: {median / 16:.1f} ms per image", file=sys.stderr, flush=True)
    add("read the source header again (dcmread, stop_before_pixels; the sink does)",
        lambda: pydicom.dcmread(sample, stop_before_pixels=True, force=True))  # fmt: skip

    sr = add("SR build (measurement_report), 3 positives with boxes and descriptions",
             lambda: measurement_report(source, located, algorithm=algorithm, **uids("sr")))  # fmt: skip
    add("SR write (write_whole)", lambda: write_whole(sr, out / "sr.dcm"), f"{len(encoded(sr)):,} bytes")
    overlay = add("overlay build (overlay_capture), 3 maps and boxes",
                  lambda: overlay_capture(source, located, display=display, maps=maps, algorithm=algorithm,
                                          **uids("overlay")))  # fmt: skip
    add("overlay write (write_whole)", lambda: write_whole(overlay, out / "overlay.dcm"),
        f"{len(encoded(overlay)):,} bytes, {overlay.Rows}x{overlay.Columns} RGB")  # fmt: skip
    description = "cxreader triage: Effusion 0.87 (urgent)"
    kos = add("KOS build (triage_selection)",
              lambda: triage_selection([source], algorithm=algorithm, description=description, **uids("kos")))  # fmt: skip
    add("KOS write (write_whole)", lambda: write_whole(kos, out / "kos.dcm"), f"{len(encoded(kos)):,} bytes")
    sr_plain = add("SR build as the ONNX node writes it (no boxes, no descriptions)",
                   lambda: measurement_report(source, plain, algorithm=algorithm, **uids("sr")))  # fmt: skip
    add("SR write of that report", lambda: write_whole(sr_plain, out / "sr_plain.dcm"),
        f"{len(encoded(sr_plain)):,} bytes")  # fmt: skip
    overlay_plain = add("overlay build as the ONNX node writes it (no maps, no boxes)",
                        lambda: overlay_capture(source, plain, display=display, maps={}, algorithm=algorithm,
                                                **uids("overlay")))  # fmt: skip
    add("overlay write of that capture", lambda: write_whole(overlay_plain, out / "overlay_plain.dcm"))

    print(f"\n### Part 2: per image, in process, median of {reps} repetitions (decode and model: "
          f"{max(10, reps // 3)}); SYNTHETIC image and model\n")  # fmt: skip
    print("| step | median ms | p90 ms | note |")
    print("|---|---:|---:|---|")
    for what, median, p90, note in rows:
        print(f"| {what} | {median:.1f} | {p90:.1f} | {note} |")
    by_name = {what: median for what, median, _p90, _note in rows}
    results_ms = sum(value for what, value in by_name.items()
                     if what.startswith(("read the source", "SR build (", "SR write (", "overlay build (",
                                         "overlay write (", "KOS")))  # fmt: skip
    onnx_ms = sum(value for what, value in by_name.items()
                  if what.startswith(("read the source", "SR build as", "SR write of", "overlay build as",
                                      "overlay write of", "KOS")))  # fmt: skip
    print(f"\nAll DICOM results of one image on the triage list (header read, SR, overlay, KOS, built and written): "
          f"{results_ms:.0f} ms with boxes and maps; {onnx_ms:.0f} ms as the ONNX node writes them.")  # fmt: skip


def encoded(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=200, help="studies sent per run (default 200)")
    parser.add_argument(
        "--size", type=int, default=2048, help="side of the DX images in pixels (default 2048)"
    )
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--associations", type=int, default=1, help="concurrent SCU associations (default 1)")
    parser.add_argument("--no-plain-listen", dest="plain_listen", action="store_false",
                        help="skip the listen run without --dicom-out")  # fmt: skip
    parser.add_argument("--reps", type=int, default=60, help="repetitions of part 2's steps (default 60)")
    parser.add_argument("--skip-end-to-end", action="store_true", help="part 2 only")
    parser.add_argument("--max-load", type=float, default=1.0, help="1-minute load average to wait below")
    args = parser.parse_args(argv)
    load = LoadLog(args.max_load)
    print(f"SYNTHETIC images and model. {platform.python_version()}, {os.cpu_count()} cores; pynetdicom "
          f"{__import__('pynetdicom').__version__}, pydicom {pydicom.__version__}, highdicom "
          f"{__import__('highdicom').__version__}, ONNX Runtime {__import__('onnxruntime').__version__}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="cxreader-dicom-node-") as tmp:
        scratch = Path(tmp)
        started = time.perf_counter()
        model = int8_model(scratch, args.input_size)
        folder = scratch / "studies"
        paths = write_studies(folder, args.studies, args.size)
        megabytes = sum(path.stat().st_size for path in paths) / len(paths) / 1e6
        print(f"setup (model, export, {len(paths)} studies of {megabytes:.1f} MB): "
              f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
        if not args.skip_end_to_end:
            end_to_end(args, model, folder, paths, scratch, load)
        per_image_costs(args, model, paths[0], scratch, load)
    print(f"\n{load.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
