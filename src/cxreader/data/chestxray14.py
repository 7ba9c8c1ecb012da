"""The NIH ChestX-ray14 release as a dataset: where the images are, which image goes in which split.

Wang et al., "ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on Weakly-Supervised
Classification and Localization of Common Thorax Diseases", CVPR 2017 (the release and its official
patient-wise ``train_val_list.txt`` / ``test_list.txt``); Rajpurkar et al., "CheXNet: Radiologist-Level
Pneumonia Detection on Chest X-Rays with Deep Learning", 2017 (the 70/10/20 patient split and the "list file"
format of its reference implementations: an image name followed by 14 binary labels).
:func:`load_splits` is the one entry point to the three ways of splitting.

Nothing here opens an image: statistics need only the tables, so a directory holding the tables and no
images is a valid ``root``. :class:`ImageLocator` finds image files when they are needed.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from cxreader.data.nih_tables import open_text, read_data_entry
from cxreader.errors import ConfigError, DataError
from cxreader.labels import FINDINGS, NUM_FINDINGS, check_label_space

#: Data_Entry file names, most preferred first (v2020 corrected labels of the 2017 release).
DATA_ENTRY_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
#: The official NIH split lists, inside the release root.
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
#: Split names in the order they are reported.
SPLIT_NAMES = ("train", "val", "test")
#: The CheXNet 70/10/20 split, measured in images.
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
SPLIT_METHODS = ("random", "official", "lists")

# images_001 ... images_012 in the release; any three-digit number is accepted.
_IMAGE_PART = re.compile(r"^images_\d{3}$")
# NIH image names are <patient id, 8 digits>_<follow-up, 3 digits>.png
_NIH_NAME = re.compile(r"^(\d+)_(\d+)\.[A-Za-z0-9]+$")
_BINARY = frozenset(("0", "1"))


def find_data_entry(root: str | Path) -> Path:
    """Find the Data_Entry table in a ChestX-ray14 root.

    Looks for ``Data_Entry_2017_v2020.csv`` then ``Data_Entry_2017.csv``, each plain then ``.gz``.

    Args:
        root: The release directory (it may hold the tables without the images).

    Raises:
        DataError: none of the names exists; the message lists every name looked for.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "not a directory")
    candidates = [name + suffix for name in DATA_ENTRY_NAMES for suffix in ("", ".gz")]
    for name in candidates:
        if (root / name).is_file():
            return root / name
    raise DataError(root, f"no Data_Entry table found; looked for {', '.join(candidates)}")


def base_name(name: str) -> str:
    """The file name of an image reference: ``images_001/images/x.png`` -> ``x.png`` (``/`` or ``\\``)."""
    # str methods, not PurePosixPath: this runs once per line of 112k-line lists.
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def scan_files(directories: Iterable[Path]) -> dict[str, Path]:
    """File name → path of the files in ``directories`` (not recursive, hidden files skipped).

    A name found twice keeps the first directory's file: an archive unpacked twice holds identical files.
    """
    paths: dict[str, Path] = {}
    for directory in directories:
        with os.scandir(directory) as entries:
            for entry in entries:
                if not entry.name.startswith(".") and entry.name not in paths and entry.is_file():
                    paths[entry.name] = Path(entry.path)
    return paths


