"""Write docs/results/health.json: preset runs checked for health (when they left chance, how they ended, errors).

    python tools/health_record.py docs/results/health.json '{"key": [label, run_dir, classes, eval_dir|null, [commands]]}'

Each run is a training run directory (its metrics.jsonl); eval_dir an `alexnet eval --out` folder of its best.pt.
"""
import json, math, sys
from pathlib import Path
from alexnet.experiments import record
from alexnet.runtime import environment

def run_values(run: Path, classes: int, eval_dir: Path | None) -> dict:
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r.get("kind") == "step"]
    left = next((r["step"] for r in steps if r["loss"] < 0.9 * math.log(classes)), None)
    fin = next((r for r in rows if r.get("event") == "finished"), {})
    stopped_by_health = [r for r in rows if r.get("event") == "rollback"]
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    v = {"steps_to_leave_chance": left, "steps": steps[-1]["step"], "epochs": len(epochs),
         "end_reason": fin.get("reason", "not finished"),
         "health_events": len(stopped_by_health),
         "first_loss": steps[0]["loss"], "last_loss": steps[-1]["loss"],
         "best_decision_error": min(e["val_top1_error"] for e in epochs)}
    if eval_dir:
        ev = json.loads((eval_dir / "eval.json").read_text())
        v.update({k: ev[k] for k in ("centre_top1_error", "ten_top1_error") if k in ev})
    return v

if __name__ == "__main__":
    out, spec = sys.argv[1], json.loads(sys.argv[2])
    arms = {}
    for key, (label, run, classes, ev, commands) in spec.items():
        arms[key] = {"label": label, "commands": commands,
                     "per_seed": {"0": run_values(Path(run), classes, Path(ev) if ev else None)}}
    doc = {"name": Path(out).stem,
           "question": "Do the small-data presets leave chance early on real photos, and does any health check stop "
                       "them while their loss is falling?",
           "command": "; ".join(c for a in arms.values() for c in a["commands"]),
           "environment": environment(0), "rule": record.RULE, "seeds": [0], "arms": arms,
           "table": {"columns": [
               {"metric": "steps_to_leave_chance", "label": "steps to loss < 0.9 ln C", "format": "int"},
               {"metric": "steps", "label": "steps trained", "format": "int"},
               {"metric": "first_loss", "label": "loss, first logged", "format": "num"},
               {"metric": "last_loss", "label": "loss, last logged", "format": "num"},
               {"metric": "health_events", "label": "roll-backs", "format": "int"},
               {"metric": "ten_top1_error", "label": "top-1 error, ten patches (val)", "format": "pct", "missing": "—"}],
               "rows": list(arms)},
           "notes": [f"{a['label']}: ended by '{a['per_seed']['0']['end_reason']}'." for a in arms.values()]}
    record.write(doc, out)
    print(record.render(doc))
