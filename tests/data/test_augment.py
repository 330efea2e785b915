"""§4.1 augmentation: crops, reflections, ten-crop, PCA lighting, mean subtraction."""

from __future__ import annotations

import math
import re
from typing import Callable

import numpy as np
import pytest
import torch

from alexnet.data import augment as A
from alexnet.data import transforms as T
from alexnet.errors import UserError
from alexnet.paper import CODE2012, DATA


def coord_images(batch: int, size: int, dtype=torch.float64) -> torch.Tensor:
    """(B, 3, S, S): channel 0 = 1000*y + x, channel 1 = y, channel 2 = x + 10000*b."""
    y = torch.arange(size, dtype=dtype).view(size, 1).expand(size, size)
    x = torch.arange(size, dtype=dtype).view(1, size).expand(size, size)
    imgs = torch.stack([1000 * y + x, y, x]).expand(batch, 3, size, size).clone()
    imgs[:, 2] += 10000 * torch.arange(batch, dtype=dtype).view(batch, 1, 1)
    return imgs


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def decode(patch: torch.Tensor) -> tuple[int, int, bool]:
    """(top, left, flipped) of a patch of a coordinate image."""
    row = patch[1, 0, 0].item(), patch[2, 0, :] % 10000
    flipped = bool(row[1][0] > row[1][-1])
    return int(row[0]), int(row[1].min().item()), flipped


@pytest.mark.parametrize("method", A.CROP_METHODS)
def test_crop_is_the_region_at_the_drawn_offset(method):
    size, crop, b = 20, 13, 64
    imgs = coord_images(b, size)
    out = A.random_crop_flip(imgs, crop, gen(3), method=method)
    assert out.shape == (b, 3, crop, crop) and out.dtype == imgs.dtype
    crops = A.draw_crops(b, size, size, crop, gen(3))  # the same draws, from the same seed
    for i in range(b):
        t, l, f = crops.top[i].item(), crops.left[i].item(), crops.flip[i].item()
        expected = imgs[i, :, t : t + crop, l : l + crop]
        if f:
            expected = expected.flip(-1)
        assert torch.equal(out[i], expected)
        assert decode(out[i]) == (t, l, f)


def test_loop_and_gather_agree_on_uint8_and_nhwc_views():
    g = gen(1)
    x = torch.randint(0, 256, (16, 40, 40, 3), dtype=torch.uint8, generator=g)
    view = x.permute(0, 3, 1, 2)
    crops = A.draw_crops(16, 40, 40, 32, gen(2))
    a = A.apply_crops(view, crops, 32, method="loop")
    b = A.apply_crops(view, crops, 32, method="gather")
    c = A.apply_crops(view.contiguous(), crops, 32, method="gather")
    assert a.dtype == torch.uint8 and torch.equal(a, b) and torch.equal(a, c)


def test_every_offset_and_reflection_occurs():
    size, crop = 12, 8
    crops = A.draw_crops(4000, size, size, crop, gen(5))
    combos = set(zip(crops.top.tolist(), crops.left.tolist(), crops.flip.tolist()))
    assert len(combos) == (size - crop + 1) ** 2 * 2
    assert crops.top.min() == 0 and crops.top.max() == size - crop


def test_paper_sizes_give_2178_patches_not_2048():
    s, c = DATA.image_size, DATA.crop_size
    crops = A.draw_crops(300_000, s, s, c, gen(6))
    combos = set(zip(crops.top.tolist(), crops.left.tolist(), crops.flip.tolist()))
    assert len(combos) == (s - c + 1) ** 2 * 2 == 2178
    assert DATA.translations_factor == (s - c) ** 2 * 2  # the paper's count, one offset short per axis


def test_flips_about_half():
    crops = A.draw_crops(20_000, 10, 10, 8, gen(7))
    assert abs(crops.flip.float().mean().item() - 0.5) < 0.02


def test_chunked_draws_share_offset_and_flip():
    crops = A.draw_crops(100, 40, 40, 32, gen(8), chunk=CODE2012.crop_shared_chunk)
    for start in range(0, 100, CODE2012.crop_shared_chunk):
        sl = slice(start, start + CODE2012.crop_shared_chunk)
        for t in crops:
            assert (t[sl] == t[start]).all()
    assert len(set(crops.top.tolist())) > 1 or len(set(crops.left.tolist())) > 1


