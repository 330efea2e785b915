"""Training-step speed of the paper network on the CPU, side by side (issue 2's benchmark).

Runs, in one process, with the same batch, threads and allocator settings:
  ours        -- the paper network (alexnet.model, our LocalResponseNorm)
  torch-lrn   -- the same network with torch.nn.LocalResponseNorm (alpha converted)
  torchvision -- torchvision.models.alexnet() (single column, no LRN)
and prints images/s and the ratios ours/torchvision and ours/torch-lrn.  The
three are interleaved round by round so that machine noise hits all of them.

    python benchmarks/bench_model.py [--batch 64] [--rounds 3] [--steps 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from alexnet.lrn import LocalResponseNorm
from alexnet.model import ModelSpec, build_model
from alexnet.paper import LRN_PARAMS
from alexnet.runtime import tune_cpu_allocator


def with_torch_lrn(model: nn.Module) -> nn.Module:
    for name, module in list(model.named_children()):
        if isinstance(module, LocalResponseNorm):
            alpha = module.alpha * module.n if module.convention == "paper" else module.alpha
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


def step_time(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--no-allocator-tuning", action="store_true")
    args = parser.parse_args()
    tuned = False if args.no_allocator_tuning else tune_cpu_allocator()
    torch.manual_seed(0)
    import torchvision

    models = {
        "ours": build_model(ModelSpec()),
        "torch-lrn": with_torch_lrn(build_model(ModelSpec())),
        "torchvision": torchvision.models.alexnet(),
    }
    x = torch.randn(args.batch, 3, 224, 224)
    y = torch.randint(0, 1000, (args.batch,))
    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for name, model in models.items():  # warm-up
        step_time(model, opts[name], x, y, 1)
    for _ in range(args.rounds):
        for name, model in models.items():
            times[name].append(step_time(model, opts[name], x, y, args.steps))
    speed = {k: args.batch / min(v) for k, v in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"allocator tuning {'on' if tuned else 'off'}, best of {args.rounds} rounds x {args.steps} steps")
    for name, s in speed.items():
        print(f"  {name:<12} {s:7.1f} images/s")
    print(f"  ratio ours/torchvision = {speed['ours'] / speed['torchvision']:.2f}")
    print(f"  ratio ours/torch-lrn   = {speed['ours'] / speed['torch-lrn']:.2f}")


if __name__ == "__main__":
    main()
