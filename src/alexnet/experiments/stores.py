"""The experiments' data: base stores prepared once and cached, and seeded subsets of them."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from alexnet.errors import UserError
from alexnet.experiments.common import Context

@contextmanager
def one_maker(ctx: Context, path: Path) -> Iterator[None]:
    """While a cached store ``path`` is made: one process at a time (``fcntl.flock`` on ``PATH.making`` beside
    it); another one (an experiment's second process, one per arm or seed) waits here, saying so, and then
    finds the store made.  The kernel releases the lock however its holder ends."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".making"), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            ctx.log(f"[{ctx.name}] {path}: another process is making it; waiting for it")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _is_store(path: Path) -> bool:
    from alexnet.data.store import Store

    try:
        Store(path)
        return True
    except (UserError, OSError, ValueError, KeyError):
        return False


def store_for(ctx: Context, dataset: str, make: Callable[[Path], Any]) -> Path:
    """The base store of ``dataset``: ``ctx.stores[dataset]`` if given, else made once in the cache (by one
    process at a time: :func:`one_maker`)."""
    from alexnet.data.store import Store

    if dataset in ctx.stores:
        return Path(ctx.stores[dataset])
    path = ctx.cache / dataset
    if _is_store(path):
        return path
    with one_maker(ctx, path):
        if _is_store(path):  # made by the process this one waited for
            return path
        ctx.log(f"[{ctx.name}] preparing {dataset} store in {path} (once; cached for later experiments)")
        make(path)
        Store(path)
    return path


def prepared_from_tree(ctx: Context, dataset: str, folder: str, size: int, holdout: int = 0) -> Path:
    """A store prepared with :func:`alexnet.data.prepare.prepare` from ``data_root/folder`` at ``size``
    (with ``holdout`` training images per class set aside for decisions)."""
    from alexnet.data.prepare import prepare

    src = ctx.data_root / folder
    if dataset not in ctx.stores and not src.is_dir():
        raise UserError(f"{src} does not exist: name the folder holding {folder}/ or set ALEXNET_DATA", key="data_root")
    workers = max(1, min(2, os.cpu_count() or 1))
    return store_for(ctx, dataset, lambda out: prepare(src, out, size=size, holdout=holdout, workers=workers,
                                                       progress=ctx.progress))


def _held_out_name(store: Any) -> str:
    for name in ("val", "test"):
        if name in store.splits():
            return name
    raise UserError(f"store {store.path} has neither a val nor a test split")


def derived_store(ctx: Context, base: Path, *, train: int, val: int, train_eval: int, seed: int = 0) -> Path:
    """A store with ``train`` (subset of the base's train), ``val`` (subset of its val/test) and
    ``train_eval`` (a subset of the new train split, to measure training error in eval mode).

    0 means "all".  Subsets are seeded random draws; the store is cached by its counts (made by one
    process at a time: :func:`one_maker`).  A base ``holdout`` split (decisions) is carried over whole.
    """
    from alexnet.data.store import Store

    src = Store(base)
    held = _held_out_name(src)
    n_train, n_val = len(src.split("train")), len(src.split(held))
    train = n_train if train <= 0 else min(train, n_train)
    val = n_val if val <= 0 else min(val, n_val)
    train_eval = min(train_eval if train_eval > 0 else train, train)
    key = f"{base.name}-{train}-{val}-{train_eval}-s{seed}"
    out = (ctx.cache / "derived" / key) if str(base).startswith(str(ctx.cache)) else base.parent / f".derived-{key}"
    if (out / "derived.json").is_file():
        return out
    with one_maker(ctx, out):
        if not (out / "derived.json").is_file():  # else made by the process this one waited for
            _write_derived(src, base, out, held, train=train, val=val, train_eval=train_eval, seed=seed)
    return out


def _write_derived(src: Any, base: Path, out: Path, held: str, *, train: int, val: int, train_eval: int,
                   seed: int) -> None:
    """Write :func:`derived_store`'s subsets of ``src`` (the store at ``base``) to ``out``, atomically."""
    from alexnet.data.shards import write_store
    from alexnet.data.store import HOLDOUT_SPLIT, Store

    n_train, n_val = len(src.split("train")), len(src.split(held))
    rng = np.random.default_rng(seed)
    tr = np.sort(rng.permutation(n_train)[:train])
    va = np.sort(rng.permutation(n_val)[:val])
    te = tr[np.sort(rng.permutation(train)[:train_eval])]
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    s_train, s_val = src.split("train"), src.split(held)
    splits = {
        "train": (s_train.read(tr), s_train.labels[tr]),
        "val": (s_val.read(va), s_val.labels[va]),
        "train_eval": (s_train.read(te), s_train.labels[te]),
    }
    if HOLDOUT_SPLIT in src.splits():
        s_hold = src.split(HOLDOUT_SPLIT)
        splits[HOLDOUT_SPLIT] = (s_hold.read(np.arange(len(s_hold))), s_hold.labels)
    write_store(tmp, splits, list(src.classes),
                source=f"{base} (train {train}, {held} {val}, train_eval {train_eval}, seed {seed})")
    (tmp / "derived.json").write_text(json.dumps({"base": str(base), "train": train, "val": val,
                                                  "val_from": held, "train_eval": train_eval, "seed": seed}))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    Store(out)


def load_arrays(store_path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from alexnet.data.store import Store

    s = Store(store_path).split(split)
    return s.read(np.arange(len(s))), s.labels.astype(np.int64)