def test_same_seed_same_output_different_seed_different():
    imgs = coord_images(32, 24)
    a = A.random_crop_flip(imgs, 16, gen(11))
    b = A.random_crop_flip(imgs, 16, gen(11))
    c = A.random_crop_flip(imgs, 16, gen(12))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_centre_crop_offset_floor():
    imgs = coord_images(2, 11)
    out = A.centre_crop(imgs, 8)  # difference 3 -> offset 1
    assert decode(out[0]) == (1, 1, False)
    assert decode(A.centre_crop(coord_images(1, 12), 8)[0]) == (2, 2, False)


def test_ten_crop_is_corners_centre_and_mirrors():
    size, crop = 15, 10
    imgs = coord_images(3, size)
    out = A.ten_crop(imgs, crop)
    assert out.shape == (3, 10, 3, crop, crop)
    d = size - crop
    expected = [(0, 0), (0, d), (d, 0), (d, d), (d // 2, d // 2)]
    for i in range(3):
        for k, (t, l) in enumerate(expected):
            patch = imgs[i, :, t : t + crop, l : l + crop]
            assert torch.equal(out[i, k], patch)
            assert torch.equal(out[i, k + 5], patch.flip(-1))
            assert decode(out[i, k + 5]) == (t, l, True)


def _eig():
    vec = torch.linalg.qr(torch.randn(3, 3, generator=gen(20), dtype=torch.float64))[0]
    lam = torch.tensor(CODE2012.imagenet_pc_std, dtype=torch.float64) ** 2  # ImageNet's, 0..255 units
    return lam, vec


@pytest.mark.parametrize("unit", [A.PIXEL_UNIT, 1.0])
def test_pca_lighting_adds_the_papers_vector(unit):
    lam, vec = _eig()
    imgs = torch.rand(5, 3, 4, 6, dtype=torch.float64, generator=gen(21)) * 255
    g = gen(22)
    state = g.get_state()
    out = A.pca_lighting(imgs, lam, vec, generator=g, unit=unit)
    g2 = torch.Generator().manual_seed(0)
    g2.set_state(state)
    alphas = torch.randn((5, 3), generator=g2, dtype=torch.float64) * DATA.pca_std
    for b in range(5):  # direct transcription: I_xy + [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T (in 0..1 units)
        add = sum(vec[:, i] * alphas[b, i] * (lam[i] / unit**2) for i in range(3)) * unit
        for y in range(4):
            for x in range(6):
                torch.testing.assert_close(out[b, :, y, x], imgs[b, :, y, x] + add, rtol=0, atol=1e-9)


def test_pca_lighting_code2012_uses_sqrt_and_rescales():
    lam, vec = _eig()
    imgs = torch.randn(4, 3, 5, 5, dtype=torch.float64, generator=gen(23)) * 50
    alphas = torch.randn(4, 3, generator=gen(24), dtype=torch.float64) * DATA.pca_std
    out = A.pca_lighting(imgs, lam, vec, reading="code2012", alphas=alphas)
    noise = (alphas * lam.sqrt()) @ vec.T
    torch.testing.assert_close(out, (imgs + noise[:, :, None, None]) * CODE2012.pca_rescale)
    assert CODE2012.pca_uses_sqrt_eigenvalues


def test_pca_alphas_fresh_each_call_and_std():
    lam, vec = _eig()
    g = gen(25)
    imgs = torch.zeros(20_000, 3, 1, 1, dtype=torch.float64)
    a = A.pca_lighting(imgs, lam, vec, generator=g, unit=1.0)[:, :, 0, 0]
    b = A.pca_lighting(imgs, lam, vec, generator=g, unit=1.0)[:, :, 0, 0]
    assert not torch.allclose(a, b)
    alphas = (a @ vec) / lam  # recover alpha_i from the added vector (orthonormal p_i)
    assert abs(alphas.std().item() - DATA.pca_std) < 0.003
    assert abs(alphas.mean().item()) < 0.003
    # constant over pixels
    big = A.pca_lighting(torch.zeros(3, 3, 7, 9, dtype=torch.float64), lam, vec, generator=g)
    assert torch.equal(big, big[:, :, :1, :1].expand_as(big))


def test_pca_rejects_bad_input():
    lam, vec = _eig()
    with pytest.raises(UserError):
        A.pca_lighting(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), lam, vec, generator=gen())
    with pytest.raises(UserError):
        A.pca_lighting(torch.zeros(1, 3, 2, 2), lam, vec, generator=gen(), reading="caffe")
    with pytest.raises(UserError):
        A.pca_lighting(torch.zeros(1, 3, 2, 2), -lam, vec, generator=gen())


def _batch(b: int, s: int, seed: int = 30) -> torch.Tensor:
    return torch.randint(0, 256, (b, s, s, 3), dtype=torch.uint8, generator=gen(seed))


def test_train_transform_mean_image_is_cropped_like_the_image():
    # Every image equal to the mean image: "match" subtraction leaves exact zeros.
    img = _batch(1, 32)[0]
    batch = img.expand(12, -1, -1, -1)
    lam, vec = _eig()
    out = T.train_transform(
        batch, crop=24, mean_image=img.float(), eigenvalues=lam, eigenvectors=vec, generator=gen(), pca=False
    )
    assert out.shape == (12, 3, 24, 24) and out.dtype == torch.float32
    assert torch.equal(out, torch.zeros_like(out))


def test_matching_mean_loop_and_gather_agree():
    mean = torch.rand(3, 30, 30, generator=gen(37)) * 255
    crops = A.draw_crops(20, 30, 30, 24, gen(38))
    start = torch.rand(20, 3, 24, 24, generator=gen(39)) * 255
    a = A.subtract_matching_mean_(start.clone(), mean, crops, 24, method="loop")
    b = A.subtract_matching_mean_(start.clone(), mean, crops, 24, method="gather")
    assert torch.equal(a, b)
    assert torch.equal(a, start - A.apply_crops(mean[None].expand(20, -1, -1, -1), crops, 24))


def test_train_transform_code2012_matches_its_recipe():
    s, c, b = 40, 32, 70
    batch = _batch(b, s)
    mean = torch.rand(s, s, 3, generator=gen(31)) * 255
    lam, vec = _eig()
    g = gen(32)
    state = g.get_state()
    out = T.train_transform(
        batch, crop=c, mean_image=mean, eigenvalues=lam, eigenvectors=vec, generator=g, reading="code2012"
    )
    g.set_state(state)
    crops = A.draw_crops(b, s, s, c, g, chunk=CODE2012.crop_shared_chunk)
    alphas = A.draw_alphas(b, g)
    x = A.apply_crops(batch.permute(0, 3, 1, 2), crops, c).double()
    centre = A.centre_crop(mean.permute(2, 0, 1)[None].double(), c)[0]
    noise = (alphas.double() * lam.sqrt()) @ vec.T
    expected = (x - centre + noise[:, :, None, None]) * CODE2012.pca_rescale
    torch.testing.assert_close(out, expected.float(), atol=1e-3, rtol=1e-5)


def test_train_transform_paper_matches_its_recipe_and_layouts_agree():
    s, c, b = 36, 28, 9
    batch = _batch(b, s)
    mean = torch.rand(s, s, 3, generator=gen(33)) * 255
    lam, vec = _eig()
    kw = dict(crop=c, mean_image=mean, eigenvalues=lam, eigenvectors=vec)
    out = T.train_transform(batch, generator=gen(34), **kw)
    out_nchw = T.train_transform(batch.permute(0, 3, 1, 2).contiguous(), generator=gen(34), **kw)
    readonly = batch.numpy().copy()
    readonly.flags.writeable = False
    out_np = T.train_transform(readonly, generator=gen(34), **kw)
    assert torch.equal(out, out_nchw) and torch.equal(out, out_np)
    g = gen(34)
    crops = A.draw_crops(b, s, s, c, g)
    alphas = A.draw_alphas(b, g)
    full = batch.permute(0, 3, 1, 2).double() - mean.permute(2, 0, 1).double()  # subtract, then crop
    x = A.apply_crops(full, crops, c)
    expected = x + A.pca_offsets(alphas.double(), lam, vec)[:, :, None, None]
    torch.testing.assert_close(out, expected.float(), atol=1e-3, rtol=1e-5)
    buf = torch.empty(b, 3, c, c)
    again = T.train_transform(batch, generator=gen(34), out=buf, **kw)
    assert again.data_ptr() == buf.data_ptr() and torch.equal(again, out)


def test_train_transform_channel_mean():
    s, c = 32, 24
    batch = _batch(6, s)
    mean = torch.rand(s, s, 3, generator=gen(35)) * 255
    lam, vec = _eig()
    out = T.train_transform(
        batch, crop=c, mean_image=mean, eigenvalues=lam, eigenvectors=vec, generator=gen(36), mean_mode="channel", pca=False
    )
    crops = A.draw_crops(6, s, s, c, gen(36))
    x = A.apply_crops(batch.permute(0, 3, 1, 2), crops, c).float()
    torch.testing.assert_close(out, x - A.channel_means(mean), atol=1e-4, rtol=0)
    torch.testing.assert_close(A.subtract_mean(x.to(torch.uint8), A.channel_means(mean)), out, atol=1e-4, rtol=0)


def test_eval_transform_patches_and_means():
    s, c = 32, 28
    img = _batch(1, s)[0]
    batch = img.expand(4, -1, -1, -1)
    mean = img.float()
    centre = T.eval_transform(batch, crop=c, mean_image=mean)
    ten = T.eval_transform(batch, crop=c, mean_image=mean, patches="ten")
    assert centre.shape == (4, 3, c, c) and ten.shape == (4, 10, 3, c, c)
    assert torch.equal(centre, torch.zeros_like(centre)) and torch.equal(ten, torch.zeros_like(ten))
    # code2012 subtracts the centre patch of the mean from every view
    ten12 = T.eval_transform(batch, crop=c, mean_image=mean, patches="ten", reading="code2012")
    views = A.ten_crop(batch.permute(0, 3, 1, 2), c).float()
    mc = A.centre_crop(mean.permute(2, 0, 1)[None], c)[0]
    assert torch.equal(ten12, views - mc)
    ch = T.eval_transform(batch, crop=c, mean_image=mean, mean_mode="channel")
    torch.testing.assert_close(ch, A.centre_crop(batch.permute(0, 3, 1, 2), c).float() - A.channel_means(mean))


def test_small_sizes_and_errors():
    lam, vec = _eig()
    for s, c in [(32, 28), (32, 24), (8, 8)]:
        out = T.train_transform(
            _batch(3, s), crop=c, mean_image=np.zeros((s, s, 3), np.float32), eigenvalues=lam, eigenvectors=vec, generator=gen()
        )
        assert out.shape == (3, 3, c, c)
    with pytest.raises(UserError):
        T.train_transform(_batch(2, 8), crop=9, mean_image=torch.zeros(8, 8, 3), eigenvalues=lam, eigenvectors=vec, generator=gen())
    with pytest.raises(UserError):
        T.train_transform(
            _batch(2, 8), crop=4, mean_image=torch.zeros(8, 8, 3), eigenvalues=lam, eigenvectors=vec, generator=gen(), mean_mode="pixel"
        )
    with pytest.raises(UserError):
        T.eval_transform(_batch(2, 8), crop=4, mean_image=torch.zeros(8, 8, 3), patches="five")
    with pytest.raises(UserError):
        T.train_transform(_batch(2, 8), crop=4, mean_image=torch.zeros(9, 9, 3), eigenvalues=lam, eigenvectors=vec, generator=gen())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_crops():
    x = _batch(16, 40).cuda()
    crops = A.draw_crops(16, 40, 40, 32, gen(40))
    gpu = A.apply_crops(x.permute(0, 3, 1, 2), crops, 32)
    cpu = A.apply_crops(x.cpu().permute(0, 3, 1, 2), crops, 32)
    assert torch.equal(gpu.cpu(), cpu)
    lam, vec = _eig()
    g = torch.Generator(device="cuda").manual_seed(0)
    out = T.train_transform(x, crop=32, mean_image=torch.zeros(40, 40, 3), eigenvalues=lam, eigenvectors=vec, generator=g)
    assert out.is_cuda and out.shape == (16, 3, 32, 32) and math.isfinite(out.sum().item())


# --------------------------------------------------------------------------- argument checks and passing


def test_random_crops_share_a_draw_within_each_chunk() -> None:
    """chunk = 2 (the 2012 code's crop_chunk): images 0-1, 2-3, ... get one offset and flip each; on a batch of
    one image repeated, the patches of each pair are then equal, while chunk = 1 gives different patches."""
    one = torch.arange(3 * 12 * 12, dtype=torch.float32).reshape(1, 3, 12, 12)
    images = one.expand(16, 3, 12, 12).contiguous()
    paired = A.random_crop_flip(images, 8, torch.Generator().manual_seed(0), chunk=2)
    assert all(torch.equal(paired[i], paired[i + 1]) for i in range(0, 16, 2))
    single = A.random_crop_flip(images, 8, torch.Generator().manual_seed(0), chunk=1)
    assert not all(torch.equal(single[i], single[i + 1]) for i in range(0, 16, 2))


def test_random_crop_flip_passes_its_method_on() -> None:
    images = torch.zeros(2, 3, 6, 6)
    with pytest.raises(UserError, match="bogus"):
        A.random_crop_flip(images, 4, torch.Generator().manual_seed(0), method="bogus")


def test_pca_lighting_checks_its_input_and_uses_the_given_std() -> None:
    vals, vecs = torch.tensor([0.2, 0.05, 0.01]), torch.eye(3)
    with pytest.raises(UserError, match=r"^pca_lighting: images must be float \(0\.\.255 units\), got torch\.uint8$"):
        A.pca_lighting(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), vals, vecs, generator=torch.Generator())
    with pytest.raises(UserError, match=r"^pca_lighting: expected \(B, 3, H, W\), got \(2, 4, 5, 5\)$"):
        A.pca_lighting(torch.zeros(2, 4, 5, 5), vals, vecs, generator=torch.Generator())
    with pytest.raises(UserError, match=r"^pca_lighting: pass a generator \(or explicit alphas\)$"):
        A.pca_lighting(torch.zeros(1, 3, 2, 2), vals, vecs)
    images = torch.full((4, 3, 2, 2), 100.0)
    assert torch.equal(A.pca_lighting(images, vals, vecs, std=0.0, generator=torch.Generator().manual_seed(0)),
                       images)  # alpha ~ N(0, 0): no change, whatever the default std is


