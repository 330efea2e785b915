"""``alexnet experiment imagenette-128``: the workhorse's quick path on a tiny generated store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alexnet.data.shards import write_store
from alexnet.errors import UserError
from alexnet.experiments import parameters, record, run_experiment
from helpers import quadrant_images


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("i128") / "imagenette-146"
    write_store(path, {"train": quadrant_images(96, 24, 4, rng), "holdout": quadrant_images(16, 24, 4, rng),
                       "val": quadrant_images(24, 24, 4, rng)}, [(f"n{i:08d}", f"c{i}") for i in range(4)])
    return path


def test_quick_workhorse_two_seeds_record_and_ensembles(tmp_path: Path, store: Path, capsys) -> None:
    out = tmp_path / "run"
    doc = run_experiment("imagenette-128", budget="quick", out=out, seeds=2, stores={"imagenette-146": store},
                         params=["train_images=0", "val_images=0", "batch_size=16"], cache=tmp_path / "cache",
                         threads=1)
    rec = record.load(out / "record.json")
    assert set(rec["arms"]) == {"workhorse", "ensemble-1", "ensemble-2"}
    seeds = rec["arms"]["workhorse"]["per_seed"]
    assert set(seeds) == {"0", "1"}
    for values in seeds.values():
        assert values["checkpoint"] == "best.pt"  # decided on the holdout
        assert 0 <= values["ten_top1_error"] <= 1 and values["ten_top1_accuracy"] == 1 - values["ten_top1_error"]
        assert "colour_energy_column1" in values and "colour_energy_column2" in values
        assert 0 <= values["colour_energy_split_null"] and 0 < values["colour_energy_split_p"] <= 1  # §6.1's null
        assert 0 <= values["train_centre_top1_error"] <= 1  # §4.2: the same net on its 96 training images
        assert values["overfit_centre_top1"] == values["centre_top1_error"] - values["train_centre_top1_error"]
        assert values["lrn1_load_mean"] > 0 and values["lrn2_load_max"] >= values["lrn2_load_mean"] > 0
    assert (out / "runs" / "workhorse-seed0" / "eval-train-best" / "eval.json").is_file()
    assert json.loads((out / "runs" / "workhorse-seed0" / "eval-train-best" / "eval.json").read_text())["images"] == 96
    # one net "averaged" is that net's own ten-patch error; two nets are their kept probabilities averaged
    ones, twos = rec["arms"]["ensemble-1"]["per_seed"], rec["arms"]["ensemble-2"]["per_seed"]
    assert set(ones) == {"0", "1"} and set(twos) == {"0+1"}
    for s in "01":
        assert ones[s]["ten_top1_error"] == pytest.approx(seeds[s]["ten_top1_error"])
    kept = [np.load(out / f"probs_ten-workhorse-seed{s}.npz") for s in (0, 1)]
    assert kept[0]["probs"].dtype == np.float32 and kept[0]["probs"].shape == (24, 4)
    assert np.array_equal(kept[0]["labels"], kept[1]["labels"]) and len(kept[0]["labels"]) == 24
    mean = (kept[0]["probs"] + kept[1]["probs"]) / 2
    wrong = np.mean(mean.argmax(1) != kept[0]["labels"])
    assert twos["0+1"]["ten_top1_error"] == pytest.approx(wrong)
    assert record.render(rec) in doc["table"]
    # a rerun reads every evaluation from its cache: the record keeps the first evaluation's seconds
    for folder, seconds in (("eval-val-best", 1000.0), ("eval-train-best", 234.5)):
        cached = out / "runs" / "workhorse-seed0" / folder / "eval.json"
        cached.write_text(json.dumps({**json.loads(cached.read_text()), "seconds": seconds}))
    run_experiment("imagenette-128", budget="quick", out=out, seeds=2, stores={"imagenette-146": store},
                   params=["train_images=0", "val_images=0", "batch_size=16"], cache=tmp_path / "cache", threads=1)
    again = record.load(out / "record.json")["arms"]["workhorse"]["per_seed"]
    assert again["0"]["eval_seconds"] == 1234.5
    assert again["0"]["wall_seconds"] == pytest.approx(seeds["0"]["train_seconds"] + 1234.5)
    assert again["1"]["eval_seconds"] == seeds["1"]["eval_seconds"] > 0  # cached with its evaluation
    events = [json.loads(line) for line in (out / "runs" / "workhorse-seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [e["split"] for e in events if e.get("event") == "decision_split"] == ["holdout"]


def test_an_ablation_arm_alone_records_no_workhorse_goal(tmp_path: Path, store: Path) -> None:
    """An arm run without the workhorse (to be merged with it later) says nothing of the workhorse's goal."""
    out = tmp_path / "arm"
    run_experiment("imagenette-128", budget="quick", out=out, seeds=1, stores={"imagenette-146": store},
                   params=["train_images=0", "val_images=0", "batch_size=16", "arms=one-column"],
                   cache=tmp_path / "cache", threads=1)
    rec = record.load(out / "record.json")
    assert set(rec["arms"]) == {"one-column"} and rec["verdicts"] == []
    assert len(rec["notes"]) == 1 and rec["notes"][0].startswith("Budget `quick`")


