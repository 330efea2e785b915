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


def test_demo_experiment_records_every_seed_and_thread_count_and_skips_finished_ones(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    from alexnet.experiments import record, run_experiment

    calls = []

    def fake_demo(workdir, *, quick, seed, threads, progress):
        calls.append((seed, threads))
        e = 0.1 * (seed + 1) + 0.01 * threads  # distinct per sub-run, so each value lands in its own cell
        return {"centre_top1_error": e, "centre_top5_error": 0.0, "ten_top1_error": e - 0.05, "ten_top5_error": 0.0}

    monkeypatch.setattr("alexnet.demo.run_demo", fake_demo)
    out = tmp_path / "demo-range"
    run_experiment("demo", budget="full", out=out, seeds=2)
    assert calls == [(0, 1), (1, 1), (0, 2), (1, 2)]
    doc = record.load(out / "record.json")
    assert doc["arms"]["threads-2"]["per_seed"]["1"]["centre_top1_error"] == 0.22
    # the range over all four runs, by hand: 0.11, 0.21, 0.12, 0.22
    assert "centre top-1 error 11.0%–22.0%" in doc["notes"][1]
    assert "| 2 threads | 17.00% ± 7.07 (n = 2) |" in record.render(doc)
    run_experiment("demo", budget="full", out=out, seeds=2)
    assert len(calls) == 4, "finished sub-runs are not run again"


def test_demo_experiment_rejects_bad_thread_counts(tmp_path: Path, capsys) -> None:
    assert main(["experiment", "demo", "--out", str(tmp_path / "x"), "--param", "threads=0,2", "--quiet"]) == 2
    assert "threads: expected positive thread counts" in capsys.readouterr().err


def test_the_readme_states_the_measured_range_of_the_committed_demo_results() -> None:
    import re

    root = Path(__file__).resolve().parents[1]
    doc = json.loads((root / "docs" / "results" / "demo.json").read_text())
    runs = [v for arm in doc["arms"].values() for v in arm["per_seed"].values()]
    assert len(runs) >= 6, "seeds 0-2 at 1 and 2 threads"
    errors = [v["centre_top1_error"] for v in runs]
    walls = [v["wall_seconds"] for v in runs]
    assert max(errors) <= 0.45 and max(walls) <= 60, "the promise: <= 45% top-1 error, <= 60 s"
    readme = (root / "README.md").read_text()
    lo, hi = re.search(r"\*\*(\d+\.\d)–(\d+\.\d)% top-1 error\*\*", readme).groups()
    assert (lo, hi) == (f"{100 * min(errors):.1f}", f"{100 * max(errors):.1f}")
    lo, hi = re.search(r"\*\*(\d+)–(\d+) s\*\* each", readme).groups()
    assert (int(lo), int(hi)) == (round(min(walls)), round(max(walls)))
