"""Results files: tables recomputed from per-seed values, the verdict rule, and docs that match their files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from alexnet.experiments import record

ROOT = Path(__file__).resolve().parents[2]


def doc() -> dict:
    return {
        "name": "t", "question": "q", "command": "c", "environment": {},
        "arms": {
            "a": {"label": "A", "per_seed": {"0": {"err": 0.10}, "1": {"err": 0.12}, "2": {"err": 0.14}}},
            "b": {"label": "B", "per_seed": {"0": {"err": 0.20}, "1": {"err": 0.21}, "2": {"err": 0.22}}},
            "c": {"label": "C", "per_seed": {"0": {"err": 0.2}}},
        },
        "table": {"columns": [{"metric": "err", "label": "error", "format": "pct"}], "rows": ["a", "b", "c"],
                  "reference": [{"label": "paper", "values": {"err": 0.11}}]},
        "verdicts": [{"claim": "A beats B", "a": "a", "b": "b", "metric": "err"}],
    }


def test_cells_are_mean_and_sample_std_of_the_seeds() -> None:
    text = record.render(doc())
    # A: mean 0.12, sample std sqrt(((-.02)^2 + 0 + .02^2) / 2) = 0.02; B: 0.21, 0.01
    assert "| A | 12.00% ± 2.00 (n = 3) |" in text
    assert "| B | 21.00% ± 1.00 (n = 3) |" in text
    assert "| C | 20.00% (1 seed) |" in text
    assert "| *paper* | *11.00%* |" in text


def test_the_verdict_rule_is_two_standard_errors() -> None:
    # difference -0.09; se = sqrt(0.02^2/3 + 0.01^2/3) = 0.012910; 2 se = 0.02582 < 0.09
    r = record.verdict([0.10, 0.12, 0.14], [0.20, 0.21, 0.22])
    assert r["difference"] == pytest.approx(-0.09) and r["se"] == pytest.approx(math.sqrt(0.0005 / 3))
    assert r["answer"] == "the first is better"
    assert record.verdict([0.10, 0.12, 0.14], [0.20, 0.21, 0.22], smaller_is_better=False)["answer"] == \
        "the second is better"
    # difference 0.02 against 2 se = 0.0258: not enough
    assert record.verdict([0.10, 0.12, 0.14], [0.12, 0.13, 0.14])["answer"] == "no difference by the rule"
    assert record.verdict([0.1], [0.2])["answer"].startswith("not decided")
    assert "**the first is better**" in record.render(doc())


def test_write_load_and_refresh_a_block(tmp_path: Path) -> None:
    path = record.write(doc(), tmp_path / "docs" / "results" / "t.json")
    md = "intro\n<!-- results: docs/results/t.json -->\nstale\n<!-- end results -->\nafter\n"
    fresh = record.refresh(md, tmp_path)
    assert "stale" not in fresh and "| A | 12.00% ± 2.00 (n = 3) |" in fresh and fresh.endswith("after\n")
    assert record.blocks(fresh) == [("docs/results/t.json", record.render(record.load(path)))]


def test_every_table_in_the_docs_is_recomputed_from_its_committed_file() -> None:
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for file, table in record.blocks(md.read_text()):
            assert (ROOT / file).is_file(), f"{md.name} quotes {file}, which is not committed"
            assert table == record.render(record.load(ROOT / file)), f"{md.name}: the table of {file} is stale"


def test_fewer_than_two_seeds_in_either_arm_decide_nothing() -> None:
    """The rule needs a spread in both arms: 1 seed against 3 (either way round) is not decided, with the
    difference of the means still reported (0.30 - 0.20 = 0.10 by hand); an empty arm has no difference."""
    for a, b, diff in (([0.3], [0.2, 0.2, 0.2], 0.1), ([0.3, 0.3, 0.3], [0.2], 0.1), ([0.3, 0.3], [0.1], 0.2)):
        r = record.verdict(a, b)
        assert r["answer"] == "not decided (fewer than 2 seeds in an arm)"
        assert r["difference"] == pytest.approx(diff) and math.isnan(r["se"])
    assert math.isnan(record.verdict([], [0.2, 0.3])["difference"])
    assert math.isnan(record.verdict([0.2, 0.3], [])["difference"])
    # two seeds each are enough: 0.30 ± 0 against 0.20 ± 0 -> se 0 -> no difference claimed
    assert record.verdict([0.3, 0.3], [0.2, 0.2])["answer"] == "no difference by the rule"


def test_the_verdict_rule_at_its_edges() -> None:
    """[1, 3] against [0, 0]: means 2 and 0, sample variances 2 and 0, se = sqrt(2/2 + 0) = 1 exactly, so a
    difference of exactly 2 se is not enough; 2.5 (between 2 and 3 se) is; a positive difference below 1
    that counts makes the second arm better when smaller is better."""
    assert record.verdict([1.0, 3.0], [0.0, 0.0])["answer"] == "no difference by the rule"
    r = record.verdict([1.0, 3.0], [-0.5, -0.5])
    assert r["se"] == 1.0 and r["difference"] == 2.5 and r["answer"] == "the second is better"
    assert record.verdict([0.30, 0.31], [0.10, 0.11])["answer"] == "the second is better"
    assert record.verdict([0.30, 0.31], [0.10, 0.11], smaller_is_better=False)["answer"] == "the first is better"


def test_merge_unites_the_seeds_of_runs_made_apart() -> None:
    first, second = doc(), doc()
    second["arms"] = {"a": {"label": "A", "per_seed": {"3": {"err": 0.16}}},
                      "d": {"label": "D", "per_seed": {"3": {"err": 0.5}}}}
    second["seeds"], first["seeds"] = [3], [0, 1, 2]
    second["command"], second["notes"] = "c --first-seed 3", ["later"]
    second["table"] = {"rows": [], "columns": [*first["table"]["columns"], {"metric": "gap", "label": "gap"}]}
    merged = record.merge([first, second])
    # the later run's new column is appended once; its arms are rendered "not measured" where they lack it
    assert [c["metric"] for c in merged["table"]["columns"]] == [*(c["metric"] for c in first["table"]["columns"]),
                                                                 "gap"]
    # A over 0.10, 0.12, 0.14, 0.16: mean 0.13, sample std sqrt(0.0020 / 3) = 0.02582
    table = record.render(merged)
    assert "| A | 13.00% ± 2.58 (n = 4) | not measured |" in table and "| D | 50.00% (1 seed) | not measured |" in table
    assert merged["seeds"] == [0, 1, 2, 3] and merged["commands"] == ["c", "c --first-seed 3"]
    assert merged["notes"] == ["later"] and merged["table"]["rows"] == ["a", "b", "c", "d"]
    assert first["arms"]["a"]["per_seed"].keys() == {"0", "1", "2"}  # the inputs are left as they were
    with pytest.raises(ValueError, match="arm 'a': seed 0 is in more than one"):
        record.merge([first, first])
    with pytest.raises(ValueError, match="different experiments cannot be merged: t, u"):
        record.merge([first, {**second, "name": "u"}])
    with pytest.raises(ValueError, match="no results documents"):
        record.merge([])


def test_seeds_can_start_after_zero(tmp_path: Path) -> None:
    from alexnet.errors import UserError
    from alexnet.experiments.common import Context

    assert Context(name="x", out=tmp_path, seeds=2, first_seed=3).seed_list({"quick": 1}) == [3, 4]
    assert Context(name="x", out=tmp_path).seed_list({"quick": 2}) == [0, 1]
    with pytest.raises(UserError, match="must be at least 0, got -1"):
        Context(name="x", out=tmp_path, first_seed=-1)


def test_formats_are_checked_and_default_to_plain_numbers() -> None:
    """A column or a row with an unknown format is named; a column without one shows 4 significant digits."""
    d = doc()
    d["table"]["columns"] = [{"metric": "err", "label": "error"}]
    assert "| A | 0.12 ± 0.02 (n = 3) |" in record.render(d)
    d["table"]["columns"] = [{"metric": "err", "label": "error", "format": "bar"}]
    with pytest.raises(ValueError) as err:
        record.render(d)
    assert str(err.value) == "t: column err has unknown format 'bar'"
    d = doc()
    d["arms"]["a"]["formats"] = {"err": "bar"}
    with pytest.raises(ValueError) as err:
        record.render(d)
    assert str(err.value) == "t: row 'A' has unknown format 'bar' for err"


def test_rows_and_reference_rows_fill_what_they_lack() -> None:
    """A reference without a metric shows —; an arm without a label is shown by its key; a row's text cell
    without text shows the column's ``missing`` or —."""
    d = doc()
    d["table"]["columns"].append({"metric": "note", "label": "note", "format": "text"})
    d["arms"]["a"].pop("label")
    text = record.render(d)
    assert "| *paper* | *11.00%* | *—* |" in text and "| a | 12.00% ± 2.00 (n = 3) | — |" in text
    assert record.arm_cell("t", {"per_seed": {}}, {"metric": "m", "format": "text"}) == "—"