def test_subtract_mean_takes_an_image_per_batch_item_and_refuses_other_shapes() -> None:
    images = torch.tensor([[[[10.0]], [[20.0]], [[30.0]]], [[[1.0]], [[2.0]], [[3.0]]]])  # (2, 3, 1, 1)
    per_image = torch.tensor([[[[1.0]], [[2.0]], [[3.0]]], [[[1.0]], [[1.0]], [[1.0]]]])
    assert A.subtract_mean(images, per_image).flatten().tolist() == [9.0, 18.0, 27.0, 0.0, 1.0, 2.0]
    assert A.subtract_mean(images, torch.tensor([[[1.0]], [[2.0]], [[3.0]]])).flatten().tolist() == \
        [9.0, 18.0, 27.0, 0.0, 0.0, 0.0]
    for bad in ((4, 1, 1), (2, 4, 1, 1), (3,), (1, 2, 3, 1, 1)):
        with pytest.raises(UserError, match=r"^mean: expected \(3, H, W\), \(B, 3, H, W\) or \(3, 1, 1\), got "
                                            + re.escape(str(bad)) + "$"):
            A.subtract_mean(images, torch.zeros(bad))


def test_float64_alphas_and_means_give_float32_results() -> None:
    """Documented: the result is float32 whatever the dtype of the given alphas or mean (no silent promotion
    to float64 of a whole batch)."""
    images = torch.full((2, 3, 2, 2), 100.0)
    out = A.pca_lighting(images, torch.tensor([0.2, 0.05, 0.01]), torch.eye(3),
                         alphas=torch.ones(2, 3, dtype=torch.float64))
    assert out.dtype == torch.float32
    assert A.subtract_mean(images, torch.ones(3, 1, 1, dtype=torch.float64)).dtype == torch.float32


