"""`atm-bench tracks`: annotate demos with point tracks, and draw them. (Folders of plain videos
become tracked episodes with `atm-bench data import-videos`, `atm_bench/data/videos.py`.)"""

from __future__ import annotations

import argparse


def _add_tracker_args(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--tracker", default=default,
                        help=f"sim (exact, from simulator states), flow (Lucas-Kanade, no weights) or cotracker "
                             f"(needs --cotracker-checkpoint and --cotracker-code); default {default}")
    parser.add_argument("--points", type=int, default=1000, help="random points per view and demo (default 1000)")
    parser.add_argument("--grid", type=int, default=7,
                        help="double grid of 2 x GRID^2 points added to the random ones (default 7 = 98 points)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the point sampling")
    parser.add_argument("--overwrite", action="store_true", help="re-annotate demos that already have tracks")
    parser.add_argument("--cotracker-checkpoint", default=None, help="local CoTracker checkpoint file")
    parser.add_argument("--cotracker-code", default=None, help="local checkout of github.com/facebookresearch/co-tracker")


def register(sub) -> None:
    from atm_bench.commands.data import add_data_dir_arg
    from atm_bench.commands.envs import add_suite_arg

    tracks = sub.add_parser("tracks", help="point tracks: annotate demos, draw them (videos: data import-videos)")
    tsub = tracks.add_subparsers(dest="tracks_command", metavar="ACTION")
    tsub.required = True

    ann = tsub.add_parser("annotate", help="track points in every demo of a suite's task files "
                                           "(resumable: rerun to continue)")
    add_suite_arg(ann)
    ann.add_argument("--tasks", default=None, help="task indices, e.g. 0,3 or 0-4 (default: all)")
    add_data_dir_arg(ann)
    ann.add_argument("--views", default="agentview,eye_in_hand", help="views to track (default both)")
    ann.add_argument("--render-quality", default="fast", help="sim tracker's renderer: fast (default) or reference")
    _add_tracker_args(ann, "sim")
    ann.set_defaults(handler=_annotate)

    show = tsub.add_parser("show", help="draw a demo's tracks as fading trails: an MP4, or one PNG with --frame")
    show.add_argument("file", help="a task file (*_demo.hdf5) with tracks")
    show.add_argument("--demo", type=int, default=0)
    show.add_argument("--view", default="agentview", help="agentview or eye_in_hand")
    show.add_argument("--frame", type=int, default=None, help="draw only this frame, to a PNG")
    show.add_argument("--trail", type=int, default=16, help="trail length in frames (default 16)")
    show.add_argument("--max-points", type=int, default=150, help="draw at most this many tracks (default 150)")
    show.add_argument("--scale", type=int, default=4, help="upscale factor of the frames (default 4)")
    show.add_argument("--out", default=None, help="output path (default tracks.mp4, or tracks.png with --frame)")
    show.set_defaults(handler=_show)


def _config(args, views):
    from atm_bench.errors import UserError
    from atm_bench.tracking.annotate import AnnotateConfig
    from atm_bench.tracking.sampling import SamplingConfig

    if args.points < 0 or args.grid < 0 or args.points + args.grid == 0:
        raise UserError("--points and --grid must be >= 0 and not both 0")
    return AnnotateConfig(tracker=args.tracker, views=tuple(views), seed=args.seed, overwrite=args.overwrite,
                          sampling=SamplingConfig(num_points=args.points, grid_size=args.grid),
                          render_quality=getattr(args, "render_quality", "fast"),
                          cotracker_checkpoint=args.cotracker_checkpoint, cotracker_code=args.cotracker_code)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn())


def _annotate(args) -> int:
    from pathlib import Path

    from atm_bench.commands.data import default_data_dir, parse_tasks
    from atm_bench.data.generate import task_path
    from atm_bench.envs.libero.suites import canonical_suite
    from atm_bench.errors import UserError
    from atm_bench.tracking.annotate import AnnotateStats, Annotator
    from atm_bench.tracking.base import check_tracker_name

    check_tracker_name(args.tracker)
    suite = canonical_suite(args.suite)
    cfg = _config(args, [v.strip() for v in args.views.split(",") if v.strip()])
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    tasks = parse_tasks(args.tasks, suite)
    files = [(t, task_path(data_dir, suite, t)) for t in tasks]
    missing = [str(p) for _, p in files if not p.is_file()]
    if missing:
        raise UserError(f"no demos at {missing[0]}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")
                        + f"; generate them with `atm-bench data generate --suite {args.suite}` or pass --data-dir")
    annotator = Annotator(cfg, suite)
    total = AnnotateStats()
    try:
        with _progress() as bar:
            for task, path in files:
                todo, done = annotator.pending(path)
                job = bar.add_task(f"task {task} {args.tracker}", total=len(todo) + done, completed=done)
                stats = annotator.annotate_file(path, on_demo=lambda _d, job=job: bar.advance(job))
                total.add(stats)
    finally:
        annotator.close()
    rate = total.point_frames / total.track_seconds if total.track_seconds else 0.0
    print(f"annotated {total.demos_done} demos ({total.demos_skipped} already done) with {args.tracker}: "
          f"{total.point_frames:,} point-frames in {total.track_seconds:.1f} s tracking ({rate:,.0f} point-frames/s), "
          f"{total.seconds:.1f} s in all")
    return 0


def _show(args) -> int:
    from pathlib import Path

    import imageio.v3 as iio

    from atm_bench.data.episodes import ENV_IMAGE_KEYS, EpisodeFile
    from atm_bench.errors import UserError
    from atm_bench.tracking.draw import draw_frame, draw_video
    from atm_bench.tracking.storage import read_tracks

    if args.view not in ENV_IMAGE_KEYS:
        raise UserError(f"unknown view {args.view!r}; valid: {', '.join(ENV_IMAGE_KEYS)}")
    demo = f"demo_{args.demo}"
    with EpisodeFile(args.file) as ef:
        frames = ef.frames(demo, ENV_IMAGE_KEYS[args.view])
    vt = read_tracks(args.file, demo, args.view)
    kwargs = dict(trail=args.trail, scale=args.scale, max_points=args.max_points)
    if args.frame is not None:
        if not 0 <= args.frame < len(frames):
            raise UserError(f"--frame must be in 0..{len(frames) - 1}")
        out = Path(args.out or "tracks.png")
        out.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(out, draw_frame(frames, vt.result, args.frame, **kwargs))
    else:
        out = Path(args.out or "tracks.mp4")
        out.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(out, list(draw_video(frames, vt.result, **kwargs)), fps=20, codec="libx264",
                    macro_block_size=1)
    print(f"wrote {out} ({vt.tracks.shape[1]} tracks, {len(frames)} frames, view {args.view})")
    return 0