def test_lrn_load_is_what_the_layers_divide_by(tmp_path: Path, store: Path) -> None:
    """§3.3: b = a / (k + α·Σa²)^β with k = 2, β = 0.75, so α·Σa²/k = (a / b)^(1/β) / k − 1, read off each LRN
    layer's own input and output; an arm without LRN has no load."""
    import torch

    from alexnet.data.store import Store
    from alexnet.experiments.imagenette128 import lrn_load
    from alexnet.inference.trained import TrainedRun

    out = tmp_path / "arms"
    run_experiment("imagenette-128", budget="quick", out=out, seeds=1, stores={"imagenette-146": store},
                   params=["train_images=0", "val_images=0", "batch_size=16", "arms=workhorse,no-lrn"],
                   cache=tmp_path / "cache", threads=1)
    assert not any(k.startswith("lrn") for k in record.load(out / "record.json")["arms"]["no-lrn"]["per_seed"]["0"])
    checkpoint = out / "runs" / "workhorse-seed0" / "checkpoints" / "best.pt"
    s = Store(store)
    measured = lrn_load(checkpoint, s, images=8)
    run = TrainedRun.open(checkpoint, device="cpu")
    pixels = s.split("holdout").read(np.arange(8))  # the first 8 holdout images, centre patch, training mean off
    x = run.augmentation(s.image_size).evaluate(pixels, "centre")
    seen = {}
    hooks = [getattr(run.model, name).register_forward_hook(
        lambda m, i, o, name=name: seen.__setitem__(name, (i[0].float(), o.float()))) for name in ("lrn1", "lrn2")]
    with torch.no_grad():
        run.model.eval()(x)
    for h in hooks:
        h.remove()
    for name, (a, b) in seen.items():
        # §3.3's sum by a loop: maps max(0, i - n/2) .. min(N - 1, i + n/2) of the same column, n = 5
        per_column = a.shape[1] // getattr(run.model, name).groups
        load = torch.zeros_like(a)
        for i in range(a.shape[1]):
            first = i // per_column * per_column
            load[:, i] = (a[:, max(first, i - 2):min(first + per_column - 1, i + 2) + 1] ** 2).sum(1)
        load *= 1e-4 / 2  # α = 1e-4, k = 2
        assert measured[f"{name}_load_mean"] == pytest.approx(float(load.mean()), rel=1e-4), name
        assert measured[f"{name}_load_max"] == pytest.approx(float(load.max()), rel=1e-4), name
        keep = a.abs() > 1e-3  # where a is 0 (after ReLU), so is b and the ratio says nothing
        assert torch.allclose((a[keep] / b[keep]) ** (1 / 0.75) / 2 - 1, load[keep], rtol=1e-3, atol=1e-5), name


def test_unknown_arm_is_one_line(tmp_path: Path, store: Path) -> None:
    with pytest.raises(UserError, match="unknown arm 'deeper'"):
        run_experiment("imagenette-128", budget="quick", out=tmp_path / "x", stores={"imagenette-146": store},
                       params=["arms=workhorse,deeper"], cache=tmp_path / "cache", threads=1)
    assert parameters("imagenette-128", "full")["holdout"] == 50