# --------------------------------------------------------------------------- input checks, layouts, devices


def _user_error_text(call: Callable[[], object]) -> str:
    with pytest.raises(UserError) as info:
        call()
    return str(info.value)


def test_check_images_messages_and_sizes() -> None:
    """Expected messages and sizes written by hand from the checks' contract: a (B, 3, H, W) tensor and a crop
    1 <= crop <= min(H, W); (H, W) is returned."""
    assert _user_error_text(lambda: A.check_images([1, 2], 2)) == "images: expected a torch.Tensor, got list"
    assert _user_error_text(lambda: A.check_images(torch.zeros(2, 4, 5, 5), 2)) == \
        "images: expected shape (B, 3, H, W), got (2, 4, 5, 5)"
    assert A.check_images(torch.zeros(1, 3, 5, 7), 3) == (5, 7)
    assert A.check_images(torch.zeros(1, 3, 5, 7), 1) == (5, 7)  # a 1x1 crop fits
    assert _user_error_text(lambda: A.check_images(torch.zeros(1, 3, 5, 7), 6)) == "crop 6 does not fit in 5x7 images"
    assert _user_error_text(lambda: A.check_images(torch.zeros(1, 3, 5, 7), 0)) == "crop 0 does not fit in 5x7 images"


def test_to_nchw_messages() -> None:
    """Hand-written messages: a batch needs 4 dimensions, one of them (1 or 3) of size 3."""
    assert _user_error_text(lambda: A.to_nchw(torch.zeros(2, 3, 4))) == \
        "batch: expected 4 dimensions (B, S, S, 3) or (B, 3, S, S), got (2, 3, 4)"
    assert _user_error_text(lambda: A.to_nchw(torch.zeros(2, 4, 5, 6))) == \
        "batch: no dimension of size 3 for the colour channels in shape (2, 4, 5, 6)"


