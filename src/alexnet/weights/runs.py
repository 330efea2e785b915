"""An imported network as an ordinary run directory, written atomically.

``RUN/checkpoints/last.pt`` is a checkpoint in the format :class:`alexnet.inference.trained.TrainedRun`
reads (kind, format, model_spec, model, classes, config), so every command that takes
a RUN -- eval, predict, features, kernels, report, export, finetune -- takes it too.
It adds two records:

* ``preprocessing`` -- the image size (shorter side, centre square), the crop and the
  normalisation the publisher used; the normalisation itself is in the config
  (``data.mean = "none"``, ``data.channels``, ``data.input_unit``, ``data.input_mean``,
  ``data.input_std``), where training and evaluation read it;
* ``source`` -- the file (name, absolute path, size, sha256), its format, the published
  weights it is meant to be, and what the importer read from it.

Beside it, ``RUN/config.toml`` and ``RUN/run.json`` as a training run has them.  The
folder is built as a hidden sibling and renamed at the end: a failure at any point
leaves no RUN behind.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from alexnet.config import Config, to_toml
from alexnet.data.norm import InputNorm
from alexnet.errors import UserError
from alexnet.inference.trained import FORMAT, KIND, TrainedRun
from alexnet.net.model import ModelSpec
from alexnet.published import Weights
from alexnet.runtime import sha256_file, versions
from alexnet.weights.classes import ILSVRC_CLASSES, imagenet_classes


@dataclass
class Imported:
    """What a reader found in a file: the network's spec, its weights under the builder's names, notes."""

    spec: ModelSpec
    state: dict[str, Tensor]
    details: dict[str, Any] = field(default_factory=dict)


def first_sentence(err: BaseException) -> str:
    """A foreign library's error as ``Type: its first sentence`` (for one-line messages)."""
    text = (str(err).strip().splitlines() or [""])[0]
    text = text.split(". ")[0].rstrip(".")
    return f"{type(err).__name__}: {text[:200]}"


def check_out(out: Path) -> None:
    if out.exists():
        raise UserError(f"{out} already exists; choose another --out or delete it", key="out")


def imported_config(spec: ModelSpec, weights: Weights) -> Config:
    """The run's config: the network, no training mean, the publisher's normalisation."""
    pre = weights.preprocessing
    config = Config()
    config.data.crop = spec.input_size
    config.data.mean = "none"
    config.data.channels = pre.channels
    config.data.input_unit = pre.unit
    config.data.input_mean = list(pre.mean)
    config.data.input_std = [] if pre.std is None else list(pre.std)
    m = config.model
    m.arch, m.reading, m.variants, m.width, m.fc_units = spec.arch, spec.reading, list(spec.variants), spec.width, \
        spec.fc_units
    m.num_classes, m.init = spec.num_classes, spec.init
    return config


def source_record(file: Path, weights: Weights, imported: Imported) -> dict[str, Any]:
    digest = sha256_file(file)
    prefix = weights.sha256_prefix
    return {
        "format": weights.format,
        "weights": weights.name,
        "file": file.name,
        "path": str(file.resolve()),
        "bytes": file.stat().st_size,
        "sha256": digest,
        # torch.hub names a file after its sha256's first digits: a match says it is the published file
        "published_file": weights.file_name,
        "sha256_matches_published": digest.startswith(prefix) if prefix else None,
        "published_accuracy": {"top1": weights.accuracy.top1, "top5": weights.accuracy.top5,
                               "protocol": weights.accuracy.protocol, "source": weights.accuracy.source},
        "architecture": weights.network.source,
        "read": imported.details,
        "imported": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def write_imported_run(imported: Imported, weights: Weights, file: Path, out: Path) -> Path:
    """Write ``out`` (a run directory) from ``imported``; nothing is left behind if anything fails."""
    check_out(out)
    spec = imported.spec
    if spec.num_classes == ILSVRC_CLASSES:
        classes = imagenet_classes()
    else:
        classes = [(str(i), f"class {i}") for i in range(spec.num_classes)]
    config = imported_config(spec, weights)
    norm = InputNorm.from_config(config.data)
    source = source_record(file, weights, imported)
    checkpoint = {
        "kind": KIND, "format": FORMAT, "model_spec": spec.to_dict(),
        "model": {k: v.detach().to(torch.float32).contiguous().clone() for k, v in imported.state.items()},
        "classes": [list(c) for c in classes], "config": config.to_dict(),
        "preprocessing": {"image_size": weights.preprocessing.image_size, "crop": spec.input_size,
                          "norm": norm.to_dict(), "description": weights.preprocessing.description},
        "source": source,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.importing-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "checkpoints").mkdir(parents=True)
        torch.save(checkpoint, tmp / "checkpoints" / "last.pt")
        run = TrainedRun.open(tmp, device="cpu")  # reads back as every command will, weights checked
        with torch.no_grad():
            run.model(torch.zeros(1, 3, spec.input_size, spec.input_size))
        (tmp / "config.toml").write_text(to_toml(config))
        info = {"imported": source, "reading": spec.reading, "model_spec": spec.to_dict(),
                "classes": len(classes), "preprocessing": checkpoint["preprocessing"],
                "versions": versions(), "command": sys.argv, "started": source["imported"]}
        (tmp / "run.json").write_text(json.dumps(info, indent=2))
        check_out(out)
        os.rename(tmp, out)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"cannot write {out} ({err.strerror or err})", key="out") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
