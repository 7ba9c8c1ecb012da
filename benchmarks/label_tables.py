"""The two real label tables of ``../shared/data/meta`` in the harmonised label space.

For the CheXpert train table (Irvin et al. 2019; 223,414 rows) and the PadChest table (Bustos et al. 2020;
160,861 rows), prints per harmonised label the images that are positive, negative and unknown (NaN: the
dataset does not define the label, U-Ignore masks an uncertain mention, or the row says nothing) under the
U-Ignore policy, the positives U-Ones adds for CheXpert, and the source labels left out of the space with their
counts. Reading and mapping are timed (median of 3).

Run: ``python benchmarks/label_tables.py [--meta ../shared/data/meta]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from cxreader.data.chexpert import read_chexpert
from cxreader.data.label_maps import UncertaintyPolicy, harmonised_labels, unmapped_labels
from cxreader.data.padchest import read_padchest
from cxreader.labels import HARMONISED_LABELS

TABLES = {
    "chexpert": ("chexpert_train.csv.gz", read_chexpert),
    "padchest": ("PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz", read_padchest),
}


def _timed(function, *args):
    times, result = [], None
    for _ in range(3):
        started = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - started)
    return result, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta", type=Path, default=Path("../shared/data/meta"))
    args = parser.parse_args()
    for dataset, (name, reader) in TABLES.items():
        frame, read_s = _timed(reader, args.meta / name)
        ignore, map_s = _timed(
            harmonised_labels, dataset, frame, HARMONISED_LABELS, UncertaintyPolicy("ignore")
        )
        ones = harmonised_labels(dataset, frame, HARMONISED_LABELS, UncertaintyPolicy("ones"))
        print(
            f"\n### {dataset}: {len(frame):,} rows (read {read_s:.2f} s, mapped {map_s:.2f} s; medians of 3)\n"
        )
        print("| label | positive | negative | unknown (NaN) | positive under U-Ones |")
        print("|---|---:|---:|---:|---:|")
        for column, label in enumerate(HARMONISED_LABELS):
            values, with_ones = ignore[:, column], ones[:, column]
            positive, negative = int(np.sum(values == 1)), int(np.sum(values == 0))
            unknown = int(np.isnan(values).sum())
            print(
                f"| {label} | {positive:,} | {negative:,} | {unknown:,} | {int(np.sum(with_ones == 1)):,} |"
            )
        left_out = sorted(unmapped_labels(dataset, frame).items(), key=lambda item: -item[1])
        shown = ", ".join(f"{label} ({count:,})" for label, count in left_out[:12])
        print(f"\nLeft out of the space ({len(left_out)} source labels), largest first: {shown}")


if __name__ == "__main__":
    main()