def test_mean_chw_layouts_dtype_device_and_messages() -> None:
    """Documented: (H, W, 3) or (3, H, W) in, float32 (3, H, W) on the given device out; values by hand."""
    chw = A.mean_chw([[[1, 2]], [[3, 4]], [[5, 6]]], torch.device("cpu"))  # a nested list, (3, 1, 2), ints
    assert chw.dtype == torch.float32 and chw.tolist() == [[[1.0, 2.0]], [[3.0, 4.0]], [[5.0, 6.0]]]
    non_square = A.mean_chw(torch.zeros(3, 4, 5, dtype=torch.float64), torch.device("cpu"))
    assert non_square.shape == (3, 4, 5) and non_square.dtype == torch.float32
    assert A.mean_chw(torch.zeros(3, 2, 2), torch.device("meta")).device.type == "meta"
    assert _user_error_text(lambda: A.mean_chw(torch.zeros(3, 3), torch.device("cpu"))) == \
        "mean_image: expected (S, S, 3) or (3, S, S), got (3, 3)"
    assert _user_error_text(lambda: A.mean_chw(torch.zeros(4, 5, 6), torch.device("cpu"))) == \
        "mean_image: no dimension of size 3 in shape (4, 5, 6)"


def test_draw_crops_messages_and_target_device() -> None:
    """Hand-written messages; the draws are moved to ``device`` (the meta device shows it without a GPU)."""
    assert _user_error_text(lambda: A.draw_crops(2, 8, 8, 4, gen(), chunk=0)) == "chunk must be at least 1, got 0"
    assert _user_error_text(lambda: A.draw_crops(2, 5, 10, 6, gen())) == "crop 6 does not fit in 5x10 images"
    crops = A.draw_crops(4, 8, 8, 4, gen(), device="meta")
    assert [t.device.type for t in crops] == ["meta", "meta", "meta"]


