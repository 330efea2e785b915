"""§4.1 / §6 evaluation: ten patches, known errors from a stub, Table 2 output, torchrun sharding, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.cli import main
from alexnet.data.batches import Augmentation, EvalBatches
from alexnet.errors import UserError
from alexnet.inference.evaluate import EvalResult, error_table, evaluate, evaluate_checkpoint, evaluate_model
from alexnet.inference.trained import TrainedRun
from alexnet.inference.scoring import topk_error_rates
from alexnet.paper import ARCH, RESULTS
from alexnet.data.shards import write_store

from helpers import FixedLogits, agent_stores, join_as_rank, make_checkpoint, make_store

def test_topk_error_rates_known_values() -> None:
    probs = np.array([[0.5, 0.2, 0.1, 0.1, 0.05, 0.05],   # label 0: top-1
                      [0.5, 0.2, 0.1, 0.1, 0.06, 0.04],   # label 4: 5th, top-5 hit
                      [0.5, 0.2, 0.1, 0.1, 0.06, 0.04]])  # label 5: 6th, miss
    e1, e5 = topk_error_rates(probs, np.array([0, 4, 5]))
    assert e1 == pytest.approx(2 / 3) and e5 == pytest.approx(1 / 3)


def test_stub_model_gives_known_errors_in_both_modes(tmp_path: Path) -> None:
    classes = 7
    store = make_store(tmp_path / "s", val=20, classes=classes, size=20)
    labels = store.split("val").labels
    n = len(labels)
    logits = torch.zeros(n, classes)
    for i, y in enumerate(labels.tolist()):  # rank of the label: 1 for i < 8, 4 for 8 <= i < 14, 7 after
        order = [(y + s) % classes for s in range(classes)]
        rank = 0 if i < 8 else (3 if i < 14 else 6)
        order.insert(rank, order.pop(0))
        for r, c in enumerate(order):
            logits[i, c] = float(classes - r)
    model = FixedLogits(logits)
    augment = Augmentation.for_evaluation(16, store.stats().mean_image, "image", "paper")
    result = evaluate_model(model, store, split="val", augment=augment, batch_size=n, progress=False)
    errs = result.errors()
    for mode in ("centre", "ten"):
        assert errs[f"{mode}_top1_error"] == pytest.approx(12 / 20)
        assert errs[f"{mode}_top5_error"] == pytest.approx(6 / 20)
        np.testing.assert_allclose(result.probs[mode], logits.softmax(1).numpy(), rtol=1e-6)
    per = result.per_class("ten")
    assert sum(r["images"] for r in per) == n
    assert {"wnid", "name", "top1_error", "top5_error"} <= set(per[0])


class TopLeftPixelLogits(torch.nn.Module):
    """A stub whose logits are (row / 4, column / 4, blue / 10) of each patch's top-left pixel: ten different views."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0, 0, 0] / 4, x[:, 1, 0, 0] / 4, x[:, 2, 0, 0] / 10], dim=1)


