"""CUDA correctness (marked ``gpu``; skipped without CUDA): the same network and step as on the CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alexnet.data.transforms import draw_augmentation, train_transform
from alexnet.net.lrn import LocalResponseNorm, local_response_norm
from alexnet.net.model import ModelSpec, build_model
from alexnet.training.optim import PaperSGD, param_groups

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _losses(device: str, amp: bool) -> list[float]:
    torch.manual_seed(0)
    model = build_model(ModelSpec(num_classes=10, variants=("no-dropout",))).to(device)
    opt = PaperSGD(param_groups(model, "paper", 0.01, 0.0005, 0.9))
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(8, 3, 224, 224, generator=g) * 50).to(device)
    y = torch.randint(0, 10, (8,), generator=g).to(device)
    losses = []
    for _ in range(3):
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_training_steps_match_the_cpu() -> None:
    cpu = _losses("cpu", False)
    assert _losses("cuda", False) == pytest.approx(cpu, rel=1e-3)
    assert _losses("cuda", True) == pytest.approx(cpu, rel=3e-2)


def test_lrn_gradient_on_cuda() -> None:
    a = (torch.randn(2, 6, 3, 3, dtype=torch.float64, device="cuda") * 30).requires_grad_()
    assert torch.autograd.gradcheck(LocalResponseNorm(groups=2), (a,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_triton_lrn_equals_the_passes(dtype: torch.dtype, channels_last: bool) -> None:
    pytest.importorskip("triton")
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(16, 96, 55, 55, device="cuda", generator=g) * 20  # conv1's maps, two columns of 48
    grad_out = torch.randn(a.shape, device="cuda", generator=g)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    outs = {}
    for engine in ("torch", "triton"):
        x = a.to(dtype).contiguous(memory_format=fmt).requires_grad_()
        y = local_response_norm(x, groups=2, engine=engine)
        y.backward(grad_out.to(dtype))
        outs[engine] = (y.float(), x.grad.float())
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for ref, fused in zip(outs["torch"], outs["triton"]):
        assert (ref - fused).abs().max() <= tol * ref.abs().max()


def test_augmentation_on_the_gpu_equals_the_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 64, 64, 3), dtype=torch.uint8, generator=g)
    mean = torch.rand(64, 64, 3) * 255
    eigval, eigvec = torch.tensor([0.2, 0.02, 0.005]) * 255**2, torch.linalg.qr(torch.randn(3, 3))[0]
    draws = draw_augmentation(16, 64, 64, 56, torch.Generator().manual_seed(3))
    kw = dict(crop=56, mean_image=mean, eigenvalues=eigval, eigenvectors=eigvec, draws=draws)
    cpu = train_transform(images, **kw)
    gpu = train_transform(images.cuda(), **kw)
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-3)
