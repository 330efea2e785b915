"""The paper's numbers, transcribed here by hand, against ``alexnet.paper``, the presets and the built network.

Every expected value below is a literal copied from ``shared/paper/alexnet.md`` (section given beside it)
or from the authors' released 2012 configuration (``layers-145.cfg``, ``layer-params-145.cfg`` and its log,
summarised in ``shared/paper/facts.md``).  None is read from ``alexnet.paper`` or from the code under test:
a wrong constant there fails here.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alexnet import paper
from alexnet.config import load_config
from alexnet.net.model import ModelSpec, build_model

# --------------------------------------------------------------------------- alexnet.paper, number by number


def test_lrn_constants_of_section_3_3() -> None:
    # §3.3: "we used k = 2, n = 5, alpha = 10^-4, and beta = 0.75"
    assert (paper.LRN_PARAMS.k, paper.LRN_PARAMS.n, paper.LRN_PARAMS.alpha, paper.LRN_PARAMS.beta) == (
        2.0, 5, 1e-4, 0.75)


def test_learning_constants_of_section_5() -> None:
    # §5: "batch size of 128 examples, momentum of 0.9, and weight decay of 0.0005"; "initialized at 0.01";
    # "divide the learning rate by 10"; "reduced three times"; "roughly 90 cycles"; "1.2 million images"
    lrn = paper.LEARNING
    assert (lrn.batch_size, lrn.momentum, lrn.weight_decay, lrn.lr) == (128, 0.9, 0.0005, 0.01)
    assert (lrn.lr_divisor, lrn.lr_reductions, lrn.epochs, lrn.train_images) == (10.0, 3, 90, 1_200_000)
    assert lrn.gpu_days == (5.0, 6.0)  # §5: "five to six days"


def test_initialisation_of_section_5() -> None:
    # §5: "zero-mean Gaussian distribution with standard deviation 0.01"; biases 1 in "the second, fourth,
    # and fifth convolutional layers, as well as in the fully-connected hidden layers", 0 elsewhere
    assert paper.INIT.weight_std == 0.01
    assert set(paper.INIT.bias_one_layers) == {"conv2", "conv4", "conv5", "fc6", "fc7"}
    assert [c.bias_init for c in paper.ARCH.conv] == [0.0, 1.0, 0.0, 1.0, 1.0]
    assert (paper.ARCH.fc_bias_init, paper.ARCH.out_bias_init) == (1.0, 0.0)


def test_dropout_of_section_4_2() -> None:
    # §4.2: "setting to zero the output of each hidden neuron with probability 0.5"; "in the first two
    # fully-connected layers"
    assert paper.DROPOUT.p == 0.5
    assert tuple(paper.DROPOUT.layers) == ("fc6", "fc7")


def test_data_constants_of_sections_2_and_4_1() -> None:
    # §2: 256 x 256; §4.1: random 224 x 224 patches, "a factor of 2048", ten test patches, sigma 0.1,
    # "reduces the top-1 error rate by over 1%"
    d = paper.DATA
    assert (d.image_size, d.crop_size, d.translations_factor, d.test_patches) == (256, 224, 2048, 10)
    assert (d.pca_std, d.pca_gain_top1) == (0.1, 1.0)


def test_pooling_of_section_3_4() -> None:
    # §3.4: "s = 2 and z = 3"; the baseline "s = 2, z = 2"; "by 0.4% and 0.3%"
    p = paper.POOL
    assert (p.size, p.stride, p.nonoverlap_size, p.nonoverlap_stride) == (3, 2, 2, 2)
    assert (p.gain_top1, p.gain_top5) == (0.4, 0.3)


def test_architecture_of_section_3_5_and_figure_2() -> None:
    # §3.5: 96 kernels 11x11x3 stride 4; 256 of 5x5x48; 384 of 3x3x256; 384 of 3x3x192; 256 of 3x3x192;
    # conv2, conv4, conv5 see only their own GPU's maps (two columns, §3.2); FC 4096; 1000-way softmax
    rows = [(c.name, c.out_channels, c.kernel, c.stride, c.groups) for c in paper.ARCH.conv]
    assert rows == [("conv1", 96, 11, 4, 1), ("conv2", 256, 5, 1, 2), ("conv3", 384, 3, 1, 1),
                    ("conv4", 384, 3, 1, 2), ("conv5", 256, 3, 1, 2)]
    a = paper.ARCH
    assert (a.fc_units, a.num_classes, a.columns, a.input_size, a.conv1_output) == (4096, 1000, 2, 224, 55)
    assert tuple(a.lrn_after) == ("conv1", "conv2")  # §3.5: "follow the first and second convolutional layers"
    assert tuple(a.pool_after) == ("conv1", "conv2", "conv5")  # §3.5: after both LRN layers and conv5
    # Figure 2's caption
    assert tuple(a.figure2_neurons) == (253_440, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000)


def test_parameter_count_by_hand() -> None:
    # (kernels x inputs per kernel + biases) per layer of §3.5, the two columns' halves summed
    by_hand = (96 * 3 * 11 * 11 + 96) + (256 * 48 * 5 * 5 + 256) + (384 * 256 * 3 * 3 + 384) \
        + (384 * 192 * 3 * 3 + 384) + (256 * 192 * 3 * 3 + 256) + (256 * 6 * 6 * 4096 + 4096) \
        + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert by_hand == 60_965_224 == paper.ARCH.parameter_count


def test_results_of_section_6() -> None:
    r = paper.RESULTS
    pairs = {  # Table 1, Table 2, §6 text (top-1, top-5 error, percent)
        "ilsvrc2010_test_10crop": (37.5, 17.0), "ilsvrc2010_test_1crop": (39.0, 18.3),
        "ilsvrc2012_val_1cnn": (40.7, 18.2), "ilsvrc2012_val_5cnn": (38.1, 16.4),
        "ilsvrc2012_val_1cnn_pretrained": (39.0, 16.6), "ilsvrc2012_val_7cnn": (36.7, 15.4),
        "fall2009_sixth_conv": (67.4, 40.9), "two_columns_gain": (1.7, 1.2), "lrn_gain": (1.4, 1.2),
    }
    for name, (top1, top5) in pairs.items():
        pair = getattr(r, name)
        assert (pair.top1, pair.top5) == (top1, top5), name
    assert r.ensemble_sizes == (5, 7)
    assert r.middle_layer_removed_loss_top1 == 2.0  # §7: "about 2%"


def test_cifar_and_retrieval_claims() -> None:
    # §3.1 / Figure 1: 25% training error, six times faster; §3.3: 13% -> 11% test error with LRN
    c = paper.CIFAR
    assert (c.relu_tanh_target_train_error, c.relu_tanh_speedup, c.four_layer_conv) == (0.25, 6.0, 4)
    assert (c.lrn_test_error_without, c.lrn_test_error_with) == (0.13, 0.11)
    # §6.1 / Figure 4: the 4096-d last hidden layer, six neighbours of five query images, eight left images
    q = paper.RETRIEVAL
    assert (q.feature_dim, q.figure4_neighbours, q.figure4_queries, q.figure4_left_images, q.top_k) == (
        4096, 6, 5, 8, 5)
    # §6: Fall 2009, 10,184 categories, half for training
    assert (paper.FALL2009.classes, paper.FALL2009.train_fraction) == (10_184, 0.5)


def test_code2012_numbers_of_the_released_configuration() -> None:
    c = paper.CODE2012
    # layers-145.cfg: cmrnorm size 5 (layer.py divides the scale by it); cnorm2 rnorm size 5, scale 0.001,
    # pow 0.75; conv3-conv5 initW 0.03; wball 0 (no bias decay); epsB 0.02 against epsW 0.01
    assert c.lrn_alpha_divided_by_n and c.conv1_lrn_before_relu
    assert (c.cnorm2_size, c.cnorm2_scale, c.cnorm2_pow) == (5, 0.001, 0.75)
    assert c.conv3_5_weight_std == 0.03 and c.bias_weight_decay is False and c.bias_lr_multiplier == 2.0
    assert c.conv1_pad_bottom_right == 3  # (55 - 1) * 4 + 11 - 224
    # layer-params-145.cfg's log: epsW 0.01 -> 0.001 at 25 -> 0.0001 at 51 -> 0.00001 at 79, killed at 91;
    # at 67 conv1's epsW / 10 and colour noise 0; at 72 conv1's epsW 0; logprob 0.406640, 0.182100
    assert c.lr_drop_epochs == (25, 51, 79) and c.stop_epoch == 91
    assert (c.conv1_lr_drop_epoch, c.colour_noise_off_from_epoch, c.conv1_frozen_from_epoch) == (67, 67, 72)
    assert c.final_val_error == (0.4066, 0.1821)
    # convdata.py: noise sigma times the components' standard deviations, then / 1.1; crops shared by 32
    assert c.pca_uses_sqrt_eigenvalues and c.pca_rescale == pytest.approx(1 / 1.1) and c.crop_shared_chunk == 32
    # cuda-convnet2 input_meta; layers-146-2011.cfg conv6 128 + 128 3x3; findsimilar.py top 16
    assert c.imagenet_channel_means == (127.30, 119.72, 104.91) and c.imagenet_pc_std == (19.72, 37.09, 121.78)
    assert (c.conv6_channels, c.conv6_kernel, c.neighbours_k) == (256, 3, 16)


def test_the_two_readings_switch_what_the_sources_say() -> None:
    p, c = paper.PAPER_READING, paper.CODE2012_READING
    # the printed text: alpha multiplies the sum, ReLU before LRN, one std 0.01, noise alpha * lambda, one rate
    assert (p.lrn_alpha_divided_by_n, p.conv1_lrn_before_relu, p.cnorm2, p.conv1_implicit_padding) == (
        False, False, False, False)
    assert (p.conv3_5_weight_std, p.bias_lr_multiplier, p.colour_noise_sqrt_eigenvalues) == (0.01, 1.0, False)
    assert (p.colour_noise_rescale, p.mean_patch_matches_crop, p.crop_shared_chunk) == (1.0, True, 1)
    assert p.bias_lr_follows_schedule
    # the 2012 code
    assert (c.lrn_alpha_divided_by_n, c.conv1_lrn_before_relu, c.cnorm2, c.conv1_implicit_padding) == (
        True, True, True, True)
    assert (c.conv3_5_weight_std, c.bias_weight_decay, c.bias_lr_multiplier) == (0.03, False, 2.0)
    assert (c.colour_noise_sqrt_eigenvalues, c.mean_patch_matches_crop, c.crop_shared_chunk) == (True, False, 32)
    assert c.colour_noise_rescale == pytest.approx(1 / 1.1)
    assert not c.bias_lr_follows_schedule  # epsB stays 0.02 in every layer-params file of the run


# --------------------------------------------------------------------------- the presets


def test_paper_preset_is_the_printed_recipe() -> None:
    cfg = load_config("paper", [])
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.batch_size) == (
        0.01, 0.9, 0.0005, 128)  # §5
    assert (cfg.data.crop, cfg.data.pca, cfg.data.pca_std) == (224, True, 0.1)  # §4.1
    assert (cfg.schedule.kind, cfg.schedule.divisor, cfg.schedule.max_reductions, cfg.schedule.max_epochs) == (
        "plateau", 10.0, 3, 90)  # §5
    assert (cfg.model.reading, cfg.model.variants, cfg.model.width, cfg.model.fc_units) == ("paper", [], 1.0, 4096)
    assert cfg.model.init == "paper" and cfg.model.dropout == "paper"  # §5 init, §4.2 dropout


def test_code2012_preset_is_the_2012_run() -> None:
    from alexnet.training.trainer import schedule_from_config

    cfg = load_config("code2012", [])
    assert (cfg.model.reading, cfg.model.dropout, cfg.schedule.kind) == ("code2012", "paper", "code2012")
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.batch_size) == (
        0.01, 0.9, 0.0005, 128)
    schedule = schedule_from_config(cfg)
    rates = {}
    for epoch in range(1, 92):
        decision = schedule.step(epoch, 0.5)
        rates[epoch] = decision.lr
        if decision.stop:
            break
    assert epoch == 91  # "epoch 91: killed"
    assert rates[24] == rates[1] == 0.01
    assert rates[25] == pytest.approx(0.001) and rates[50] == pytest.approx(0.001)
    assert rates[51] == pytest.approx(0.0001) and rates[78] == pytest.approx(0.0001)
    assert rates[79] == pytest.approx(0.00001) and rates[91] == pytest.approx(0.00001)
    events = sorted((e.after_epoch, e.action, e.layer, round(e.factor, 12)) for e in schedule.events)
    assert events == [(67, "colour_noise_off", "", 1.0), (67, "weight_lr", "conv1", 0.1), (72, "freeze", "conv1", 0.0)]


# --------------------------------------------------------------------------- the built network


def _lrn_by_hand(a: torch.Tensor, alpha: float, beta: float, k: float, n: int) -> torch.Tensor:
    """§3.3 over each column's maps separately (48 per column in conv1)."""
    out = torch.empty_like(a)
    half = n // 2
    for col in range(2):
        lo_c = col * a.shape[1] // 2
        hi_c = lo_c + a.shape[1] // 2
        for i in range(lo_c, hi_c):
            lo, hi = max(lo_c, i - half), min(hi_c - 1, i + half)
            out[:, i] = a[:, i] / (k + alpha * (a[:, lo:hi + 1] ** 2).sum(1)) ** beta
    return out


