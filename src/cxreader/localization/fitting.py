"""Fit a checkpoint's location reader on its training split, against location ground truth.

Ground truth is a ``synthetic_findings.csv`` (:func:`cxreader.data.synthetic.read_synthetic_findings`): one
row per drawn instance, with the patient's side and the zone. Per image and finding (:func:`truth_of`): the
side is ``bilateral`` when instances lie on both sides (or one is bilateral by nature), the zone is that of
the instance with the largest extent. The samples are the TRUE POSITIVES of a split (label positive and
probability at or above the checkpoint's threshold), because only those are ever described.

:func:`fit_reader` fits on the training split and checks the result on the validation split, against the
rules alone; ``cxreader localize-fit`` stores the reader in the checkpoint only when it agrees with the
ground truth at least as often as the rules do on validation.

**Held-out fitting sets.** The reader is data-hungry: on the demo model, fitting the map-only reader on
the 2,816 training true positives leaves 100 of 715 test true positives wrong; adding the 7,516 true
positives of 4,800 more synthetic images that the CNN never saw (every image of such a set, whatever its
split lists say), 88; and the image features then, 73 (``benchmarks/BENCHMARKS.md``). Such sets are passed
as ``extra``; validation stays the checkpoint's own validation split, so the comparison with the rules is
unchanged.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxreader.data.chestxray14 import ChestXray14
from cxreader.data.synthetic import read_synthetic_findings
from cxreader.errors import ConfigError
from cxreader.labels import FINDINGS
from cxreader.localization.cam import heatmaps, restrict_heatmap
from cxreader.localization.describe import (
    PLACED_BY_DEFINITION,
    DescriptionRules,
    describe_finding,
    patient_side,
    rules_for,
)
from cxreader.localization.evaluation import split_images
from cxreader.localization.geometry import THORAX_MARGIN, estimate_geometry
from cxreader.localization.reader import (
    LocatedSample,
    LocationReader,
    fit_location_reader,
    image_on_grid,
)
from cxreader.training.checkpoint import LoadedCheckpoint

#: The image half of each patient side in a frontal film (the convention of ``patient_side``).
_IMAGE_SIDE_OF_PATIENT = {patient_side(half, "PA"): half for half in ("left", "right")} | {
    "bilateral": "both"
}


def truth_of(instances: Iterable) -> tuple[str, str]:
    """``(patient side, zone)`` of one image's instances of one finding (module docstring)."""
    instances = list(instances)
    sides = {row.side for row in instances}
    if "bilateral" in sides or {"right", "left"} <= sides:
        side = "bilateral"
    elif len(sides) == 1:
        (side,) = sides
    else:  # midline
        side = sorted(sides)[0]
    largest = max(instances, key=lambda row: row.extent)
    return side, largest.zone


@dataclass(frozen=True)
class Located:
    """A true positive with its ground truth, ready to fit on or to describe."""

    image: str
    sample: LocatedSample
    threshold: float
    truth_patient_side: str


