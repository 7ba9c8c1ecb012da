"""The input gate against what it must refuse: out-of-distribution AUROC and acceptance shares.

For a checkpoint that carries an out-of-distribution detector (fitted at the end of ``cxreader train``, or by
``cxreader calibrate``), and its own test split as the in-distribution images:

1. **Detector AUROC.** The Mahalanobis score (Lee et al., NeurIPS 2018) of each group of inputs against the
   test split's, as an AUROC (1.0: every input of the group scores above every test image). For a model
   trained on SYNTHETIC images, the real radiographs of ``../shared/data`` (418 NIH PNGs, OpenI, the other
   collections, the chest DICOMs) are out of distribution; the goal is an AUROC of at least 0.99.
2. **Acceptance.** The share of each group the whole gate accepts, through the path ``cxreader predict``
   takes (:meth:`cxreader.inference.predict.Predictor.predict_files`: the rules, then the score): the test
   split's images, and inputs that are not frontal chest radiographs: pydicom's bundled CT, MR, NM and US
   files, their pixels as PNGs without the DICOM header (so only the score can refuse them), OpenI lateral
   views, uniform and smoothed noise, colour photographs (scikit-learn's two bundled sample photographs and
   generated colour scenes) and the same photographs in grey (which pass the colour rule).

Usage:
    python benchmarks/gate_ood.py --checkpoint RUN/best.pt [--data DIR] [--split test] [--limit N] [--json OUT]

The real radiographs are skipped (with a note) when ``../shared/data`` is absent; everything else is generated
or bundled with the installed packages.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from cxreader.config import config_from_dict
from cxreader.data.chestxray14 import ImageLocator
from cxreader.data.dataset import build_splits
from cxreader.data.io import load_image
from cxreader.errors import CXReaderError
from cxreader.inference.backends import ModelBackend, load_backend
from cxreader.inference.gate import pooled_features
from cxreader.inference.predict import Predictor

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: pydicom's bundled test files of other modalities (name → modality).
PYDICOM_FILES = {
    "CT_small.dcm": "CT",
    "693_J2KI.dcm": "CT",
    "J2K_pixelrep_mismatch.dcm": "CT",
    "MR_small.dcm": "MR",
    "examples_overlay.dcm": "MR",
    "JPEG2000.dcm": "NM",
    "examples_rgb_color.dcm": "US",
    "examples_jpeg2k.dcm": "US",
}


def test_split_paths(backend: ModelBackend, data: str, split: str, limit: int) -> list[Path]:
    """The checkpoint's split (rebuilt from its saved configuration), as image paths; at most ``limit``."""
    saved = backend.contract.config
    config = config_from_dict({**saved, "data": data or saved.get("data", "")})
    chosen = build_splits(config)[split]
    locator = ImageLocator(config.data)
    names = chosen.images[:limit] if limit else chosen.images
    return [locator.locate(name) for name in names]


def shared_radiographs() -> dict[str, list[Path]]:
    """Real chest radiographs of ``../shared/data``, by collection (frontal views; OpenI laterals apart)."""
    if not SHARED.is_dir():
        return {}
    groups = {
        "NIH ChestX-ray14 PNGs (real, 256 px)": sorted((SHARED / "nih" / "images_256").glob("*.png")),
        "other collections (NIH, PadChest, TBX11K, COVID-19)": sorted(
            (SHARED / "other" / "images").iterdir()
        ),
        "chest CR DICOMs (pydicom-data, SIIM)": sorted((SHARED / "other" / "dicom").glob("*.dcm")),
    }
    frontal, lateral = openi_views()
    groups["OpenI frontal (PA)"] = frontal
    return {name: paths for name, paths in groups.items() if paths}


def openi_views() -> tuple[list[Path], list[Path]]:
    """OpenI images of ``../shared/data/openi``: frontal (PA in pairs.csv) and lateral (no view; ``-2001``)."""
    table = SHARED / "openi" / "pairs.csv"
    if not table.is_file():
        return [], []
    frontal, lateral = [], []
    with open(table, newline="") as handle:
        for row in csv.DictReader(handle):
            path = SHARED / "openi" / row["file_256"]
            (frontal if row["tsne_view"] == "PA" else lateral).append(path)
    return frontal, lateral


