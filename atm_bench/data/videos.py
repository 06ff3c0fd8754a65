"""Plain videos (human or other robots) -> action-free episodes in LIBERO's layout, with tracks:
the one code path behind `atm-bench data import-videos`.

`instructions.json` maps each video's file name to its instruction. Each video is resized to
size x size and cut into clips of <= clip_frames frames; each clip becomes one demo holding
`obs/agentview_rgb` only (no actions, no states: `action_free`), written by the project's writer.
Videos with the same instruction go to one task file. Then each demo is tracked (flow or
CoTracker, `tracking.annotate.Annotator`) with ATM's point sampling, so the file is ready for
stage 1 (alone or in a mixture, see `atm/mixture.py`).

Resumable: every clip is written (and tracked) as its own part file under `<out>.parts/`, and
the parts are merged into `<out>` at the end; a rerun skips finished parts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from atm_bench.data.episodes import Episode, FileHeader, merge_task_files, write_task_file
from atm_bench.errors import UserError
from atm_bench.tracking.annotate import Annotator

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".webm")


@dataclass(frozen=True)
class ImportConfig:
    """Frames resized to size x size (ATM's 128), clips of <= clip_frames (bounds memory), every
    fps_stride-th frame kept."""

    size: int = 128
    clip_frames: int = 300
    kind: str = "human"  # human | other_robot: recorded in env_args for mixtures
    tracker: str | None = "flow"  # flow | cotracker | None (import only; track later)
    fps_stride: int = 1


def read_instructions(path: str | Path, video_dir: Path) -> dict[str, str]:
    """instructions.json: {"<video file name>": "<instruction>", ...}; every video needs one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; write a JSON object mapping each video's file name to its instruction")
    try:
        mapping = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) and v.strip() for v in mapping.values()):
        raise UserError(f"{path}: expected {{\"video.mp4\": \"instruction\", ...}} with non-empty instructions")
    videos = sorted(p.name for p in video_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise UserError(f"{video_dir}: no videos ({', '.join(VIDEO_SUFFIXES)}) here")
    missing = [v for v in videos if v not in mapping]
    if missing:
        raise UserError(f"{path}: no instruction for {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    return {v: mapping[v].strip() for v in videos}


def instruction_file_name(instruction: str) -> str:
    slug = "".join(c if c.isalnum() else "_" for c in instruction.lower()).strip("_")
    while "__" in slug:
        slug = slug.replace("__", "_")
    return f"{slug[:120] or 'video'}_demo.hdf5"


def video_clips(path: Path, cfg: ImportConfig) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (clip index, frames (t, size, size, 3) uint8) streaming through the video."""
    import cv2
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path), "ffmpeg")
    clip, index = [], 0
    try:
        for i, frame in enumerate(reader):
            if i % cfg.fps_stride:
                continue
            clip.append(cv2.resize(np.asarray(frame)[..., :3], (cfg.size, cfg.size), interpolation=cv2.INTER_AREA))
            if len(clip) == cfg.clip_frames:
                yield index, np.stack(clip)
                clip, index = [], index + 1
    finally:
        reader.close()
    if len(clip) >= 2:
        yield index, np.stack(clip)


def output_files(mapping: dict[str, str], out: Path) -> dict[Path, list[str]]:
    """Output file -> its videos: `out` itself (a .hdf5 file: one instruction), or one file per
    instruction inside the directory `out`."""
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

    video_dir, out = Path(video_dir), Path(out)
    if not video_dir.is_dir():
        raise UserError(f"{video_dir}: not a directory of videos")
    mapping = read_instructions(instruction_file, video_dir)
    annotator = Annotator(dataclasses.replace(annotate, views=("agentview",))) if annotate is not None else None
    written = {}
    try:
        for path, videos in output_files(mapping, out).items():
            header = _header(mapping[videos[0]], cfg)
            parts = []
            for video in videos:
                for clip, frames in video_clips(video_dir / video, cfg):
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
