"""`atm-bench record` (teleoperated demos on a real or simulated UR arm), `atm-bench real ...`
(camera serials, GELLO calibration, tracking recorded demos) and `atm-bench data import-videos`
(a folder of human or other-robot videos -> action-free episodes with tracks, `data/videos.py`)."""

from __future__ import annotations


ROBOTS = ("ur5", "ur5e", "sim-ur5e")
TELEOPS = ("gello", "keyboard", "scripted")


def register(sub) -> None:
    rec = sub.add_parser("record", help="record teleoperated demos on a UR arm (or the simulated UR5e) into a "
                                        "LIBERO-layout file (resumable: rerun to continue)")
    rec.add_argument("--robot", required=True, help=f"one of {', '.join(ROBOTS)}")
    rec.add_argument("--task", required=True, help='the language instruction, e.g. "put the tomato into the pan"')
    rec.add_argument("--episodes", type=int, default=10, help="demos to keep (default 10)")
    rec.add_argument("--teleop", default="gello", help=f"one of {', '.join(TELEOPS)} (default gello)")
    rec.add_argument("--out", required=True, help="output file (*_demo.hdf5)")
    rec.add_argument("--host", default=None, help="IP address of the UR controller (hardware)")
    rec.add_argument("--gripper", default="robotiq", help="robotiq (URCap socket), digital:<pin> or none")
    rec.add_argument("--cameras", default=None,
                     help="hardware: agentview=realsense:<serial>,eye_in_hand=realsense:<serial> (or opencv:<index>)")
    rec.add_argument("--safety", default=None, help="JSON safety limits (see README 'Real robot')")
    rec.add_argument("--gello", default=None, help="GELLO calibration JSON (`atm-bench real calibrate-gello`)")
    rec.add_argument("--script", default=None, help="scripted teleop on hardware: a JSON waypoint file")
    rec.add_argument("--control-hz", type=float, default=10.0, help="control rate (default 10 Hz)")
    rec.add_argument("--image-size", type=int, default=128, help="stored images are SIZE x SIZE (default 128)")
    rec.add_argument("--max-steps", type=int, default=600, help="steps per episode at most (default 600)")
    rec.add_argument("--seed", type=int, default=0, help="seed of the simulated scene's randomisation")
    rec.add_argument("--successful-only", action="store_true",
                     help="discard episodes whose task check never passed (simulation: scripted demos)")
    rec.set_defaults(handler=_record)

    real = sub.add_parser("real", help="real-robot set-up helpers: list cameras, calibrate a GELLO leader")
    real_sub = real.add_subparsers(dest="real_command", metavar="ACTION")
    real_sub.required = True
    cams = real_sub.add_parser("cameras", help="list the serial numbers of connected RealSense cameras")
    cams.set_defaults(handler=_cameras)
    cal = real_sub.add_parser("calibrate-gello", help="hold the GELLO in a known pose; writes its joint offsets")
    cal.add_argument("--port", default="/dev/ttyUSB0", help="the U2D2's serial port")
    cal.add_argument("--baudrate", type=int, default=57600)
    cal.add_argument("--known", default="0,-1.5708,1.5708,-1.5708,-1.5708,0",
                     help="the pose the leader is held in, 6 joint angles in rad (default: UR home)")
    cal.add_argument("--signs", default="1,1,-1,1,1,1", help="joint direction of each servo (+1/-1)")
    cal.add_argument("--ids", default="1,2,3,4,5,6", help="Dynamixel ids of the 6 joints")
    cal.add_argument("--gripper-id", type=int, default=7, help="Dynamixel id of the trigger (-1: none)")
    cal.add_argument("--out", default="gello.json")
    cal.set_defaults(handler=_calibrate_gello)
    trk = real_sub.add_parser("track", help="track points in a recorded file's demos (both views; resumable)")
    trk.add_argument("file", help="a file written by `atm-bench record`")
    trk.add_argument("--tracker", default="flow", help="flow (default) or cotracker")
    trk.add_argument("--points", type=int, default=1000, help="random points per view and demo (default 1000)")
    trk.add_argument("--grid", type=int, default=7, help="double grid of 2 x GRID^2 points (default 7)")
    trk.add_argument("--cotracker-checkpoint", default=None, help="local CoTracker checkpoint file")
    trk.add_argument("--cotracker-code", default=None, help="local checkout of the co-tracker repository")
    trk.set_defaults(handler=_track)


