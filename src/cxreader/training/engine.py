"""The training loop: one code path for a single process and for torchrun DDP (any number of processes/nodes).

Recipe (CheXNet, Rajpurkar et al. 2017): BCE with logits over 14 independent outputs, Adam, learning rate
reduced when validation mean AUROC plateaus, early stopping, best checkpoint by validation mean AUROC.

Several datasets (``datasets`` in the config, :mod:`cxreader.evaluation.datasets`): the model predicts the
union of the findings they define, a label a dataset does not give (or an uncertain one under the ``ignore``
policy of Irvin et al. 2019) is NaN and adds neither loss nor gradient (:mod:`cxreader.training.losses`), and
validation AUROC, thresholds and calibration are computed per finding over the images whose label is known.
A finding without positives or negatives in validation is named in a warning and keeps the default
threshold. ``sampling: balanced`` gives each dataset the same share of every epoch
(:mod:`cxreader.training.sampling`).

Distributed details (PyTorch DDP, Li et al., VLDB 2020):

* ``batch_size`` is the global batch; each of N processes takes ``batch_size / N``. Samples come from a
  ``DistributedSampler`` whose permutation depends only on (seed, epoch), so global batch *t* holds the same
  images whatever N is, and augmentation is seeded per sample (see :mod:`cxreader.data.dataset`).
* BatchNorm statistics are reduced over all processes (``sync_bn``), so N processes compute what one would.
* Validation shards the images without padding (rank *r* takes indices r, r+N, …), gathers every rank's
  predictions, and checks that each image is scored exactly once.
* Only rank 0 logs and writes; ``last.pt`` is written atomically every epoch with everything needed to resume
  exactly (model, optimizer, scheduler, epoch, best score, early-stopping counter, RNG states).

At the end of training (:meth:`Trainer.fit_trust`) the best model's validation probabilities and pooled
features, and the pooled features of a training subsample, are computed (sharded over the ranks like
validation), and rank 0 fits the calibration, the operating point and the input gate's out-of-distribution
detector (:mod:`cxreader.training.calibrate`) and rewrites ``best.pt`` with them. Until then, the thresholds
of each epoch's checkpoints are Youden thresholds on the raw probabilities; afterwards ``best.pt``'s are on the
calibrated scale. ``last.pt`` (the resumable state, not the selected model) keeps the raw ones.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from cxreader.config import TrainConfig, save_config
from cxreader.data.chestxray14 import ImageLocator, Split
from cxreader.data.dataset import ChestXrayDataset, collate_samples, image_source
from cxreader.data.transforms import (
    BatchTrainAugment,
    DeferredTrainPreset,
    EvalPreset,
    TrainPreset,
)
from cxreader.errors import CheckpointError, ConfigError, DataError
from cxreader.evaluation.checkpoint_eval import subsample
from cxreader.evaluation.datasets import run_datasets, run_label_space, run_splits, uncertainty_policy
from cxreader.evaluation.metrics import per_class_auroc
from cxreader.evaluation.thresholds import OperatingPointRule, choose_thresholds
from cxreader.files import write_text_atomic
from cxreader.inference.batches import PredictionOutput, predict_batches
from cxreader.inference.runtime import autocast, resolve_amp_dtype, use_channels_last
from cxreader.labels import FINDINGS
from cxreader.models import create_model
from cxreader.models.checkpoint import CheckpointContract, read_checkpoint, save_checkpoint, unwrap
from cxreader.progress import Progress
from cxreader.training import distributed as dist_utils
from cxreader.training.box_supervision import BoxTargets, box_loss
from cxreader.training.calibrate import fit_trust, warn_one_sided_labels
from cxreader.training.distributed import DistInfo
from cxreader.training.losses import masked_bce_with_logits
from cxreader.training.sampling import BalancedDatasetSampler

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run reports."""

    out_dir: Path
    best_epoch: int
    best_val_mean_auroc: float
    epochs_run: int
    history: list[dict[str, Any]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    """The generators' states in types ``torch.load(weights_only=True)`` accepts: NumPy's key array is kept as
    a tensor, so that ``last.pt`` loads for predict and evaluate like ``best.pt``."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (
            name,
            torch.from_numpy(keys.astype(np.int64)),
            int(position),
            int(has_gauss),
            float(cached),
        ),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    if isinstance(keys, torch.Tensor):
        keys = keys.numpy().astype(np.uint32)
    np.random.set_state((name, keys, *rest))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Holds the state of one run; :meth:`fit` runs it to the end (or to early stopping)."""

    def __init__(self, config: TrainConfig, out_dir: str | Path, *, resume: bool = False, info: DistInfo):
        self.config = config.validate()
        self.operating_rule = OperatingPointRule.parse(config.operating_point)  # refused before training
        self.out_dir = Path(out_dir)
        self.info = info
        self.device = info.device
        self.amp_dtype = resolve_amp_dtype(config.amp, self.device)
        self.channels_last = use_channels_last(config.channels_last, self.device)
        if config.batch_size % info.world_size:
            raise ConfigError(
                f"batch_size {config.batch_size} (global) is not divisible by {info.world_size} processes"
            )
        self.local_batch = config.batch_size // info.world_size
        last = self.out_dir / "last.pt"
        if last.exists() and not resume:
            raise ConfigError(f"{last} exists: pass --resume to continue that run, or choose another --out")
        if resume and not last.exists():
            raise CheckpointError(f"{last}: nothing to resume (no last.pt in {self.out_dir})")

        seed_everything(config.seed)
        self.label_space = run_label_space(config)
        self.uncertainty = uncertainty_policy(config)  # a malformed policy is refused before any reading
        self.splits = run_splits(config, label_space=self.label_space)
        for needed in ("train", "val"):
            if needed not in self.splits or len(self.splits[needed]) == 0:
                where = config.data or ", ".join(config.datasets.values()) or "lists"
                raise DataError(Path(where), f"the {needed!r} split is empty or missing")
        train_split, val_split = self.splits["train"], self.splits["val"]
        preset = TrainPreset(
            image_size=config.image_size,
            crop_scale=config.crop_scale,
            max_rotation_deg=config.max_rotation_deg,
        )
        augment = config.augment
        if augment == "auto":  # on accelerators the batch is augmented there; on a CPU, in loader workers
            augment = "sample" if self.device.type == "cpu" else "batch"
        self.batch_augment = BatchTrainAugment(preset) if augment == "batch" else None
        self.train_set = ChestXrayDataset(
            image_source(config, train_split),
            train_split.labels,
            DeferredTrainPreset(preset=preset) if self.batch_augment is not None else preset,
            seed=config.seed,
        )
        self.box_targets = self._box_targets(train_split)
        self.val_set = ChestXrayDataset(
            image_source(config, val_split), val_split.labels, EvalPreset(image_size=config.image_size)
        )
        # The training images as validation sees them (no augmentation), for the out-of-distribution detector.
        self.train_eval_set = ChestXrayDataset(
            image_source(config, train_split), train_split.labels, EvalPreset(image_size=config.image_size)
        )
        self.train_sampler = self._train_sampler(train_split)
        self.train_loader = self._loader(self.train_set, self.train_sampler)
        self.val_loader = self._loader(self.val_set, range(info.rank, len(self.val_set), info.world_size))

        self.model_kwargs = {"drop_rate": config.drop_rate}
        if config.pooling != "avg":  # avg checkpoints keep the kwargs of every earlier release
            self.model_kwargs.update(pooling=config.pooling, lse_r=config.lse_r)
        if self.label_space != FINDINGS:  # so do checkpoints of the 14 findings
            self.model_kwargs.update(num_classes=len(self.label_space))
        model = create_model(
            config.model, init=config.init, weights=config.weights or None, **self.model_kwargs
        )
        if info.is_distributed and config.sync_bn != "off":
            model = dist_utils.convert_batchnorm_for_ddp(model, self.device)
        model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = torch.optim.Adam(
            model.parameters(),
            lr=config.lr,
            betas=config.betas,
            weight_decay=config.weight_decay,
            fused=self.device.type == "cuda",
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=config.plateau_factor, patience=config.plateau_patience
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.epoch = 0
        self.best_score = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        self.skipped: set[str] = set()
        if resume:
            self._load_training_state(last)
        self.ddp_model = (
            DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)
            if info.is_distributed
            else model
        )
        self.writer = None
        if info.is_primary:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.out_dir / "config.yaml")
            if resume:  # a kill between the metrics line and last.pt must not leave a duplicate epoch line
                write_text_atomic(
                    self.out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history)
                )
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))
            self._log_data()

    def _train_sampler(self, train_split: Split) -> DistributedSampler | BalancedDatasetSampler:
        """Every training image once per epoch (``proportional``), or each dataset an equal share of the
        epoch (``balanced``); both a function of (seed, epoch), sharded over the ranks."""
        info, config = self.info, self.config
        if config.sampling == "balanced":
            return BalancedDatasetSampler(
                train_split.datasets, num_replicas=info.world_size, rank=info.rank, seed=config.seed
            )
        return DistributedSampler(
            self.train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed
        )

    def _log_data(self) -> None:
        """The training log's account of the data: datasets, label space, uncertainty, sampling, and the
        findings validation cannot score."""
        config = self.config
        if config.merged:
            train = self.splits["train"]
            sizes = ", ".join(
                f"{name} {int((train.datasets == name).sum())}" for name in run_datasets(config)
            )
            logger.info(
                "merged training on %d datasets (training images: %s); %d findings (%s); uncertain labels: "
                "%s; %s",
                len(config.datasets),
                sizes,
                len(self.label_space),
                ", ".join(self.label_space),
                config.uncertainty,
                self.train_sampler.describe()
                if isinstance(self.train_sampler, BalancedDatasetSampler)
                else "proportional sampling: every training image once per epoch",
            )
        warn_one_sided_labels(self.splits["val"].labels, self.label_space, where="validation")

    def contract_config(self) -> dict[str, Any]:
        """The training config a checkpoint records: the fields, and for a merged run the label space and the
        parsed uncertainty policy (:data:`cxreader.config.RECORD_KEYS`)."""
        recorded = self.config.to_dict()
        if self.config.merged:
            recorded.update(label_space=list(self.label_space), uncertainty_policy=self.uncertainty.to_json())
        return recorded

    def _loader(self, dataset: ChestXrayDataset, sampler: Iterable[int]) -> DataLoader:
        """A loader of this process's ``local_batch`` images at a time, in ``sampler``'s order."""
        workers = self.config.workers
        return DataLoader(
            dataset,
            batch_size=self.local_batch,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate_samples,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            drop_last=False,
        )

    def _box_targets(self, train_split: Split) -> BoxTargets | None:
        """The training split's box masks when the config asks for box supervision (Li et al. 2018)."""
        config = self.config
        if not config.boxes:
            return None
        if config.merged:
            raise ConfigError("box supervision (boxes) reads NIH boxes: train on one NIH root (--data DIR)")
        if self.batch_augment is None:
            raise ConfigError(
                "box supervision (boxes) needs augment: batch, which warps the boxes with the images"
            )
        path = Path(config.boxes)
        if not path.is_file() and not path.is_absolute() and config.data:
            path = Path(config.data) / config.boxes
        if not path.is_file():
            raise ConfigError(f"{config.boxes}: box file not found (also looked under {config.data or '.'})")
        if not config.data and not config.box_space:
            raise ConfigError("box supervision needs data (the image files' sizes) or box_space")
        image_path_of = ImageLocator(config.data).locate if config.data else None
        targets = BoxTargets.from_file(path, train_split.images, image_path_of, box_space=config.box_space)
        if self.info.is_primary:
            logger.info("box supervision: %d boxes on %d training images", targets.boxes, len(targets))
        return targets

    # ----------------------------------------------------------------------------------------------- state
    def _training_state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "rng": get_rng_state(),
            "world_size": self.info.world_size,
        }

    def _load_training_state(self, path: Path) -> None:
        payload = read_checkpoint(path, with_training_state=True)
        state = payload.get("training_state")
        if state is None:
            raise CheckpointError(f"{path}: has no training state to resume from")
        saved_model = payload["contract"]["model_name"]
        if saved_model != self.config.model:
            raise CheckpointError(f"{path}: was trained as {saved_model}, not {self.config.model}")
        unwrap(self.model).load_state_dict(payload["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.best_score = float(state["best_score"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        self.history = list(state["history"])
        set_rng_state(state["rng"])
        if self.info.is_primary:
            logger.info(
                "resumed %s at epoch %d (best %.4f at epoch %d)",
                path,
                self.epoch,
                self.best_score,
                self.best_epoch,
            )

    # ------------------------------------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        config = self.config
        while self.epoch < config.epochs:
            epoch = self.epoch + 1
            started = time.perf_counter()
            train_loss, train_images = self._train_one_epoch(epoch)
            train_seconds = time.perf_counter() - started
            val = self._validate()
            val_auroc = per_class_auroc(val["labels"], val["probs"])
            val_mean = float(np.nanmean(val_auroc)) if np.isfinite(val_auroc).any() else float("nan")
            score = val_mean if math.isfinite(val_mean) else -val["loss"]
            self.scheduler.step(score)
            self.epoch = epoch
            improved = score > self.best_score
            if improved:
                self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
            else:
                self.bad_epochs += 1
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val["loss"],
                "val_mean_auroc": val_mean,
                "val_auroc": {
                    name: float(v) if math.isfinite(v) else None
                    for name, v in zip(self.label_space, val_auroc, strict=True)
                },
                "val_images_scored": int(len(val["indices"])),
                "lr": self.optimizer.param_groups[0]["lr"],
                "train_images": train_images,
                "train_images_per_s": train_images / max(train_seconds, 1e-9),
                "epoch_seconds": time.perf_counter() - started,
                "skipped_images": sorted(self.skipped),
                "world_size": self.info.world_size,
            }
            if config.merged:
                record["val_mean_auroc_by_dataset"] = self._val_auroc_by_dataset(val)
            self.history.append(record)
            if self.info.is_primary:
                self._write_epoch(record, val, improved)
            if config.early_stopping_patience and self.bad_epochs >= config.early_stopping_patience:
                if self.info.is_primary:
                    logger.info(
                        "early stopping: no better validation mean AUROC for %d epochs", self.bad_epochs
                    )
                break
        dist_utils.barrier(self.info)
        self.fit_trust()
        if self.writer is not None:
            self.writer.close()
        return TrainResult(self.out_dir, self.best_epoch, self.best_score, self.epoch, self.history)

    def _val_auroc_by_dataset(self, val: dict[str, Any]) -> dict[str, float | None]:
        """Validation mean AUROC of each dataset of a merged run, over the findings it labels."""
        datasets = self.splits["val"].datasets[val["indices"]]
        result: dict[str, float | None] = {}
        for name in run_datasets(self.config):
            rows = datasets == name
            aurocs = per_class_auroc(val["labels"][rows], val["probs"][rows]) if rows.any() else np.array([])
            result[name] = float(np.nanmean(aurocs)) if np.isfinite(aurocs).any() else None
        return result

    def _train_one_epoch(self, epoch: int) -> tuple[float, int]:
        config = self.config
        self.train_sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        self.ddp_model.train()
        total_batches = len(self.train_loader)
        if config.max_train_batches:
            total_batches = min(total_batches, config.max_train_batches)
        progress = Progress(
            total_batches,
            desc=f"epoch {epoch}/{config.epochs}",
            unit="batch",
            leave=False,
            enabled=self.info.is_primary,
        )
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        images_seen = 0
        started = time.perf_counter()
        for step, batch in enumerate(self.train_loader):
            if step >= total_batches:
                break
            self._note_errors(batch["errors"])
            if "image" not in batch:
                continue
            images = batch["image"].to(self.device, non_blocking=True)
            labels = batch["labels"].to(self.device, non_blocking=True)
            boxes = None
            if self.batch_augment is not None:
                params = batch["augment"].to(self.device, non_blocking=True)
                if self.box_targets is not None:
                    boxes = self.box_targets.batch(batch["id"], self.device)
                    if boxes is not None:
                        boxes = (self.batch_augment.warp(boxes[0], params, images.shape[-2:]), boxes[1])
                images = self.batch_augment(images, params)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.amp_dtype):
                # With box supervision every step takes the same graph (the logits are pooled from the maps),
                # whether or not its batch has boxes, so DDP ranks stay in step.
                if self.box_targets is not None:
                    logits, maps = self.ddp_model(images, return_maps=True)
                else:
                    logits = self.ddp_model(images)
            loss = masked_bce_with_logits(logits, labels)
            if boxes is not None:
                loss = loss + config.box_weight * box_loss(maps, *boxes)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            loss_sum += loss.detach().double() * images.shape[0]
            images_seen += images.shape[0]
            progress.update(1)
            if self.info.is_primary and step % max(config.log_every, 1) == 0:
                rate = images_seen * self.info.world_size / max(time.perf_counter() - started, 1e-9)
                progress.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{rate:.1f}")
        progress.close()
        totals = dist_utils.all_reduce_sum(self.info, [float(loss_sum.item()), float(images_seen)])
        return totals[0] / max(totals[1], 1.0), int(totals[1])

    def _note_errors(self, errors: list[str]) -> None:
        for error in errors:
            if error not in self.skipped:
                self.skipped.add(error)
                logger.warning("skipped unreadable image: %s", error)

    def _validate(self, *, with_features: bool = False) -> dict[str, Any]:
        dist_utils.broadcast_module_state(self.info, unwrap(self.model))
        merged = self._predict_sharded(self.val_loader, self.config.max_val_batches, with_features)
        labels = self.val_set.labels.numpy()[merged.indices]
        with torch.no_grad():
            logits = torch.logit(torch.from_numpy(merged.probs).double().clamp(1e-7, 1 - 1e-7))
            loss = float(masked_bce_with_logits(logits, torch.from_numpy(labels).double()))
        return {
            "indices": merged.indices,
            "probs": merged.probs,
            "labels": labels,
            "loss": loss,
            "features": merged.features,
        }

    def _predict_sharded(self, loader: DataLoader, max_batches: int, with_features: bool) -> PredictionOutput:
        """This rank's share of ``loader`` scored, gathered from every rank, merged in index order."""
        output = predict_batches(
            unwrap(self.model),
            loader,
            device=self.device,
            amp_dtype=self.amp_dtype,
            channels_last=self.channels_last,
            max_batches=max_batches,
            with_features=with_features,
        )
        self._note_errors(output.errors)
        gathered = dist_utils.all_gather_objects(self.info, (output.indices, output.probs, output.features))
        return merge_shards([PredictionOutput(i, p, features=f) for i, p, f in gathered])

    # ----------------------------------------------------------------------------------- end of training
    def fit_trust(self) -> None:
        """Fit calibration, operating point and out-of-distribution detector for ``best.pt`` (module docstring).

        Runs on every rank (the forward passes are sharded); rank 0 reads ``best.pt``, broadcasts its weights,
        fits and rewrites it. Skipped when ``best.pt`` already has a calibration (a resumed finished run).
        """
        best = self.out_dir / "best.pt"
        payload = None
        if self.info.is_primary and best.exists():
            payload = read_checkpoint(best)
            if payload["contract"].get("calibration"):
                payload = None
        if not dist_utils.all_gather_objects(self.info, payload is not None)[0]:
            return
        config = self.config
        if payload is not None:
            unwrap(self.model).load_state_dict(payload["state_dict"])
        started = time.perf_counter()
        val = self._validate(with_features=True)  # broadcasts rank 0's (the best) weights first
        val_seconds = time.perf_counter() - started
        started = time.perf_counter()
        chosen = subsample(len(self.train_eval_set), config.ood_train_images, config.seed)
        loader = self._loader(self.train_eval_set, chosen[self.info.rank :: self.info.world_size].tolist())
        train = self._predict_sharded(loader, 0, with_features=True)
        train_seconds = time.perf_counter() - started
        if self.info.is_primary:
            fit = fit_trust(
                val["probs"],
                val["labels"],
                val_features=val["features"],
                train_features=train.features,
                rule=self.operating_rule,
                false_alarm_rate=config.ood_false_alarm_rate,
                seed=config.seed,
                findings=self.label_space,
            )
            fit.seconds.update(validation_pass=val_seconds, train_pass=train_seconds)
            contract = fit.apply_to(CheckpointContract.from_dict(payload["contract"]), fitted_by="training")
            save_checkpoint(best, model=self.model, contract=contract)
            logger.info(
                "end of training: calibration, operating point (%s) and out-of-distribution detector written "
                "to %s; validation pass %.1f s (%d images), training subsample pass %.1f s (%d images), "
                "fits %.1f s; validation mean ECE %s -> %s",
                self.operating_rule,
                best,
                val_seconds,
                len(val["probs"]),
                train_seconds,
                len(train.probs),
                sum(fit.seconds[key] for key in ("calibration", "operating_point", "ood")),
                _ece_text(fit.summary("training")["val_mean_ece_raw"]),
                _ece_text(fit.summary("training")["val_mean_ece_calibrated"]),
            )
        dist_utils.barrier(self.info)

    def _write_epoch(self, record: dict[str, Any], val: dict[str, Any], improved: bool) -> None:
        with open(self.out_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key in ("train_loss", "val_loss", "val_mean_auroc", "lr", "train_images_per_s"):
                if record[key] is not None and math.isfinite(record[key]):
                    self.writer.add_scalar(key, record[key], record["epoch"])
            for name, value in record["val_auroc"].items():
                if value is not None:
                    self.writer.add_scalar(f"val_auroc/{name}", value, record["epoch"])
            self.writer.flush()
        contract = CheckpointContract(
            model_name=self.config.model,
            model_kwargs=self.model_kwargs,
            labels=self.label_space,
            input_size=self.config.image_size,
            thresholds=tuple(float(t) for t in choose_thresholds(val["labels"], val["probs"])),
            synthetic=self.config.synthetic,
            config=self.contract_config(),
            metrics={key: record[key] for key in ("val_mean_auroc", "val_loss", "val_auroc")},
            epoch=self.epoch,
        )
        if improved:
            save_checkpoint(self.out_dir / "best.pt", model=self.model, contract=contract)
        # last.pt goes last: once it says epoch E, best.pt already reflects epoch E.
        save_checkpoint(
            self.out_dir / "last.pt",
            model=self.model,
            contract=contract,
            training_state=self._training_state(),
        )
        logger.info(
            "epoch %d: train loss %.4f, val loss %.4f, val mean AUROC %.4f%s, %.1f img/s",
            record["epoch"],
            record["train_loss"],
            record["val_loss"],
            record["val_mean_auroc"],
            " (best)" if improved else "",
            record["train_images_per_s"],
        )


def _ece_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def merge_shards(shards: list[PredictionOutput]) -> PredictionOutput:
    """Concatenate per-rank predictions (and features, when every shard has them) in index order, refusing any
    index scored twice."""
    indices = np.concatenate([shard.indices for shard in shards])
    probs = np.concatenate([shard.probs for shard in shards])
    order = np.argsort(indices, kind="stable")
    features = None
    if all(shard.features is not None for shard in shards):
        with_rows = [shard.features for shard in shards if len(shard.features)]
        features = np.concatenate(with_rows)[order] if with_rows else np.zeros((0, 0), dtype=np.float32)
    indices, probs = indices[order], probs[order]
    repeated = indices[1:][indices[1:] == indices[:-1]]
    if len(repeated):
        raise RuntimeError(f"validation scored image index {int(repeated[0])} more than once")
    return PredictionOutput(indices, probs, features=features)


def train(config: TrainConfig, out_dir: str | Path, *, resume: bool = False) -> TrainResult:
    """Train a model; the same call works in a single process and under torchrun."""
    info = dist_utils.init_distributed(config.device)
    try:
        torch.set_float32_matmul_precision("high")
        return Trainer(config, out_dir, resume=resume, info=info).fit()
    finally:
        dist_utils.cleanup_distributed()