@pytest.fixture(scope="module")
def paper_net() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelSpec(dropout="paper")).eval()


def test_built_layers_have_the_papers_geometry(paper_net: nn.Module) -> None:
    convs = [(n, m) for n, m in paper_net.named_children() if isinstance(m, nn.Conv2d)]
    got = [(n, m.out_channels, m.kernel_size, m.stride, m.padding, m.groups) for n, m in convs]
    assert got == [("conv1", 96, (11, 11), (4, 4), (2, 2), 1), ("conv2", 256, (5, 5), (1, 1), (2, 2), 2),
                   ("conv3", 384, (3, 3), (1, 1), (1, 1), 1), ("conv4", 384, (3, 3), (1, 1), (1, 1), 2),
                   ("conv5", 256, (3, 3), (1, 1), (1, 1), 2)]
    pools = [(m.kernel_size, m.stride) for m in paper_net.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools == [(3, 2), (3, 2), (3, 2)]  # §3.4: z = 3, s = 2
    fcs = [(m.in_features, m.out_features) for m in paper_net.modules() if isinstance(m, nn.Linear)]
    assert fcs == [(9216, 4096), (4096, 4096), (4096, 1000)]
    assert sum(p.numel() for p in paper_net.parameters()) == 60_965_224


def test_built_order_of_layers() -> None:
    paper_order = ["conv1", "relu1", "lrn1", "pool1", "conv2", "relu2", "lrn2", "pool2", "conv3", "relu3",
                   "conv4", "relu4", "conv5", "relu5", "pool5", "flatten", "fc6", "relu6", "drop6", "fc7",
                   "relu7", "drop7", "fc8"]
    # layers-145.cfg: conv1 -> rnorm1 -> pool1 (ReLU folded in); conv2 (ReLU) -> rnorm2 -> cnorm2 -> pool2
    code_order = ["pad1", "conv1", "lrn1", "relu1", "pool1", "conv2", "relu2", "lrn2", "cnorm2", "pool2"] \
        + paper_order[8:]
    assert [n for n, _ in build_model(ModelSpec()).named_children()] == paper_order
    assert [n for n, _ in build_model(ModelSpec(reading="code2012")).named_children()] == code_order


def test_conv1_pads_two_pixels_on_each_side(paper_net: nn.Module) -> None:
    """A single bright pixel at the top-left corner reaches output (0, 0) through kernel tap (2, 2)."""
    x = torch.zeros(1, 3, 224, 224, dtype=torch.float64)
    x[0, :, 0, 0] = 1.0
    conv = paper_net.conv1
    with torch.no_grad():
        out = nn.functional.conv2d(x, conv.weight.double(), conv.bias.double(), conv.stride, conv.padding)
    expected = conv.weight.double()[:, :, 2, 2].sum(1) + conv.bias.double()
    assert torch.allclose(out[0, :, 0, 0], expected, atol=1e-12)
    got = paper_net.conv1(x.float())[0, :, 0, 0]
    assert torch.allclose(got.double(), expected, atol=1e-6)
    assert paper_net.conv1(torch.zeros(1, 3, 224, 224)).shape[-1] == 55  # (224 + 2 * 2 - 11) // 4 + 1


def test_built_lrn_is_the_printed_formula_with_the_printed_constants(paper_net: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.relu(torch.randn(2, 96, 3, 3, generator=g, dtype=torch.float64)) * 40
    got = paper_net.lrn1(a)
    assert torch.allclose(got, _lrn_by_hand(a, 1e-4, 0.75, 2.0, 5), rtol=0, atol=1e-12)  # §3.3
    code = build_model(ModelSpec(reading="code2012")).lrn1
    assert torch.allclose(code(a), _lrn_by_hand(a, 1e-4 / 5, 0.75, 2.0, 5), rtol=0, atol=1e-12)  # layer.py


def test_built_initialisation_and_biases() -> None:
    torch.manual_seed(0)
    net = build_model(ModelSpec())
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}  # §5
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        layer = getattr(net, name)
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.05), name
        assert torch.all(layer.bias == (1.0 if name in ones else 0.0)), name


def test_built_dropout_is_the_papers_form(paper_net: nn.Module) -> None:
    """§4.2: zero with probability 0.5 in training (survivors unscaled); at test time all neurons, times 0.5."""
    net = build_model(ModelSpec(dropout="paper"))
    drop = net.drop6
    x = torch.ones(200_000)
    drop.train()
    torch.manual_seed(0)
    kept = drop(x)
    assert set(kept.unique().tolist()) == {0.0, 1.0}
    assert abs(kept.mean().item() - 0.5) < 0.01
    drop.eval()
    assert torch.equal(drop(torch.full((5,), 3.0)), torch.full((5,), 1.5))
    assert not any(type(m) is nn.Dropout for m in net.modules())  # not torch's inverted dropout