def test_ten_patches_average_the_softmax_outputs_by_hand(tmp_path: Path) -> None:
    """§4.1: "averaging the predictions made by the network's softmax layer on the ten patches", not the logits."""
    import math

    size, crop = 20, 12
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    images = np.stack([np.stack([yy, xx, np.full_like(yy, 7 * i)], -1) for i in range(3)]).astype(np.uint8)
    classes = [("n00000000", "a"), ("n00000001", "b"), ("n00000002", "c")]
    store = write_store(tmp_path / "coords", {"train": (images, np.zeros(3, np.int64)),
                                              "val": (images, np.arange(3))}, classes)
    stats = store.stats()
    aug = Augmentation(crop, np.zeros_like(stats.mean_image), stats.eigenvalues, stats.eigenvectors,
                       "image", False, 0.0, "paper")
    result = evaluate_model(TopLeftPixelLogits(), store, split="val", augment=aug, batch_size=3, progress=False)
    # the top-left pixels of the ten views: corners (0,0) (0,8) (8,0) (8,8), centre (4,4); mirrors start 11 right
    views = [(0, 0), (0, 8), (8, 0), (8, 8), (4, 4)]
    views += [(t, l + crop - 1) for t, l in views]
    for b in range(3):
        probs = [0.0, 0.0, 0.0]
        for t, l in views:
            z = [t / 4, l / 4, 7 * b / 10]
            total = sum(math.exp(v) for v in z)
            probs = [p + math.exp(v) / total / 10 for p, v in zip(probs, z)]
        np.testing.assert_allclose(result.probs["ten"][b], probs, rtol=1e-5)
        mean_logits = [sum(t for t, _ in views) / 40, sum(l for _, l in views) / 40, 7 * b / 10]
        softmax_of_mean = [math.exp(v) / sum(math.exp(u) for u in mean_logits) for v in mean_logits]
        assert max(abs(p - q) for p, q in zip(probs, softmax_of_mean)) > 0.02  # the two rules differ here
    centre = [4 / 4, 4 / 4]
    for b in range(3):
        z = centre + [7 * b / 10]
        np.testing.assert_allclose(result.probs["centre"][b], [math.exp(v) / sum(math.exp(u) for u in z) for v in z],
                                   rtol=1e-5)


def test_ten_patches_end_to_end_from_the_store(tmp_path: Path) -> None:
    """Store -> EvalBatches -> eval_transform: the four corners, the centre, and their mirrors."""
    size, crop = 20, 12
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    images = np.stack([np.stack([yy, xx, np.full_like(yy, 7 * i)], -1) for i in range(3)]).astype(np.uint8)
    store = write_store(tmp_path / "coords", {"train": (images, np.zeros(3, np.int64)),
                                              "val": (images, np.zeros(3, np.int64))},
                        [("n00000000", "a"), ("n00000001", "b")])
    stats = store.stats()
    aug = Augmentation(crop, np.zeros_like(stats.mean_image), stats.eigenvalues, stats.eigenvectors,
                       "image", False, 0.0, "paper")
    x, _, idx = EvalBatches(store.split("val"), batch_size=3, augment=aug, patches="ten")[0]
    assert x.shape == (3, 10, 3, crop, crop) and idx.tolist() == [0, 1, 2]
    last, mid = size - crop, (size - crop) // 2
    corners = [(0, 0), (0, last), (last, 0), (last, last), (mid, mid)]
    for b in range(3):
        assert torch.all(x[b, :, 2] == 7 * b)
        for k, (top, left) in enumerate(corners):
            view = x[b, k]
            assert view[0, 0, 0] == top and view[1, 0, 0] == left  # top-left pixel's coordinates
            assert view[0, -1, 0] == top + crop - 1 and view[1, 0, -1] == left + crop - 1
            assert torch.equal(x[b, k + 5], view.flip(-1))  # the mirror
            assert x[b, k + 5][1, 0, 0] == left + crop - 1


def test_eval_writes_table2_json_and_probabilities(tmp_path: Path, capsys) -> None:
    store = make_store(tmp_path / "s", val=13)
    run = make_checkpoint(tmp_path / "run", store)
    assert main(["eval", str(run), "--data", str(store.path), "--patches", "both", "--quiet", "--per-class"]) == 0
    printed = capsys.readouterr().out
    assert "| Model (13 images, 4 classes) | Top-1 (val) | Top-5 (val) |" in printed
    assert "ten patches (§4.1)" in printed and "| class | wnid |" in printed
    out = run / "eval"
    summary = json.loads((out / "eval.json").read_text())
    assert summary["images"] == 13 and summary["num_classes"] == 4 and len(summary["classes"]) == 4
    assert len(summary["per_class"]["ten"]) == 4 and "centre_top5_error" in summary
    for mode in ("centre", "ten"):
        p = np.load(out / f"probs_{mode}.npy")
        assert p.shape == (13, 4) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert np.array_equal(np.load(out / "labels.npy"), store.split("val").labels)
    assert len((out / "predictions.tsv").read_text().splitlines()) == 14
    assert "Per class" in (out / "eval.md").read_text()


