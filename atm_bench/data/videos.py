"""Plain videos (human or other robots) -> action-free episodes in LIBERO's layout, with tracks.

Each video is resized to size x size and cut into clips of <= clip_frames frames (reusing the
tracking module's video reader); each clip becomes one demo holding `obs/agentview_rgb` only
(no actions, no states: `action_free`), written by the project's writer. Videos with the same
instruction go to one task file. Then each demo is tracked (flow or CoTracker) with ATM's point
sampling, so the file is ready for stage 1 (alone or in a mixture, see `atm/mixture.py`).

Resumable: every clip is written (and tracked) as its own part file under `<out>.parts/`, and
the parts are merged into `<out>` at the end; a rerun skips finished parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from atm_bench.data.episodes import Episode, FileHeader, merge_task_files, write_task_file
from atm_bench.errors import UserError


@dataclass(frozen=True)
class ImportConfig:
    size: int = 128
    clip_frames: int = 300
    kind: str = "human"  # human | other_robot: recorded in env_args for mixtures
    tracker: str | None = "flow"  # flow | cotracker | None (import only; track later)


def output_files(mapping: dict[str, str], out: Path) -> dict[Path, list[str]]:
    """Output file -> its videos: `out` itself (a .hdf5 file: one instruction), or one file per
    instruction inside the directory `out`."""
    from atm_bench.tracking.annotate import instruction_file_name

    by_instruction: dict[str, list[str]] = {}
    for video, instruction in mapping.items():
        by_instruction.setdefault(instruction, []).append(video)
    if out.suffix in (".hdf5", ".h5"):
        if len(by_instruction) > 1:
            raise UserError(f"the videos have {len(by_instruction)} different instructions but --out is one file; "
                            "pass a directory as --out (one file per instruction)")
        return {out: next(iter(by_instruction.values()))}
    return {out / instruction_file_name(i): videos for i, videos in by_instruction.items()}


def _header(instruction: str, cfg: ImportConfig) -> FileHeader:
    return FileHeader(problem_info={"language_instruction": instruction, "problem_name": "video", "source": cfg.kind},
                      env_args={"type": "video", "source": cfg.kind, "size": cfg.size, "action_free": True},
                      bddl_file_name="")


def import_videos(video_dir: str | Path, instruction_file: str | Path, out: str | Path, cfg: ImportConfig = ImportConfig(),
                  annotate=None, on_clip: Callable[[str, int], None] | None = None) -> dict:
    """Import every video of `video_dir`; `annotate` is an `AnnotateConfig` for the tracks (views
    forced to agentview) or None. Returns {file: number of demos}."""
    import dataclasses

    from atm_bench.tracking.annotate import Annotator, VideoConfig, read_instructions, video_clips

    video_dir, out = Path(video_dir), Path(out)
    if not video_dir.is_dir():
        raise UserError(f"{video_dir}: not a directory of videos")
    mapping = read_instructions(instruction_file, video_dir)
    annotator = Annotator(dataclasses.replace(annotate, views=("agentview",))) if annotate is not None else None
    video_cfg = VideoConfig(size=cfg.size, clip_frames=cfg.clip_frames)
    written = {}
    try:
        for path, videos in output_files(mapping, out).items():
            header = _header(mapping[videos[0]], cfg)
            parts = []
            for video in videos:
                for clip, frames in video_clips(video_dir / video, video_cfg):
                    part = path.with_name(path.name + ".parts") / f"{Path(video).stem}.clip{clip:04d}.hdf5"
                    if not part.is_file():
                        episode = Episode(actions=None, states=None, obs={"agentview_rgb": frames},
                                          attrs={"source": video, "clip": clip, "kind": cfg.kind})
                        write_task_file(part, header, [episode])
                    if annotator is not None:
                        annotator.annotate_file(part)
                    parts.append((part, "demo_0"))
                    if on_clip is not None:
                        on_clip(video, clip)
            merge_task_files(path, header, parts)
            written[str(path)] = len(parts)
    finally:
        if annotator is not None:
            annotator.close()
    return written
