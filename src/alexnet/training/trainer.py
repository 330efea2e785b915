"""Training with the paper's recipe (§4, §5): resumable, observable, distributed.

One run directory holds everything (:mod:`alexnet.training.rundir`).  Each step is
checked before its update is applied (:mod:`alexnet.training.health`): a loss that
explodes rolls back to an in-memory snapshot with a lower learning rate; a NaN, or a
loss that stays at chance without falling, stops the run with one clear message.
Decisions (rate drops, stopping, ``best.pt``) are taken on the store's ``holdout``
split when it has one.

Under ``torchrun`` every rank trains on its slice of each global batch with
DistributedDataParallel (NCCL on GPUs, gloo on the CPU); metrics are reduced
across ranks and only rank 0 writes.

Every value is checked (:func:`alexnet.config.validate`) and the store opened and checked
before the run directory is created; rank 0 holds a lock on the run directory while it
trains.  Resuming (:mod:`alexnet.training.resume`) restores every rank's random state and
the running sums of the epoch in progress, so a resumed run is bit-identical on the CPU;
Ctrl-C writes a checkpoint first (:mod:`alexnet.training.interrupt`).
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from alexnet.training.checkpoint import rng_state
from alexnet.config import Config, validate
from alexnet.data.batches import Augmentation, EvalBatches, TrainBatches, loader
from alexnet.data.store import Store, manifest_digest, verify_for_use
from alexnet.errors import UserError
from alexnet.inference.scoring import topk_errors
from alexnet.net.model import AlexNet, build_model
from alexnet.locks import FolderLock
from alexnet.runtime import all_sum, autocast_dtype, choose_device, device_kind, distributed, tune_cpu_allocator
from alexnet.training import resume as resuming
from alexnet.training.health import (HealthError, HealthMonitor, Snapshots, grad_norm, report_signal,
                                     roll_back)
from alexnet.training.interrupt import Interrupt, stop_interrupted
from alexnet.training.metrics import MetricsLog
from alexnet.training.optim import PaperSGD, param_groups
from alexnet.training.rundir import (TrainState, create_run_dir, decision_split_warning, export_weights, model_spec,
                                     run_info)
from alexnet.training.schedule import schedule_from_config


class Trainer:
    """Builds everything a run needs from a config and a run directory, then trains."""

    def __init__(self, config: Config, run_dir: Path, *, resume: bool = False, progress: bool = True) -> None:
        validate(config)  # every value, before anything is built or written
        self.config, self.run_dir, self.progress = config, Path(run_dir), progress
        self.lock = FolderLock(self.run_dir, "run directory")
        self.interrupt = Interrupt()
        self.epoch_sums, self.window = np.zeros(3), np.zeros(4)  # the epoch in progress: saved in checkpoints
        self._resumed: list[dict[str, Any]] = []  # events to log once the log is open
        tune_cpu_allocator()
        if config.run.threads:
            torch.set_num_threads(config.run.threads)
        self.ctx = distributed(device_kind(config.run.device))
        try:
            self._build(resume)
        except BaseException:
            self.lock.release()
            if self.ctx.owns_group and dist.is_initialized():
                dist.destroy_process_group()  # local, no collective: the other ranks may never arrive
            raise

    def _build(self, resume: bool) -> None:
        """Everything a run needs: device, store, network, optimiser, schedule, run directory."""
        config = self.config
        self._saved = resuming.open_for_resume(self) if resume else None  # first: lock, checkpoint, --set rule
        resume = self._saved is not None  # (not for a run that never wrote a checkpoint: it starts again)
        try:
            self.device = choose_device(config.run.device)
        except UserError as err:
            raise UserError(err.message, key="run.device") from None
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True
        try:
            self.amp_dtype = autocast_dtype(config.run.amp, self.device)
        except UserError as err:
            raise UserError(err.message, key="run.amp") from None
        if config.optim.batch_size % self.ctx.world:
            raise UserError(f"{config.optim.batch_size} does not split evenly over {self.ctx.world} processes",
                            key="optim.batch_size")
        if not config.data.store:
            raise UserError("is not set: name a store written by `alexnet prepare`", key="data.store")
        self.store = Store(config.data.store)
        config.data.store = str(self.store.path.resolve())  # a resume from another folder finds it
        self.store_digest = manifest_digest(self.store)
        self.train_split = self.store.split(config.data.train_split)
        try:
            val_name = self.store.decision_split(config.data.val_split)
        except UserError as err:
            raise UserError(err.message, key="data.val_split") from None
        if val_name == config.data.train_split:
            raise UserError(f"{val_name!r} is the training split; decide on a split the network does not train on",
                            key="data.val_split")
        self.val_split = self.store.split(val_name) if val_name else None
        if len(self.train_split) < config.optim.batch_size:
            raise UserError(
                f"split {config.data.train_split!r} has {len(self.train_split)} images, fewer than one batch of "
                f"{config.optim.batch_size}; lower optim.batch_size"
            )
        self.spec = model_spec(config, self.store)
        self.augment = Augmentation.from_config(config.data, self.store.stats(), self.spec.reading)
        splits = [s.name for s in (self.train_split, self.val_split) if s is not None]
        self._on_main(lambda: verify_for_use(self.store, splits, config.data.verify))  # data.verify: checksums

        torch.manual_seed(config.run.seed + self.ctx.rank)
        self.model: AlexNet = build_model(self.spec)
        self.model.to(self.device)
        if config.run.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.schedule = schedule_from_config(config)
        self.optimizer = PaperSGD(param_groups(self.model, self.spec.reading, config.optim.lr,
                                               config.optim.weight_decay, config.optim.momentum,
                                               per_layer=bool(self.schedule.events)))
        self.state = TrainState(decision_split=val_name or config.data.train_split)
        if resume:
            self._resumed = resuming.restore(self, self._saved)
        else:
            self._on_main(self._create_run_dir)
        self.net: nn.Module = self.model
        if self.ctx.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if config.run.compile:
            # the compiled wrapper shares self.model's parameters; checkpoints keep reading self.model
            self.net = torch.compile(self.net)
        self._apply_lr()
        self.log = MetricsLog(self.run_dir, self.ctx.main, purge_step=self.state.step + 1 if resume else None)
        self.health = HealthMonitor(self.spec.num_classes, config.run.health_window)
        if resume:
            self.health.load_state_dict(self._saved_health)
            for event in self._resumed:
                self.log.write(event)
        self.snapshots = Snapshots(self.model, self.optimizer)

    # ----------------------------------------------------------------- run directory

    def _on_main(self, work: Any) -> None:
        """Rank 0 does ``work``; a user error there reaches every rank (no rank left waiting)."""
        error = None
        if self.ctx.main:
            try:
                work()
            except UserError as err:
                error = str(err)
        if self.ctx.world > 1:
            box = [error]
            dist.broadcast_object_list(box, src=0)  # also the barrier: no rank reads the directory before it exists
            error = box[0]
            if error is not None:
                # every rank holds the error before any rank tears its process group down (no rank is left
                # receiving from a peer that has already gone)
                dist.barrier()
        if error is not None:
            raise UserError(error)

    def _create_run_dir(self) -> None:
        create_run_dir(self.run_dir, self.config, run_info(self.config, self.spec, self.ctx, self.device, self.store),
                       self.lock)

    def _rank_state(self) -> dict[str, Any]:
        """What differs between ranks: random state and the running sums of the epoch in progress."""
        return {"rng": rng_state(), "epoch_sums": self.epoch_sums.tolist(), "window": self.window.tolist()}

    def checkpoint_dict(self, ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return resuming.checkpoint_dict(self, ranks or [self._rank_state()])

    def save_checkpoint(self, name: str = "last.pt") -> None:
        """Every rank's state to rank 0, which writes ``RUN/checkpoints/name`` (:func:`resume.save_checkpoint`)."""
        resuming.save_checkpoint(self, name)

    # ----------------------------------------------------------------- training

    def _to_device(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.config.run.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _autocast(self):
        if self.amp_dtype is not None:
            return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)
        return torch.autocast(device_type=self.device.type, enabled=False)

    @property
    def lr(self) -> float:
        """The base learning rate in force: the schedule's, times the health check's and the warm-up's factors."""
        return self.schedule.current_lr * self.state.lr_factor * self._warm()

    def _warm(self) -> float:
        """Linear warm-up: the step after ``k`` completed steps runs at (k + 1) / warmup_steps of the rate.

        A full rate from the first step drives conv5-fc7's pre-activations negative in a few
        steps (dead ReLUs: the loss then sits at ln C for ~100 steps); ramping it avoids that.
        """
        warm = self.config.schedule.warmup_steps
        return 1.0 if warm <= 0 or self.state.step >= warm else (self.state.step + 1) / warm

    def _apply_lr(self) -> None:
        """The schedule's rates and hand events for the epoch in progress (idempotent: also on resume), times the
        health check's and the warm-up's factors."""
        noise = self.schedule.apply_events(self.state.epoch, self.optimizer)
        self.schedule.apply(self.optimizer)
        if self.augment.pca and not noise:  # the 2012 run switched colour noise off by hand
            self.augment = replace(self.augment, pca=False)
        for group in self.optimizer.param_groups:
            group["lr"] *= self.state.lr_factor * self._warm()

    # ----------------------------------------------------------------- health: snapshots and roll-backs

    def _roll_back(self, reason: str, loss: float) -> None:
        """An explosion at the coming step: return to the older snapshot and lower the rate (bounded)."""
        roll_back(self, reason, loss)

    def _check_health(self, loss: float) -> str | None:
        """The health monitor's verdict on the coming step; a stop names what was kept and what to try."""
        try:
            return self.health.observe(loss, self.state.step + 1, grad_norm(self.model))
        except HealthError as err:
            last = self.run_dir / "checkpoints" / "last.pt"
            kept = (f"the last checkpoint, {last}, is kept" if last.is_file()
                    else "no checkpoint had been written yet")
            advice = "" if "try" in err.message else " Try a smaller learning rate (optim.lr)."
            raise HealthError(f"{err.message}.{advice} {kept[0].upper()}{kept[1:]}.") from None

    def _announce_decision_split(self) -> None:
        """Say which split decides the schedule, early stopping and best.pt, and warn when it is reported too."""
        name = self.val_split.name if self.val_split is not None else None
        warning = decision_split_warning(name)
        self.log.write({"kind": "event", "event": "decision_split", "split": name or "train", "warning": warning})
        notes = [warning] if warning else []
        if self.state.step == 0 and self.ctx.main:  # a fresh run: how the initialisation passes the image on
            batch = TrainBatches(self.train_split, batch_size=min(64, self.config.optim.batch_size), seed=0, epoch=0,
                                 augment=self.augment)[0]
            report = report_signal(self.model, tuple(t.to(self.device) for t in batch), self.run_dir, self._autocast())
            self.log.write({"kind": "event", "event": "signal", "loss": report.loss, "logits_std": report.logits_std,
                            "logits_signal": report.layers[-1].signal, "notes": report.notes})
            notes += [f"at initialisation {n} (RUN/signal.txt)" for n in report.notes]
        for note in notes if self.ctx.main and self.progress else []:
            print(f"note: {note}", file=sys.stderr)

    def train_epoch(self, epoch: int) -> dict[str, float] | None:
        """Run the rest of ``epoch``; returns the epoch's train metrics, or None if stopped early."""
        cfg = self.config
        on_device = cfg.data.augment_device == "device"
        dataset = TrainBatches(
            self.train_split, batch_size=cfg.optim.batch_size, seed=cfg.run.seed, epoch=epoch,
            augment=self.augment, rank=self.ctx.rank, world=self.ctx.world, raw=on_device,
        )
        dl = loader(dataset, workers=cfg.data.workers, start=self.state.batch, pin_memory=self.device.type == "cuda")
        if self.state.batch == 0:  # a new epoch (a resumed one continues its sums)
            self.epoch_sums[:], self.window[:] = 0, 0
        bar = None
        if self.ctx.main and self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(dataset), initial=self.state.batch, desc=f"epoch {epoch + 1}", unit="batch",
                       dynamic_ncols=True, leave=True, file=sys.stderr)
        self.net.train()
        sums = self.epoch_sums  # loss * n, top-1 errors, n
        window = self.window  # same + data wait seconds, since the last log line
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
            loss_value = float(loss.detach())
            stop = self.interrupt.requested  # Ctrl-C: stop after this step (agreed by every rank)
            if self.ctx.world > 1:  # every rank must take the same decisions, or the others would hang
                loss_value, stops = all_sum([loss_value, float(stop)], self.ctx, self.device)
                loss_value, stop = loss_value / self.ctx.world, stops > 0
            explosion = self._check_health(loss_value)  # before the update: an exploding step is not applied
            if explosion:
                self._roll_back(explosion, loss_value)
            else:
                if self.state.step < cfg.schedule.warmup_steps:
                    self._apply_lr()
                self.optimizer.step()
            n = y.shape[0]
            errors = topk_errors(logits.detach(), y, (1,))[0]
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
                    "lr": self.lr, "images_per_s": count / max(elapsed, 1e-9),
                    "data_wait": float(window[3] / max(elapsed, 1e-9)),
                }
                self.log.write(record, self.state.step)
                if bar is not None:
                    bar.set_postfix(loss=f"{record['loss']:.3f}", err=f"{record['train_top1_error']:.3f}",
                                    lr=f"{record['lr']:.0e}", ips=f"{record['images_per_s']:.0f}",
                                    wait=f"{100 * record['data_wait']:.0f}%")
                window[:] = 0
                t_window = time.perf_counter()
            if cfg.run.snapshot_every and self.state.step % cfg.run.snapshot_every == 0:
                self.snapshots.take(self.state.step)
            every = cfg.run.checkpoint_every
            if every and self.state.step % every == 0 and self.state.batch < len(dataset):
                self.save_checkpoint()
            if stop or (self.ctx.world == 1 and self.interrupt.requested):
                stop_interrupted(self, bar)
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
            if self.interrupt.requested and self.ctx.world == 1:  # (several ranks wait for the next step)
                stop_interrupted(self)
            x, y = self._to_device(x), y.to(self.device)
            with self._autocast():
                logits = self.net(x)
            e1, e5 = topk_errors(logits.float(), y)
            totals += (e1, e5, y.shape[0])
        e1, e5, n = all_sum(totals.tolist(), self.ctx, self.device)
        return {"val_top1_error": e1 / n, "val_top5_error": e5 / n, "val_images": int(n), "val_split": self.val_split.name}

    def fit(self) -> TrainState:
        """Train until the schedule says stop (or ``run.max_steps``); resumable at any point."""
        cfg = self.config
        clean = False  # an exception leaves it False: no collective in close_distributed
        self._announce_decision_split()
        self.snapshots.take(self.state.step)
        self.interrupt.install()
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
                lr_used = self.lr
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
                self._apply_lr()  # the next epoch's rate and hand events
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
            self.interrupt.uninstall()
            self.log.close()
            self.close_distributed(clean=clean)
            self.lock.release()
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
        export_weights(self.run_dir, self.model, self.spec, self.store.classes)


def train(config: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = True) -> TrainState:
    """Train (or resume) a run; the library entry point behind ``alexnet train``."""
    return Trainer(config, Path(run_dir), resume=resume, progress=progress).fit()
