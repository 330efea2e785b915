"""Training with the paper's recipe (§4, §5): resumable, observable, distributed.

One run directory holds everything:

    RUN/config.toml        the resolved configuration
    RUN/run.json           reading, versions, seed, world size, store, classes
    RUN/metrics.jsonl      one JSON object per log line (kind: step | epoch | event)
    RUN/tensorboard/       TensorBoard event files
    RUN/checkpoints/last.pt  the newest checkpoint (atomic); best.pt: lowest val top-1
    RUN/model.safetensors  final weights (+ RUN/model.json: the spec)

Under ``torchrun`` every rank trains on its slice of each global batch with
DistributedDataParallel (NCCL on GPUs, gloo on the CPU); metrics are reduced
across ranks and only rank 0 writes.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from alexnet.inference.trained import FORMAT, KIND, check_compatible, read_checkpoint, strip_module_prefix
from alexnet.training.checkpoint import atomic_save, rng_state, set_rng_state
from alexnet.config import Config, apply_overrides, config_from_dict, to_toml
from alexnet.data.batches import Augmentation, EvalBatches, TrainBatches, loader
from alexnet.data.store import Store
from alexnet.errors import UserError
from alexnet.inference.scoring import topk_errors
from alexnet.net.model import AlexNet, ModelSpec, build_model
from alexnet.runtime import all_sum, choose_device, device_kind, distributed, tune_cpu_allocator, versions
from alexnet.training.health import HealthMonitor
from alexnet.training.metrics import MetricsLog
from alexnet.training.optim import PaperSGD, param_groups
from alexnet.training.schedule import make_schedule


# --------------------------------------------------------------------------- the run


@dataclass
class TrainState:
    epoch: int = 0  # epoch in progress
    batch: int = 0  # next batch of that epoch
    step: int = 0  # optimisation steps so far
    best_top1: float = float("inf")
    done: bool = False
    stop_reason: str = ""


def _spec(config: Config, store: Store) -> ModelSpec:
    m = config.model
    num_classes = m.num_classes or store.num_classes
    if num_classes != store.num_classes:
        raise UserError(f"model.num_classes is {num_classes} but store {store.path} has {store.num_classes} classes")
    if config.data.crop > store.image_size:
        raise UserError(f"data.crop {config.data.crop} is larger than the store's {store.image_size}x{store.image_size} images")
    return ModelSpec(num_classes=num_classes, reading=m.reading, variants=tuple(m.variants),
                     input_size=config.data.crop, width=m.width, fc_units=m.fc_units, init=m.init,
                     dropout=m.dropout)


def schedule_from_config(config: Config):
    """The §5 schedule a config asks for (``plateau``, ``fixed`` or the 2012 run's ``code2012``)."""
    s, lr = config.schedule, config.optim.lr
    if s.kind == "plateau":
        return make_schedule("plateau", lr=lr, divisor=s.divisor, max_reductions=s.max_reductions,
                             patience=s.patience, min_improvement=s.min_improvement, max_epochs=s.max_epochs)
    if s.kind == "fixed":
        return make_schedule("fixed", lr=lr, drop_epochs=tuple(s.drop_epochs), divisor=s.divisor,
                             stop_epoch=s.max_epochs)
    return make_schedule(s.kind, lr=lr)


def _val_split_name(config: Config, store: Store) -> str | None:
    names = store.splits()
    for name in (config.data.val_split, "val", "test"):
        if name in names and name != config.data.train_split:
            return name
    return None


class Trainer:
    """Builds everything a run needs from a config and a run directory, then trains."""

    def __init__(self, config: Config, run_dir: Path, *, resume: bool = False, progress: bool = True) -> None:
        self.config, self.run_dir, self.progress = config, Path(run_dir), progress
        tune_cpu_allocator()
        if config.run.threads:
            torch.set_num_threads(config.run.threads)
        self.ctx = distributed(device_kind(config.run.device))
        try:
            self._build(resume)
        except BaseException:
            if self.ctx.owns_group and dist.is_initialized():
                dist.destroy_process_group()  # local, no collective: the other ranks may never arrive
            raise

    def _build(self, resume: bool) -> None:
        """Everything a run needs: device, store, network, optimiser, schedule, run directory."""
        config = self.config
        try:
            self.device = choose_device(config.run.device)
        except UserError as err:
            raise UserError(err.message, key="run.device") from None
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True
        if config.run.amp not in ("off", "bf16"):
            raise UserError(f"unknown value {config.run.amp!r}; allowed: off, bf16", key="run.amp")
        if config.optim.batch_size % self.ctx.world:
            raise UserError(f"{config.optim.batch_size} does not split evenly over {self.ctx.world} processes",
                            key="optim.batch_size")
        if not config.data.store:
            raise UserError("is not set: name a store written by `alexnet prepare`", key="data.store")
        self.store = Store(config.data.store)
        self.train_split = self.store.split(config.data.train_split)
        val_name = _val_split_name(config, self.store)
        self.val_split = self.store.split(val_name) if val_name else None
        if len(self.train_split) < config.optim.batch_size:
            raise UserError(
                f"split {config.data.train_split!r} has {len(self.train_split)} images, fewer than one batch of "
                f"{config.optim.batch_size}; lower optim.batch_size"
            )
        self.spec = _spec(config, self.store)
        self.augment = Augmentation.from_config(config.data, self.store.stats(), self.spec.reading)
        if config.data.augment_device not in ("cpu", "device"):
            raise UserError(f"unknown value {config.data.augment_device!r}; allowed: cpu, device",
                            key="data.augment_device")

        torch.manual_seed(config.run.seed + self.ctx.rank)
        self.model: AlexNet = build_model(self.spec)
        self.model.to(self.device)
        if config.run.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.schedule = schedule_from_config(config)
        self.optimizer = PaperSGD(param_groups(self.model, self.spec.reading, config.optim.lr,
                                               config.optim.weight_decay, config.optim.momentum,
                                               per_layer=bool(self.schedule.events)))
        self.state = TrainState()
        if resume:
            self._resume()
        else:
            self._create_run_dir_on_main()
        self.net: nn.Module = self.model
        if self.ctx.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if config.run.compile:
            # the compiled wrapper shares self.model's parameters; checkpoints keep reading self.model
            self.net = torch.compile(self.net)
        self._follow_schedule()
        self.log = MetricsLog(self.run_dir, self.ctx.main)
        self.health = HealthMonitor(self.spec.num_classes, config.run.health_window)
        decides = self.val_split.name if self.val_split is not None else f"{config.data.train_split} (training error)"
        if decides != config.data.val_split and self.ctx.main:  # §5 decides on the validation error
            print(f"note: the schedule decides on split {decides!r}, not {config.data.val_split!r}", file=sys.stderr)
        self.log.write({"kind": "event", "event": "schedule_split", "split": decides, "step": self.state.step})

    def _follow_schedule(self) -> None:
        """The schedule's rates and hand events for the epoch about to run (idempotent: also on resume)."""
        noise = self.schedule.apply_events(self.state.epoch, self.optimizer)
        self.schedule.apply(self.optimizer)
        if self.augment.pca and not noise:
            self.augment = replace(self.augment, pca=False)

    # ----------------------------------------------------------------- run directory

    def _create_run_dir_on_main(self) -> None:
        """Rank 0 creates the run directory; a user error there reaches every rank (no rank left waiting)."""
        error = None
        if self.ctx.main:
            try:
                self._create_run_dir()
            except UserError as err:
                error = str(err)
        if self.ctx.world > 1:
            box = [error]
            dist.broadcast_object_list(box, src=0)  # also the barrier: no rank reads the directory before it exists
            error = box[0]
        if error is not None:
            raise UserError(error)

    def _create_run_dir(self) -> None:
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise UserError(f"run directory {self.run_dir} already exists and is not empty; "
                            f"continue it with `alexnet train --resume {self.run_dir}` or choose another --out")
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.toml").write_text(to_toml(self.config))
        info = {
            "reading": self.spec.reading,
            "model_spec": self.spec.to_dict(),
            "seed": self.config.run.seed,
            "world_size": self.ctx.world,
            "device": str(self.device),
            "store": str(Path(self.config.data.store).resolve()),
            "classes": self.store.classes,
            "versions": versions(),
            "command": sys.argv,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        (self.run_dir / "run.json").write_text(json.dumps(info, indent=2))

    def checkpoint_dict(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "format": FORMAT,
            "model_spec": self.spec.to_dict(),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "state": dict(self.state.__dict__),
            "rng": rng_state(),
            "config": self.config.to_dict(),
            "classes": [list(c) for c in self.store.classes],
            # so that eval, predict and export work after the training store is gone
            "mean_image": torch.from_numpy(np.asarray(self.store.stats().mean_image, dtype=np.float32)),
        }

    def save_checkpoint(self, name: str = "last.pt") -> None:
        if self.ctx.main:
            atomic_save(self.checkpoint_dict(), self.run_dir / "checkpoints" / name)

    def _resume(self) -> None:
        data = read_checkpoint(self.run_dir / "checkpoints" / "last.pt")
        spec = ModelSpec.from_dict(data["model_spec"])
        if spec != self.spec:
            raise UserError(f"{data['path']}: checkpoint was trained as {spec}, but the config now builds {self.spec}")
        state = strip_module_prefix(data["model"])
        check_compatible(self.model, state, data["path"])
        self.model.load_state_dict(state)
        self.optimizer.load_state_dict(data["optimizer"])
        self.schedule.load_state_dict(data["schedule"])
        self.state = TrainState(**data["state"])
        set_rng_state(data["rng"])
        if self.ctx.rank:  # each rank had its own dropout stream; keep them apart
            torch.manual_seed(self.config.run.seed + self.ctx.rank + 7919 * self.state.step)

    # ----------------------------------------------------------------- training

    def _to_device(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.config.run.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _autocast(self):
        if self.config.run.amp == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=self.device.type, enabled=False)

    def train_epoch(self, epoch: int) -> dict[str, float] | None:
        """Run the rest of ``epoch``; returns the epoch's train metrics, or None if stopped early."""
        cfg = self.config
        on_device = cfg.data.augment_device == "device"
        dataset = TrainBatches(
            self.train_split, batch_size=cfg.optim.batch_size, seed=cfg.run.seed, epoch=epoch,
            augment=self.augment, rank=self.ctx.rank, world=self.ctx.world, raw=on_device,
        )
        dl = loader(dataset, workers=cfg.data.workers, start=self.state.batch, pin_memory=self.device.type == "cuda")
        bar = None
        if self.ctx.main and self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(dataset), initial=self.state.batch, desc=f"epoch {epoch + 1}", unit="batch",
                       dynamic_ncols=True, leave=True, file=sys.stderr)
        self.net.train()
        sums = np.zeros(3)  # loss * n, top-1 errors, n
        window = np.zeros(4)  # same + data wait seconds, since the last log line
        t_window = time.perf_counter()
        t_wait = time.perf_counter()
        stopped = False
        for i, (x, y) in enumerate(dl, start=self.state.batch):
            wait = time.perf_counter() - t_wait
            x, y = self._to_device(x), y.to(self.device, non_blocking=True)
            if on_device:  # uint8 batch on the GPU, augmented there as a whole
                x = self.augment.train(x, dataset.draws(i))
                if cfg.run.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                logits = self.net(x)
                loss = nn.functional.cross_entropy(logits.float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            n = y.shape[0]
            errors = topk_errors(logits.detach(), y, (1,))[0]
            loss_value = float(loss.detach())
            if self.ctx.world > 1:  # every rank must take the same decision, or the others would hang
                loss_value = all_sum([loss_value], self.ctx, self.device)[0] / self.ctx.world
            self.health.check(loss_value, self.state.step + 1)
            sums += (loss_value * n, errors, n)
            window += (loss_value * n, errors, n, wait)
            self.state.step += 1
            self.state.batch = i + 1
            if bar is not None:
                bar.update(1)
            if self.state.step % max(1, cfg.run.log_every) == 0 or self.state.batch == len(dataset):
                loss_sum, err_sum, count = all_sum(window[:3].tolist(), self.ctx, self.device)
                elapsed = time.perf_counter() - t_window
                record = {
                    "kind": "step", "epoch": epoch + 1, "step": self.state.step,
                    "loss": loss_sum / count, "train_top1_error": err_sum / count,
                    "lr": self.schedule.current_lr, "images_per_s": count / max(elapsed, 1e-9),
                    "data_wait": float(window[3] / max(elapsed, 1e-9)),
                }
                self.log.write(record, self.state.step)
                if bar is not None:
                    bar.set_postfix(loss=f"{record['loss']:.3f}", err=f"{record['train_top1_error']:.3f}",
                                    lr=f"{record['lr']:.0e}", ips=f"{record['images_per_s']:.0f}",
                                    wait=f"{100 * record['data_wait']:.0f}%")
                window[:] = 0
                t_window = time.perf_counter()
            every = cfg.run.checkpoint_every
            if every and self.state.step % every == 0 and self.state.batch < len(dataset):
                self.save_checkpoint()
            if cfg.run.max_steps and self.state.step >= cfg.run.max_steps:
                stopped = True
                break
            t_wait = time.perf_counter()
        if bar is not None:
            bar.close()
        if stopped and self.state.batch < len(dataset):
            return None
        loss_sum, err_sum, count = all_sum(sums.tolist(), self.ctx, self.device)
        if count == 0:
            return {"train_loss": float("nan"), "train_top1_error": float("nan")}
        return {"train_loss": loss_sum / count, "train_top1_error": err_sum / count}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Top-1 and top-5 error with the centre patch (§4.1) on the held-out split, every image once."""
        if self.val_split is None:
            return {}
        self.net.eval()
        dataset = EvalBatches(self.val_split, batch_size=self.config.optim.batch_size, rank=self.ctx.rank,
                              world=self.ctx.world, augment=self.augment, patches="centre")
        totals = np.zeros(3)
        for x, y, _ in loader(dataset, workers=self.config.data.workers, pin_memory=self.device.type == "cuda"):
            x, y = self._to_device(x), y.to(self.device)
            with self._autocast():
                logits = self.net(x)
            e1, e5 = topk_errors(logits.float(), y)
            totals += (e1, e5, y.shape[0])
        e1, e5, n = all_sum(totals.tolist(), self.ctx, self.device)
        return {"val_top1_error": e1 / n, "val_top5_error": e5 / n, "val_images": int(n)}

    def fit(self) -> TrainState:
        """Train until the schedule says stop (or ``run.max_steps``); resumable at any point."""
        cfg = self.config
        clean = False  # an exception leaves it False: no collective in close_distributed
        try:
            while not self.state.done:
                if cfg.run.max_steps and self.state.step >= cfg.run.max_steps:
                    break  # e.g. resumed at its budget: not one step more
                epoch = self.state.epoch
                t0 = time.perf_counter()
                train_metrics = self.train_epoch(epoch)
                if train_metrics is None:  # max_steps reached inside the epoch
                    self.save_checkpoint()
                    self.log.write({"kind": "event", "event": "paused", "step": self.state.step,
                                    "epoch": epoch + 1, "batch": self.state.batch})
                    break
                val = self.validate()
                lr_used = self.schedule.current_lr
                error = val.get("val_top1_error", train_metrics["train_top1_error"])
                decision = self.schedule.step(epoch + 1, error)
                record = {"kind": "epoch", "epoch": epoch + 1, "step": self.state.step, "lr": lr_used,
                          "seconds": time.perf_counter() - t0, **train_metrics, **val}
                self.log.write(record, epoch + 1)
                if self.ctx.main and self.progress:
                    shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items()
                                      if isinstance(v, float) and k not in ("lr", "seconds"))
                    print(f"epoch {epoch + 1}: {shown}, lr {lr_used:.0e}, {record['seconds']:.0f}s", file=sys.stderr)
                self.state.epoch, self.state.batch = epoch + 1, 0
                self._follow_schedule()
                for event in decision.events:
                    self.log.write({"kind": "event", "event": "hand_event", "what": event.describe(), "epoch": epoch + 1})
                if decision.stop:
                    self.state.done, self.state.stop_reason = True, decision.reason
                improved = error < self.state.best_top1
                if improved:
                    self.state.best_top1 = error
                self.save_checkpoint()
                if improved:
                    self.save_checkpoint("best.pt")
                if cfg.run.max_steps and self.state.step >= cfg.run.max_steps and not self.state.done:
                    break
            if self.state.done and self.ctx.main:
                self.export_weights()
                self.log.write({"kind": "event", "event": "finished", "reason": self.state.stop_reason,
                                "step": self.state.step, "epoch": self.state.epoch})
            clean = True
        finally:
            self.log.close()
            self.close_distributed(clean=clean)
        return self.state

    def close_distributed(self, *, clean: bool) -> None:
        """Tear down DDP while the interpreter is fully alive (no-op for one process).

        DDP's reducer holds the process group, and gloo's worker threads hold finished work with
        tensors in it; left to interpreter shutdown, their destruction can abort the process
        (SIGABRT after every file is written). On a clean end the ranks first meet, so that no rank
        leaves while rank 0 still writes checkpoints and weights; on an error there is no collective
        (the other ranks may never arrive).
        """
        if self.ctx.world == 1:
            return
        if clean:
            dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.net = self.model
        gc.collect()  # DDP's hooks form reference cycles: free the reducer now, not at shutdown
        if clean and self.ctx.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    def export_weights(self) -> None:
        """Final weights as safetensors plus the spec that rebuilds the network."""
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(tensors, str(self.run_dir / "model.safetensors"))
        (self.run_dir / "model.json").write_text(json.dumps({"model_spec": self.spec.to_dict(),
                                                             "classes": self.store.classes}, indent=2))


def load_run_config(run_dir: Path, overrides: list[str] | None = None) -> Config:
    """The config of an existing run (from its last checkpoint), with optional overrides."""
    data = read_checkpoint(Path(run_dir) / "checkpoints" / "last.pt")
    return apply_overrides(config_from_dict(data["config"]), overrides)


def train(config: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = True) -> TrainState:
    """Train (or resume) a run; the library entry point behind ``alexnet train``."""
    return Trainer(config, Path(run_dir), resume=resume, progress=progress).fit()