def test_a_verdict_line_names_both_arms_the_difference_and_its_standard_error() -> None:
    """A − B = 0.12 − 0.21 = −9.00 points; se = sqrt(0.02²/3 + 0.01²/3) = 1.29 points; with one seed in an arm
    the standard error is —; a verdict may say that larger is better; arms without labels go by their keys."""
    d = doc()
    text = record.render(d)
    assert text.endswith("\n- A beats B: A − B = -9.00% (standard error 1.29%): **the first is better**.\n")
    d["verdicts"] = [{"claim": "A beats C", "a": "a", "b": "c", "metric": "err"},
                     {"claim": "larger", "a": "a", "b": "b", "metric": "err", "smaller_is_better": False}]
    d["arms"]["a"].pop("label")
    d["arms"]["c"].pop("label")
    text = record.render(d)
    assert "- A beats C: a − c = -8.00% (standard error —): **not decided (fewer than 2 seeds in an arm)**." in text
    assert "- larger: a − B = -9.00% (standard error 1.29%): **the second is better**." in text
    d["verdicts"] = [{"claim": "no column", "a": "a", "b": "b", "metric": "other"}]
    d["arms"]["a"]["per_seed"]["0"]["other"] = 1.0
    assert "- no column: a − B = — (standard error —)" in record.render(d)
    d["verdicts"] = []
    assert not record.render(d).endswith("\n\n")