def register_data_commands(data_sub) -> None:
    """`atm-bench data import-videos` (hooked into the `data` group)."""
    imp = data_sub.add_parser("import-videos", help="turn a folder of videos (human or other robots) into "
                                                    "action-free episodes with tracks (resumable)")
    imp.add_argument("dir", help="folder of .mp4 (.mov, .avi, .webm) videos")
    imp.add_argument("--instruction-file", required=True, help='JSON {"video.mp4": "instruction", ...}')
    imp.add_argument("--out", required=True, help="a *_demo.hdf5 file (one instruction) or a directory (one file each)")
    imp.add_argument("--kind", default="human", choices=["human", "other_robot"], help="recorded for mixtures")
    imp.add_argument("--tracker", default="flow", help="flow (default), cotracker, or none (import only)")
    imp.add_argument("--points", type=int, default=1000, help="random points per clip (default 1000)")
    imp.add_argument("--grid", type=int, default=7, help="double grid of 2 x GRID^2 points (default 7)")
    imp.add_argument("--seed", type=int, default=0, help="seed of the point sampling (default 0)")
    imp.add_argument("--size", type=int, default=128, help="frames are resized to SIZE x SIZE (default 128)")
    imp.add_argument("--clip-frames", type=int, default=300, help="clips of at most this many frames, one demo each")
    imp.add_argument("--cotracker-checkpoint", default=None, help="local CoTracker checkpoint file")
    imp.add_argument("--cotracker-code", default=None, help="local checkout of the co-tracker repository")
    imp.set_defaults(handler=_import_videos)


def _floats(text: str, n: int, what: str) -> list[float]:
    from atm_bench.errors import UserError

    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = []
    if len(values) != n:
        raise UserError(f"{what} takes {n} comma-separated numbers, got {text!r}")
    return values


def _parse_cameras(spec: str | None):
    from atm_bench.envs.real.cameras import parse_camera_spec
    from atm_bench.errors import UserError

    if not spec:
        raise UserError("hardware recording needs --cameras agentview=realsense:<serial>,eye_in_hand=realsense:<serial> "
                        "(list serials with `atm-bench real cameras`)")
    cameras = {}
    for item in spec.split(","):
        view, sep, device = item.partition("=")
        if not sep:
            raise UserError(f"--cameras entries look like VIEW=DEVICE, got {item!r}")
        cameras[view.strip()] = parse_camera_spec(device.strip(), name=view.strip())
    return cameras


def _make_setup(args):
    """(arm, cameras, leader) for the chosen robot and teleop."""
    from atm_bench.errors import UserError, choice_error

    if args.robot not in ROBOTS:
        raise choice_error("robot", args.robot, ROBOTS)
    if args.teleop not in TELEOPS:
        raise choice_error("teleop", args.teleop, TELEOPS)
    if args.robot == "sim-ur5e":
        from atm_bench.envs.real.arm import SimUR5eArm
        from atm_bench.envs.real.cameras import SimCameraRig

        arm = SimUR5eArm()
        cameras = SimCameraRig(arm, height=args.image_size, width=args.image_size).cameras()
    else:
        if not args.host:
            raise UserError(f"--robot {args.robot} needs --host <IP of the UR controller>")
        from atm_bench.envs.real.arm import URArm

        cameras = _parse_cameras(args.cameras)
        arm = URArm(args.host, model=args.robot, gripper=args.gripper)
    return arm, cameras, _make_leader(args, arm)


def _make_leader(args, arm):
    from atm_bench.envs.real import teleop

    if args.teleop == "keyboard":
        return teleop.KeyboardLeader()
    if args.teleop == "gello":
        from atm_bench.errors import UserError

        if not args.gello:
            raise UserError("--teleop gello needs --gello gello.json (make it with `atm-bench real calibrate-gello`)")
        return teleop.GelloLeader(teleop.GelloConfig.from_json(args.gello))
    if args.script:
        return teleop.ScriptedLeader.from_json(args.script)
    return teleop.SimPickPlaceLeader()


def _record(args) -> int:
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from atm_bench.envs.real.env import RealRobotEnv
    from atm_bench.data.robot_recording import RecordConfig, existing_parts, record
    from atm_bench.envs.real.safety import SafetyConfig
    from atm_bench.errors import UserError

    if args.episodes < 1 or args.image_size < 8 or args.control_hz <= 0:
        raise UserError("--episodes must be >= 1, --image-size >= 8 and --control-hz > 0")
    safety = (SafetyConfig.from_json(args.safety, control_hz=args.control_hz) if args.safety
              else SafetyConfig(control_hz=args.control_hz))
    if args.successful_only and args.robot != "sim-ur5e":
        raise UserError("--successful-only needs a task check, which only the simulated robot has (--robot sim-ur5e)")
    arm, cameras, leader = _make_setup(args)
    env = RealRobotEnv(arm, cameras, args.task, image_size=(args.image_size, args.image_size), safety=safety,
                       max_steps=args.max_steps)
    out = Path(args.out)

    def prompt(index: int) -> None:
        if leader.interactive:
            bar.stop()
            input(f"episode {index + 1}: the arm goes home; press Enter to start "
                  "(during it: Enter ends and keeps, x discards) ")
            bar.start()

    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
            job = bar.add_task(f"record {args.robot}", total=args.episodes, completed=existing_parts(out))
            config = RecordConfig(args.episodes, args.seed, successful_only=args.successful_only)
            summary = record(env, leader, args.task, out, config,
                             on_episode=lambda kept, _info: bar.update(job, completed=kept), before_episode=prompt)
    finally:
        env.close()
        leader.close()
    report = env.safety.report
    print(f"wrote {out}: {summary['kept']} demos ({summary['resumed_from']} from earlier runs, "
          f"{summary['discarded']} discarded), {summary['steps']} new steps, {summary['successes']} successful; "
          f"safety: {report.joint_clipped} joint clips, {report.step_clipped} step clips, "
          f"{report.workspace_held} workspace holds, {report.missed_deadlines} missed deadlines")
    return 0