def _eval_worker(rank: int, world: int, port: int, run: str, store: str, out: str) -> None:
    join_as_rank(rank, world, port)
    torch.set_num_threads(1)
    try:
        evaluate_checkpoint(run, store, out=out, batch_size=8, device="cpu", progress=False)
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_count_every_image_once(tmp_path: Path, monkeypatch) -> None:
    """torchrun-style: 2 gloo processes on an odd split (41 images) give the one-process probabilities."""
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    store = make_store(tmp_path / "s", val=41)
    run = make_checkpoint(tmp_path / "run", store)
    single = evaluate_checkpoint(run, store.path, out=tmp_path / "one", batch_size=8, device="cpu", progress=False)
    with agent_stores() as [port]:
        torch.multiprocessing.spawn(_eval_worker, args=(2, port, str(run), str(store.path), str(tmp_path / "two")),
                                    nprocs=2, join=True)
    for mode in ("centre", "ten"):
        two = np.load(tmp_path / "two" / f"probs_{mode}.npy")
        assert two.shape == (41, 4)
        np.testing.assert_allclose(two.sum(1), 1, atol=1e-5)  # no image twice, none missing
        np.testing.assert_allclose(two, single.probs[mode], atol=1e-6)
    assert json.loads((tmp_path / "two" / "eval.json").read_text())["images"] == 41