class ImageLocator:
    """Finds ChestX-ray14 images by file name in either published layout.

    The layouts are ``root/images/`` (one folder) and ``root/images_001/images/ … root/images_012/images/``
    (the twelve archives unpacked side by side); ``root/images_001/`` holding the files directly is accepted
    too. The directories are listed once with :func:`os.scandir` (:func:`scan_files`), which reads the file
    type from the directory entry instead of calling ``stat`` on each of the 112,120 files.

    Args:
        root: The release directory. A root without image folders gives an empty locator (stats need none).

    Raises:
        DataError: ``root`` is not a directory.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(self.root, "not a directory")
        self.directories: list[Path] = self._image_directories()
        #: File name → path of every file in the image folders.
        self.files = scan_files(self.directories)

    def _image_directories(self) -> list[Path]:
        directories = []
        if (self.root / "images").is_dir():
            directories.append(self.root / "images")
        with os.scandir(self.root) as entries:
            parts = sorted(
                entry.name for entry in entries if entry.is_dir() and _IMAGE_PART.match(entry.name)
            )
        for part in parts:
            inner = self.root / part / "images"
            directories.append(inner if inner.is_dir() else self.root / part)
        return directories

    def locate(self, name: str) -> Path:
        """Path of one image, by name (a directory prefix in ``name`` is ignored).

        Raises:
            DataError: the image is in none of the image folders; names the image and the root.
        """
        path = self.files.get(base_name(name))
        if path is None:
            where = (
                ", ".join(str(d.relative_to(self.root)) for d in self.directories)
                if self.directories
                else "no images/ or images_NNN/ folder present"
            )
            raise DataError(self.root, f"image {name!r} not found (searched: {where})")
        return path

    def missing(self, names: Iterable[str]) -> list[str]:
        """The names, in the order given, that have no file under the root."""
        return [name for name in names if base_name(name) not in self.files]


def read_list_file(path: str | Path) -> tuple[list[str], np.ndarray | None]:
    """Read a split list: the official NIH format or the CheXNet list-file format.

    The official lists (``train_val_list.txt``, ``test_list.txt``) hold one image name per line. The CheXNet
    lists hold an image name followed by 14 space-separated 0/1 labels in :data:`FINDINGS` order; the name
    may carry a directory prefix (``images_001/images/x.png``), of which only the file name is kept. The
    first non-empty line decides the format; blank lines are skipped; a missing final newline is fine.

    Args:
        path: The list file (plain or gzip).

    Returns:
        ``(images, labels)``: the image names, and an ``(N, 14)`` int8 array for the CheXNet format or
        ``None`` for the official format.

    Raises:
        DataError: unreadable or empty file, a line whose field count differs from the format, a label
            other than 0/1, or an image listed twice; the message names the file and the line.
    """
    path = Path(path)
    images: list[str] = []
    rows: list[list[str]] = []
    seen: dict[str, int] = {}
    width = 0
    try:
        with open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                fields = line.split()
                if not fields:
                    continue
                if not width:
                    width = len(fields)
                    if width not in (1, 1 + NUM_FINDINGS):
                        raise DataError(
                            path,
                            f"line {line_number}: expected an image name alone or followed by "
                            f"{NUM_FINDINGS} labels, found {width - 1} label fields",
                        )
                if len(fields) != width:
                    raise DataError(
                        path,
                        f"line {line_number}: expected {width - 1} label fields like line 1 onwards, "
                        f"found {len(fields) - 1}",
                    )
                name = base_name(fields[0])
                if name in seen:
                    raise DataError(
                        path, f"line {line_number}: image {name!r} already listed on line {seen[name]}"
                    )
                seen[name] = line_number
                images.append(name)
                if width > 1:
                    labels = fields[1:]
                    if not _BINARY.issuperset(labels):
                        raise DataError(
                            path, f"line {line_number}: labels must be 0 or 1, found {' '.join(labels)}"
                        )
                    rows.append(labels)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read list file ({exc})") from exc
    if not images:
        raise DataError(path, "no image names in the list file")
    if width == 1:
        return images, None
    return images, np.asarray(rows, dtype=np.int8).reshape(len(images), NUM_FINDINGS)


@dataclass
class Split:
    """The images of one split with their labels and the metadata later stages need.

    A split of the NIH release names its images by file name and leaves ``paths`` None (an
    :class:`ImageLocator` on the release root finds them); a split of another dataset's layout (CheXpert,
    MIMIC-CXR-JPG, PadChest: :mod:`cxreader.data.harmonise`) or of several datasets merged carries the
    absolute path of every image.

    Attributes:
        name: ``train``, ``val``, ``test`` or any other name given.
        images: Image names, unique in the split: NIH file names (no directory), or the image's path or id
            as the other datasets' tables write it.
        labels: ``(N, len(label_names))`` float32 in ``label_names`` order; NaN where a label is unknown.
        patient_ids: ``(N,)`` int64.
        view_position: ``(N,)`` object array of ``PA`` / ``AP`` / ...; ``""`` when unknown.
        pixel_spacing: ``(N, 2)`` float64, millimetres per pixel (x, y) of the original image; NaN unknown.
        original_size: ``(N, 2)`` int64, original (width, height) in pixels; 0 when unknown.
        label_names: The label space, canonical names of :data:`~cxreader.labels.HARMONISED_LABELS`
            (default: the 14 CheXNet findings).
        paths: ``N`` absolute image paths, or None (NIH: found by :class:`ImageLocator`).
        datasets: ``(N,)`` object array naming the dataset of each image (``nih``, ``chexpert``, ``mimic``,
            ``padchest``); all ``nih`` when not given.
    """

    name: str
    images: list[str]
    labels: np.ndarray
    patient_ids: np.ndarray
    view_position: np.ndarray = None  # type: ignore[assignment]  # filled in __post_init__
    pixel_spacing: np.ndarray = None  # type: ignore[assignment]  # filled in __post_init__
    original_size: np.ndarray = None  # type: ignore[assignment]  # filled in __post_init__
    label_names: tuple[str, ...] = FINDINGS
    paths: list[str] | None = None
    datasets: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.images = list(self.images)
        n = len(self.images)
        self.label_names = check_label_space(self.label_names)
        width = len(self.label_names)
        self.labels = np.asarray(self.labels, dtype=np.float32)
        if self.labels.shape != (n, width):
            raise ValueError(
                f"split {self.name!r}: labels of shape {self.labels.shape}, expected ({n}, {width})"
            )
        self.patient_ids = np.asarray(self.patient_ids, dtype=np.int64).reshape(n)
        if self.view_position is None:
            self.view_position = np.full(n, "", dtype=object)
        if self.pixel_spacing is None:
            self.pixel_spacing = np.full((n, 2), np.nan)
        if self.original_size is None:
            self.original_size = np.zeros((n, 2), dtype=np.int64)
        if self.datasets is None:
            self.datasets = np.full(n, "nih", dtype=object)
        self.view_position = np.asarray(self.view_position, dtype=object).reshape(n)
        self.pixel_spacing = np.asarray(self.pixel_spacing, dtype=np.float64).reshape(n, 2)
        self.original_size = np.asarray(self.original_size, dtype=np.int64).reshape(n, 2)
        self.datasets = np.asarray(self.datasets, dtype=object).reshape(n)
        if self.paths is not None:
            self.paths = [str(path) for path in self.paths]
            if len(self.paths) != n:
                raise ValueError(f"split {self.name!r}: {len(self.paths)} paths for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def patients(self) -> set[int]:
        """The distinct patient ids of the split."""
        return set(self.patient_ids.tolist())


class ChestXray14:
    """The Data_Entry table of a ChestX-ray14 release, indexed by image name, producing :class:`Split` s.

    Args:
        frame: A table as returned by :func:`~cxreader.data.nih_tables.read_data_entry`.
        source: Where the table came from, for error messages.
    """

    def __init__(self, frame: pd.DataFrame, *, source: str | Path = "Data_Entry"):
        self.frame = frame.reset_index(drop=True)
        self.source = str(source)
        self._index = pd.Index(self.frame["image"])
        self._labels = self.frame[list(FINDINGS)].to_numpy(dtype=np.float32)

    @classmethod
    def from_root(cls, root: str | Path) -> ChestXray14:
        """Read the Data_Entry table found in ``root`` (see :func:`find_data_entry`)."""
        return cls.from_csv(find_data_entry(root))

    @classmethod
    def from_csv(cls, path: str | Path) -> ChestXray14:
        """Read an explicit Data_Entry file."""
        return cls(read_data_entry(path), source=path)

    def __len__(self) -> int:
        return len(self.frame)

    def positions(self, images: Sequence[str], *, source: str | Path | None = None) -> np.ndarray:
        """Row positions of the images in the table.

        Raises:
            DataError: some images are not in the table; names how many and the first few.
        """
        positions = self._index.get_indexer(list(images))
        if (positions < 0).any():
            absent = [images[i] for i in np.flatnonzero(positions < 0)[:5]]
            raise DataError(
                source if source is not None else self.source,
                f"{int((positions < 0).sum())} image(s) not in the Data_Entry table {self.source} "
                f"(first: {', '.join(absent)})",
            )
        return positions

    def split(
        self,
        name: str,
        images: Sequence[str],
        *,
        labels: np.ndarray | None = None,
        source: str | Path | None = None,
    ) -> Split:
        """A :class:`Split` of the given images with the table's metadata (and labels unless given)."""
        positions = self.positions(images, source=source)
        rows = self.frame.iloc[positions]
        return Split(
            name=name,
            images=list(images),
            labels=self._labels[positions] if labels is None else labels,
            patient_ids=rows["patient_id"].to_numpy(),
            view_position=rows["view_position"].to_numpy(dtype=object),
            pixel_spacing=rows[["pixel_spacing_x", "pixel_spacing_y"]].to_numpy(dtype=np.float64),
            original_size=rows[["original_width", "original_height"]].to_numpy(dtype=np.int64),
        )

    def patient_split(
        self,
        images: Sequence[str] | None = None,
        *,
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        names: Sequence[str] = SPLIT_NAMES,
        seed: int = 0,
    ) -> dict[str, Split]:
        """Seeded patient-level split of ``images`` (default: the whole table), by default the CheXNet
        recipe: 70/10/20 of the images. The same table and seed always give the same split.

        Patients are shuffled with ``numpy.random.default_rng(seed)`` and cut where the running image count
        comes closest to each fraction's share of the images, so the fractions hold in images, not in
        patients, as closely as whole patients allow. Every split with a positive fraction gets at least
        one patient.

        Raises:
            ConfigError: fractions negative, not summing to 1, or not one per name.
            DataError: fewer patients than splits to fill.
        """
        fractions = [float(value) for value in fractions]
        if len(fractions) != len(names) or any(value < 0 for value in fractions):
            raise ConfigError(
                f"split fractions {fractions} must be non-negative, one per split {list(names)}"
            )
        if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
            raise ConfigError(f"split fractions {fractions} must sum to 1 (they sum to {sum(fractions):g})")
        if len(set(names)) != len(names):
            raise ConfigError(f"split names {list(names)} must be distinct")
        positions = np.arange(len(self.frame)) if images is None else self.positions(images)
        patient_ids = self.frame["patient_id"].to_numpy()[positions]
        patients, counts = np.unique(patient_ids, return_counts=True)
        order = np.random.default_rng(seed).permutation(len(patients))
        cumulative = np.concatenate([[0], np.cumsum(counts[order])])
        bounds = self._cut_points(cumulative, fractions, names)
        assignment = np.empty(len(patients), dtype=np.int64)
        for split_index in range(len(names)):
            assignment[order[bounds[split_index] : bounds[split_index + 1]]] = split_index
        # np.unique sorted the patients, so searchsorted maps each image to its patient's slot.
        image_split = assignment[np.searchsorted(patients, patient_ids)]
        return {
            name: self.split(name, self._index[positions[image_split == split_index]].tolist())
            for split_index, name in enumerate(names)
        }

    def _cut_points(self, cumulative: np.ndarray, fractions: list[float], names: Sequence[str]) -> list[int]:
        num_patients = len(cumulative) - 1
        needed = [1 if value > 0 else 0 for value in fractions]
        if sum(needed) > num_patients:
            raise DataError(
                self.source,
                f"{num_patients} patient(s) cannot fill {sum(needed)} splits ({', '.join(names)}) without "
                "putting a patient in two splits",
            )
        total = cumulative[-1]
        bounds = [0]
        for index, share in enumerate(np.cumsum(fractions)[:-1], start=1):
            target = share * total
            after = int(np.searchsorted(cumulative, target))  # first boundary at or beyond the target
            before = max(after - 1, 0)
            after = min(after, num_patients)
            best = before if abs(cumulative[before] - target) <= abs(cumulative[after] - target) else after
            low = bounds[-1] + needed[index - 1]
            high = num_patients - sum(needed[index:])
            bounds.append(min(max(best, low), high))
        bounds.append(num_patients)
        return bounds


