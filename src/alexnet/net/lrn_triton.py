"""Fused cross-map LRN (§3.3) on the GPU, as two Triton kernels.

The CPU layer in :mod:`alexnet.net.lrn` makes about nine memory passes forward and
``n + 3`` backward, each a separate kernel; on a GPU every pass is a launch and
a full read and write of the maps.  Here each direction is one kernel: a program
takes a tile of ``BLOCK_P`` pixels by all ``C/G`` channels of one column and
reads the ``n`` shifted channel windows it needs (the shifted loads hit the
cache), so the forward pass reads ``a`` once and writes ``b`` once, and the
backward pass reads ``a`` and ``g`` once and writes the gradient once.  Only
``a`` is saved for the backward pass (the CPU layer saves four tensors); the
denominators are recomputed, which costs arithmetic, not memory traffic.

Formulae (``window(i) = [i - before, i + after]``, clipped to the column):

    d[i] = k + alpha * sum_{j in window(i)} a[j]^2,      b[i] = a[i] * d[i]^-beta
    dL/da[i] = g[i] * d[i]^-beta - 2 alpha beta a[i] * sum_{j : i in window(j)} g[j] a[j] d[j]^(-beta-1)

Arithmetic is float32 whatever the storage dtype (bf16 under autocast).  Both
NCHW-contiguous and channels-last (NHWC) tensors are handled in place: the
kernels take the channel and pixel strides.

The kernels also run on the CPU under Triton's interpreter
(``TRITON_INTERPRET=1`` set before this module is imported), which is how the
test suite checks them on machines without a GPU.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs of torch come without Triton
    triton = None  # type: ignore[assignment]

#: Elements (pixels x padded channels) one program holds per tile.
TILE_ELEMENTS = 2048


def available() -> bool:
    """Whether Triton is importable (it ships with torch's CUDA builds on Linux)."""
    return triton is not None


if triton is not None:

    @triton.jit
    def _tile(q, c, rows, hw, cpg, s_n, s_c, s_p, group):
        """Element offsets (BLOCK_P, BLOCK_C) of pixels ``q`` and channels ``c`` of column ``group``, and the mask."""
        qm = q < rows
        img = (q // hw).to(tl.int64)
        pix = (q % hw).to(tl.int64)
        base = img * s_n + pix * s_p + (group * cpg).to(tl.int64) * s_c
        offs = base[:, None] + c.to(tl.int64)[None, :] * s_c
        mask = qm[:, None] & (c < cpg)[None, :] & (c >= 0)[None, :]
        return offs, mask

    @triton.jit
    def _denominator(a_ptr, q, c, rows, hw, cpg, s_n, s_c, s_p, group, alpha, k,
                     BEFORE: tl.constexpr, AFTER: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """d = k + alpha * sum over the channel window of a^2, float32 (BLOCK_P, BLOCK_C)."""
        acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
        for s in tl.static_range(BEFORE + AFTER + 1):
            offs, mask = _tile(q, c + (s - BEFORE), rows, hw, cpg, s_n, s_c, s_p, group)
            x = tl.load(a_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            acc += x * x
        return k + alpha * acc

    @triton.jit
    def _lrn_forward_kernel(a_ptr, b_ptr, rows, hw, cpg, s_n, s_c, s_p, alpha, beta, k,
                            BEFORE: tl.constexpr, AFTER: tl.constexpr,
                            BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        q = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        group = tl.program_id(1)
        c = tl.arange(0, BLOCK_C)
        d = _denominator(a_ptr, q, c, rows, hw, cpg, s_n, s_c, s_p, group, alpha, k, BEFORE, AFTER,
                         BLOCK_P, BLOCK_C)
        offs, mask = _tile(q, c, rows, hw, cpg, s_n, s_c, s_p, group)
        a = tl.load(a_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        b = a * tl.exp2(-beta * tl.log2(d))
        tl.store(b_ptr + offs, b.to(b_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _lrn_backward_kernel(a_ptr, g_ptr, out_ptr, rows, hw, cpg, s_n, s_c, s_p, alpha, beta, k,
                             BEFORE: tl.constexpr, AFTER: tl.constexpr,
                             BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        q = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        group = tl.program_id(1)
        c = tl.arange(0, BLOCK_C)
        # sum over j with i in window(j), i.e. j in [i - AFTER, i + BEFORE], of g_j a_j d_j^(-beta-1)
        inner = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
        for t in tl.static_range(BEFORE + AFTER + 1):
            cj = c + (t - AFTER)
            dj = _denominator(a_ptr, q, cj, rows, hw, cpg, s_n, s_c, s_p, group, alpha, k, BEFORE, AFTER,
                              BLOCK_P, BLOCK_C)
            offs, mask = _tile(q, cj, rows, hw, cpg, s_n, s_c, s_p, group)
            aj = tl.load(a_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            gj = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            inner += gj * aj * tl.exp2((-beta - 1.0) * tl.log2(dj))
        d = _denominator(a_ptr, q, c, rows, hw, cpg, s_n, s_c, s_p, group, alpha, k, BEFORE, AFTER,
                         BLOCK_P, BLOCK_C)
        offs, mask = _tile(q, c, rows, hw, cpg, s_n, s_c, s_p, group)
        a = tl.load(a_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        grad = g * tl.exp2(-beta * tl.log2(d)) - 2.0 * alpha * beta * a * inner
        tl.store(out_ptr + offs, grad.to(out_ptr.dtype.element_ty), mask=mask)


def _memory_format(a: Tensor) -> torch.memory_format:
    """channels_last where ``a`` is laid out so (and not also NCHW-contiguous), else contiguous."""
    if not a.is_contiguous() and a.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _launch(kernel, tensors: tuple[Tensor, ...], a: Tensor, n: int, alpha: float, beta: float, k: float,
            groups: int) -> None:
    """Run ``kernel`` over (pixel blocks, columns); ``a`` (N, C, H, W) sets the shape and strides."""
    batch, channels, height, width = a.shape
    cpg = channels // groups
    block_c = triton.next_power_of_2(cpg)
    block_p = max(16, TILE_ELEMENTS // block_c)
    rows = batch * height * width
    grid = (triton.cdiv(rows, block_p), groups)
    # the pixel stride is stride(3): 1 for NCHW, C for NHWC (both dense, so stride(2) = W * stride(3))
    kernel[grid](*tensors, rows, height * width, cpg, a.stride(0), a.stride(1), a.stride(3),
                 float(alpha), float(beta), float(k), BEFORE=n // 2, AFTER=(n - 1) // 2,
                 BLOCK_P=block_p, BLOCK_C=block_c)


class TritonLRNFunction(torch.autograd.Function):
    """Cross-map LRN of a 4-D tensor with the two fused kernels; saves only the input."""

    @staticmethod
    def forward(ctx, a: Tensor, n: int, alpha: float, beta: float, k: float, groups: int) -> Tensor:  # type: ignore[override]
        a = a.contiguous(memory_format=_memory_format(a))
        b = torch.empty_like(a)  # same memory format as a
        _launch(_lrn_forward_kernel, (a, b), a, n, alpha, beta, k, groups)
        ctx.save_for_backward(a)
        ctx.lrn = (n, alpha, beta, k, groups)
        return b

    @staticmethod
    @once_differentiable  # the gradient is a closed form: no second derivative
    def backward(ctx, g: Tensor):  # type: ignore[override]
        (a,) = ctx.saved_tensors
        n, alpha, beta, k, groups = ctx.lrn
        g = g.contiguous(memory_format=_memory_format(a))
        grad = torch.empty_like(a)
        _launch(_lrn_backward_kernel, (a, g, grad), a, n, alpha, beta, k, groups)
        return grad, None, None, None, None, None
