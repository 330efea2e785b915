"""A trained run, opened: the one way every command loads a run folder or a checkpoint file.

``TrainedRun.open(path)`` takes a run directory (its ``checkpoints/last.pt``) or
a checkpoint file and gives everything that using the network needs:

* ``model`` -- the network rebuilt from the recorded spec, with its weights, in
  eval mode on ``device``;
* ``classes`` -- (wnid, name) per output unit;
* ``mean_image`` -- the *training* set's mean image (§2: "subtracting the mean
  activity over the training set from each pixel"), 0-255 units, whatever store
  the images come from;
* ``inputs(images, patches)`` -- the normalised centre patch or ten patches (§4.1)
  of uint8 images, exactly as evaluation, prediction, features and reports feed
  the network;
* ``norm`` -- the last step of that normalisation (:class:`alexnet.data.norm.InputNorm`:
  channel order, unit, per-channel mean and std), from the run's config.  Runs
  trained here have the identity; runs made by ``alexnet import`` from published
  weights have ``data.mean = "none"`` (no training mean image) and the normalisation
  their publisher used, plus a ``preprocessing`` record (the image size) and a
  ``source`` record (where the weights came from) in the checkpoint.

The mean comes from the checkpoint (written by training since format 1), else
from the training store the run records, else from ``training_store`` when the
caller names one.  When images come at another size than the mean image (a store
prepared at another ``--size``), the training mean is resampled to their size, so
inputs are always normalised with the training set's statistics.

Checkpoint files hold only tensors, numbers, strings, lists and dicts and load
with ``weights_only=True`` (a file from elsewhere cannot run code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from alexnet.config import DataConfig, config_from_dict
from alexnet.data.batches import Augmentation
from alexnet.data.norm import InputNorm
from alexnet.errors import UserError
from alexnet.inference.scoring import probabilities
from alexnet.net.model import AlexNet, ModelSpec, build_model
from alexnet.runtime import choose_device

FORMAT = 1
KIND = "alexnet-checkpoint"
PATCHES: tuple[str, ...] = ("centre", "ten")


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint a path names: a file as given, a run directory's ``checkpoints/last.pt``."""
    path = Path(path)
    return path / "checkpoints" / "last.pt" if path.is_dir() else path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file (or a run directory's last one); a clear error if it is missing or not ours."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged or foreign file
        detail = (str(err).splitlines() or [""])[0].split(". ")[0] or "empty or truncated file"
        others = [p.name for p in (path.with_name("previous.pt"), path.with_name("best.pt"))
                  if path.name == "last.pt" and p.is_file()]
        hint = (f"; the run also has {' and '.join(others)} in {path.parent}: name one of them instead "
                f"(`alexnet train --resume` falls back by itself)") if others else ""
        raise UserError(f"{path} is not a readable checkpoint ({type(err).__name__}: {detail}){hint}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise UserError(f"{path} is not an alexnet checkpoint")
    data["path"] = str(path)
    return data


def strip_module_prefix(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop DDP's ``module.`` (and torch.compile's ``_orig_mod.``) prefixes."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def check_compatible(model: nn.Module, state_dict: dict[str, Tensor], source: str) -> None:
    """Raise a UserError naming the first layer whose parameters disagree."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    extra = [k for k in state_dict if k not in own]
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has {extra[0]}, which this network does not"
        raise UserError(f"{source}: checkpoint is for another architecture: it {what}")
    for key, value in own.items():
        if tuple(state_dict[key].shape) != tuple(value.shape):
            raise UserError(
                f"{source}: layer {key.rsplit('.', 1)[0]} disagrees: checkpoint {tuple(state_dict[key].shape)}, "
                f"network {tuple(value.shape)}"
            )


def model_from_checkpoint(data: dict[str, Any]) -> AlexNet:
    """The network a checkpoint's spec describes, with the checkpoint's weights."""
    spec = ModelSpec.from_dict(data["model_spec"])
    with torch.device("meta"):  # shapes only: the checkpoint's tensors become the parameters (no random init)
        model = build_model(spec)
    state = strip_module_prefix(data["model"])
    check_compatible(model, state, data["path"])
    own = model.state_dict()
    # contiguous (NCHW) weights: a run trained channels-last evaluates in the default layout
    model.load_state_dict({k: v.to(own[k].dtype).contiguous() for k, v in state.items()}, assign=True)
    return model


def resample_mean(mean_image: np.ndarray, size: int) -> np.ndarray:
    """The (S, S, 3) mean image resampled to (size, size, 3) (area-averaged down, bilinear up)."""
    if mean_image.shape[0] == size:
        return mean_image
    m = torch.from_numpy(np.ascontiguousarray(mean_image, dtype=np.float32)).permute(2, 0, 1)[None]
    mode = "area" if size < mean_image.shape[0] else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    out = nn.functional.interpolate(m, size=(size, size), mode=mode, **kwargs)
    return out[0].permute(1, 2, 0).contiguous().numpy()


def _training_mean(data: dict[str, Any], training_store: str | Path | None) -> tuple[np.ndarray, str]:
    """The training set's mean image (0-255 units) and where it came from."""
    from alexnet.data.store import Store

    if training_store is not None:
        return np.asarray(Store(training_store).stats().mean_image, np.float32), f"store {training_store}"
    mean = data.get("mean_image")
    if mean is not None:
        mean = mean.numpy() if isinstance(mean, Tensor) else mean
        return np.asarray(mean, dtype=np.float32), "the checkpoint"
    recorded = (data.get("config") or {}).get("data", {}).get("store", "")
    if recorded and Path(recorded).is_dir():
        try:
            return np.asarray(Store(recorded).stats().mean_image, np.float32), f"training store {recorded}"
        except UserError:
            pass
    raise UserError(f"the checkpoint {data['path']} holds no mean image and its training store "
                    f"{recorded or '(none recorded)'} is gone; name the training store", key="training_store")


@dataclass
class TrainedRun:
    """A trained network with what it needs to see images as it saw them in training."""

    path: Path  # the checkpoint file
    model: AlexNet
    classes: list[tuple[str, str]]
    data: DataConfig  # the run's data settings (crop = the network's input size)
    checkpoint: dict[str, Any] = field(repr=False)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    training_store: str | Path | None = None  # where to look for the mean if the run lost it
    _mean: tuple[np.ndarray, str] | None = field(default=None, repr=False)

    @property
    def mean_image(self) -> np.ndarray:
        """float32 (S, S, 3), 0-255 units: the training set's mean image (a UserError if it cannot be found)."""
        if self._mean is None:
            self._mean = _training_mean(self.checkpoint, self.training_store)
        return self._mean[0]

    @property
    def mean_source(self) -> str:
        """Where :attr:`mean_image` came from (for a run without one, its normalisation)."""
        if self.data.mean == "none":
            return f"none (no training mean image; {self.norm.describe()})"
        self.mean_image  # noqa: B018 - finds it
        assert self._mean is not None
        return self._mean[1]

    @property
    def norm(self) -> InputNorm:
        """The last step of the input pipeline (identity for runs trained here)."""
        return InputNorm.from_config(self.data)

    @property
    def preprocessing(self) -> str:
        """How images become the network's inputs, in one line."""
        if self.data.mean == "none":
            return f"no training mean image; {self.norm.describe()}"
        text = f"{self.data.mean} mean of the training set, from {self.mean_source}"
        return text if self.norm.identity else f"{text}; then {self.norm.describe()}"

    @property
    def source(self) -> dict[str, Any] | None:
        """Where imported weights came from (``alexnet import``); None for runs trained here."""
        return self.checkpoint.get("source")

    @classmethod
    def open(cls, source: str | Path, *, device: str = "auto", training_store: str | Path | None = None) -> "TrainedRun":
        """Open a run directory or checkpoint file (``training_store``: where to find the mean if the run lost it)."""
        data = read_checkpoint(source)
        model = model_from_checkpoint(data)
        spec = model.spec
        classes = [tuple(c) for c in data.get("classes", [])]
        if len(classes) != spec.num_classes:
            classes = [(str(i), f"class {i}") for i in range(spec.num_classes)]
        cfg = config_from_dict(data["config"]).data if "config" in data else DataConfig()
        cfg.crop = spec.input_size
        dev = choose_device(device)
        model.to(dev).eval()
        run = cls(Path(data["path"]), model, classes, cfg, data, dev, training_store)  # type: ignore[arg-type]
        if training_store is not None:
            run.mean_image  # noqa: B018 - a store named by the user must hold statistics: say so now
        return run

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec

    @property
    def folder(self) -> Path | None:
        """The run directory when the checkpoint lies in ``RUN/checkpoints/`` (else None: a loose file)."""
        return self.path.parent.parent if self.path.parent.name == "checkpoints" else None

    @property
    def image_size(self) -> int:
        """The side of the images the run was trained on (an imported run's record, else its mean image's)."""
        recorded = (self.checkpoint.get("preprocessing") or {}).get("image_size")
        return int(recorded) if recorded else int(self.mean_image.shape[0])

    @property
    def config(self) -> dict[str, Any]:
        return self.checkpoint.get("config") or {}

    def augmentation(self, image_size: int | None = None) -> Augmentation:
        """The evaluation transform for ``image_size`` images (default: the training size): the training
        mean (unless ``data.mean`` is ``none``), then :attr:`norm`."""
        size = self.image_size if image_size is None else image_size
        if size < self.spec.input_size:
            raise UserError(f"images of {size}x{size} are smaller than the network's "
                            f"{self.spec.input_size}x{self.spec.input_size} input")
        mean = None if self.data.mean == "none" else resample_mean(self.mean_image, size)
        return Augmentation.for_evaluation(self.spec.input_size, mean, self.data.mean, self.spec.reading, self.norm)

    def check_classes(self, store: Any) -> None:
        """UserError unless ``store`` has this run's classes (wnids) in this run's order; names may differ."""
        known = [str(c[0]) for c in self.checkpoint.get("classes", [])]
        store_ids = [str(w) for w, _ in store.classes]
        if known and store_ids != known:
            unknown = [w for w in store_ids if w not in set(known)]
            if unknown:
                more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
                detail = f"classes the checkpoint does not know: {', '.join(unknown[:5])}{more}"
            elif len(store_ids) != len(known):
                detail = f"{len(store_ids)} classes, the checkpoint {len(known)}"
            else:
                detail = "the checkpoint's classes in another order"
            raise UserError(f"store {store.path} does not match the checkpoint {self.path}: the store has {detail}")
        if not known and self.spec.num_classes != store.num_classes:
            raise UserError(f"store {store.path} has {store.num_classes} classes but the checkpoint "
                            f"{self.path} was trained for {self.spec.num_classes}")

    def inputs(self, images: np.ndarray | Tensor, patches: str = "centre") -> Tensor:
        """uint8 (B, S, S, 3) images -> normalised (B, 3, c, c) centre patches or (B, 10, 3, c, c), on ``device``."""
        if patches not in PATCHES:
            raise UserError(f"unknown value {patches!r}; allowed: {', '.join(PATCHES)}", key="patches")
        size = int(images.shape[1])
        return self.augmentation(size).evaluate(images, patches).to(self.device)

    @torch.no_grad()
    def probabilities(self, images: np.ndarray | Tensor, patches: str = "centre") -> np.ndarray:
        """(B, C) softmax outputs (averaged over the ten patches for ``ten``, §4.1)."""
        return probabilities(self.model, self.inputs(images, patches)).cpu().numpy()

    @torch.no_grad()
    def features(self, images: np.ndarray | Tensor) -> np.ndarray:
        """(B, D) last hidden layer's activity (fc7 after ReLU) of the centre patches (§6.1)."""
        return self.model.features(self.inputs(images, "centre")).float().cpu().numpy()
