"""Training-step speed of the paper network on the CPU, side by side (issue 2's benchmark).

Runs, in one process, with the same batch, threads and allocator settings:
  ours        -- the paper network (alexnet.net.model, our LocalResponseNorm)
  torch-lrn   -- the same network with torch.nn.LocalResponseNorm (alpha converted)
  torchvision -- torchvision.models.alexnet() (single column, no LRN)
and prints images/s and the ratios ours/torchvision and ours/torch-lrn.  Each
network runs in both memory formats, NCHW (PyTorch's default) and channels-last
(NHWC, model and input converted alike), and in float32 and under bf16 autocast
(what training's ``run.amp = auto`` uses where the CPU computes bf16 natively); the
ratios are given per format and between each network's faster format, and a line
``ratio bf16/fp32`` per network.  All runs are interleaved round by round so that
machine noise hits all of them; the best round counts.

    python benchmarks/bench_model.py [--batch 64] [--rounds 3] [--steps 2] [--formats nchw,nhwc]
                                     [--precisions fp32,bf16]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from alexnet.net.lrn import LocalResponseNorm
from alexnet.net.model import ModelSpec, build_model
from alexnet.runtime import tune_cpu_allocator


def with_torch_lrn(model: nn.Module) -> nn.Module:
    for name, module in list(model.named_children()):
        if isinstance(module, LocalResponseNorm):
            alpha = module.effective_alpha * module.n
            # torch's layer has no columns: normalise each column separately by grouping channels
            torch_lrn = nn.LocalResponseNorm(module.n, alpha, module.beta, module.k)
            groups = module.groups

            class Columns(nn.Module):
                def __init__(self, lrn: nn.Module, groups: int) -> None:
                    super().__init__()
                    self.lrn, self.groups = lrn, groups

                def forward(self, x: torch.Tensor) -> torch.Tensor:
                    return torch.cat([self.lrn(c) for c in x.chunk(self.groups, 1)], 1)

            setattr(model, name, Columns(torch_lrn, groups))
    return model


def step_time(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int,
              precision: str = "fp32") -> float:
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


FORMATS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}
PRECISIONS = ("fp32", "bf16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--formats", default="nchw,nhwc", help="comma-separated subset of nchw,nhwc")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated subset of fp32,bf16")
    parser.add_argument("--no-allocator-tuning", action="store_true")
    parser.add_argument("--json", help="also write the figures per round as a results file (docs/results/NAME.json)")
    args = parser.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats or any(f not in FORMATS for f in formats):
        parser.error(f"--formats: choose from {', '.join(FORMATS)}")
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not precisions or any(p not in PRECISIONS for p in precisions):
        parser.error(f"--precisions: choose from {', '.join(PRECISIONS)}")
    tuned = False if args.no_allocator_tuning else tune_cpu_allocator()
    torch.manual_seed(0)
    import torchvision

    builders = {
        "ours": lambda: build_model(ModelSpec()),
        "torch-lrn": lambda: with_torch_lrn(build_model(ModelSpec())),
        "torchvision": lambda: torchvision.models.alexnet(),
    }
    x = torch.randn(args.batch, 3, 224, 224)
    y = torch.randint(0, 1000, (args.batch,))
    runs: dict[tuple[str, str, str], tuple[nn.Module, torch.Tensor]] = {}
    for prec in precisions:
        for fmt in formats:
            for name, build in builders.items():
                torch.manual_seed(0)
                runs[name, fmt, prec] = (build().to(memory_format=FORMATS[fmt]),
                                         x.contiguous(memory_format=FORMATS[fmt]))
    opts = {key: torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9) for key, (m, _) in runs.items()}
    times: dict[tuple[str, str, str], list[float]] = {key: [] for key in runs}
    for key, (model, xin) in runs.items():  # warm-up: the allocator's heap needs two steps to settle
        step_time(model, opts[key], xin, y, 2, key[2])
    for _ in range(args.rounds):
        for key, (model, xin) in runs.items():
            times[key].append(step_time(model, opts[key], xin, y, args.steps, key[2]))
    speed = {key: args.batch / min(v) for key, v in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads ({torch.get_num_interop_threads()} interop), "
          f"batch {args.batch}, allocator tuning {'on' if tuned else 'off'}, "
          f"best of {args.rounds} rounds x {args.steps} steps (images/s, training step: forward, backward, SGD)")
    print(f"  {'images/s':<28}" + "".join(f"{fmt:>8}" for fmt in formats) + "    best")
    best = {(name, prec): max(speed[name, fmt, prec] for fmt in formats) for name in builders for prec in precisions}
    for prec in precisions:
        for name in builders:
            print(f"  {name + ' ' + prec:<28}" + "".join(f"{speed[name, fmt, prec]:8.1f}" for fmt in formats)
                  + f"{best[name, prec]:8.1f}")
    for prec in precisions:
        for other in ("torchvision", "torch-lrn"):
            ratios = "".join(f"{speed['ours', fmt, prec] / speed[other, fmt, prec]:8.2f}" for fmt in formats)
            print(f"  {'ratio ours/' + other + ' ' + prec:<28}" + ratios
                  + f"{best['ours', prec] / best[other, prec]:8.2f}")
    if set(PRECISIONS) <= set(precisions):
        for name in builders:
            ratios = "".join(f"{speed[name, fmt, 'bf16'] / speed[name, fmt, 'fp32']:8.2f}" for fmt in formats)
            print(f"  {'ratio bf16/fp32 ' + name:<28}" + ratios
                  + f"{best[name, 'bf16'] / best[name, 'fp32']:8.2f}")
    if args.json:
        write_record(args, times, list(builders), formats, precisions)


def write_record(args: argparse.Namespace, times: dict[tuple[str, str, str], list[float]], names: list[str],
                 formats: list[str], precisions: list[str]) -> None:
    """Each round's images/s (the network's faster format) and the ratios within that round, as a results file."""
    import sys
    from pathlib import Path

    from alexnet.experiments import record
    from alexnet.runtime import environment

    def per_round(name: str, prec: str) -> list[float]:
        return [max(args.batch / times[name, fmt, prec][r] for fmt in formats) for r in range(args.rounds)]

    arms: dict[str, dict] = {}
    for prec in precisions:
        for name in names:
            arms[f"{name}-{prec}"] = {"label": f"{name}, {prec}", "per_seed": {
                str(r): {"images_per_s": v} for r, v in enumerate(per_round(name, prec))}}
    ratios = [(f"{n}-bf16", f"{n}-fp32", f"ratio bf16/fp32, {n}") for n in names if set(PRECISIONS) <= set(precisions)]
    ratios += [(f"ours-{p}", f"torchvision-{p}", f"ratio ours/torchvision, {p}") for p in precisions]
    for a, b, label in ratios:
        arms[label] = {"label": label, "per_seed": {
            r: {"ratio": arms[a]["per_seed"][r]["images_per_s"] / arms[b]["per_seed"][r]["images_per_s"]}
            for r in arms[a]["per_seed"]}}
    doc = {"name": Path(args.json).stem, "command": " ".join(["python", *sys.argv]),
           "question": "How fast is a training step of the paper network in bf16 against fp32, and against "
                       "torchvision's AlexNet, measured side by side in one process?",
           "environment": environment(0), "rule": record.RULE, "seeds": list(range(args.rounds)), "arms": arms,
           "table": {"columns": [{"metric": "images_per_s", "label": "images/s (faster format)", "format": "num",
                                  "missing": "—"},
                                 {"metric": "ratio", "label": "ratio, same round", "format": "num", "missing": "—"}],
                     "rows": list(arms)},
           "notes": [f"Batch {args.batch}, {args.steps} steps per round, {args.rounds} rounds interleaved; each "
                     f"'seed' is one round (mean ± std over rounds); formats {formats}."]}
    record.write(doc, args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
