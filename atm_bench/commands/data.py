"""`atm-bench data`: generate demos, inspect dataset files, make matched splits."""

from __future__ import annotations

import argparse

from atm_bench.commands.envs import add_suite_arg


def parse_tasks(text: str | None, suite: str) -> tuple[int, ...]:
    """`--tasks 0,3,5` (or `0-4`) -> task indices; None -> every task of the suite."""
    from atm_bench.envs.libero.suites import list_tasks
    from atm_bench.errors import UserError

    n = len(list_tasks(suite))
    if not text:
        return tuple(range(n))
    tasks: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                tasks.extend(range(lo, hi + 1))
            elif part.strip():
                tasks.append(int(part))
    except ValueError:
        raise UserError(f"--tasks takes task indices like 0,3 or 0-4, got {text!r}") from None
    bad = [t for t in tasks if not 0 <= t < n]
    if bad:
        raise UserError(f"unknown task index {bad[0]} for this suite; valid: 0..{n - 1}")
    return tuple(dict.fromkeys(tasks))


def default_data_dir():
    from atm_bench.paths import cache_subdir

    return cache_subdir("data")


def add_data_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="dataset root; files go to DATA_DIR/<suite>/<task>_demo.hdf5 (default: the cache's data/)")


def register(sub) -> None:
    data = sub.add_parser("data", help="datasets: generate scripted demos, inspect files, make matched splits")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data_sub.required = True

    gen = data_sub.add_parser("generate", help="roll out the scripted expert and save demos in LIBERO's layout "
                                                "(resumable: rerun to continue)")
    add_suite_arg(gen)
    gen.add_argument("--demos", type=int, default=50, help="successful demos per task (default 50)")
    gen.add_argument("--tasks", default=None, help="task indices, e.g. 0,3 or 0-4 (default: all)")
    add_data_dir_arg(gen)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--init-states", default="sampled", choices=["sampled", "fixed"],
                     help="sampled: fresh placements (default; the 50 fixed init states stay for evaluation); "
                          "fixed: LIBERO's fixed init states in order")
    gen.add_argument("--max-attempts", type=int, default=None, help="attempts per task before giving up (default 3 x demos)")
    gen.add_argument("--max-steps", type=int, default=None, help="steps per attempt (default 600, the ATM horizon)")
    gen.add_argument("--image-size", type=int, default=128)
    gen.add_argument("--render-quality", default="fast", choices=["fast", "reference"])
    gen.add_argument("--workers", type=int, default=1, help="tasks generated in parallel processes (default 1)")
    gen.add_argument("--tracks", default=None, choices=["sim"],
                     help="also annotate exact point tracks while rendering (cheap: reuses the rendered depth)")
    gen.add_argument("--track-points", type=int, default=1000, help="random track points per view and demo (default 1000)")
    gen.add_argument("--perturb", type=float, default=0.0,
                     help="DART-style pushes of the hand while the expert acts: chance per step that one starts "
                          "(labels stay the expert's; default 0 = none)")
    gen.add_argument("--approach", type=float, default=None,
                     help="distance (m) from its target below which the expert's servo slows down (default 0.02: "
                          "full speed until 2 cm; longer = smoother labels near grasps)")
    gen.set_defaults(handler=_generate)

    info = data_sub.add_parser("info", help="print tasks, demo counts, lengths and keys of dataset files")
    info.add_argument("path", help="a *_demo.hdf5 file or a directory of them")
    info.set_defaults(handler=_info)

    split = data_sub.add_parser("split", help="write a seeded matched split manifest (labelled / videos / validation)")
    add_suite_arg(split)
    split.add_argument("--labelled", type=int, default=10, help="action-labelled demos per task (default 10; 2, 5 ablations)")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--val-fraction", type=float, default=0.1, help="validation share of each task's demos (default 0.1)")
    split.add_argument("--videos", default="all", help="action-free videos per task: 'all' non-validation demos, or a count")
    split.add_argument("--tasks", default=None, help="task indices (default: all)")
    add_data_dir_arg(split)
    split.add_argument("--out", default=None, help="manifest path (default DATA_DIR/<suite>/splits/...)")
    split.set_defaults(handler=_split)
    from atm_bench.commands.real import register_data_commands

    register_data_commands(data_sub)  # data import-videos (videos -> action-free episodes with tracks)


