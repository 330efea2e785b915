"""`alexnet report`: one self-contained HTML page per run."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from alexnet.cli import main
from alexnet.probes.report import SECTIONS, build_report
from helpers import tiny_run


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id", ""))
        if tag == "img":
            self.images.append(a.get("src", ""))


def check_page(text: str) -> Page:
    page = Page()
    page.feed(text)
    assert page.sections == [sid for sid, _ in SECTIONS]
    for src in page.images:
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
            assert im.format == "PNG"
    return page


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    return tiny_run(tmp_path_factory.mktemp("report"))


def test_report_has_every_section_and_no_broken_image(run, tmp_path: Path) -> None:
    run_dir, store = run
    out = tmp_path / "r.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    text = out.read_text()
    page = check_page(text)
    # curves (error, lr), kernel grid, top-5 panel, neighbour grid
    assert len(page.images) == 5
    assert "centre patch" in text and "ten patches" in text  # the error table, computed and saved
    assert (run_dir / "eval" / "eval.json").is_file()
    assert "src=\"http" not in text and "<script" not in text  # self-contained


def test_report_without_store_says_so(run, tmp_path: Path) -> None:
    run_dir, store = run
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    shutil.rmtree(moved / "eval", ignore_errors=True)
    text = build_report(moved, store=str(tmp_path / "nowhere"))
    page = check_page(text)
    assert len(page.images) == 3  # curves and kernels still drawn
    assert text.count("not available") >= 3


@pytest.mark.slow
def test_report_renders_in_headless_chromium(run, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed")
    run_dir, _ = run
    page = tmp_path / "r.html"
    main(["report", str(run_dir), "--out", str(page)])
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,3000",
                    f"--screenshot={shot}", page.resolve().as_uri()], check=True, timeout=120,
                   capture_output=True)
    with Image.open(shot) as im:
        im = im.convert("RGB")
        colours = im.getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50  # more than a blank page