def located_true_positives(
    checkpoint: LoadedCheckpoint,
    data_dir: str | Path,
    findings_csv: str | Path,
    split: str,
    *,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> list[Located]:
    """The split's true positives with their CAM maps, geometry and ground truth (frontal views only)."""
    from cxreader.predict import Predictor

    data_dir = Path(data_dir)
    names = split_images(checkpoint, data_dir, split)
    frame = ChestXray14.from_root(data_dir).frame.set_index("image")
    truth = defaultdict(list)
    for row in read_synthetic_findings(findings_csv).itertuples():
        truth[(row.image, row.finding)].append(row)
    names = sorted(frame.index if names is None else names)
    predictor = Predictor(
        checkpoint, device=str(next(checkpoint.model.parameters()).device), batch_size=batch_size
    )
    thresholds = dict(zip(FINDINGS, checkpoint.contract.thresholds, strict=True))
    transform = checkpoint.contract.eval_preset()
    images_dir = data_dir / "images" if (data_dir / "images").is_dir() else data_dir
    located: list[Located] = []
    for start in range(0, len(names), batch_size):
        chunk = names[start : start + batch_size]
        results = predictor.predict_files([images_dir / name for name in chunk], keep_images=True)
        for name, result in zip(chunk, results, strict=True):
            if result.error or str(frame.loc[name, "view_position"] or "PA").upper() not in ("PA", "AP"):
                continue
            wanted = [
                finding
                for finding in FINDINGS
                if finding not in PLACED_BY_DEFINITION
                and frame.loc[name, finding] == 1
                and result.probabilities[finding] >= thresholds[finding]
                and (name, finding) in truth
            ]
            if not wanted:
                continue
            maps = heatmaps(checkpoint.model, transform(result.image.pixels), wanted, "cam")
            geometry = estimate_geometry(result.image.pixels)
            image = image_on_grid(result.image.pixels)
            for finding, values in zip(wanted, maps, strict=True):
                side, zone = truth_of(truth[(name, finding)])
                grid = geometry.scaled_to(values.shape[1], values.shape[0])
                sample = LocatedSample(
                    finding=finding,
                    values=_restricted(values, grid),
                    geometry=grid,
                    probability=result.probabilities[finding],
                    truth_side=_IMAGE_SIDE_OF_PATIENT[side],
                    truth_zone=zone,
                    image=image,
                )
                located.append(Located(name, sample, thresholds[finding], side))
        if progress is not None:
            progress(min(start + batch_size, len(names)), len(names))
    return located


def _restricted(values: np.ndarray, geometry) -> np.ndarray:
    # The reader sees the map as describe_finding does: restricted to the thorax first.
    return restrict_heatmap(np.asarray(values, dtype=np.float32), geometry.thorax_mask(THORAX_MARGIN))


def agreement(located: Sequence[Located], rules: DescriptionRules) -> dict[str, float | int]:
    """Side, zone and side-and-zone agreement of the descriptions with the ground truth."""
    side_ok = zone_ok = both = 0
    for item in located:
        sample = item.sample
        description = describe_finding(
            sample.finding,
            sample.probability,
            sample.values,
            sample.geometry,
            threshold=item.threshold,
            view="PA",
            rules=rules,
            reader_image=sample.image,
        )
        side_right = description.side == item.truth_patient_side
        zone_right = description.zone == sample.truth_zone
        side_ok += side_right
        zone_ok += zone_right
        both += side_right and zone_right
    n = max(1, len(located))
    return {"n": len(located), "side": side_ok / n, "zone": zone_ok / n, "side_and_zone": both / n}


@dataclass(frozen=True)
class ReaderFit:
    """A fitted reader and how it compares with the rules on validation."""

    reader: LocationReader
    train_samples: int
    extra_samples: int
    rules_val: dict[str, float | int]
    reader_val: dict[str, float | int]

    @property
    def helps(self) -> bool:
        return self.reader_val["side_and_zone"] >= self.rules_val["side_and_zone"]


def fit_reader(
    checkpoint: LoadedCheckpoint,
    data_dir: str | Path,
    findings_csv: str | Path,
    *,
    extra: Sequence[tuple[str | Path, str | Path]] = (),
    batch_size: int = 32,
    progress: Callable[[str, int, int], None] | None = None,
) -> ReaderFit:
    """Fit on the checkpoint's training split (and every image of each ``(data dir, findings csv)`` in
    ``extra``), compare with the rules on its validation split.

    Raises:
        ConfigError: a split is empty of true positives, or no finding has enough of them.
    """

    def located(data: str | Path, findings: str | Path, split: str, label: str) -> list[Located]:
        report = (lambda done, total: progress(label, done, total)) if progress else None
        return located_true_positives(
            checkpoint, data, findings, split, batch_size=batch_size, progress=report
        )

    samples = {split: located(data_dir, findings_csv, split, split) for split in ("train", "val")}
    for split, found in samples.items():
        if not found:
            raise ConfigError(f"the {split} split has no true positive with location ground truth")
    held_out = [
        item
        for data, findings in extra
        for item in located(data, findings, "all", f"extra {Path(data).name}")
    ]
    fitted_on = f"{Path(findings_csv).name}, train split, {len(samples['train'])} true positives"
    if extra:
        names = ", ".join(Path(data).name for data, _ in extra)
        fitted_on += f"; held-out sets {names}, {len(held_out)} true positives"
    rules = dataclasses.replace(rules_for(checkpoint.model), reader=None)
    reader = fit_location_reader(
        [item.sample for item in samples["train"] + held_out],
        skip=PLACED_BY_DEFINITION,
        fitted_on=fitted_on,
    )
    return ReaderFit(
        reader=reader,
        train_samples=len(samples["train"]),
        extra_samples=len(held_out),
        rules_val=agreement(samples["val"], rules),
        reader_val=agreement(samples["val"], dataclasses.replace(rules, reader=reader)),
    )
