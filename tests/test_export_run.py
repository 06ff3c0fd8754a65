"""scripts/export_run.py: a run copied into results/ without weights, one video per agent and
results file (an `atm-bench eval` directory inside the run included)."""

import importlib.util
import json
import shutil
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "export_run.py"


def _export():
    spec = importlib.util.spec_from_file_location("export_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.export


def _records(directory: Path, agent: str, outcomes: list[bool]) -> None:
    lines = []
    for k, success in enumerate(outcomes):
        video = Path("videos") / agent / f"task0_init{k}.mp4"
        (directory / video).parent.mkdir(parents=True, exist_ok=True)
        (directory / video).write_bytes(b"mp4")
        lines.append(json.dumps({"agent": agent, "suite": "libero_goal", "task": 0, "init_state": k, "seed": 0,
                                 "protocol": "atm", "preset": "smoke", "horizon": 450, "success": success,
                                 "steps": 10, "seconds": 1.0, "video": str(video)}))
    lines.insert(1, '{"agent": "' + agent + '", "success": true')  # a crash's partial line: skipped
    (directory / "results.jsonl").write_text("\n".join(lines) + "\n")


def test_export_keeps_records_and_one_video_per_agent_and_results_file(tmp_path):
    run, dest = tmp_path / "run", tmp_path / "dest"
    (run / "eval").mkdir(parents=True)
    _records(run, "bc", [False, True, True])
    _records(run / "eval", "atm", [False, False])
    for name in ("agents/bc/seed0/checkpoint/model.safetensors", "agents/bc/seed0/policy/resume.pt",
                 "agents/bc/seed0/policy/history.json", "config.json"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("{}")
    _export()(run, dest)
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == ["agents/bc/seed0/policy/history.json", "config.json", "eval/results.jsonl",
                      "eval/videos/atm/task0_init0.mp4", "results.jsonl", "videos/bc/task0_init1.mp4"]


def test_exporting_again_removes_what_the_run_no_longer_has_and_keeps_readme_and_tables(tmp_path):
    """A shard merged into results.jsonl since the last export must leave the exported directory
    too (else `atm-bench tables` would see its episodes twice); the directory's hand-written
    README.md and its regenerated tables/ stay."""
    run, dest = tmp_path / "run", tmp_path / "dest"
    _records(run, "bc", [False, True])
    shard = run / "shards" / "bc" / "seed0" / "task0.jsonl"
    shard.parent.mkdir(parents=True)
    shard.write_text((run / "results.jsonl").read_text())
    (run / "README.md").write_text("a stale copy")
    export = _export()
    assert export(run, dest) == (3, 0)  # results, shard, one video; the run's README.md is never copied
    (dest / "README.md").write_text("by hand")
    (dest / "tables").mkdir()
    (dest / "tables" / "success.md").write_text("| table |")
    shard.unlink()
    shutil.rmtree(run / "shards")
    _records(run, "bc", [True, True])  # episodes run again: the chosen video is now init 0's
    assert export(run, dest) == (2, 2)
    kept = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert kept == ["README.md", "results.jsonl", "tables/success.md", "videos/bc/task0_init0.mp4"]
    assert (dest / "README.md").read_text() == "by hand" and not (dest / "shards").exists()