def test_unknown_classes_and_other_architectures_are_user_errors(tmp_path: Path, capsys) -> None:
    store = make_store(tmp_path / "s", classes=4)
    run = make_checkpoint(tmp_path / "run", store)
    other = write_store(tmp_path / "other", {"val": (np.zeros((2, 20, 20, 3), np.uint8), np.array([0, 1]))},
                        [("n00000000", "class 0"), ("n09999999", "stranger")] + [(f"n0000000{i}", "x") for i in (2, 3)])
    with pytest.raises(UserError, match="classes the checkpoint does not know: n09999999"):
        evaluate_checkpoint(run, other.path, progress=False)
    five = make_store(tmp_path / "five", classes=5)
    assert main(["eval", str(run), "--data", str(five.path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "n00000004" in err and "Traceback" not in err
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ckpt["model"]["conv3.weight"] = torch.zeros(8, 8, 3, 3)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="layer conv3 disagrees"):
        evaluate_checkpoint(tmp_path / "bad.pt", store.path, progress=False)


def test_eval_result_table_has_the_papers_rows_for_1000_classes() -> None:
    labels = np.arange(4)
    probs = np.full((4, ARCH.num_classes), 1 / ARCH.num_classes, np.float32)
    table = EvalResult("val", labels, {"ten": probs}).table()
    ref = RESULTS.ilsvrc2012_val_1cnn
    assert "Top-1 (val)" in table and f"*{ref.top1:.1f}%*" in table and f"*{ref.top5:.1f}%*" in table


# --------------------------------------------------------------------------- tables and files, by hand

def test_error_table_lines_by_hand() -> None:
    """Table 2's shape: a header naming images, classes and split, then one row per model in percent (one
    decimal); no paper rows below 1000 classes."""
    table = error_table([("1 CNN, centre patch", 0.25, 0.125), ("other", 0.5, 0.0)], "val", 8, 10)
    assert table.split("\n") == ["| Model (8 images, 10 classes) | Top-1 (val) | Top-5 (val) |",
                                 "|---|---|---|",
                                 "| 1 CNN, centre patch | 25.0% | 12.5% |",
                                 "| other | 50.0% | 0.0% |"]


def _ranked(label: int, rank: int, classes: int) -> list[float]:
    """Scores over ``classes`` classes with ``label`` at 0-based ``rank`` (the others in index order)."""
    order = [c for c in range(classes) if c != label]
    order.insert(rank, label)
    scores = [0.0] * classes
    for r, c in enumerate(order):
        scores[c] = float(classes - r)
    return scores


#: 7 classes; (label, rank of the label) per image.  Class 0: ranks 0, 1 (top-1 error 1/2, top-5 0);
#: class 1: ranks 5, 0 (top-1 1/2, top-5 1/2: the 6th is a top-5 miss); class 3: ranks 0, 0, 0, 4 (1/4, 0);
#: class 4: rank 6 (1, 1); classes 2, 5, 6: no images.
RANKED = [(0, 0), (0, 1), (1, 5), (1, 0), (3, 0), (3, 0), (3, 0), (3, 4), (4, 6)]
RANKED_CLASSES = [(f"n0000000{c}", f"name {c}") for c in range(7)]


def _ranked_result(classes: list[tuple[str, str]]) -> EvalResult:
    probs = np.array([_ranked(y, r, 7) for y, r in RANKED])
    return EvalResult("val", np.array([y for y, _ in RANKED]), {"ten": probs}, classes)


def test_per_class_errors_by_hand() -> None:
    """Each class's top-1 and top-5 error over its own images; None for a class without images; without
    class names the rows are named by the class index."""
    expected = {0: (2, 0.5, 0.0), 1: (2, 0.5, 0.5), 2: (0, None, None), 3: (4, 0.25, 0.0), 4: (1, 1.0, 1.0),
                5: (0, None, None), 6: (0, None, None)}
    for classes, names in ((RANKED_CLASSES, RANKED_CLASSES), ([], [(str(c), str(c)) for c in range(7)])):
        rows = _ranked_result(classes).per_class("ten")
        assert [(r["class"], r["wnid"], r["name"]) for r in rows] == [(c, w, n) for c, (w, n) in enumerate(names)]
        for r in rows:
            n, e1, e5 = expected[r["class"]]
            assert r["images"] == n
            assert r["top1_error"] == (None if e1 is None else pytest.approx(e1))
            assert r["top5_error"] == (None if e5 is None else pytest.approx(e5))


def test_per_class_table_lines_by_hand() -> None:
    """The per-class Markdown table defaults to the ten-patch mode when there is one (whatever the order of
    the modes); a class without images shows a dash."""
    result = _ranked_result(RANKED_CLASSES)
    result.probs = {"centre": np.array([_ranked(y, 0, 7) for y, _ in RANKED]), "ten": result.probs["ten"]}
    assert result.per_class_table().split("\n") == [
        "| class | wnid | name | images | top-1 error (ten) | top-5 error (ten) |",
        "|---|---|---|---|---|---|",
        "| 0 | n00000000 | name 0 | 2 | 50.0% | 0.0% |",
        "| 1 | n00000001 | name 1 | 2 | 50.0% | 50.0% |",
        "| 2 | n00000002 | name 2 | 0 | — | — |",
        "| 3 | n00000003 | name 3 | 4 | 25.0% | 0.0% |",
        "| 4 | n00000004 | name 4 | 1 | 100.0% | 100.0% |",
        "| 5 | n00000005 | name 5 | 0 | — | — |",
        "| 6 | n00000006 | name 6 | 0 | — | — |"]
    assert result.per_class_table("centre").split("\n")[2] == "| 0 | n00000000 | name 0 | 2 | 0.0% | 0.0% |"


def test_table_names_a_mode_outside_the_paper_by_its_key() -> None:
    """A mode without a Table 2 name is listed under its own key."""
    probs = np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])
    table = EvalResult("test", np.array([0, 1]), {"ten": probs, "vote": probs}).table()
    assert table.split("\n")[2:] == ["| 1 CNN, ten patches (§4.1) | 50.0% | 0.0% |", "| vote | 50.0% | 0.0% |"]


