"""The demo: its recipe learns (at reduced size here), decides on the holdout and evaluates the best checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from alexnet.cli import main
from alexnet.demo import run_demo


def test_the_quick_demo_learns_and_decides_on_its_holdout(tmp_path: Path, capsys) -> None:
    errors = run_demo(tmp_path / "demo", quick=True, seed=1, threads=1, progress=False)
    assert errors["centre_top1_error"] < 0.6  # chance is 0.9; measured 0.345 (seed 0) on the quick data
    run = tmp_path / "demo" / "run-seed1"
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["split"] for e in events if e.get("event") == "decision_split"] == ["holdout"]
    evaluated = json.loads((run / "eval" / "eval.json").read_text())
    assert evaluated["checkpoint"].endswith("best.pt") and evaluated["split"] == "val"
    out = capsys.readouterr().out
    assert "evaluating the best checkpoint by the holdout" in out


def test_demo_command_takes_seed_and_threads(tmp_path: Path, monkeypatch) -> None:
    seen = {}
    monkeypatch.setattr("alexnet.demo.run_demo", lambda workdir, **kw: seen.update(kw))
    assert main(["demo", "--workdir", str(tmp_path), "--seed", "2", "--threads", "1", "--quick", "--quiet"]) == 0
    assert seen == {"quick": True, "seed": 2, "threads": 1, "progress": False}
