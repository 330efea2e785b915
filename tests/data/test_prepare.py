"""`alexnet prepare`: layouts, bad input, class table, split-half, resume, verify, real JPEGs."""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import alexnet.data.prepare as prep
from alexnet.errors import UserError
from alexnet.commands import prepare as prepare_command
from alexnet.data.prepare import prepare
from alexnet.data.store import verify_store as verify
from alexnet.data.images import load_image, reference_image
from alexnet.data.store import Store

from helpers import SHARED_DATA

DATA_DIR = SHARED_DATA
SAMPLE = DATA_DIR / "imagenet-sample"
S = 32  # small output size keeps generated-tree tests fast


def _photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth colourful test picture (JPEG-friendly, with structure to check crops)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    a, b, c = rng.uniform(0.5, 2.0, 3)
    img = np.stack([127 + 120 * np.sin(xx / (7 * a) + c), 127 + 120 * np.cos(yy / (9 * b)),
                    255 * xx / max(w - 1, 1)], axis=-1)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _jpeg(path: Path, w: int = 48, h: int = 40, seed: int = 0, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    _photo(w, h, seed).save(path, "JPEG", quality=90, **kw)
    return path


def _tree(root: Path, classes=("n02000002", "n01000001", "n03000003"), per_class: int = 3, split: str = "train") -> Path:
    for k, wnid in enumerate(classes):
        for i in range(per_class):
            _jpeg(root / split / wnid / f"{wnid}_{i}.JPEG", 40 + 4 * i, 36 + 3 * k, seed=10 * k + i)
    return root


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _rejected(out: Path) -> dict[str, str]:
    lines = (out / "rejected.tsv").read_text().splitlines()[1:]
    return dict(line.split("\t", 1) for line in lines)


def _notes(out: Path) -> list[tuple[str, str]]:
    return [tuple(line.split("\t", 1)) for line in (out / "notes.tsv").read_text().splitlines()[1:]]


# --------------------------------------------------------------------------- layouts and class table


def test_class_table_sorted_with_names_from_loc_synset_mapping(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    (src / "LOC_synset_mapping.txt").write_text(
        "n01000001 goldfish, Carassius auratus\nn02000002 tench, Tinca tinca\nn03000003 great white shark\n")
    out = tmp_path / "out"
    report = prepare(src, out, size=S, workers=1, progress=False)
    store = Store(out)
    assert store.classes == [("n01000001", "goldfish, Carassius auratus"), ("n02000002", "tench, Tinca tinca"),
                             ("n03000003", "great white shark")]
    assert (out / "classes.tsv").read_text().splitlines() == [
        "index\twnid\tname", "0\tn01000001\tgoldfish, Carassius auratus", "1\tn02000002\ttench, Tinca tinca",
        "2\tn03000003\tgreat white shark"]
    train = store.split("train")
    assert report.counts == {"train": 9} and len(train) == 9
    paths = train.paths()
    for path, label in zip(paths, train.labels):  # label = sorted position of the wnid folder
        assert path.split(os.sep)[1] == store.classes[label][0]
    assert train.read(np.arange(9)).shape == (9, S, S, 3)
    m = store.manifest
    assert m["image_size"] == S and m["source"] == str(src.resolve()) and m["split_half"] is None
    assert m["splits"]["train"]["count"] == 9 and all("sha256" not in s for s in m["splits"]["train"]["shards"])
    assert all(len(d) == 64 for s in m["splits"]["train"]["shards"] for d in s["files"].values())


def test_words_txt_names_and_tree_without_train_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for wnid in ("n2", "n1"):
        _jpeg(src / wnid / "a.jpg")
    (src / "words.txt").write_text("n1\tfirst thing\nn2\tsecond thing\nn3\tunused\n")
    store = Store(prepare(src, tmp_path / "out", size=S, workers=1, progress=False).out)
    assert store.splits() == ["train"]
    assert store.classes == [("n1", "first thing"), ("n2", "second thing")]


def test_folder_names_when_no_name_table_and_other_splits(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", classes=("cat", "airplane"), per_class=2)
    _tree(src, classes=("cat", "airplane"), per_class=1, split="test")
    (src / "devkit").mkdir()
    (src / "devkit" / "readme.txt").write_text("no images here")
    report = prepare(src, tmp_path / "out", size=S, workers=1, progress=False)
    store = Store(report.out)
    assert store.splits() == ["test", "train"] and store.classes == [("airplane", "airplane"), ("cat", "cat")]
    assert report.counts == {"train": 4, "test": 2}
    assert sorted(store.split("test").labels.tolist()) == [0, 1]
    assert any("devkit" in n for n in report.notes)


def test_val_class_folder_not_in_train_is_fatal(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", per_class=1)
    _jpeg(src / "val" / "n09999999" / "x.JPEG")
    with pytest.raises(UserError, match="n09999999 is not a class of the training split"):
        prepare(src, tmp_path / "out", size=S, workers=1, progress=False)


@pytest.mark.parametrize("style", ["wnid", "ids", "csv"])
def test_flat_val_with_labels_file(tmp_path: Path, style: str) -> None:
    src = _tree(tmp_path / "src", per_class=1)
    truth = ["n03000003", "n01000001", "n02000002", "n01000001"]  # sorted file-name order
    for i in range(len(truth)):
        _jpeg(src / "val" / f"ILSVRC2012_val_{i + 1:08d}.JPEG", seed=50 + i)
    sorted_wnids = sorted(set(truth))
    labels = tmp_path / "labels.txt"
    if style == "wnid":
        labels.write_text("\n".join(truth) + "\n")
    elif style == "ids":
        labels.write_text("\n".join(str(sorted_wnids.index(w) + 1) for w in truth) + "\n")
    else:
        labels.write_text("file,wnid\n" + "".join(f"ILSVRC2012_val_{i + 1:08d},{w}\n" for i, w in enumerate(truth)))
    store = Store(prepare(src, tmp_path / "out", size=S, workers=1, progress=False, val_labels=labels).out)
    assert store.split("val").labels.tolist() == [sorted_wnids.index(w) for w in truth]


def test_labels_file_length_mismatch_names_both_counts(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", per_class=1)
    for i in range(3):
        _jpeg(src / "val" / f"v{i}.JPEG")
    labels = tmp_path / "gt.txt"
    labels.write_text("1\n2\n")
    with pytest.raises(UserError, match=r"has 2 labels but .*val holds 3 files"):
        prepare(src, tmp_path / "out", size=S, workers=1, progress=False, val_labels=labels)


# --------------------------------------------------------------------------- bad input


def test_every_bad_input_gets_a_line_and_nothing_crashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    cls = src / "train" / "n01000001"
    good = _jpeg(cls / "good.JPEG")
    data = good.read_bytes()
    (cls / "truncated.JPEG").write_bytes(data[: len(data) // 2])
    (cls / "zero.JPEG").write_bytes(b"")
    (cls / "garbage.JPEG").write_bytes(b"this is not an image at all" * 10)
    (cls / "readme.txt").write_text("not an image")
    _photo(50, 40).save(cls / "png_inside.JPEG", "PNG")
    _photo(50, 40).convert("P").save(cls / "gif_inside.JPEG", "GIF")
    _photo(50, 40).convert("CMYK").save(cls / "cmyk.JPEG", "JPEG")
    _jpeg(cls / "tiny.JPEG", 20, 12)
    _jpeg(cls / "huge.JPEG", 300, 200)  # over the (lowered) decompression-bomb limit
    rgba = _photo(50, 40).convert("RGBA")
    rgba.putalpha(0)  # fully transparent: composited over white
    rgba.save(cls / "alpha.png")
    Image.fromarray((np.arange(40 * 50).reshape(40, 50) * 30).astype(np.uint16)).save(cls / "sixteen.png")
    (cls / "nested").mkdir()
    _jpeg(src / "train" / "n02000002" / "ok.JPEG")
    (src / "train" / "n03000003").mkdir()  # a class without images: kept so indices stay stable
    out = tmp_path / "out"
    report = prepare(src, out, size=S, workers=1, progress=False, max_pixels=300 * 200 - 1)
    rejected = {Path(p).name: r for p, r in _rejected(out).items()}
    assert set(rejected) == {"truncated.JPEG", "zero.JPEG", "garbage.JPEG", "readme.txt", "huge.JPEG", "nested"}
    assert "truncated" in rejected["truncated.JPEG"] and "empty" in rejected["zero.JPEG"]
    assert "not an image" in rejected["garbage.JPEG"] and "skipped" in rejected["readme.txt"]
    assert "decompression-bomb" in rejected["huge.JPEG"]
    assert report.rejected == 5 and report.skipped == 1 and report.upscaled == 1  # a stray text is no image
    assert "1 non-image files skipped" in report.summary()

    store = Store(out)
    assert store.num_classes == 3 and store.classes[2][0] == "n03000003"
    assert report.empty_classes == ["n03000003"] and "n03000003" in report.summary()
    train = store.split("train")
    names = [Path(p).name for p in train.paths()]
    assert sorted(names) == sorted(["good.JPEG", "png_inside.JPEG", "gif_inside.JPEG", "cmyk.JPEG", "tiny.JPEG",
                                    "alpha.png", "sixteen.png", "ok.JPEG"])
    images = train.read(np.arange(len(train)))
    assert images.shape == (8, S, S, 3)
    alpha = images[names.index("alpha.png")]
    assert alpha.min() == 255, "transparent pixels are composited over white"
    sixteen = images[names.index("sixteen.png")]
    assert sixteen.std() > 10 and np.array_equal(sixteen[..., 0], sixteen[..., 1]), "16-bit grey scaled, not clipped"
    notes = {(Path(p).name, n.split(" ")[0]) for p, n in _notes(out)}
    assert ("png_inside.JPEG", "PNG") in notes and ("gif_inside.JPEG", "GIF") in notes
    assert ("cmyk.JPEG", "CMYK") in notes and ("tiny.JPEG", "upscaled:") in notes
    assert verify(out) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_is_rejected(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", per_class=1)
    locked = _jpeg(src / "train" / "n01000001" / "locked.JPEG")
    locked.chmod(0)
    try:
        prepare(src, tmp_path / "out", size=S, workers=1, progress=False)
        assert "permission denied" in _rejected(tmp_path / "out")[os.path.relpath(locked, src)]
    finally:
        locked.chmod(0o644)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = _photo(60, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = tmp_path / "rot.jpg"
    img.save(path, "JPEG", quality=95, exif=exif)
    got, _ = load_image(path, S)
    want = reference_image(path, S)
    with Image.open(path) as im:
        assert ImageOps.exif_transpose(im).size == (30, 60)
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 2.0
    unrotated = np.asarray(img.resize((S * 2, S)).crop((S // 2, 0, S // 2 + S, S)))
    assert np.abs(got.astype(int) - unrotated.astype(int)).mean() > 20


def test_fatal_problems_are_one_sentence_user_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="does not exist"):
        prepare(tmp_path / "missing", tmp_path / "out", progress=False)
    (tmp_path / "noclasses").mkdir()
    (tmp_path / "noclasses" / "x.txt").write_text("x")
    with pytest.raises(UserError, match="no class folders"):
        prepare(tmp_path / "noclasses", tmp_path / "out", progress=False)
    src = _tree(tmp_path / "src", per_class=1)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not empty and is not a store"):
        prepare(src, busy, size=S, workers=1, progress=False)
    assert (busy / "thesis.tex").read_text() == "precious"
    (tmp_path / "afile").write_text("")
    with pytest.raises(UserError, match="not a folder"):
        prepare(src, tmp_path / "afile", size=S, workers=1, progress=False)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prep, "write_shard", full)
    with pytest.raises(UserError, match="disk is full") as info:
        prepare(src, tmp_path / "out", size=S, workers=1, progress=False)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- split-half


def test_split_half_counts_and_determinism(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", per_class=5)
    a = Store(prepare(src, tmp_path / "a", size=S, workers=1, progress=False, split_half=True, seed=7).out)
    b = Store(prepare(src, tmp_path / "b", size=S, workers=1, progress=False, split_half=True, seed=7).out)
    c = Store(prepare(src, tmp_path / "c", size=S, workers=1, progress=False, split_half=True, seed=8).out)
    assert a.splits() == ["test", "train"]
    assert np.bincount(a.split("train").labels).tolist() == [3, 3, 3]  # ceil(5 * 0.5) per class
    assert np.bincount(a.split("test").labels).tolist() == [2, 2, 2]
    assert set(a.split("train").paths()).isdisjoint(a.split("test").paths())
    assert a.split("train").paths() == b.split("train").paths()
    assert a.split("train").paths() != c.split("train").paths()
    assert a.manifest["split_half"] == {"seed": 7, "train_fraction": 0.5}
    assert a.stats().count == 9
    _tree(src, per_class=1, split="test")
    with pytest.raises(UserError, match="already exists"):
        prepare(src, tmp_path / "d", size=S, workers=1, progress=False, split_half=True)


# --------------------------------------------------------------------------- resume and verify


def test_resume_after_interruption_and_corruption_is_byte_identical(tmp_path: Path, monkeypatch) -> None:
    src = _tree(tmp_path / "src", per_class=4)
    _jpeg(src / "val" / "n01000001" / "v.JPEG")
    (src / "train" / "n01000001" / "bad.JPEG").write_bytes(b"")
    reference = tmp_path / "ref"
    prepare(src, reference, size=S, workers=1, progress=False, shard_size=3)
    want = _digests(reference)

    out = tmp_path / "out"
    real = prep._run_shard
    calls = {"n": 0}

    def interrupted(task):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user pressed ctrl-C while the third shard was being made
        return real(task)

    monkeypatch.setattr(prep, "_run_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, out, size=S, workers=1, progress=False, shard_size=3)
    assert not (out / "manifest.json").exists()
    monkeypatch.setattr(prep, "_run_shard", real)
    report = prepare(src, out, size=S, workers=1, progress=False, shard_size=3)
    assert report.shards_reused == 2 and report.shards_written == 4
    assert _digests(out) == want

    shard = out / "train" / "shard-00001.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = verify(out)
    assert len(problems) == 1 and "train/shard-00001.npy" in problems[0]
    report = prepare(src, out, size=S, workers=1, progress=False, shard_size=3)
    assert report.shards_written == 1 and report.shards_reused == 5
    assert _digests(out) == want and verify(out) == []


def test_parallel_workers_give_the_same_bytes(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", per_class=4)
    prepare(src, tmp_path / "one", size=S, workers=1, progress=False, shard_size=2)
    prepare(src, tmp_path / "two", size=S, workers=2, progress=False, shard_size=2)
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")


def test_changed_options_rewrite_stale_shards(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", per_class=2)
    out = tmp_path / "out"
    prepare(src, out, size=S, workers=1, progress=False, shard_size=2)
    report = prepare(src, out, size=S // 2, workers=1, progress=False, shard_size=4)
    assert report.shards_reused == 0 and Store(out).image_size == S // 2
    assert sorted(p.name for p in (out / "train").glob("shard-*.npy")) == ["shard-00000.npy", "shard-00001.npy"]
    assert verify(out) == []


def test_command_line_prepare_and_verify(tmp_path: Path, capsys) -> None:
    src = _tree(tmp_path / "src", per_class=1)
    parser = argparse.ArgumentParser()
    prepare_command.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "out"
    args = parser.parse_args(["prepare", str(src), str(out), "--size", str(S), "--workers", "1", "--quiet"])
    assert prepare_command.run(args) == 0
    assert "3 classes" in capsys.readouterr().out
    assert prepare_command.run(parser.parse_args(["prepare", "--verify", str(out)])) == 0
    (out / "train" / "labels.npy").write_bytes(b"junk")
    assert prepare_command.run(parser.parse_args(["prepare", "--verify", str(out)])) == 1
    with pytest.raises(UserError):
        prepare_command.run(parser.parse_args(["prepare", str(src)]))


def test_jpeg_store_format(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", per_class=2)
    npy = Store(prepare(src, tmp_path / "npy", size=S, workers=1, progress=False).out)
    jpg = Store(prepare(src, tmp_path / "jpg", size=S, workers=1, progress=False, fmt="jpeg").out)
    a = npy.split("train").read(np.arange(6))
    b = jpg.split("train").read(np.arange(6))
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.0
    assert verify(jpg.path) == []


# --------------------------------------------------------------------------- the real decode path


@pytest.fixture(scope="module")
def sample_files() -> list[Path]:
    if not SAMPLE.is_dir():
        pytest.skip(f"real ImageNet sample not found at {SAMPLE} (shared data absent)")
    files = sorted(SAMPLE.glob("*.JPEG"))
    grey, colour = [], []
    for f in files:
        with Image.open(f) as im:
            (grey if im.mode == "L" else colour).append((max(im.size), f))
    # two greyscale, the two largest colour ones (reduced-scale DCT decode), one small one (upscaled)
    colour.sort()
    return [grey[0][1], grey[1][1], colour[-1][1], colour[-2][1], colour[0][1]]


def test_real_imagenet_jpegs_match_the_slow_reference(sample_files: list[Path], tmp_path: Path) -> None:
    src = tmp_path / "src"
    for f in sample_files:
        wnid = f.name.split("_")[0]
        (src / "train" / wnid).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, src / "train" / wnid / f.name)
    store = Store(prepare(src, tmp_path / "out", workers=1, progress=False).out)
    train = store.split("train")
    assert store.image_size == 256
    images = train.read(np.arange(len(train)))
    assert images.shape == (5, 256, 256, 3) and images.dtype == np.uint8
    for img, rel in zip(images, train.paths()):
        with Image.open(src / rel) as im:
            mode, short = im.mode, min(im.size)
        if mode == "L":
            assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
        want = reference_image(src / rel, 256)
        diff = np.abs(img.astype(int) - want.astype(int))
        blurred = np.abs(_blur4(img) - _blur4(want)).mean()
        if short < 2 * 256:  # full-scale decode: same pixels as the PIL reference up to rounding
            assert diff.mean() < 0.1 and diff.max() <= 2, (rel, diff.mean(), diff.max())
        else:  # reduced-scale DCT decode (draft): a slightly different low-pass, same picture
            assert diff.mean() < 6.0 and blurred < 2.5, (rel, diff.mean(), blurred)
        # the centre crop is where the reference's is: a 3-pixel shift would cost far more
        shifted = np.abs(_blur4(np.roll(img, 3, axis=1)) - _blur4(want)).mean()
        assert blurred < 0.5 * shifted


def _blur4(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64).reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))


def test_draft_decode_is_used_for_large_jpegs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _jpeg(tmp_path / "big.jpg", 1100, 700)
    seen = {}
    from PIL import JpegImagePlugin

    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        got = real_draft(self, mode, size)
        seen["size"] = self.size
        return got

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    got, _ = load_image(path, 256)
    assert seen["size"] == (550, 350)  # 1/2 scale: shorter side 350 >= 256; 1/4 would give 175
    want = reference_image(path, 256)
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 2.0
    assert got.shape == (256, 256, 3)
