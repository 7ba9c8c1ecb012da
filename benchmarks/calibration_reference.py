"""Calibration and subgroups of a real CheXNet reproduction, on its predictions for 22,433 NIH test images.

Reads ``../shared/data/nih/reference_preds/preds_22433.csv.gz`` (J. Zech's reproduce-chexnet, DenseNet-121)
with the labels of ``../shared/data/meta/Data_Entry_2017_v2020.csv.gz`` and:

1. splits the *patients* in two seeded halves, fits :func:`cxreader.evaluation.calibration.fit_calibration`
   on the first (temperature scaling, Guo et al. 2017; isotonic regression, Zadrozny & Elkan 2002, where the
   documented rule picks it), and reports on the second half, per finding and as the mean over findings,
   the ECE (15 bins) and Brier score before and after, and AUROC before and after (temperature scaling is
   monotonic, so its AUROC must not move; isotonic may create ties);
2. runs ``cxreader evaluate --predictions … --labels … --by sex,age,view --json OUT`` as a separate process,
   times it, and prints the largest AUROC gap of each attribute.

Usage:
    python benchmarks/calibration_reference.py [--seed 0] [--json OUT] [--skip-cli]

Exits 0 with a message when ``../shared/data`` is absent (a fresh clone).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cxreader.evaluation.calibration import fit_calibration
from cxreader.evaluation.calibration_metrics import brier_scores, expected_calibration_error
from cxreader.evaluation.metrics import per_class_auroc
from cxreader.evaluation.predictions_file import read_labelled_predictions
from cxreader.inference.calibration import TEMPERATURE
from cxreader.labels import FINDINGS

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PREDICTIONS = SHARED / "nih" / "reference_preds" / "preds_22433.csv.gz"
LABELS = SHARED / "meta" / "Data_Entry_2017_v2020.csv.gz"


def patient_halves(patient_ids: np.ndarray, seed: int) -> np.ndarray:
    """A boolean mask of the images whose patient falls in the first of two seeded halves of the patients."""
    patients = np.unique(patient_ids)
    chosen = np.random.default_rng(seed).permutation(patients)[: patients.size // 2]
    return np.isin(patient_ids, chosen)


def _scores(labels: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "ece": expected_calibration_error(labels, probs),
        "brier": brier_scores(labels, probs),
        "auroc": per_class_auroc(labels, probs),
    }


def calibration_figures(seed: int) -> dict:
    """Fit on one half of the patients, measure on the other: per finding and mean."""
    joined = read_labelled_predictions(PREDICTIONS, LABELS)
    fit_half = patient_halves(joined.table["patient_id"].to_numpy(), seed)
    held_out = ~fit_half
    started = time.perf_counter()
    calibration = fit_calibration(joined.probs[fit_half], joined.labels[fit_half], seed=seed)
    temperature_only = fit_calibration(joined.probs[fit_half], joined.labels[fit_half], isotonic=False)
    fit_seconds = time.perf_counter() - started

    labels, probs = joined.labels[held_out], joined.probs[held_out]
    before = _scores(labels, probs)
    after_temperature = _scores(labels, temperature_only.apply(probs))
    after_chosen = _scores(labels, calibration.apply(probs))
    findings = []
    for k, name in enumerate(FINDINGS):
        entry = calibration.per_finding[k]
        findings.append(
            {
                "finding": name,
                "method": entry.method,
                "temperature": temperature_only.per_finding[k].temperature,
                "fit_positives": entry.positives,
                "reason": entry.reason,
                **{f"{key}_before": float(before[key][k]) for key in before},
                **{f"{key}_temperature": float(after_temperature[key][k]) for key in before},
                **{f"{key}_chosen": float(after_chosen[key][k]) for key in before},
            }
        )
    return {
        "seed": seed,
        "fit_images": int(fit_half.sum()),
        "held_out_images": int(held_out.sum()),
        "fit_seconds": fit_seconds,
        "findings": findings,
        "mean": {
            f"{key}_{stage}": float(np.nanmean(scores[key]))
            for stage, scores in (
                ("before", before),
                ("temperature", after_temperature),
                ("chosen", after_chosen),
            )
            for key in scores
        },
        "calibration": calibration.to_json(),
    }


def print_calibration_table(figures: dict) -> None:
    print(
        f"Fitted on {figures['fit_images']} images (half of the patients, seed {figures['seed']}), measured on "
        f"the other {figures['held_out_images']}; fitting took {figures['fit_seconds']:.1f} s.\n"
    )
    print(
        "| Finding | T | chosen | ECE before | ECE after T | ECE after chosen | Brier before | Brier after T "
        "| Brier after chosen | AUROC before | AUROC after T | AUROC after chosen |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in figures["findings"]:
        print(
            f"| {row['finding'].replace('_', ' ')} | {row['temperature']:.3f} | {row['method']} "
            f"| {row['ece_before']:.4f} | {row['ece_temperature']:.4f} | {row['ece_chosen']:.4f} "
            f"| {row['brier_before']:.4f} | {row['brier_temperature']:.4f} | {row['brier_chosen']:.4f} "
            f"| {row['auroc_before']:.4f} | {row['auroc_temperature']:.4f} | {row['auroc_chosen']:.4f} |"
        )
    mean = figures["mean"]
    print(
        f"| **Mean** |  |  | {mean['ece_before']:.4f} | {mean['ece_temperature']:.4f} | {mean['ece_chosen']:.4f} "
        f"| {mean['brier_before']:.4f} | {mean['brier_temperature']:.4f} | {mean['brier_chosen']:.4f} "
        f"| {mean['auroc_before']:.4f} | {mean['auroc_temperature']:.4f} | {mean['auroc_chosen']:.4f} |"
    )
    unchanged = all(
        row["auroc_temperature"] == row["auroc_before"]
        and (row["method"] != TEMPERATURE or row["auroc_chosen"] == row["auroc_before"])
        for row in figures["findings"]
    )
    print(f"\nAUROC identical after temperature scaling on every finding: {unchanged}")


def run_evaluate_by(out_json: Path) -> float:
    """Run the ``evaluate --by sex,age,view`` command as its own process; return its wall time in seconds."""
    command = [
        sys.executable,
        "-m",
        "cxreader",
        "evaluate",
        "--predictions",
        str(PREDICTIONS),
        "--labels",
        str(LABELS),
        "--by",
        "sex,age,view",
        "--json",
        str(out_json),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def print_largest_gaps(report: dict) -> None:
    """Per attribute, the three findings with the largest AUROC gap between subgroups."""
    for attribute, gaps in report["subgroup_gaps"].items():
        ranked = sorted(
            ((name, gap) for name, gap in gaps.items() if gap["gap"] is not None),
            key=lambda item: -item[1]["gap"],
        )
        shown = []
        for name, gap in ranked[:3]:
            groups = report["subgroups"][attribute]
            low_positives = groups[gap["lowest"]][name]["positives"]
            high_positives = groups[gap["highest"]][name]["positives"]
            shown.append(
                f"{name} {gap['gap']:.3f} ({gap['highest']} {_auroc(groups[gap['highest']][name])}, "
                f"{high_positives} pos > {gap['lowest']} {_auroc(groups[gap['lowest']][name])}, {low_positives} pos)"
            )
        print(f"- {attribute}: " + "; ".join(shown))


def _auroc(entry: dict) -> str:
    value = entry["auroc"]["value"]
    return f"{value:.3f}" if value is not None and math.isfinite(value) else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient halves and of the folds")
    parser.add_argument("--json", help="also write the measured figures here")
    parser.add_argument("--skip-cli", action="store_true", help="skip the timed `evaluate --by` run")
    args = parser.parse_args(argv)
    if not (PREDICTIONS.is_file() and LABELS.is_file()):
        print(f"skipped: {PREDICTIONS} or {LABELS} is absent (this benchmark needs ../shared/data)")
        return 0

    figures = calibration_figures(args.seed)
    print_calibration_table(figures)
    if not args.skip_cli:
        with tempfile.TemporaryDirectory(prefix="cxreader-calibration-") as folder:
            out_json = Path(folder) / "ref_eval.json"
            seconds = run_evaluate_by(out_json)
            report = json.loads(out_json.read_text())
        figures["evaluate_by_seconds"] = seconds
        print(
            f"\n`cxreader evaluate --predictions preds_22433.csv.gz --labels Data_Entry_2017_v2020.csv.gz "
            f"--by sex,age,view --json OUT` ({report['metadata']['n_bootstrap']} resamples): {seconds:.1f} s wall"
        )
        print("\nLargest AUROC gaps between subgroups (AUROC and positives of each side):")
        print_largest_gaps(report)
        figures["subgroup_gaps"] = report["subgroup_gaps"]
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