def official_split(
    root: str | Path,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    dataset: ChestXray14 | None = None,
) -> dict[str, Split]:
    """The official NIH split: test = ``test_list.txt``; train/val carved by patient from ``train_val_list.txt``.

    Args:
        root: Directory holding ``train_val_list.txt``, ``test_list.txt`` and (unless ``dataset`` is given)
            the Data_Entry table; image files are not needed.
        val_fraction: Share of the train_val images that goes to validation, in [0, 1).
        seed: Seed of the train/val patient shuffle.
        dataset: An already loaded table, to avoid reading it again.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    root = Path(root)
    dataset = dataset if dataset is not None else ChestXray14.from_root(root)
    train_val, _ = read_list_file(root / TRAIN_VAL_LIST)
    test, _ = read_list_file(root / TEST_LIST)
    for list_name, images in ((TRAIN_VAL_LIST, train_val), (TEST_LIST, test)):
        dataset.positions(images, source=root / list_name)
    splits = dataset.patient_split(
        train_val, fractions=(1.0 - val_fraction, val_fraction), names=("train", "val"), seed=seed
    )
    splits["test"] = dataset.split("test", test, source=root / TEST_LIST)
    return splits


def split_from_list_files(
    lists: Mapping[str, str | Path],
    dataset: ChestXray14 | None = None,
) -> dict[str, Split]:
    """Splits given by list files, e.g. ``{"train": ..., "val": ..., "test": ...}``.

    Labels come from the list files when they carry them (CheXNet format), otherwise from the Data_Entry
    table. With a table, patient ids and metadata come from it (and every listed image must be in it);
    without one, patient ids are parsed from the NIH image names and metadata is unknown.

    Raises:
        ConfigError: no list files.
        DataError: a list file without labels and no table to take them from, or a bad list file.
    """
    if not lists:
        raise ConfigError("no list files given")
    splits = {}
    for name, path in lists.items():
        images, labels = read_list_file(path)
        if dataset is not None:
            splits[name] = dataset.split(name, images, labels=labels, source=path)
            continue
        if labels is None:
            raise DataError(path, "the list carries no labels; give the Data_Entry table to take them from")
        patient_ids = []
        for image in images:
            match = _NIH_NAME.match(image)
            if match is None:
                raise DataError(
                    path,
                    f"image {image!r} is not an NIH name (<patient>_<follow-up>.png): give the Data_Entry "
                    "table to tell its patient",
                )
            patient_ids.append(int(match.group(1)))
        splits[name] = Split(name=name, images=images, labels=labels, patient_ids=np.asarray(patient_ids))
    return splits


def _table(root: str | Path | None, data_entry: str | Path | None) -> ChestXray14:
    return ChestXray14.from_csv(data_entry) if data_entry is not None else ChestXray14.from_root(root)


def _dataset_or_none(root: str | Path | None, data_entry: str | Path | None) -> ChestXray14 | None:
    if data_entry is None and root is not None:
        with contextlib.suppress(DataError):
            data_entry = find_data_entry(root)
    return ChestXray14.from_csv(data_entry) if data_entry is not None else None


def load_splits(
    root: str | Path | None = None,
    *,
    split: str | None = None,
    lists: Mapping[str, str | Path] | None = None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    val_fraction: float = 0.1,
    data_entry: str | Path | None = None,
) -> dict[str, Split]:
    """The one way the rest of cxreader gets ChestX-ray14 splits.

    Methods (``split``):

    * ``"random"`` — :meth:`ChestXray14.patient_split` of the whole Data_Entry table with ``fractions`` and ``seed``
      (the CheXNet 70/10/20 recipe). Needs ``root`` or ``data_entry``.
    * ``"official"`` — :func:`official_split`: the NIH ``test_list.txt`` as test, ``val_fraction`` of
      ``train_val_list.txt`` (by patient, ``seed``) as val. Needs ``root`` holding the lists and the table.
    * ``"lists"`` — :func:`split_from_list_files` of ``lists`` (split name → file). The Data_Entry table
      (``data_entry``, or the one in ``root`` when there is one) supplies patient ids, metadata and the
      labels of lists that carry none.

    ``split=None`` means ``"lists"`` when ``lists`` is given, else ``"random"``. ``root`` may hold only the
    tables: no image is opened; use :class:`ImageLocator` on the root to find the files.

    Args:
        data_entry: An explicit Data_Entry CSV, instead of the one in ``root``.

    Returns:
        Split name → :class:`Split`, in the order train, val, test (or the order of ``lists``).

    Raises:
        ConfigError: unknown method, or arguments missing for it.
        DataError: missing or malformed tables and lists.
    """
    method = split if split is not None else ("lists" if lists else "random")
    if method not in SPLIT_METHODS:
        raise ConfigError(f"unknown split method {method!r}; expected one of {', '.join(SPLIT_METHODS)}")
    if lists and method != "lists":
        raise ConfigError(f"list files are used by split 'lists', not {method!r}")
    if method == "lists":
        if not lists:
            raise ConfigError("split 'lists' needs list files (split name -> file)")
        return split_from_list_files(lists, _dataset_or_none(root, data_entry))
    if method == "official":
        if root is None:
            raise ConfigError(
                "split 'official' needs the dataset root holding train_val_list.txt and test_list.txt"
            )
        return official_split(root, val_fraction, seed, dataset=_table(root, data_entry))
    if root is None and data_entry is None:
        raise ConfigError("split 'random' needs the dataset root or a Data_Entry CSV")
    return _table(root, data_entry).patient_split(fractions=fractions, seed=seed)


@dataclass(frozen=True)
class SplitStats:
    """Counts of one split, at full precision.

    Attributes:
        positives: Finding → positive images (the findings of the split's ``label_names``).
        labelled: Finding → images whose label is known (not NaN).
        percent: Finding → ``positives / labelled × 100`` (equal to positives / images when no label is
            unknown); NaN when no image of the split has a known label for it.
    """

    name: str
    images: int
    patients: int
    positives: dict[str, int]
    labelled: dict[str, int]
    percent: dict[str, float]


def split_stats(split: Split) -> SplitStats:
    """Counts and label prevalences of one split, per label of its ``label_names`` (NaN labels count neither
    as positive nor as labelled)."""
    known = ~np.isnan(split.labels)
    positives = np.where(known, split.labels > 0.5, False).sum(axis=0)
    labelled = known.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        percent = np.where(labelled > 0, positives / np.maximum(labelled, 1) * 100.0, np.nan)
    names = split.label_names
    return SplitStats(
        name=split.name,
        images=len(split),
        patients=len(split.patients),
        positives={name: int(value) for name, value in zip(names, positives, strict=True)},
        labelled={name: int(value) for name, value in zip(names, labelled, strict=True)},
        percent={name: float(value) for name, value in zip(names, percent, strict=True)},
    )


def split_statistics(splits: Mapping[str, Split]) -> dict:
    """Per-split statistics and the patient overlap of every pair of splits (0 for a sound split).

    Returns:
        ``{"splits": {name: SplitStats}, "patient_overlap": {"train/val": n, ...}}``, pairs in split order.
    """
    patients = {name: split.patients for name, split in splits.items()}
    return {
        "splits": {name: split_stats(split) for name, split in splits.items()},
        "patient_overlap": {f"{a}/{b}": len(patients[a] & patients[b]) for a, b in combinations(splits, 2)},
    }
