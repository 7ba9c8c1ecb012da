"""Training configuration: dataclass defaults → YAML recipe → command-line overrides (timm's layering).

The resolved configuration is saved beside and inside every checkpoint, so a run can be reproduced from its
output folder alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cxreader.errors import ConfigError
from cxreader.files import write_text_atomic

PACKAGE_CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: How a merged run draws its training images (:attr:`TrainConfig.sampling`).
SAMPLINGS = ("proportional", "balanced")
#: Keys a checkpoint's saved config holds beside the fields, for its reader: what the run derived from them
#: (``label_space``: the findings the model predicts; ``uncertainty_policy``: the parsed ``uncertainty``).
#: A config rebuilt from a checkpoint leaves them out.
RECORD_KEYS = ("label_space", "uncertainty_policy")


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are CheXNet's recipe (Rajpurkar et al. 2017).

    Attributes:
        data: Dataset root in the NIH ChestX-ray14 layout (or a synthetic one): a run on NIH alone, its 14
            findings (:data:`~cxreader.labels.FINDINGS`) and the splits of ``split``.
        datasets: Instead of ``data``, the datasets of a merged run, name → root (``nih``, ``chexpert``,
            ``mimic``, ``padchest``): the model predicts the union of the findings they define, in
            :data:`~cxreader.labels.HARMONISED_LABELS` order; each dataset is split by patient on its own (its
            official split where it publishes one), and a label a dataset does not give is unknown (NaN, no
            loss). ``split`` and ``lists`` are NIH-only and not used.
        uncertainty: How the uncertain labels of CheXpert and MIMIC-CXR become training targets (Irvin et
            al., "CheXpert", AAAI 2019): ``ignore`` (unknown, no loss; the default), ``ones``, ``zeros``,
            ``soft`` or ``soft=V`` (the target V, default 0.5). Validation and test labels always leave them
            unknown.
        sampling: How a merged run draws its training images: ``proportional`` (every image once per epoch)
            or ``balanced`` (each dataset the same share of the epoch, drawn with replacement;
            :class:`cxreader.training.sampling.BalancedDatasetSampler`).
        laterals: Keep lateral views of the merged datasets (off: frontal views only, as the NIH set is).
        split: ``random`` (seeded 70/10/20 by patient), ``official`` (NIH test list, validation carved
            from train_val by patient) or ``lists`` (the files in ``lists``).
        lists: ``{"train": path, "val": path, "test": path}`` for ``split: lists``.
        cache: A preprocessing cache folder (``cxreader data cache``) to read instead of the PNGs.
        model: Registered model name. init: ``imagenet`` or ``none``. weights: a local weights file.
        pooling, lse_r: The head's pooling, ``avg`` (CheXNet) or ``lse`` (log-sum-exp with sharpness
            ``lse_r``, Wang et al. 2017), see :mod:`cxreader.models.chexnet`.
        boxes, box_weight, box_space: Box supervision of the class activation maps (Li et al. 2018,
            :mod:`cxreader.training.box_supervision`): a ``BBox_List_2017.csv``-format file (a relative path
            is looked up under ``data`` too; only the training split's boxes are used), the weight of its
            loss term, and the ``N x N`` pixel space of its boxes (0: the images' own pixels). Needs
            ``augment: batch``.
        image_size: Network input size (square). Training crops are drawn with random-resized-crop
            (scale ``crop_scale``) and a small rotation; evaluation resizes the whole image.
        augment: Where training augmentation runs: ``sample`` (each image in a loader worker), ``batch``
            (the loader only copies uint8 images; one batched crop/rotate/jitter on the training device), or
            ``auto`` (``batch`` on accelerators, where loader CPUs are the bottleneck; ``sample`` on CPU).
        epochs, batch_size: Per run; ``batch_size`` is the GLOBAL batch, split across DDP processes.
        lr, weight_decay, betas: Adam (CheXNet: lr 1e-3, betas 0.9/0.999).
        plateau_factor, plateau_patience: ReduceLROnPlateau on validation mean AUROC.
        early_stopping_patience: Epochs without a better validation mean AUROC before stopping (0 = off).
        workers: DataLoader workers per process. device: ``auto``, ``cpu``, ``cuda`` or ``hpu``.
        amp: ``auto`` (bf16 autocast on CUDA where supported, else fp16 with a grad scaler; off on CPU),
            ``off``, ``bf16`` or ``fp16``. channels_last: ``auto`` (on CUDA) / ``on`` / ``off``.
        sync_bn: Synchronise BatchNorm statistics across DDP processes (``auto`` = when world size > 1).
        max_train_batches / max_val_batches: Cap per epoch (0 = all), for smoke runs.
        seed: Seeds the split, the sampler and every augmentation.
        log_every: Progress-bar refresh in steps. synthetic: set when the data is synthetic (labels reports).
        operating_point: The rule that picks each finding's threshold on the calibrated validation
            probabilities at the end of training: ``youden`` (Youden's J, the rule cxreader always used),
            ``f1``, ``sensitivity=X`` or ``specificity=X`` (:mod:`cxreader.evaluation.thresholds`).
        ood_false_alarm_rate: Share of validation images the input gate's out-of-distribution detector,
            fitted at the end of training, refuses (Lee et al. 2018; :mod:`cxreader.inference.gate`).
        ood_train_images: At most this many training images (a seeded subsample) for that detector's mean and
            covariance.
    """

    data: str = ""
    datasets: dict[str, str] = field(default_factory=dict)
    uncertainty: str = "ignore"
    sampling: str = "proportional"
    laterals: bool = False
    split: str = "random"
    lists: dict[str, str] = field(default_factory=dict)
    cache: str = ""
    model: str = "chexnet_densenet121"
    init: str = "imagenet"
    weights: str = ""
    drop_rate: float = 0.0
    pooling: str = "avg"
    lse_r: float = 10.0
    boxes: str = ""
    box_weight: float = 1.0
    box_space: int = 0
    image_size: int = 224
    crop_scale: tuple[float, float] = (0.75, 1.0)
    max_rotation_deg: float = 7.0
    augment: str = "auto"
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    plateau_factor: float = 0.1
    plateau_patience: int = 1
    early_stopping_patience: int = 5
    workers: int = 4
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    sync_bn: str = "auto"
    max_train_batches: int = 0
    max_val_batches: int = 0
    seed: int = 0
    log_every: int = 10
    synthetic: bool = False
    operating_point: str = "youden"
    ood_false_alarm_rate: float = 0.01
    ood_train_images: int = 20000

    def validate(self) -> TrainConfig:
        """Check value ranges; return self."""
        choices = {
            "split": ("random", "official", "lists"),
            "init": ("imagenet", "none"),
            "device": ("auto", "cpu", "cuda", "hpu"),
            "amp": ("auto", "off", "bf16", "fp16"),
            "channels_last": ("auto", "on", "off"),
            "sync_bn": ("auto", "on", "off"),
            "augment": ("auto", "sample", "batch"),
            "pooling": ("avg", "lse"),
            "sampling": SAMPLINGS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}; expected one of {', '.join(allowed)}")
        for name in ("epochs", "batch_size", "image_size", "lr", "lse_r"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.box_weight <= 0 or self.box_space < 0:
            raise ConfigError(
                f"box_weight must be positive and box_space >= 0, got {self.box_weight}, {self.box_space}"
            )
        if not 0.0 < self.ood_false_alarm_rate < 1.0:
            raise ConfigError(f"ood_false_alarm_rate must be in (0, 1), got {self.ood_false_alarm_rate}")
        if self.ood_train_images < 2:
            raise ConfigError(f"ood_train_images must be at least 2, got {self.ood_train_images}")
        if self.split == "lists" and not self.lists:
            raise ConfigError("split=lists needs --list train=FILE --list val=FILE [--list test=FILE]")
        self._validate_datasets()
        return self

    def _validate_datasets(self) -> None:
        if not self.datasets:
            if self.sampling != "proportional":
                raise ConfigError(f"sampling={self.sampling} needs several datasets (--data NAME=DIR ...)")
            return
        if self.data:
            raise ConfigError(
                f"give either data ({self.data}) or datasets ({', '.join(self.datasets)}), not both"
            )
        if self.split == "lists" or self.lists:
            raise ConfigError("split lists are NIH-only; a merged run splits each dataset by patient itself")
        if self.cache:
            raise ConfigError("a preprocessing cache holds one NIH root; a merged run reads the image files")
        empty = [name for name, root in self.datasets.items() if not root]
        if empty:
            raise ConfigError(f"datasets without a root folder: {', '.join(empty)}")

    @property
    def merged(self) -> bool:
        """The run reads ``datasets`` (a harmonised label space), not one NIH root."""
        return bool(self.datasets)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain YAML/JSON values: tuples (``betas``, ``crop_scale``) become lists."""
        values = dataclasses.asdict(self)
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Build a config from a plain dict, refusing unknown keys and coercing types to the field's.

    The :data:`RECORD_KEYS` a checkpoint's saved config adds are left out (they follow from the fields).
    """
    values = {name: value for name, value in values.items() if name not in RECORD_KEYS}
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
    defaults = TrainConfig()
    return TrainConfig(
        **{name: _coerce(name, value, getattr(defaults, name)) for name, value in values.items()}
    )


def _coerce(name: str, value: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return lowered in ("true", "1", "yes", "on")
            return bool(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(type(default[0])(item) for item in items)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ValueError(value)
            return {str(k): str(v) for k, v in value.items()}
        if isinstance(default, int):  # bool is handled above
            if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("+-").isdigit()):
                return int(value)  # exactly, also beyond 2**53 where a float would round
            number = float(value)
            if number != int(number):
                raise ValueError(value)
            return int(number)
        if isinstance(default, float):
            return float(value)
        return str(value) if value is not None else ""
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(
            f"config {name}: cannot use {value!r} (expected {type(default).__name__})"
        ) from None


def resolve_recipe_path(recipe: str | Path) -> Path:
    """A recipe given as a path, or by name from the packaged ``configs/`` (``chexnet``, ``demo``)."""
    path = Path(recipe)
    if path.is_file():
        return path
    packaged = PACKAGE_CONFIG_DIR / f"{Path(recipe).stem}.yaml"
    if packaged.is_file():
        return packaged
    names = ", ".join(sorted(p.stem for p in PACKAGE_CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"{recipe}: recipe not found (a YAML file, or one of: {names})")


def load_config(recipe: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML recipe, then overrides (e.g. from the command line)."""
    values: dict[str, Any] = {}
    if recipe:
        path = resolve_recipe_path(recipe)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a recipe must be a mapping of config keys")
        values.update(loaded)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return config_from_dict(values).validate()


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
