"""`alexnet predict`: top-5 labels of image files, decoded like prepare, matching `alexnet eval`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.cli import main
from alexnet.inference.trained import TrainedRun
from alexnet.errors import UserError
from alexnet.inference.evaluate import evaluate
from alexnet.paper import RETRIEVAL
from alexnet.inference.predict import Predictor, predict_images

from helpers import make_store
from helpers import make_checkpoint


@pytest.fixture
def setup(tmp_path: Path):
    store = make_store(tmp_path / "s", val=6, classes=7)
    run = make_checkpoint(tmp_path / "run", store)
    images = store.split("val").read(np.arange(3))
    labels = store.split("val").labels[:3]
    files = []
    for i, (img, y) in enumerate(zip(images, labels)):
        folder = tmp_path / "imgs" / store.classes[int(y)][0]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"img{i}.png")  # lossless, already the store's size
        files.append(folder / f"img{i}.png")
    return store, run, files, labels


@pytest.mark.parametrize("patches", ["centre", "ten"])
def test_predictions_match_eval_and_rank_top5(setup, patches: str) -> None:
    store, run, files, labels = setup
    predictor = Predictor(run, device="cpu")
    preds, failed = predict_images(predictor, files, patches=patches)
    assert not failed and len(preds) == 3
    ref = evaluate(TrainedRun.open(run, device="cpu"), store, split="val", modes=(patches,),
                   progress=False).probs[patches]
    for i, pred in enumerate(preds):
        assert len(pred.top) == RETRIEVAL.top_k
        probs = [t["probability"] for t in pred.top]
        assert probs == sorted(probs, reverse=True)
        expected = np.argsort(-ref[i], kind="stable")[: RETRIEVAL.top_k]
        assert [t["class"] for t in pred.top] == expected.tolist()
        np.testing.assert_allclose(probs, ref[i][expected], atol=1e-5)
        assert pred.label == labels[i]  # inferred from the wnid folder
        assert pred.top[0]["wnid"] == store.classes[pred.top[0]["class"]][0]
        assert pred.label_probability == pytest.approx(float(ref[i][labels[i]]), abs=1e-5)


def test_cli_text_json_figure_and_a_bad_image(setup, tmp_path: Path, capsys) -> None:
    store, run, files, labels = setup
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    fig = tmp_path / "fig4.png"
    rc = main(["predict", str(run), str(files[0]), str(bad), str(files[1]), "--figure", str(fig),
               "--patches", "ten", "--device", "cpu"])
    cap = capsys.readouterr()
    assert rc == 1
    assert str(bad) in cap.err and "Traceback" not in cap.err
    assert str(files[0]) in cap.out and str(files[1]) in cap.out and "(correct: n" in cap.out
    assert fig.is_file() and Image.open(fig).size[0] > 100
    assert main(["predict", str(run), str(files[2]), "--json", "--device", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    (p,) = data["predictions"]
    assert len(p["top"]) == RETRIEVAL.top_k and p["label"]["wnid"] == store.classes[labels[2]][0]


def test_labels_file_and_missing_store(setup, tmp_path: Path) -> None:
    store, run, files, labels = setup
    other = tmp_path / "elsewhere.png"
    shutil.copy(files[0], other)
    lab = tmp_path / "labels.txt"
    lab.write_text(f"elsewhere.png\tclass {labels[0]}\n")
    from alexnet.inference.predict import read_labels_file

    predictor = Predictor(run, device="cpu")
    (pred,), _ = predict_images(predictor, [other], labels=read_labels_file(lab))
    assert pred.label == labels[0]
    lab.write_text("elsewhere.png no-such-class\n")
    with pytest.raises(UserError, match="not a class of the checkpoint"):
        predict_images(predictor, [other], labels=read_labels_file(lab))
    moved = tmp_path / "moved"
    shutil.move(store.path, moved)
    with pytest.raises(UserError, match="training store .* is gone; name the training store"):
        Predictor(run)
    assert Predictor(run, training_store=moved).size == store.image_size