def _saved_result() -> EvalResult:
    """Four images of 3 classes: labels 0, 2, -1 (unlabelled) and 3 (outside the class list); two known
    source paths.  ten: top-1 errors 3/4, top-5 2/4; centre: 2/4 and 2/4, with another prediction for image 1."""
    ten = np.array([[0.5, 0.25, 0.25], [0.125, 0.625, 0.25], [0.25, 0.25, 0.5], [0.75, 0.125, 0.125]])
    centre = np.array([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])
    return EvalResult("val", np.array([0, 2, -1, 3], np.int32), {"centre": centre, "ten": ten},
                      [("n01", "a"), ("n02", "b"), ("n03", "c")], ["img/0.jpg", "img/1.jpg"])


def test_save_writes_every_file_by_hand(tmp_path: Path) -> None:
    """OUT/: float32 probabilities per mode, int64 labels, eval.json (indented, with its keys), eval.md (the
    two tables) and predictions.tsv (ten-patch predictions; an unlabelled or unknown label has no p_label);
    saving again into the same folder overwrites."""
    result = _saved_result()
    out = tmp_path / "eval"
    result.save(out, {"note": "first"})
    result.save(out, {"note": "again"})
    for mode in ("centre", "ten"):
        p = np.load(out / f"probs_{mode}.npy")
        assert p.dtype == np.float32 and np.array_equal(p, result.probs[mode])
    labels = np.load(out / "labels.npy")
    assert labels.dtype == np.int64 and labels.tolist() == [0, 2, -1, 3]
    text = (out / "eval.json").read_text()
    assert text.startswith('{\n  "split": "val",\n  "images": 4,\n  "num_classes": 3,\n'
                           '  "modes": [\n    "centre",\n    "ten"\n  ],\n')
    summary = json.loads(text)
    assert summary["centre_top1_error"] == 0.5 and summary["centre_top5_error"] == 0.5
    assert summary["ten_top1_error"] == 0.75 and summary["ten_top5_error"] == 0.5
    assert summary["note"] == "again" and summary["classes"] == [["n01", "a"], ["n02", "b"], ["n03", "c"]]
    assert [r["images"] for r in summary["per_class"]["ten"]] == [1, 0, 1]
    assert (out / "eval.md").read_text() == "\n".join([
        "| Model (4 images, 3 classes) | Top-1 (val) | Top-5 (val) |",
        "|---|---|---|",
        "| 1 CNN, centre patch | 50.0% | 50.0% |",
        "| 1 CNN, ten patches (§4.1) | 75.0% | 50.0% |",
        "",
        "Per class:",
        "",
        "| class | wnid | name | images | top-1 error (ten) | top-5 error (ten) |",
        "|---|---|---|---|---|---|",
        "| 0 | n01 | a | 1 | 0.0% | 0.0% |",
        "| 1 | n02 | b | 0 | — | — |",
        "| 2 | n03 | c | 1 | 100.0% | 0.0% |",
        ""])
    assert (out / "predictions.tsv").read_text() == (
        "index\tpath\tlabel\tpredicted_ten\tp_label\tp_predicted\n"
        "0\timg/0.jpg\tn01\tn01\t0.500000\t0.500000\n"
        "1\timg/1.jpg\tn03\tn02\t0.250000\t0.625000\n"
        "2\t\t-1\tn03\t\t0.500000\n"
        "3\t\t3\tn01\t\t0.750000\n")


def test_predictions_without_class_names_use_class_indices(tmp_path: Path) -> None:
    """Without classes the label and prediction columns hold class indices; with only a centre mode it is the
    one predicted."""
    centre = np.array([[0.25, 0.75], [0.5, 0.5]])
    EvalResult("val", np.array([1, 0]), {"centre": centre}).save(tmp_path)
    assert (tmp_path / "predictions.tsv").read_text() == ("index\tpath\tlabel\tpredicted_centre\tp_label\tp_predicted\n"
                                                          "0\t\t1\t1\t0.750000\t0.750000\n"
                                                          "1\t\t0\t0\t0.500000\t0.500000\n")


