"""Two CPU processes on gloo train exactly what one process trains on the same global batch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from alexnet.inference.trained import read_checkpoint

from helpers import agent_stores, join_as_rank, tiny_config

DDP = ["model.variants=no-dropout", "run.threads=1"]


def _worker(rank: int, world: int, port: int, store: str, run: str) -> None:
    join_as_rank(rank, world, port)
    from alexnet.training.trainer import train

    import torch.distributed as dist

    try:
        train(tiny_config(store, *DDP), Path(run), progress=False)
        # train created the group, so a clean end tears it down itself (after every rank has
        # arrived), instead of leaving gloo's threads to interpreter shutdown (a SIGABRT on CI)
        assert not dist.is_initialized(), f"rank {rank}: train left its process group behind"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_two_gloo_processes_equal_one(tiny_store, tmp_path: Path) -> None:
    from alexnet.training.trainer import train

    single = tmp_path / "single"
    train(tiny_config(tiny_store.path, *DDP), single, progress=False)
    double = tmp_path / "double"
    with agent_stores() as [port]:
        mp.spawn(_worker, args=(2, port, str(tiny_store.path), str(double)), nprocs=2, join=True)
    a = read_checkpoint(single / "checkpoints" / "last.pt")["model"]
    b = read_checkpoint(double / "checkpoints" / "last.pt")["model"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
    # metrics were reduced over both ranks: the same validation error, every image counted once
    import json

    def epochs(run: Path) -> list[dict]:
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r for r in records if r["kind"] == "epoch"]

    ev, ed = epochs(single), epochs(double)
    assert ev[-1]["val_images"] == ed[-1]["val_images"] == 40
    assert ev[-1]["val_top1_error"] == pytest.approx(ed[-1]["val_top1_error"])


def _worker_expecting_error(rank: int, world: int, port: int, store: str, run: str) -> None:
    from alexnet.errors import UserError

    try:
        _worker(rank, world, port, store, run)
    except UserError as err:
        assert "already exists" in str(err)
    else:
        raise AssertionError(f"rank {rank} trained into a run directory that already held a run")


def test_a_run_directory_error_on_rank_0_stops_every_rank(tiny_store, tmp_path: Path) -> None:
    """Rank 0 alone checks the run directory; its one-line error must reach rank 1 instead of leaving it
    waiting at a barrier (mp.spawn would then hang until the test times out)."""
    run = tmp_path / "taken"
    run.mkdir()
    (run / "keep.txt").write_text("earlier work")
    with agent_stores() as [port]:
        mp.spawn(_worker_expecting_error, args=(2, port, str(tiny_store.path), str(run)), nprocs=2, join=True)
    assert (run / "keep.txt").read_text() == "earlier work"


def _resume_worker(rank: int, world: int, ports: list[int], store: str, root: str) -> None:
    """One rank: an uninterrupted run, then a run stopped mid-epoch at step 4 and resumed (dropout on)."""
    join_as_rank(rank, world, ports[0])
    from alexnet.training.rundir import load_run_config
    from alexnet.training.trainer import train

    import torch.distributed as dist

    recipe = ["run.threads=1", "schedule.max_epochs=2", "schedule.patience=1", "run.log_every=1"]
    try:
        os.environ["MASTER_PORT"] = str(ports[0])
        train(tiny_config(store, *recipe), Path(root) / "whole", progress=False)
        os.environ["MASTER_PORT"] = str(ports[1])
        train(tiny_config(store, *recipe, "run.max_steps=4"), Path(root) / "parts", progress=False)
        os.environ["MASTER_PORT"] = str(ports[2])
        train(load_run_config(Path(root) / "parts", ["run.max_steps=0"]), Path(root) / "parts", resume=True,
              progress=False)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_resume_under_two_gloo_processes_is_bit_identical(tiny_store, tmp_path: Path) -> None:
    """Every rank's random state (dropout) and epoch sums are in the checkpoint: stopping mid-epoch and
    resuming with two processes ends exactly where two uninterrupted processes end."""
    from helpers import same_training_state

    with agent_stores(3) as ports:  # one store per process group: three runs, one after the other
        mp.spawn(_resume_worker, args=(2, ports, str(tiny_store.path), str(tmp_path)), nprocs=2, join=True)
    ranks = read_checkpoint(tmp_path / "parts" / "checkpoints" / "last.pt")["ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["rng"]["torch"], ranks[1]["rng"]["torch"])
    same_training_state(tmp_path / "whole", tmp_path / "parts")