def non_chest_inputs(folder: Path, seed: int = 0) -> dict[str, list[Path]]:
    """Inputs that are not frontal chest radiographs, bundled or generated into ``folder``."""
    from pydicom.data import get_testdata_file
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[Path]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dicoms = [Path(get_testdata_file(name)) for name in PYDICOM_FILES if get_testdata_file(name)]
    groups["pydicom CT/MR/NM/US files"] = dicoms
    stripped = []
    for path in dicoms:  # the same pixels without the header: only the score can refuse them
        try:
            image = load_image(path)
        except CXReaderError:
            continue
        target = folder / f"headerless_{path.stem}.png"
        _save(target, np.round(image.pixels * 255).astype(np.uint8))  # pixels: [0, 1]
        stripped.append(target)
    groups["the same pixels as PNG, no DICOM header"] = stripped
    _, lateral = openi_views()
    if lateral:
        groups["OpenI lateral views (no view in the file)"] = lateral

    noise = []
    for i in range(10):
        uniform = rng.integers(0, 256, (256, 256), dtype=np.uint8)
        noise.append(_save(folder / f"noise_uniform_{i}.png", uniform))
        smooth = np.asarray(Image.fromarray(uniform).resize((8, 8)).resize((256, 256), Image.BICUBIC))
        noise.append(_save(folder / f"noise_smooth_{i}.png", smooth))
    groups["noise (uniform, smoothed)"] = noise

    photographs = []
    for i, photo in enumerate(load_sample_images().images):
        photographs.append(_save(folder / f"photo_sample_{i}.png", photo))
    for i in range(10):
        photographs.append(_save(folder / f"photo_generated_{i}.png", _colour_scene(rng)))
    groups["colour photographs (2 real, 10 generated)"] = photographs
    groups["the same photographs in grey"] = [
        _save(folder / f"grey_{path.name}", np.asarray(Image.open(path).convert("L"))) for path in photographs
    ]
    return groups