def test_apply_crops_method_error_and_devices() -> None:
    """The method error is the standard choice error (key ``method``); the loop allocates its output on the
    images' device and the gather needs no host copy of the draws (both shown on the meta device)."""
    assert _user_error_text(lambda: A.apply_crops(torch.zeros(1, 3, 4, 4), A.draw_crops(1, 4, 4, 2, gen()), 2,
                                                  method="bogus")) == "method: unknown value 'bogus'; allowed: loop, gather"
    images = torch.zeros(4, 3, 8, 8, device="meta")
    cpu_crops = A.draw_crops(4, 8, 8, 4, gen())
    assert A.apply_crops(images, cpu_crops, 4, method="loop").device.type == "meta"
    meta_crops = A.draw_crops(4, 8, 8, 4, gen(), device="meta")
    out = A.apply_crops(images, meta_crops, 4, method="gather")
    assert out.device.type == "meta" and out.shape == (4, 3, 4, 4)


def test_subtract_matching_mean_method_error_and_device_default() -> None:
    """Standard choice error for ``method``; off the CPU the default is the gather (no host sync), which works on
    meta-device draws, where the loop cannot read the offsets."""
    out = torch.zeros(1, 3, 2, 2)
    crops = A.draw_crops(1, 4, 4, 2, gen())
    assert _user_error_text(lambda: A.subtract_matching_mean_(out, torch.zeros(3, 4, 4), crops, 2, method="bogus")) \
        == "method: unknown value 'bogus'; allowed: loop, gather"
    meta_crops = A.draw_crops(4, 8, 8, 4, gen(), device="meta")
    mean = torch.zeros(3, 8, 8, device="meta")
    for method in (None, "gather"):
        res = A.subtract_matching_mean_(torch.zeros(4, 3, 4, 4, device="meta"), mean, meta_crops, 4, method=method)
        assert res.device.type == "meta"