def _generate(args) -> int:
    import os
    import time
    from pathlib import Path

    from rich.console import Console

    from atm_bench.data.generate import GenerateConfig, generate
    from atm_bench.envs.libero.suites import canonical_suite

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    suite = canonical_suite(args.suite)
    config = GenerateConfig(
        suite=suite, tasks=parse_tasks(args.tasks, suite), demos=args.demos, seed=args.seed,
        image_size=args.image_size, render_quality=args.render_quality, init_states=args.init_states,
        max_attempts=args.max_attempts, max_steps=args.max_steps, tracks=args.tracks, track_points=args.track_points,
        perturb=args.perturb, approach=args.approach,
    )
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    start = time.perf_counter()
    reports = generate(config, data_dir, workers=args.workers)
    console = Console()
    new = sum(r.new_demos for r in reports)
    seconds = time.perf_counter() - start
    for r in reports:
        state = "already complete" if r.skipped else f"+{r.new_demos} demos in {r.attempts} attempts, {r.seconds:.0f} s"
        console.print(f"task {r.task} {r.name}: {r.demos}/{config.demos} demos ({state}) -> {r.path}")
        if r.demos < config.demos:
            console.print(f"[yellow]warning: task {r.task} has only {r.demos} of {config.demos} demos after the "
                          "attempts bound; raise --max-attempts or check the expert on this task[/yellow]")
    if new and seconds > 0:
        steps = sum(sum(r.steps) for r in reports)
        split = {k: sum(r.timings[k] for r in reports) for k in reports[0].timings}
        console.print(f"throughput: {new} demos ({steps} steps) in {seconds:.0f} s wall = {60 * new / seconds:.1f} demos/min "
                      f"with {args.workers} worker(s); summed over workers: "
                      + ", ".join(f"{k} {v:.0f} s" for k, v in split.items()))
    return 0


def _info(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from atm_bench.data.episodes import EpisodeFile, task_files

    console = Console()
    for path in task_files(args.path):
        with EpisodeFile(path) as f:
            f.check()
            lengths = [f.length(n) for n in f.demo_names]
            first = f.demo_names[0]
            made = f.header.env_args.get("atm_bench", {})
            table = Table(title=str(path), show_header=False)
            table.add_row("instruction", f.instruction)
            table.add_row("demos", str(len(lengths)))
            table.add_row("steps", f"total {sum(lengths)}, min {min(lengths)}, mean {sum(lengths) / len(lengths):.1f}, "
                                   f"max {max(lengths)}")
            table.add_row("images on disk", "upright" if f.upright_on_disk else "upside down (flipped when read)")
            table.add_row("obs keys", ", ".join(f"{k} {f.shape(first, 'obs/' + k)[1:]}" for k in f.obs_keys()))
            table.add_row("actions / states", f"{f.shape(first, 'actions')[1:]} / {f.shape(first, 'states')[1:]}")
            if made:
                table.add_row("generated by", ", ".join(f"{k}={v}" for k, v in made.items()))
            console.print(table)
    return 0


def _split(args) -> int:
    from pathlib import Path

    from atm_bench.data.splits import default_manifest_path, make_split, save_split
    from atm_bench.envs.libero.suites import canonical_suite

    suite = canonical_suite(args.suite)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    videos = args.videos if args.videos == "all" else args.videos
    manifest = make_split(data_dir, suite, labelled=args.labelled, seed=args.seed, val_fraction=args.val_fraction,
                          videos=videos, tasks=list(parse_tasks(args.tasks, suite)) if args.tasks else None)
    out = Path(args.out) if args.out else default_manifest_path(data_dir, suite, args.labelled, args.seed,
                                                                 args.val_fraction, videos)
    save_split(manifest, out)
    for t in manifest.tasks:
        print(f"task {t.task} {t.task_name}: {len(t.labelled)} labelled, {len(t.videos)} videos, "
              f"{len(t.validation)} validation of {t.num_demos}")
    print(f"wrote {out} (sha256 {manifest.manifest_sha256[:16]}...)")
    return 0