def _colour_scene(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A smooth colour gradient with a few coloured ellipses: a stand-in for a photograph or a screenshot."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([a * x + b * y + c for a, b, c in rng.random((3, 3))], axis=-1)
    for _ in range(4):
        cy, cx, ry, rx = rng.random(4) * [size, size, size / 4, size / 4] + [0, 0, 8, 8]
        inside = ((np.mgrid[0:size, 0:size][0] - cy) / ry) ** 2 + (
            (np.mgrid[0:size, 0:size][1] - cx) / rx
        ) ** 2 < 1
        image[inside] = rng.random(3)
    return (np.clip(image / image.max(), 0, 1) * 255).astype(np.uint8)


def _save(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def detector_scores(backend: ModelBackend, paths: list[Path], batch_size: int = 32) -> np.ndarray:
    """The detector's score of every decodable file, whatever the rules say (the rules are measured apart)."""
    detector = backend.gate.detector
    tensors = []
    for path in paths:
        try:
            tensors.append(backend.transform(load_image(path).pixels))
        except CXReaderError:
            continue
    scores = []
    for start in range(0, len(tensors), batch_size):
        _, features = backend.predict_features(torch.stack(tensors[start : start + batch_size]))
        scores.append(detector.score(pooled_features(features)))
    return np.concatenate(scores) if scores else np.zeros(0)


def acceptance(predictor: Predictor, paths: list[Path]) -> dict[str, int]:
    """How the gate treats each file: unreadable, refused by a rule, refused by the score, accepted."""
    counts = {"files": len(paths), "unreadable": 0, "rules": 0, "score": 0, "accepted": 0}
    for result in predictor.predict_files(paths):
        if result.error is not None:
            counts["unreadable"] += 1
        elif result.gate.accepted:
            counts["accepted"] += 1
        elif result.gate.score is None:  # refused by a rule before the model ran
            counts["rules"] += 1
        else:
            counts["score"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", required=True, help="a checkpoint with an out-of-distribution detector"
    )
    parser.add_argument("--data", default="", help="its dataset root (default: the one it was trained on)")
    parser.add_argument("--split", default="test", help="the in-distribution split (default test)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many in-distribution images")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)

    backend = load_backend(args.checkpoint, device="cpu")
    if backend.gate.detector is None:
        print(f"{args.checkpoint} carries no out-of-distribution detector: run `cxreader calibrate` first")
        return 2
    predictor = Predictor(backend, batch_size=32)
    started = time.perf_counter()
    inside = test_split_paths(backend, args.data, args.split, args.limit)
    kind = "SYNTHETIC" if backend.contract.synthetic else "real"
    with tempfile.TemporaryDirectory(prefix="cxreader-gate-") as tmp:
        groups: dict[str, list[Path]] = {f"{args.split} split ({kind}, in distribution)": inside}
        real = shared_radiographs()
        if not real:
            print(f"note: {SHARED} is absent: no real radiographs measured")
        for name, paths in real.items():
            groups[f"real radiographs: {name}"] = paths
        groups.update(non_chest_inputs(Path(tmp) / "inputs"))
        scores = {name: detector_scores(backend, paths) for name, paths in groups.items()}
        counts = {name: acceptance(predictor, paths) for name, paths in groups.items()}
    reference = scores[next(iter(groups))]
    rows = []
    for name in groups:
        auroc = None
        if name != next(iter(groups)) and len(scores[name]):
            y = np.r_[np.zeros(len(reference)), np.ones(len(scores[name]))]
            auroc = float(roc_auc_score(y, np.r_[reference, scores[name]]))
        rows.append(
            {
                "group": name,
                **counts[name],
                "auroc_vs_in_distribution": auroc,
                "median_score": float(np.median(scores[name])) if len(scores[name]) else None,
            }
        )
    real_names = [name for name in groups if name.startswith("real radiographs")]
    pooled_real = np.concatenate([scores[name] for name in real_names]) if real_names else np.zeros(0)
    pooled_auroc = None
    if len(pooled_real):
        y = np.r_[np.zeros(len(reference)), np.ones(len(pooled_real))]
        pooled_auroc = float(roc_auc_score(y, np.r_[reference, pooled_real]))

    detector = backend.gate.detector
    print(
        f"checkpoint {args.checkpoint} ({kind} training data, {backend.contract.model_name}); detector "
        f"threshold {detector.threshold:.2f} (fitted on {detector.fitted_on}, false-alarm rate "
        f"{detector.false_alarm_rate:.0%})\n"
    )
    print(
        "| inputs | files | unreadable | refused by a rule | refused by the score | accepted | score AUROC vs in-distribution | median score |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        share = row["accepted"] / row["files"] if row["files"] else float("nan")
        auroc = "-" if row["auroc_vs_in_distribution"] is None else f"{row['auroc_vs_in_distribution']:.4f}"
        median = "-" if row["median_score"] is None else f"{row['median_score']:.1f}"
        print(
            f"| {row['group']} | {row['files']} | {row['unreadable']} | {row['rules']} | {row['score']} | "
            f"{row['accepted']} ({share:.1%}) | {auroc} | {median} |"
        )
    if pooled_auroc is not None:
        if kind == "SYNTHETIC":
            verdict = "goal >= 0.99 met" if pooled_auroc >= 0.99 else "goal >= 0.99 NOT met"
        else:
            verdict = "a model trained on real radiographs: these are in distribution, about 0.5 is expected"
        print(
            f"\nscore AUROC, {args.split} split vs all {len(pooled_real)} real radiographs: {pooled_auroc:.4f} "
            f"({verdict})"
        )
    print(f"({time.perf_counter() - started:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "real_pooled_auroc": pooled_auroc}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