def test_ensembles_average_every_choice_of_nets_by_hand(tmp_path: Path) -> None:
    """§6 by hand: each of two nets errs on one of four images, their average on none (labels 0, 1, 2, 0)."""
    from alexnet.experiments.imagenette128 import ensemble_arms, load_net_probs, save_net_probs

    labels = np.array([0, 1, 2, 0])
    p0 = np.array([[.6, .4, 0], [.45, .55, 0], [.2, .3, .5], [.4, .6, 0]])  # wrong on image 3
    p1 = np.array([[.45, .55, 0], [.3, .7, 0], [.1, .1, .8], [.9, .1, 0]])  # wrong on image 0
    nets = {s: load_net_probs(save_net_probs(tmp_path / f"{s}.npz", p, labels)) for s, p in ((0, p0), (1, p1),
                                                                                               (2, p0))}
    arms = ensemble_arms(nets)
    top1 = {k: {c: v["ten_top1_error"] for c, v in arm["per_seed"].items()} for k, arm in arms.items()}
    assert top1 == {"ensemble-1": {"0": .25, "1": .25, "2": .25},
                    "ensemble-2": {"0+1": 0.0, "0+2": .25, "1+2": 0.0},
                    "ensemble-3": {"0+1+2": 0.0}}
    nets[1] = (p1, np.array([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="seed 1 was evaluated on other images"):
        ensemble_arms(nets)
    (tmp_path / "bad.npz").write_text("not numpy")
    with pytest.raises(ValueError, match="bad.npz: not a kept-probabilities file"):
        load_net_probs(tmp_path / "bad.npz")


def test_kept_probabilities_of_two_runs_rebuild_the_ensemble_rows(tmp_path: Path) -> None:
    """Nets kept by different runs are averaged into the results file's ensemble rows; a file that is not a
    recorded workhorse net (wrong seed, wrong error, wrong name) is refused, naming it."""
    from alexnet.experiments.imagenette128 import save_net_probs, with_kept_ensembles

    labels = np.array([0, 1, 2, 0])
    p3 = np.array([[.6, .4, 0], [.45, .55, 0], [.2, .3, .5], [.4, .6, 0]])  # wrong on image 3: 25%
    p4 = np.array([[.45, .55, 0], [.3, .7, 0], [.1, .1, .8], [.9, .1, 0]])  # wrong on image 0: 25%
    files = [save_net_probs(tmp_path / f"probs_ten-workhorse-seed{s}.npz", p, labels) for s, p in ((3, p3), (4, p4))]
    doc = {"name": "imagenette-128", "notes": [],
           "arms": {"workhorse": {"per_seed": {"3": {"ten_top1_error": .25}, "4": {"ten_top1_error": .25}}},
                    "ensemble-1": {"per_seed": {"0": {"ten_top1_error": .3}}}, "one-column": {"per_seed": {}}},
           "table": {"rows": ["workhorse", "ensemble-1", "one-column"], "columns": []}}
    out = with_kept_ensembles(doc, files)
    assert out["table"]["rows"] == ["workhorse", "ensemble-1", "ensemble-2", "one-column"]
    assert out["arms"]["ensemble-2"]["per_seed"] == {"3+4": {"ten_top1_error": 0.0, "ten_top5_error": 0.0}}
    assert set(out["arms"]["ensemble-1"]["per_seed"]) == {"3", "4"} and "seeds 3, 4" in out["notes"][-1]
    again = with_kept_ensembles({**out, "notes": ["Budget `full`.", *out["notes"]]}, files[:1])  # one net left
    assert again["notes"] == ["Budget `full`.", "§6's ensembles recomputed from the kept probabilities of workhorse "
                                                "seeds 3 (tools/ensemble_record.py)."]
    assert doc["arms"]["ensemble-1"]["per_seed"] == {"0": {"ten_top1_error": .3}}  # the input is not changed
    doc["arms"]["workhorse"]["per_seed"]["4"]["ten_top1_error"] = .5
    with pytest.raises(ValueError, match=r"seed4.npz: gives 25.00% top-1 error; the results file records 50.00%"):
        with_kept_ensembles(doc, files)
    del doc["arms"]["workhorse"]["per_seed"]["4"]
    with pytest.raises(ValueError, match="seed4.npz: the results file has no workhorse seed 4"):
        with_kept_ensembles(doc, files)
    with pytest.raises(ValueError, match="seed3.npz: seed 3 is given twice"):
        with_kept_ensembles(doc, [files[0], files[0]])
    with pytest.raises(ValueError, match="net3.npz: not a kept-probabilities file name"):
        with_kept_ensembles(doc, [tmp_path / "net3.npz"])


def test_checkpoints_add_the_colour_split_null_to_their_recorded_seeds(tmp_path: Path) -> None:
    """§6.1's split null computed from a workhorse net's checkpoint lands on its seed; a checkpoint whose conv1
    does not give the recorded colour energies (another net) or whose seed is not recorded is refused."""
    import torch

    from alexnet.experiments.imagenette128 import with_colour_null
    from alexnet.inference.trained import KIND
    from alexnet.net.model import build_model
    from alexnet.probes.kernels import colour_energy, column_split_null

    torch.manual_seed(0)
    model = build_model(num_classes=4, input_size=64, width=0.25, fc_units=16)
    ckpt = tmp_path / "best.pt"
    torch.save({"kind": KIND, "model": model.state_dict(), "model_spec": model.spec.to_dict(),
                "config": {"run": {"seed": 6}}}, ckpt)
    energy = colour_energy(model.conv1_kernels().numpy())
    half = len(energy) // 2
    doc = {"name": "imagenette-128", "notes": ["Budget `full`."],
           "arms": {"workhorse": {"per_seed": {"6": {"colour_energy_column1": float(energy[:half].mean()),
                                                     "colour_energy_column2": float(energy[half:].mean())},
                                               "5": {"ten_top1_error": .2}}}}}
    out = with_colour_null(doc, [ckpt])
    six = out["arms"]["workhorse"]["per_seed"]["6"]
    assert six["colour_energy_split_null"] == column_split_null(energy)["null_mean"]
    assert six["colour_energy_split_p"] == column_split_null(energy)["p"]
    assert out["notes"][-1].startswith("§6.1's split null") and "seeds 6 (" in out["notes"][-1]
    assert "colour_energy_split_null" not in doc["arms"]["workhorse"]["per_seed"]["6"]  # the input is not changed
    doc["arms"]["workhorse"]["per_seed"]["6"]["colour_energy_column2"] += 0.01
    with pytest.raises(ValueError, match=r"best.pt: column 2's colour energy is .*workhorse seed 6"):
        with_colour_null(doc, [ckpt])
    doc["arms"]["workhorse"]["per_seed"]["7"] = doc["arms"]["workhorse"]["per_seed"].pop("6")
    with pytest.raises(ValueError, match="best.pt: the results file has no workhorse seed 6 with its conv1 colour"):
        with_colour_null(doc, [ckpt])
    one = build_model(num_classes=4, input_size=64, width=0.25, fc_units=16, variants=("one-column",))
    torch.save({"kind": KIND, "model": one.state_dict(), "model_spec": one.spec.to_dict(),
                "config": {"run": {"seed": 7}}}, tmp_path / "one.pt")
    with pytest.raises(ValueError, match=r"one.pt: a net of 1 column\(s\); §6.1's split null compares two"):
        with_colour_null(doc, [tmp_path / "one.pt"])


def test_kept_probabilities_file_names_round_trip_their_seed() -> None:
    """The seed read back from a kept file's name is the one it was written with; names that the writer never
    produces (leading zeros, a sign, another prefix or suffix) read as no seed."""
    from alexnet.experiments.imagenette128 import probs_name, probs_seed

    for seed in (0, 3, 12):
        assert probs_seed(probs_name(seed)) == seed
    assert probs_name(7) == "probs_ten-workhorse-seed7.npz"  # the committed files' names
    for name in ("probs_ten-workhorse-seed03.npz", "probs_ten-workhorse-seed+3.npz", "probs_ten-workhorse-seed.npz",
                 "probs_ten-workhorse-seed3.npy", "probs_centre-workhorse-seed3.npz", "probs_ten-no-lrn-seed3.npz"):
        assert probs_seed(name) is None, name


def test_committed_kept_probabilities_are_the_committed_workhorse_nets() -> None:
    """docs/results/probs/imagenette-128/ holds nets of docs/results/imagenette-128.json with their recorded
    errors; where its ensemble rows were built from kept files, they recompute from them."""
    from alexnet.experiments.imagenette128 import with_kept_ensembles

    root = Path(__file__).resolve().parents[2] / "docs" / "results"
    paths = sorted((root / "probs" / "imagenette-128").glob("*.npz"))
    if not paths:
        pytest.skip("no kept probabilities committed")
    doc = record.load(root / "imagenette-128.json")
    rebuilt = with_kept_ensembles(doc, paths)  # raises if a file is not a recorded net
    if any("+" in choice for choice in doc["arms"].get("ensemble-2", {}).get("per_seed", {})):
        for key, arm in rebuilt["arms"].items():
            if key.startswith("ensemble-"):
                for choice, values in arm["per_seed"].items():
                    assert values == pytest.approx(doc["arms"][key]["per_seed"][choice]), (key, choice)