def test_merge_keeps_every_environment_and_copes_with_missing_parts(tmp_path: Path) -> None:
    first, second = doc(), {"name": "t", "environment": {"where": tmp_path}, "command": "again"}
    first["environment"], first["seeds"] = {"threads": 2}, [0, 1, 2]
    merged = record.merge([first, second])  # the second has no arms, notes or seeds
    assert merged["environments"] == [{"threads": 2}, {"where": tmp_path}]
    assert merged["seeds"] == [0, 1, 2] and "notes" in merged and merged["notes"] == []
    merged = record.merge([{**second, "arms": {"x": {"label": "X"}}, "table": {"rows": []}, "notes": ["n"]}, first])
    assert merged["environment"] == {"where": str(tmp_path)}  # made JSON-safe
    assert merged["notes"] == ["n"] and merged["arms"]["a"]["label"] == "A" and merged["table"]["rows"] == ["a", "b", "c"]
    merged = record.merge([first, {"name": "t", "arms": {"e": {"label": "E"}}}])  # an arm with no seeds yet
    assert merged["arms"]["e"] == {"label": "E", "per_seed": {}} and merged["table"]["rows"][-1] == "e"
    with pytest.raises(ValueError) as err:
        record.merge([])
    assert str(err.value) == "no results documents to merge"


def test_small_parts_by_hand(tmp_path: Path) -> None:
    """One value has no spread; an empty cell says "not measured"; an arm without seeds has no values; a file
    of another format is named; a written file is sorted JSON with two-space indents and paths as text."""
    assert record.summary([0.5]) == (0.5, 0.0, 1)
    assert record.cell([], "pct") == "not measured"
    assert record.seed_values({"label": "no seeds yet"}, "err") == []
    bad = tmp_path / "old.json"
    bad.write_text('{"format": 0}')
    with pytest.raises(ValueError) as err:
        record.load(bad)
    assert str(err.value) == f"{bad}: not a results file of format 1"
    for text, says in (("[1]", "not a results file of format 1"), ("{", "not JSON (")):
        bad.write_text(text)  # a list is not a document; a broken file is named, not a bare JSON error
        with pytest.raises(ValueError) as err:
            record.load(bad)
        assert str(err.value).startswith(f"{bad}: {says}")
    path = record.write({"b": tmp_path, "a": [1]}, tmp_path / "r.json")
    assert path.read_text() == ('{\n  "a": [\n    1\n  ],\n  "b": "' + str(tmp_path) + '",\n  "format": 1\n}\n')
