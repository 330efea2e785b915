"""Process plumbing every stage shares: devices, the process group, atomic files, the environment record.

* :func:`choose_device` -- the one place that turns ``auto`` / ``cpu`` / ``cuda`` /
  ``cuda:N`` into a :class:`torch.device` (``auto`` and ``cuda`` take this process's
  GPU, ``LOCAL_RANK`` under torchrun).
* :func:`distributed` -- joins the process group torchrun describes (NCCL on GPUs,
  gloo on the CPU), or reports a single process.
* :func:`atomic_write` and friends -- every file the project writes reaches its
  final name complete or not at all (temporary file in the same folder, fsync,
  ``os.replace``); :func:`sha256_file` hashes a file of any size.
* :func:`environment` -- versions and hardware, recorded with runs and results.
* :func:`tune_cpu_allocator` -- keeps glibc from page-faulting every large tensor.

Nothing here imports torch at module level, so light commands stay light.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import io
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

from alexnet import __version__
from alexnet.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

# --------------------------------------------------------------------------- devices

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"


def local_rank() -> int:
    """This process's GPU index under torchrun (``LOCAL_RANK``), 0 otherwise."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def choose_device(name: str) -> "torch.device":
    """``auto`` -> this process's GPU if CUDA is available, else the CPU; ``cuda`` -> this process's GPU."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"{name!r} was asked for but CUDA is not available; use cpu or auto", key="device")
        if name == "cuda":
            return torch.device("cuda", local_rank())
    elif name != "cpu":
        raise UserError(f"unknown device {name!r}; allowed: {DEVICE_CHOICES}", key="device")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; allowed: {DEVICE_CHOICES}", key="device") from None


def device_kind(name: str) -> str:
    """``cuda`` or ``cpu``: where ``name`` (as :func:`choose_device` reads it) will run, without choosing yet."""
    import torch

    if name.startswith("cuda") or (name == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where that file does not exist)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: "torch.device") -> bool:
    """Whether ``device`` computes bfloat16 natively: a GPU that supports it, or a CPU with AVX512-BF16 or AMX."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    return False


AMP_CHOICES = ("auto", "bf16", "off")


def autocast_dtype(amp: str, device: "torch.device") -> "torch.dtype | None":
    """The autocast dtype for ``amp`` on ``device``: ``auto`` is bf16 where it is native, else none."""
    import torch

    if amp not in AMP_CHOICES:
        raise UserError(f"unknown value {amp!r}; allowed: {', '.join(AMP_CHOICES)}", key="amp")
    if amp == "off":
        return None
    native = native_bf16(device)
    if amp == "bf16" and not native:
        raise UserError(f"bf16 was asked for but the {device.type} here does not compute bfloat16 natively "
                        f"(no AVX512-BF16 or AMX on a CPU, or a GPU without bf16); use auto or off", key="amp")
    return torch.bfloat16 if native else None


# --------------------------------------------------------------------------- the process group


@dataclass(frozen=True)
class Dist:
    """This process's place in the process group (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # the group was created by :func:`distributed` (so its user tears it down)

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed(kind: str = "cpu") -> Dist:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), or return a single process.

    ``kind`` is ``cuda`` (NCCL) or ``cpu`` (gloo).  A group that already exists is joined as it is.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), local_rank(), False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank(), True)


def all_sum(values: list[float], ctx: Dist, device: "torch.device") -> list[float]:
    """Element-wise sum of ``values`` over every rank (float64); the values themselves for one process."""
    if ctx.world == 1:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------- atomic files


class _HashingWriter(io.RawIOBase):
    """File-like object that writes through to ``fp`` and hashes what passes."""

    def __init__(self, fp: BinaryIO) -> None:
        super().__init__()
        self._fp = fp
        self.sha = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self._fp.write(view)
        return len(view)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> str:
    """Write ``path`` atomically via ``write(fileobj)``; return the sha256 hex digest.

    The data go to a temporary file in the same folder, are fsync'ed and then
    ``os.replace``'d onto ``path``, so a reader never sees a partial file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as raw:
            hasher = _HashingWriter(raw)
            write(hasher)  # type: ignore[arg-type]
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(path.parent)
    return hasher.sha.hexdigest()


def atomic_text(path: Path, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns its sha256."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_json(path: Path, obj: Any, **dumps: Any) -> str:
    """Write ``obj`` as JSON (one trailing newline) to ``path`` atomically; returns its sha256."""
    return atomic_text(path, json.dumps(obj, **dumps) + "\n")


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a whole file, read in 4 MiB chunks (hashlib releases the GIL)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return sha.hexdigest()
            sha.update(block)


# --------------------------------------------------------------------------- the environment record


def versions() -> dict[str, str]:
    """Software versions and the machine, recorded in every run and results file."""
    import numpy as np
    import torch
    import torchvision

    return {
        "alexnet": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda or "none",
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "cpu_count": str(os.cpu_count()),
    }


def cpu_model() -> str:
    """The processor's marketing name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    """The machine's 1, 5 and 15-minute load averages (None where the OS has none): timings depend on them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def environment(threads: int = 0) -> dict[str, Any]:
    """:func:`versions` plus threads, host, load, CPU and GPU: what a measured number depends on."""
    import torch

    env: dict[str, Any] = dict(versions())
    env["torch_threads"] = threads or torch.get_num_threads()
    env["hostname"] = platform.node()
    env["load_average"] = load_average()
    env["cpu_model"] = cpu_model()
    env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return env


# --------------------------------------------------------------------------- CPU allocator

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_tuned = False


def tune_cpu_allocator() -> bool:
    """Keep freed large blocks in the heap (glibc only); returns whether it applied.

    On glibc, every tensor larger than the mmap threshold (at most 32 MB) is
    mapped fresh from the kernel and unmapped on free, so each new activation
    tensor of a training step page-faults its way in: on 2 cores a fresh 70 MB
    tensor costs as much as seven elementwise passes over it.  Disabling mmap for
    malloc keeps freed blocks in the heap for reuse -- what the PyTorch CPU
    performance guide achieves by preloading jemalloc or tcmalloc.  Safe to call
    more than once; a no-op on other C libraries and platforms.
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**30) == 1
    _tuned = ok
    return ok
