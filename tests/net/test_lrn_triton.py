"""The fused Triton LRN kernels (issue 8) against the CPU layer, forward and backward.

Triton's interpreter (``TRITON_INTERPRET=1``) runs the kernels on CPU tensors, so
this checks them on machines without a GPU; it has to be set before the kernels
are defined, hence a fresh interpreter per check.  tests/test_gpu.py checks them
compiled, on CUDA.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

CHECK = r"""
import json, torch
from alexnet.net.lrn import local_response_norm

torch.manual_seed(0)
out = []
for shape, groups, n, layout, dtype in [
    ((2, 10, 5, 6), 1, 5, "nchw", torch.float32),
    ((2, 12, 4, 3), 2, 5, "nchw", torch.float32),
    ((3, 12, 4, 5), 2, 5, "nhwc", torch.float32),
    ((2, 9, 3, 3), 1, 4, "nchw", torch.float32),   # even n: an asymmetric window
    ((2, 7, 3, 4), 1, 3, "nhwc", torch.float32),
    ((2, 40, 3, 3), 2, 5, "nchw", torch.float32),  # 20 channels a column, padded to 32
    ((2, 8, 4, 4), 2, 5, "nchw", torch.bfloat16),
]:
    a = (torch.randn(shape) * 3).to(dtype)
    if layout == "nhwc":
        a = a.contiguous(memory_format=torch.channels_last)
    g = torch.randn(shape).to(dtype)
    res = {}
    for engine in ("torch", "triton"):
        fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
        x = (a.float() if engine == "torch" else a).detach().clone(memory_format=fmt).requires_grad_(True)
        y = local_response_norm(x, n=n, alpha=0.05, beta=0.75, k=2.0, groups=groups, engine=engine)
        y.backward(g.float() if engine == "torch" else g)
        res[engine] = (y.detach().float(), x.grad.float(), y.is_contiguous(memory_format=torch.channels_last))
    (yt, gt, _), (yf, gf, cl) = res["torch"], res["triton"]
    out.append({"case": [list(shape), groups, n, layout, str(dtype)],
                "fwd": (yt - yf).abs().max().item() / yt.abs().max().item(),
                "bwd": (gt - gf).abs().max().item() / gt.abs().max().item(),
                "channels_last_kept": cl == (layout == "nhwc")})
print(json.dumps(out))
"""


def test_triton_kernels_match_the_cpu_layer() -> None:
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cases = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(cases) == 7
    for case in cases:
        tol = 2e-2 if "bfloat16" in case["case"][4] else 1e-5  # relative to the largest value
        assert case["fwd"] < tol and case["bwd"] < tol, case
        assert case["channels_last_kept"], case