@pytest.mark.parametrize("method", A.CROP_METHODS)
def test_matching_mean_of_a_non_square_mean_image(method: str) -> None:
    """A 6 x 9 mean image, crop 4, offsets (1, 2) reflected and (2, 5) not: the expected patches are sliced by
    hand, ``mean[:, t:t+4, l:l+4]`` (flipped left-right for the reflected one)."""
    mean = torch.arange(3 * 6 * 9, dtype=torch.float32).reshape(3, 6, 9)
    crops = A.Crops(torch.tensor([1, 2]), torch.tensor([2, 5]), torch.tensor([True, False]))
    out = A.subtract_matching_mean_(torch.zeros(2, 3, 4, 4), mean, crops, 4, method=method)
    assert torch.equal(out[0], -mean[:, 1:5, 2:6].flip(-1))
    assert torch.equal(out[1], -mean[:, 2:6, 5:9])


def test_float_out_dtype_device_and_checks() -> None:
    """Documented: float32 whatever the default dtype, on the patches' device; a wrong ``out`` is refused with
    the hand-written message below."""
    patches = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).reshape(2, 3, 4, 4)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        made = A.float_out(patches, None)
    finally:
        torch.set_default_dtype(old)
    assert made.dtype == torch.float32 and torch.equal(made, patches.float())
    assert A.float_out(torch.zeros(1, 3, 2, 2, dtype=torch.uint8, device="meta"), None).device.type == "meta"
    assert _user_error_text(lambda: A.float_out(patches, torch.empty(2, 3, 4, 4, dtype=torch.float64))) == \
        "out: expected float32 (2, 3, 4, 4) on cpu, got torch.float64 (2, 3, 4, 4) on cpu"
    assert _user_error_text(lambda: A.float_out(patches, torch.empty(2, 3, 4, 5))) == \
        "out: expected float32 (2, 3, 4, 4) on cpu, got torch.float32 (2, 3, 4, 5) on cpu"


# --------------------------------------------------------------------------- PCA colour noise: devices, dtypes, checks


def test_draw_alphas_on_the_generators_device_then_moved_to_device() -> None:
    """Draws are made on ``generator.device`` whatever the default device, then moved to ``device`` (the meta
    device shows both without a GPU)."""
    with torch.device("meta"):
        a = A.draw_alphas(2, gen(), dtype=torch.float64)
    assert a.device.type == "cpu" and a.dtype == torch.float64 and a.shape == (2, 3)
    assert torch.equal(a, torch.randn((2, 3), generator=gen(), dtype=torch.float64) * DATA.pca_std)
    moved = A.draw_alphas(2, gen(), device="meta")
    assert moved.device.type == "meta" and moved.shape == (2, 3)
    assert A.draw_alphas(2, gen(), device=torch.device("meta")).device.type == "meta"