def _cameras(args) -> int:
    from atm_bench.envs.real.cameras import realsense_serials

    serials = realsense_serials()
    print("\n".join(serials) if serials else "no RealSense camera found")
    return 0


def _calibrate_gello(args) -> int:
    from atm_bench.envs.real.teleop import DynamixelBus, GelloConfig, calibrate_offsets
    from atm_bench.io import write_json_atomic

    known = _floats(args.known, 6, "--known")
    signs = [int(s) for s in _floats(args.signs, 6, "--signs")]
    ids = [int(i) for i in _floats(args.ids, 6, "--ids")]
    gripper_id = None if args.gripper_id < 0 else args.gripper_id
    bus = DynamixelBus(args.port, args.baudrate, ids + ([gripper_id] if gripper_id is not None else []))
    try:
        input("hold the leader in the --known pose with the trigger released, then press Enter ")
        raw = bus.read()
        offsets = calibrate_offsets(raw[:6], known, signs)
        config = dict(port=args.port, baudrate=args.baudrate, joint_ids=tuple(ids), gripper_id=gripper_id,
                      signs=tuple(signs), offsets=offsets)
        if gripper_id is not None:
            config["gripper_open"] = float(raw[6])
            input("squeeze the trigger fully, then press Enter ")
            config["gripper_closed"] = float(bus.read()[6])
    finally:
        bus.close()
    cfg = GelloConfig(**config)
    write_json_atomic(args.out, cfg.to_dict())
    print(f"wrote {args.out}; check: the leader now reads {[round(x, 3) for x in cfg.joints(raw[:6])]} (known {known})")
    return 0


def _track(args) -> int:
    from pathlib import Path

    from atm_bench.errors import UserError
    from atm_bench.tracking.annotate import AnnotateConfig, Annotator
    from atm_bench.tracking.sampling import SamplingConfig

    if args.tracker not in ("flow", "cotracker"):
        raise UserError("recorded demos are tracked from their frames: --tracker flow or cotracker")
    cfg = AnnotateConfig(tracker=args.tracker, sampling=SamplingConfig(num_points=args.points, grid_size=args.grid),
                         cotracker_checkpoint=args.cotracker_checkpoint, cotracker_code=args.cotracker_code)
    annotator = Annotator(cfg)
    try:
        stats = annotator.annotate_file(Path(args.file))
    finally:
        annotator.close()
    print(f"tracked {stats.demos_done} demos ({stats.demos_skipped} already done) of {args.file} with {args.tracker}")
    return 0


def _import_videos(args) -> int:
    from atm_bench.data.videos import ImportConfig, import_videos
    from atm_bench.errors import UserError

    if args.size < 8 or args.clip_frames < 2:
        raise UserError("--size must be >= 8 and --clip-frames >= 2")
    if args.points < 0 or args.grid < 0 or args.points + args.grid == 0:
        raise UserError("--points and --grid must be >= 0 and not both 0")
    annotate = None
    if args.tracker != "none":
        from atm_bench.tracking.annotate import AnnotateConfig
        from atm_bench.tracking.sampling import SamplingConfig

        if args.tracker == "sim":
            raise UserError("videos have no simulator state; use --tracker flow or cotracker (or none)")
        annotate = AnnotateConfig(tracker=args.tracker, views=("agentview",), seed=args.seed,
                                  sampling=SamplingConfig(num_points=args.points, grid_size=args.grid),
                                  cotracker_checkpoint=args.cotracker_checkpoint, cotracker_code=args.cotracker_code)
    from rich.progress import Progress

    with Progress() as bar:
        job = bar.add_task("clips", total=None)
        written = import_videos(args.dir, args.instruction_file, args.out,
                                ImportConfig(args.size, args.clip_frames, args.kind, None if annotate is None else args.tracker),
                                annotate=annotate, on_clip=lambda _v, _c: bar.advance(job))
    for path, n in written.items():
        print(f"wrote {path}: {n} action-free demos" + ("" if annotate is None else f" with {args.tracker} tracks"))
    return 0
