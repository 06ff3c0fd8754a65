"""Copy a run directory into the repository's results/ without what does not belong in git:
checkpoints and weights stay behind (`atm-bench run` continues such a directory without them, see
the README), and of the rollout videos only one per agent is kept (a successful episode's when
there is one). Records, configs, histories, metrics, pictures and tables are copied as they are.
Exporting again into the same directory brings it up to date: a file the run no longer has (a
shard file merged into results.jsonl since) is removed there, so no episode is held twice; the
directory's own README.md, written by hand, is kept and never overwritten, and so is its tables/
(made from the exported records: `atm-bench tables DEST --out DEST/tables`).

    .venv/bin/python scripts/export_run.py /root/runs/goal-quick results/runs/libero-goal-quick
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from atm_bench.bench.results import ResultsStore

KEEP = {".json", ".jsonl", ".md", ".csv", ".tex", ".png"}
README = Path("README.md")  # the exported directory's own, written by hand
TABLES = "tables"  # the exported directory's own, made from its records


def chosen_videos(run: Path) -> set[str]:
    """One video per agent and results file (a run's, and those of `atm-bench eval` directories
    inside it): the first successful recorded episode's, else the first one's; paths relative to
    `run`."""
    best: dict[tuple[Path, str], tuple[bool, str]] = {}
    for records in sorted(run.rglob("results.jsonl")):
        for r in ResultsStore(records).read(warn=False).records:
            key = (records.parent, r["agent"])
            if "video" in r and (key not in best or (r["success"] and not best[key][0])):
                best[key] = (bool(r["success"]), str((records.parent / r["video"]).relative_to(run)))
    return {video for _, video in best.values()}


def export(run: Path, dest: Path) -> tuple[int, int]:
    """Copy `run` into `dest`; returns (files copied, stale files removed from `dest`)."""
    videos = chosen_videos(run)
    copied = 0
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        rel = path.relative_to(run)
        if rel == README:
            continue
        if "checkpoint" in rel.parts or rel.name in ("model.safetensors", "resume.pt"):
            continue
        if path.suffix == ".mp4" and str(rel) not in videos:
            continue
        if path.suffix != ".mp4" and path.suffix not in KEEP:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied += 1
    return copied, prune(run, dest, videos)


def prune(run: Path, dest: Path, videos: set[str]) -> int:
    """Remove the files of `dest` that `run` no longer has (but its README.md and tables/) and the
    videos no longer chosen, then the folders that leaves empty."""
    own = [p.relative_to(dest) for p in dest.rglob("*") if p.is_file()]
    stale = [dest / rel for rel in own if rel != README and rel.parts[0] != TABLES
             and (not (run / rel).exists() or (rel.suffix == ".mp4" and str(rel) not in videos))]
    for path in stale:
        path.unlink()
    for folder in sorted((p for p in dest.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    return len(stale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    copied, removed = export(args.run, args.dest)
    print(f"{copied} files copied into {args.dest}, {removed} it held that {args.run} no longer has removed")


if __name__ == "__main__":
    main()