def test_pca_inputs_go_to_the_alphas_device_and_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    """The eigenvalues and eigenvectors are moved to the alphas' device and dtype.  Without a second device the
    requested device is read off the ``Tensor.to`` calls (the check itself needs values, so meta cannot stand in)."""
    real_to = torch.Tensor.to
    asked: list[object] = []

    def spy(self, *args, **kwargs):
        asked.append(kwargs.get("device", "missing"))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    lam, vec = A._pca_inputs([2.0, 1.0, 0.5], torch.eye(3), torch.device("cpu"), torch.float64)
    assert asked == [torch.device("cpu"), torch.device("cpu")]
    assert lam.dtype == vec.dtype == torch.float64
    asked.clear()
    A.pca_offsets(torch.zeros(2, 3, dtype=torch.float64), torch.tensor([2.0, 1.0, 0.5]), torch.eye(3))
    assert asked == [torch.device("cpu"), torch.device("cpu")]


def test_pca_offsets_follow_the_alphas_dtype() -> None:
    """float32 eigen-data with float64 alphas gives float64 offsets (and the reverse float32), by hand:
    sum_i p_i a_i l_i / unit with p_i = e_i."""
    alphas = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    out = A.pca_offsets(alphas, torch.tensor([2.0, 1.0, 0.5]), torch.eye(3), unit=1.0)
    assert out.dtype == torch.float64 and out.tolist() == [[2.0, 2.0, 1.5]]
    out32 = A.pca_offsets(alphas.float(), torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64),
                          torch.eye(3, dtype=torch.float64), unit=1.0)
    assert out32.dtype == torch.float32 and out32.tolist() == [[2.0, 2.0, 1.5]]


def test_pca_shape_checks_and_messages() -> None:
    eye = torch.eye(3)
    assert _user_error_text(lambda: A._pca_inputs([1.0, 2.0], eye, "cpu", torch.float64)) == \
        "PCA: expected eigenvalues (3,) and eigenvectors (3, 3), got (2,) and (3, 3)"
    assert _user_error_text(lambda: A._pca_inputs([1.0, 2.0, 3.0], torch.eye(2), "cpu", torch.float64)) == \
        "PCA: expected eigenvalues (3,) and eigenvectors (3, 3), got (3,) and (2, 2)"
    lam = torch.tensor([1.0, 0.5, 0.25])
    assert _user_error_text(lambda: A.pca_offsets(torch.zeros(2, 4), lam, eye)) == \
        "alphas: expected (B, 3), got (2, 4)"
    assert _user_error_text(lambda: A.pca_offsets(torch.zeros(3), lam, eye)) == "alphas: expected (B, 3), got (3,)"


def test_pca_negative_eigenvalue_tolerance_and_clamp() -> None:
    """Eigenvalues below -1e-6 x the largest |lambda| are refused; rounding-sized negatives (and zeros) pass and
    are clamped to 0, on any scale (float64, hand-computed thresholds)."""
    f64, eye = torch.float64, torch.eye(3)

    def lam_of(values):
        return A._pca_inputs(torch.tensor(values, dtype=f64), eye, "cpu", f64)[0].tolist()

    assert lam_of([1.0, 0.0, 0.0]) == [1.0, 0.0, 0.0]
    assert lam_of([1.0, 1e-8, -1e-9]) == [1.0, 1e-8, 0.0]
    assert lam_of([1.0, 0.0, -1e-6]) == [1.0, 0.0, 0.0]  # exactly at the tolerance: kept
    assert lam_of([1000.0, 0.0, -1e-4]) == [1000.0, 0.0, 0.0]  # tolerance -1e-3 on this scale
    assert lam_of([1e-3, 0.0, -1e-10]) == [1e-3, 0.0, 0.0]  # tolerance -1e-9 on this scale
    assert _user_error_text(lambda: lam_of([1.0, 0.0, -2e-6])) == \
        "PCA: eigenvalues of a covariance cannot be negative, got [1.0, 0.0, -2e-06]"
    assert _user_error_text(lambda: lam_of([1e-3, 0.0, -1e-8])) == \
        "PCA: eigenvalues of a covariance cannot be negative, got [0.001, 0.0, -1e-08]"
    assert _user_error_text(lambda: lam_of([0.0, 0.0, -1e-20])) == \
        "PCA: eigenvalues of a covariance cannot be negative, got [0.0, 0.0, -1e-20]"