# --------------------------------------------------------------------------- bad input

def test_unknown_patch_mode_is_a_user_error(tmp_path: Path) -> None:
    """The modes are checked first (before any file is opened), naming the key and the allowed values."""
    with pytest.raises(UserError, match=r"^patches: unknown value 'tiles'; allowed: centre, ten$"):
        evaluate_checkpoint(tmp_path / "no-run", tmp_path / "no-store", modes=("centre", "tiles"), progress=False)


def test_batch_size_below_one_is_a_user_error_and_one_is_allowed(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s", train=8, val=3)
    run = make_checkpoint(tmp_path / "run", store)
    with pytest.raises(UserError, match=r"^batch_size: must be at least 1, got 0$"):
        evaluate_checkpoint(run, store.path, batch_size=0, device="cpu", progress=False)
    result = evaluate(TrainedRun.open(run, device="cpu"), store, modes=("centre",), batch_size=1, progress=False)
    assert result.probs["centre"].shape == (3, 4)


class BatchSizes(torch.nn.Module):
    """Wraps a network and records the batch size of every forward pass."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.spec, self.sizes = net, net.spec, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(int(x.shape[0]))
        return self.net(x)


def test_the_batch_size_reaches_the_network(tmp_path: Path) -> None:
    """--batch-size (the memory knob) is what the network is fed: 5 images in batches of 2, 2 and 1."""
    store = make_store(tmp_path / "s", train=8, val=5)
    run = TrainedRun.open(make_checkpoint(tmp_path / "run", store), device="cpu")
    run.model = BatchSizes(run.model)
    evaluate(run, store, modes=("centre",), batch_size=2, progress=False)
    assert run.model.sizes == [2, 2, 1]


def test_unknown_device_is_a_user_error(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s", train=8, val=2)
    run = make_checkpoint(tmp_path / "run", store)
    with pytest.raises(UserError, match="unknown device 'abacus'"):
        evaluate_checkpoint(run, store.path, device="abacus", progress=False)


# --------------------------------------------------------------------------- evaluate_checkpoint's choices

def test_a_named_split_and_modes_are_the_ones_evaluated(tmp_path: Path) -> None:
    """split="train" evaluates (and records) the training images, not val; modes=("centre",) only the centre."""
    store = make_store(tmp_path / "s", train=6, val=3)
    run = make_checkpoint(tmp_path / "run", store)
    result = evaluate_checkpoint(run, store.path, split="train", out=tmp_path / "out", modes=("centre",),
                                 device="cpu", progress=False)
    assert result.split == "train" and list(result.probs) == ["centre"]
    assert result.labels.tolist() == store.split("train").labels.tolist() and result.probs["centre"].shape == (6, 4)
    assert result.paths == [f"train/{i}" for i in range(6)]
    summary = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert summary["split"] == "train" and summary["images"] == 6 and summary["modes"] == ["centre"]
    assert summary["images_sha256"] == store.manifest["splits"]["train"]["paths"]["sha256"]
    assert not (tmp_path / "out" / "probs_ten.npy").exists()


def test_the_named_split_is_the_one_verified(tmp_path: Path) -> None:
    """A flipped byte in the split asked for is found before evaluating (the val split is intact)."""
    store = make_store(tmp_path / "s", train=6, val=3)
    run = make_checkpoint(tmp_path / "run", store)
    shard = store.path / "train" / "shard-00000.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(UserError, match="train/shard-00000.npy is damaged"):
        evaluate_checkpoint(run, store.path, split="train", device="cpu", progress=False)


def test_eval_json_records_where_the_numbers_come_from(tmp_path: Path) -> None:
    """Provenance in eval.json: the checkpoint file, the store, the manifest's and the paths' sha256, the
    reading, the architecture and the mean; no "weights" for a run trained here.  Without OUT nothing is saved."""
    store = make_store(tmp_path / "s", train=8, val=3)
    run = make_checkpoint(tmp_path / "run", store)
    result = evaluate_checkpoint(run, store.path, modes=("centre",), device="cpu", progress=False)
    assert result.published is None and not (run / "eval").exists()
    evaluate_checkpoint(run, store.path, out=tmp_path / "out", modes=("centre",), device="cpu", progress=False)
    summary = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert summary["checkpoint"] == str(run / "checkpoints" / "last.pt")
    assert summary["store"] == str(store.path.resolve())
    assert summary["store_manifest_sha256"] == hashlib.sha256((store.path / "manifest.json").read_bytes()).hexdigest()
    assert summary["images_sha256"] == store.manifest["splits"]["val"]["paths"]["sha256"]
    assert summary["reading"] == "paper" and summary["arch"] == "alexnet2012"
    assert summary["mean"] == f"image mean of the training set, from training store {store.path}"
    assert "weights" not in summary


def test_published_accuracy_of_imported_weights_is_kept(tmp_path: Path) -> None:
    """Weights from `alexnet import` carry their publisher's accuracy: on the result and as "weights" in eval.json."""
    store = make_store(tmp_path / "s", train=8, val=3)
    run = make_checkpoint(tmp_path / "run", store)
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    published = {"top1": 56.5, "top5": 79.1, "protocol": "centre crop", "source": "a model zoo"}
    ckpt["source"] = {"published_accuracy": published}
    torch.save(ckpt, tmp_path / "imported.pt")
    result = evaluate_checkpoint(tmp_path / "imported.pt", store.path, out=tmp_path / "out", modes=("centre",),
                                 device="cpu", progress=False)
    assert result.published == published
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["weights"] == published


def test_progress_bar_only_when_asked(tmp_path: Path, capsys) -> None:
    """progress=False (--quiet) prints nothing on stderr; progress=True and the default show the bar."""
    store = make_store(tmp_path / "s", train=8, val=2)
    run = make_checkpoint(tmp_path / "run", store)
    capsys.readouterr()
    evaluate_checkpoint(run, store.path, modes=("centre",), device="cpu", progress=False)
    assert "eval centre" not in capsys.readouterr().err
    evaluate_checkpoint(run, store.path, modes=("centre",), device="cpu", progress=True)
    assert "eval centre" in capsys.readouterr().err
    evaluate_checkpoint(run, store.path, modes=("centre",), device="cpu")
    assert "eval centre" in capsys.readouterr().err
    evaluate(TrainedRun.open(run, device="cpu"), store, modes=("centre",))
    assert "eval centre" in capsys.readouterr().err


def test_a_store_of_larger_images_gets_the_resampled_mean(tmp_path: Path) -> None:
    """A run trained on 20x20 images evaluates a store of 24x24 images (its mean resampled to 24x24)."""
    store = make_store(tmp_path / "s", train=8, val=2)
    run = make_checkpoint(tmp_path / "run", store)
    larger = make_store(tmp_path / "big", train=8, val=3, size=24)
    result = evaluate_checkpoint(run, larger.path, device="cpu", progress=False)
    assert result.probs["ten"].shape == (3, 4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_evaluation_runs_on_the_runs_device(tmp_path: Path) -> None:
    """A run opened on the GPU is evaluated there: every batch reaches the network on CUDA."""
    store = make_store(tmp_path / "s", train=8, val=3)
    run = TrainedRun.open(make_checkpoint(tmp_path / "run", store), device="cuda")
    seen: list[str] = []
    run.model.register_forward_pre_hook(lambda _, args: seen.append(args[0].device.type))
    evaluate(run, store, modes=("centre",), batch_size=2, progress=False)
    assert seen == ["cuda", "cuda"]
