"""Manipulation primitives composed from servo moves: grasp, pick, place, push, pull, turn.

Each primitive is a generator of actions that reads the live simulator (through `Ctx.scene`)
between steps and returns True when its physical effect happened (object lifted, drawer
moved, knob turned). The expert checks LIBERO's own predicate afterwards.
"""

from __future__ import annotations

import mujoco
import numpy as np

from atm_bench.experts.motion import APPROACH, CLOSE, OPEN, Actions, Ctx, down_rot, hold, move_to, rotation_error
from atm_bench.experts.scene import Scene, yaw_for_axis

MAX_HEIGHT = 0.42  # highest comfortable hand height above the work surface
GRIPPER_OPEN_WIDTH = 0.075


# -- geometry helpers ------------------------------------------------------------------------


def _robot_geoms(sc: Scene) -> set[int]:
    m = sc.model
    names = ("robot0_", "gripper0_", "mount0_")
    return {g for g in range(m.ngeom) if m.body(int(m.geom_bodyid[g])).name.startswith(names)}


def surface_hit(sc: Scene, xy: np.ndarray, exclude: set[int], z_from: float = 1.6) -> tuple[float, int]:
    """Height and geom id (-1: none) of the first collision surface under `xy`, ignoring `exclude`."""
    pnt = np.array([xy[0], xy[1], z_from], dtype=np.float64)
    vec = np.array([0.0, 0.0, -1.0])
    group = np.array([1, 0, 0, 0, 0, 0], dtype=np.uint8)
    geomid = np.zeros(1, dtype=np.int32)
    for _ in range(16):
        dist = mujoco.mj_ray(sc.model, sc.data, pnt, vec, group, 1, -1, geomid)
        if dist < 0:
            return float(sc.table_z), -1
        hit = pnt + vec * dist
        if int(geomid[0]) not in exclude:
            return float(hit[2]), int(geomid[0])
        pnt = hit + vec * 1e-4
    return float(sc.table_z), -1


def surface_z(sc: Scene, xy: np.ndarray, exclude: set[int], z_from: float = 1.6) -> float:
    """Height of the first collision surface under `xy`, ignoring the geoms in `exclude`."""
    return surface_hit(sc, xy, exclude, z_from)[0]


def path_clearance(sc: Scene, a: np.ndarray, b: np.ndarray, skip: set[str], margin: float = 0.07) -> float:
    """Highest object/fixture point within `margin` of the xy segment a->b (skipping `skip`)."""
    top = sc.table_z
    seg = b[:2] - a[:2]
    length2 = float(seg @ seg) + 1e-9
    for name in sc.object_names() + sc.fixture_names():
        if name in skip:
            continue
        try:
            pts = sc.extent(name).points
        except ValueError:
            continue
        t = np.clip(((pts[:, :2] - a[:2]) @ seg) / length2, 0.0, 1.0)
        d = np.linalg.norm(pts[:, :2] - (a[:2] + t[:, None] * seg), axis=1)
        near = pts[d < margin]
        if len(near):
            top = max(top, float(near[:, 2].max()))
    return top


def _footprint_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Centre, minor and major axes of a point set's xy footprint, with the widths along them."""
    xy = points[:, :2]
    cov = np.cov((xy - xy.mean(axis=0)).T)
    _, vecs = np.linalg.eigh(cov)
    minor, major = vecs[:, 0], vecs[:, 1]
    pm, pM = xy @ minor, xy @ major
    centre = minor * 0.5 * (pm.min() + pm.max()) + major * 0.5 * (pM.min() + pM.max())
    return centre, minor, major, float(np.ptp(pm)), float(np.ptp(pM))


def grasp_pose(ctx: Ctx, obj: str) -> tuple[np.ndarray, float]:
    """A top-down grasp (hand position, yaw) for an object, from its collision extent.

    Narrow objects are grasped at the centre of their footprint across the narrow axis; wide
    hollow ones (bowls) by the rim, fingers across the rim wall, on the freest side.
    """
    sc = ctx.scene
    ext = sc.extent(obj)
    pts, top, bottom = ext.points, ext.hi[2], ext.lo[2]
    height = top - bottom
    centre, minor, _, w_minor, _ = _footprint_axes(pts)
    if w_minor < GRIPPER_OPEN_WIDTH - 0.005:
        z = top - min(0.03, 0.5 * height) if height < 0.12 else top - 0.045
        z = max(z, bottom + 0.012)
        return np.array([centre[0], centre[1], z]), yaw_for_axis(minor)
    knob = _top_knob(pts, centre, w_minor)
    if knob is not None:
        return knob
    handle = handle_grasp(sc, obj)
    if handle is not None:
        return handle
    pts = _without_handle(sc, obj, pts, w_minor)  # a pan whose handle is crowded: by the rim
    return _rim_grasp(ctx, obj, pts, float(pts[:, 2].max()))


LONG_HANDLE_REACH = 0.12  # a handle's tip this far from the footprint's centre: a pan's, not a mug's


def long_handle(sc: Scene, obj: str, reach: float = LONG_HANDLE_REACH) -> tuple[np.ndarray, np.ndarray] | None:
    """A long narrow handle sticking out of a wide object (a frying pan's): see `handle_tip`."""
    return handle_tip(sc.extent(obj).points, reach)


def handle_tip(pts: np.ndarray, reach: float = LONG_HANDLE_REACH) -> tuple[np.ndarray, np.ndarray] | None:
    """The tip's centre (x, y) of a long narrow handle in a point set's footprint (an end of the
    long axis at least `reach` from the footprint's centre and under 3 cm wide), and the
    horizontal unit direction from the tip along the bar into the body. None without one."""
    centre, minor, major, _, _ = _footprint_axes(pts)
    rel = pts[:, :2] - centre
    pM, pm = rel @ major, rel @ minor
    for sgn in (1.0, -1.0):
        end = sgn * pM
        tip = end > end.max() - 0.012
        if end.max() < reach or np.ptp(pm[tip]) > 0.03:
            continue
        xy = centre + major * sgn * end.max() + minor * float(pm[tip].mean())
        return xy, -sgn * major / np.linalg.norm(major)
    return None


def handle_grasp(sc: Scene, obj: str) -> tuple[np.ndarray, float] | None:
    """A top-down grasp across a long handle, fingers square to the bar, at the point along it
    (2.5-9.5 cm in from the tip) with nothing taller than the bar within the hand's reach (7 cm
    around it: the open fingers and the palm); fingertips just under the bar's top (found by a
    ray). None without a handle or without such a free point (a moka pot beside the handle)."""
    found = long_handle(sc, obj)
    if found is None:
        return None
    tip, inward = found
    geoms = set(sc.object_geoms(sc.root_body(obj)))
    robot = _robot_geoms(sc)
    for back in (0.035, 0.025, 0.05, 0.065, 0.08, 0.095):
        xy = tip + inward * back
        top, geom = surface_hit(sc, xy, robot)
        if geom not in geoms:
            continue
        z = max(top - 0.014, sc.table_z + 0.012)
        # collision points, not rays: many objects' collision geoms are invisible, which rays skip
        near = _obstacle_points(sc, obj, above=z - 0.005)
        rel = near[:, :2] - xy
        axis = np.array([-inward[1], inward[0]])  # the fingers' (and the palm's long) axis
        fingers = np.linalg.norm(rel, axis=1) < 0.075
        palm = (np.abs(rel @ axis) < 0.12) & (np.abs(rel @ inward) < 0.04) & (near[:, 2] > z + 0.03)
        if not np.any(fingers | palm):
            return np.array([xy[0], xy[1], z]), yaw_for_axis(axis)
    return None


def _without_handle(sc: Scene, obj: str, pts: np.ndarray, width: float) -> np.ndarray:
    """An object's points less its long handle (the rim of a pan, for a rim grasp)."""
    found = long_handle(sc, obj)
    if found is None:
        return pts
    _, inward = found
    return pts[(pts[:, :2] - sc.body_pos(obj)[:2]) @ -inward < 0.5 * width + 0.01]


def _top_knob(pts: np.ndarray, centre: np.ndarray, width: float) -> tuple[np.ndarray, float] | None:
    """A small knob on top of a wide closed object (a moka pot's lid): grasped there, the object
    hangs straight below the hand instead of swinging from a side handle."""
    top = float(pts[:, 2].max())
    knob = pts[pts[:, 2] > top - 0.015]
    below = pts[(pts[:, 2] > top - 0.04) & (pts[:, 2] <= top - 0.015)]
    if len(knob) < 3 or len(below) == 0:
        return None
    k_centre, k_minor, _, k_w_minor, k_w_major = _footprint_axes(knob)
    _, _, _, b_w, _ = _footprint_axes(below) if len(below) >= 3 else (None, None, None, 0.0, None)
    if k_w_major > 0.04 or b_w < 2.0 * k_w_major or np.linalg.norm(k_centre - centre) > 0.25 * width:
        return None
    z = top - 0.012
    return np.array([k_centre[0], k_centre[1], z]), yaw_for_axis(k_minor)


def _obstacle_points(sc: Scene, obj: str, above: float) -> np.ndarray:
    """Collision points of every other object and fixture higher than `above` (what fingers can hit)."""
    chunks = []
    for name in sc.object_names() + sc.fixture_names():
        if name == obj:
            continue
        try:
            pts = sc.extent(name).points
        except ValueError:
            continue
        chunks.append(pts[pts[:, 2] > max(above, sc.table_z + 0.01)])
    return np.concatenate(chunks) if chunks else np.zeros((0, 3))


HAND_HALF_LENGTH, HAND_HALF_WIDTH, HAND_ABOVE_TIPS = 0.095, 0.025, 0.025  # Panda hand box around the grip site


def _overhead_hits(sc: Scene, obj: str, point: np.ndarray, axis: np.ndarray, z: float) -> int:
    """How many vertical rays over the hand's footprint (grasp at `point`, fingers along `axis`,
    fingertips at height `z`) hit something, other than `obj` and the robot, above the hand."""
    exclude = _robot_geoms(sc) | set(sc.object_geoms(sc.root_body(obj)))
    side = np.array([-axis[1], axis[0]])
    hits = 0
    for a in np.linspace(-HAND_HALF_LENGTH, HAND_HALF_LENGTH, 5):
        for b in (-HAND_HALF_WIDTH, HAND_HALF_WIDTH):
            top = surface_z(sc, point + axis * a + side * b, exclude)
            hits += top > z + (HAND_ABOVE_TIPS if abs(a) > 0.05 else -0.003)
    return hits


def _rim_grasp(ctx: Ctx, obj: str, pts: np.ndarray, top: float) -> tuple[np.ndarray, float]:
    sc = ctx.scene
    rim = pts[pts[:, 2] > top - 0.012]
    centre = 0.5 * (pts[:, :2].min(axis=0) + pts[:, :2].max(axis=0))
    z = max(top - 0.02, float(pts[:, 2].min()) + 0.009)  # shallow dishes: stay off the table
    obstacles = _obstacle_points(sc, obj, above=z - 0.005)
    best, best_score = None, -np.inf
    for ang in np.linspace(0, 2 * np.pi, 16, endpoint=False):
        d = np.array([np.cos(ang), np.sin(ang)])
        r = float(((rim[:, :2] - centre) @ d).max())
        point = centre + d * (r - 0.012)
        # the fingers straddle the rim wall: both must be clear (an open drawer can overhang a bowl)
        fingers = np.stack([point, point + d * 0.045, point - d * 0.045])
        clear = float(np.linalg.norm(obstacles[:, None, :2] - fingers[None], axis=2).min()) if len(obstacles) else 1.0
        # prefer the side facing the robot (its base is at -x) and a free neighbourhood; never
        # a side where something hangs over the hand (an open drawer above a bowl)
        score = min(clear, 0.07) + 0.02 * float(-d[0]) - 0.1 * _overhead_hits(sc, obj, point, d, z)
        if score > best_score:
            best, best_score = (point, d), score
    point, d = best
    return np.array([point[0], point[1], z]), yaw_for_axis(d)


# -- pick and place --------------------------------------------------------------------------


def transit(ctx: Ctx, goal: np.ndarray, yaw: float, skip: set[str], below_hand: float = 0.0) -> Actions:
    """Go to `goal` over obstacles: up to a clearance height, across, then down.

    below_hand: how far the held object hangs below the hand (added to the clearance).
    """
    sc = ctx.scene
    start = sc.eef_pos
    clear = path_clearance(sc, start, goal, skip) + 0.05 + below_hand
    safe_z = min(sc.table_z + MAX_HEIGHT, max(clear, goal[2], start[2] if start[2] < clear else clear))
    rot = down_rot(yaw)
    if sc.eef_pos[2] < safe_z - 0.02:
        yield from move_to(ctx, np.array([start[0], start[1], safe_z]), sc.eef_rot, tol=0.02, max_steps=40)
    above = np.array([goal[0], goal[1], max(safe_z, goal[2])])
    yield from move_to(ctx, above, rot, tol=0.015, max_steps=120)
    return (yield from move_to(ctx, goal, rot, tol=0.01, max_steps=60))


def pick(ctx: Ctx, obj: str) -> Actions:
    """Grasp `obj` from above and lift it; returns whether it is held off its support."""
    sc = ctx.scene
    pos, yaw = grasp_pose(ctx, obj)
    pos = pos + ctx.jitter() * np.array([1.0, 1.0, 0.5])
    z0 = sc.body_pos(obj)[2]
    above = pos + np.array([0.0, 0.0, ctx.style.hover])
    ctx.grip = OPEN
    yield from transit(ctx, above, yaw, skip={obj})
    yield from move_to(ctx, pos, down_rot(yaw), OPEN, tol=0.006, max_steps=60, speed=0.6, stall_steps=6)
    closed_at = sc.eef_pos
    yield from hold(ctx, ctx.style.close_steps, CLOSE, down_rot(yaw))
    lift = sc.eef_pos + np.array([0.0, 0.0, 0.06])
    yield from move_to(ctx, lift, down_rot(yaw), CLOSE, tol=0.01, max_steps=30, speed=0.6)
    dz = sc.body_pos(obj)[2] - z0
    # an object lifted by its edge (a pan by the rim) tilts: its origin rises less than the hand
    held = sc.gripper_width > 0.004 and (dz > 0.025 or (dz > 0.012 and sc.gripper_touches(sc.root_body(obj))))
    ctx.held = obj if held else None
    ctx.log.append(f"pick {obj}: held={held} width={sc.gripper_width:.3f} dz={sc.body_pos(obj)[2] - z0:.3f} "
                   f"grasp={pos.round(3)} yaw={yaw:.2f} closed_at={closed_at.round(3)}")
    return held


def release(ctx: Ctx, steps: int = 8, up: float = 0.08) -> Actions:
    """Open the gripper and back off upward."""
    sc = ctx.scene
    rot = sc.eef_rot
    yield from hold(ctx, steps, OPEN, rot)
    ctx.held = None
    yield from move_to(ctx, sc.eef_pos + np.array([0.0, 0.0, up]), rot, OPEN, tol=0.015, max_steps=25)
    return True


def target_xy(sc: Scene, target: str) -> np.ndarray:
    """Where a target's predicate wants the object: a region's centre or an object's origin."""
    return sc.site_pos(target)[:2] if sc.is_site(target) else sc.body_pos(target)[:2]


def place(ctx: Ctx, obj: str, target: str, clearance: float = 0.012, at: np.ndarray | None = None) -> Actions:
    """Carry the held `obj` over `target` (or to the xy point `at`), lower it onto the support below, release."""
    sc = ctx.scene
    hand = sc.eef_pos
    offset = sc.body_pos(obj)[:2] - hand[:2]
    below = hand[2] - sc.extent(obj).lo[2]
    exclude = _robot_geoms(sc) | set(sc.object_geoms(sc.root_body(obj)))
    yaw = _current_yaw(sc)
    turn = 0.0
    if sc.is_site(target) and at is None:
        # a slot (a caddy's compartment): turn the held object so its footprint lies along it,
        # and aim at the slot's centre (the free-spot search assumes the object's present turn)
        turn = slot_turn(sc.extent(obj).points, sc.site_half_size(target), yaw)
        if turn:
            c, s_ = np.cos(turn), np.sin(turn)
            offset = np.array([[c, -s_], [s_, c]]) @ offset
            yaw += turn
            ctx.log.append(f"place {obj}: turned {turn:.2f} to fit {target}")
    if at is not None:
        centre = np.asarray(at, dtype=np.float64)
    elif turn:
        centre = sc.site_pos(target)[:2]
    elif _is_drawer_region(sc, target):
        centre = _drawer_spot(sc, obj, target, exclude)
    elif sc.is_site(target):
        centre = _region_spot(sc, obj, target)
    else:
        centre = target_xy(sc, target)
    goal_xy = centre - offset + ctx.jitter(2)
    support = surface_z(sc, goal_xy + offset, exclude)
    release_z = support + clearance + below
    above = np.array([goal_xy[0], goal_xy[1], release_z + ctx.style.hover * 0.6])
    if turn and sc.site_parent(target) is not None:  # line up over the slot clear of its walls
        above[2] = max(above[2], float(sc.extent(sc.site_parent(target)).hi[2]) + 0.02 + below)
    yield from transit(ctx, above, yaw, skip={obj}, below_hand=below)
    if turn:
        # a slot leaves millimetres: centre the footprint (not the origin, which a swinging
        # object carries off its centre) over the slot before going down
        for _ in range(2):
            err = centre - _footprint_axes(sc.extent(obj).points)[0]
            goal_xy = sc.eef_pos[:2] + err
            yield from move_to(ctx, np.array([goal_xy[0], goal_xy[1], above[2]]), down_rot(yaw), CLOSE, tol=0.003,
                               max_steps=25, speed=0.4)
    yield from move_to(ctx, np.array([goal_xy[0], goal_xy[1], release_z]), down_rot(yaw), CLOSE,
                       tol=0.006, max_steps=50, speed=0.5 if not turn else 0.35, stall_steps=4)
    ctx.log.append(f"place {obj} on {target}: support={support:.3f} release_z={release_z:.3f} at={sc.eef_pos.round(3)}")
    yield from release(ctx)
    return True


def slot_turn(pts: np.ndarray, half: np.ndarray, yaw: float) -> float:
    """How far (rad) to turn a held object about the vertical so that its footprint fits a
    region with world-axis half sizes `half`: 0 unless it is long and flat (a book: twice as
    long as thick) and long next to the region (a can into a basket: never). Else its long axis goes along one of the region's axes, the region's
    long one, or for a near-square region whichever needs the smaller turn; of the two turns
    that do (the footprint is symmetric), the one that leaves the hand's yaw nearest zero."""
    _, minor, major, w_minor, w_major = _footprint_axes(pts)
    half = np.asarray(half, dtype=np.float64)[:2]
    if w_major < 2.0 * w_minor or w_major < 0.8 * 2.0 * float(half.min()):
        return 0.0  # not a flat, long thing (a book), or it fits whatever its turn
    current = float(np.arctan2(major[1], major[0]))
    if max(half) > 1.3 * min(half):
        goals = [0.0 if half[0] > half[1] else np.pi / 2]
    else:
        goals = [0.0, np.pi / 2]
    best = None
    for g in goals:
        d = (g - current + np.pi / 2) % np.pi - np.pi / 2  # in [-pi/2, pi/2): the long axis is a line
        for turn in (d, d - np.pi, d + np.pi):
            key = (round(abs(d), 6), abs(yaw + turn))
            if best is None or key < best[0]:
                best = (key, turn)
    turn = float(best[1])
    return 0.0 if abs((turn + np.pi / 2) % np.pi - np.pi / 2) < 0.05 else turn


def _region_spot(sc: Scene, obj: str, region: str) -> np.ndarray:
    """Where in a region to put `obj`: its centre, unless something already stands there (the
    first of two moka pots on a stove); then the free spot nearest the centre whose origin
    is still inside the region."""
    centre = sc.site_pos(region)[:2]
    half = sc.site_half_size(region)[:2]
    ext = sc.extent(obj)
    rel = ext.points[:, :2] - sc.body_pos(obj)[:2]
    rel = rel[:: max(1, len(rel) // 150)]
    parent = sc.site_parent(region)
    others = [sc.extent(n).points for n in sc.object_names() if n not in (obj, parent)]
    if not others:
        return centre
    pts = np.concatenate(others)
    movable = {g for n in sc.object_names() if n != parent for g in sc.object_geoms(sc.root_body(n))}
    floor = surface_z(sc, centre, _robot_geoms(sc) | movable)  # the region's own surface
    pts = pts[pts[:, 2] > floor + 0.01][:, :2]
    pts = pts[np.linalg.norm(pts - centre, axis=1) < 0.3]
    if len(pts) == 0:
        return centre
    steps = np.linspace(-0.85, 0.85, 9)
    grid = sorted(
        (centre + half * np.array([a, b]) for a in steps for b in steps), key=lambda c: float(np.linalg.norm(c - centre))
    )
    for c in grid:
        gap = np.linalg.norm((c + rel)[:, None, :] - pts[None], axis=2).min()
        if gap > 0.012:
            return c
    return centre


def _is_drawer_region(sc: Scene, target: str) -> bool:
    return sc.is_site(target) and bool(sc.task.object_sites_dict[target].joints) and \
        sc.object(sc.site_parent(target)).object_properties.get("articulation") is not None


def _drawer_spot(sc: Scene, obj: str, region: str, exclude: set[int]) -> np.ndarray:
    """Where in an open drawer's region to put `obj` so nothing hangs over it (the cabinet's front).

    Candidate centres slide along the drawer's pull axis through the region; a candidate is free
    when vertical rays at its centre and around the object's footprint first hit the drawer
    itself. The free candidate nearest the region's centre wins (else the one with most free rays).
    """
    joint, pull, _, _ = _drawer(sc, region)
    drawer_geoms = set(sc.object_geoms(sc.joint_body(joint)))
    centre = sc.site_pos(region)[:2]
    half = float(abs(sc.site_half_size(region)[:2] @ np.abs(pull[:2])))
    ext = sc.extent(obj)
    radius = 0.45 * float(max(ext.size[:2]))
    u = pull[:2] / (np.linalg.norm(pull[:2]) + 1e-9)
    ring = [np.zeros(2)] + [radius * np.array([np.cos(a), np.sin(a)]) for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
    floor_below = float(sc.site_pos(region)[2])  # the region box starts at the drawer's floor
    best, best_key, all_free = centre, None, []
    for s in np.linspace(-0.9 * half, 0.9 * half, 19):
        c = centre + u * s
        hits = [surface_hit(sc, c + r, exclude) for r in ring]
        free = sum(g in drawer_geoms and z < floor_below for z, g in hits)  # the floor, not a wall
        if free == len(ring):
            all_free.append(c)
        key = (free, -abs(s))
        if best_key is None or key > best_key:
            best, best_key = c, key
    # the middle of the free stretch keeps the object off the drawer's front and the cabinet's face
    return all_free[len(all_free) // 2] if all_free else best


def drawer_sweep(sc: Scene, region: str, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """xy bounds of the space a drawer occupies between now and fully open (plus `margin`)."""
    joint, pull, q_open, _ = _drawer(sc, region)
    ext = sc.body_extent(sc.joint_body(joint))
    travel = pull[:2] * abs(q_open - sc.joint_qpos(joint))
    lo = np.minimum(ext.lo[:2], ext.lo[:2] + travel) - margin
    hi = np.maximum(ext.hi[:2], ext.hi[:2] + travel) + margin
    return lo, hi


def _boxes_overlap(lo_a, hi_a, lo_b, hi_b) -> bool:
    return bool(np.all(lo_a < hi_b) and np.all(lo_b < hi_a))


HAND_MARGIN = 0.05  # room beside an object for the hand to grasp it


def blocks_drawer(sc: Scene, obj: str, region: str) -> bool:
    """Whether the open drawer would hang over (or hit) `obj`, leaving no room for the hand."""
    ext = sc.extent(obj)
    lo, hi = drawer_sweep(sc, region)
    return _boxes_overlap(ext.lo[:2] - 0.6 * HAND_MARGIN, ext.hi[:2] + 0.6 * HAND_MARGIN, lo, hi)


def _free_spot(sc: Scene, obj: str, region: str) -> np.ndarray | None:
    """The nearest table spot (object centre) clear of the drawer's sweep and of other things."""
    ext = sc.extent(obj)
    pos = sc.body_pos(obj)[:2]
    half_lo, half_hi = ext.lo[:2] - pos, ext.hi[:2] - pos
    d_lo, d_hi = drawer_sweep(sc, region, HAND_MARGIN)
    others = []
    for name in sc.object_names() + sc.fixture_names():
        if name == obj:
            continue
        try:
            e = sc.extent(name)
        except ValueError:
            continue
        others.append((e.lo[:2] - 0.02, e.hi[:2] + 0.02))
    for dist in np.arange(0.06, 0.28, 0.02):
        for ang in np.linspace(0, 2 * np.pi, 16, endpoint=False):
            c = pos + dist * np.array([np.cos(ang), np.sin(ang)])
            if not (-0.3 < c[0] < 0.2 and abs(c[1]) < 0.3):  # stay where the arm reaches comfortably
                continue
            lo, hi = c + half_lo, c + half_hi
            if _boxes_overlap(lo, hi, d_lo, d_hi) or any(_boxes_overlap(lo, hi, a, b) for a, b in others):
                continue
            return c
    return None


def clear_drawer_path(ctx: Ctx, obj: str, region: str) -> Actions:
    """Move `obj` out of the way of a drawer before opening it (it is put in the drawer later)."""
    sc = ctx.scene
    if not blocks_drawer(sc, obj, region):
        return True
    spot = _free_spot(sc, obj, region)
    if spot is None:
        ctx.log.append(f"clear {obj}: no free spot")
        return False
    held = yield from pick(ctx, obj)
    if not held:
        yield from release(ctx, steps=6, up=0.06)
        return False
    yield from place(ctx, obj, region, at=spot)
    return True


def _current_yaw(sc: Scene) -> float:
    """Yaw of the hand about world z relative to the top-down home orientation."""
    x_axis = sc.eef_rot[:, 0]  # home: world +y
    return float(np.arctan2(-x_axis[0], x_axis[1]))


def pick_place(ctx: Ctx, obj: str, target: str) -> Actions:
    held = yield from pick(ctx, obj)
    if not held:
        yield from release(ctx, steps=6, up=0.06)
        return False
    yield from place(ctx, obj, target)
    return True


# -- pushing ---------------------------------------------------------------------------------


def push(ctx: Ctx, obj: str, target: str, tol: float = 0.015, max_steps: int = 220) -> Actions:
    """Slide `obj` along the work surface until its origin is within `tol` of the target region.

    The closed hand sits just behind the object on the line to the goal and advances; as the
    object drifts sideways the line is recomputed every step, which steers it back.
    """
    sc = ctx.scene
    ext = sc.extent(obj)
    radius = 0.5 * float(max(ext.size[:2]))
    z = max(sc.table_z + 0.012, ext.lo[2] + 0.008)
    goal = target_xy(sc, target) + ctx.jitter(2) * 0.5
    centre_z = surface_z(sc, sc.body_pos(obj)[:2], _robot_geoms(sc))
    if centre_z < ext.hi[2] - 0.008:
        # a dish: drag it from inside, fingertips on its floor against the far side of its rim
        # (the hand never has to reach around the object, which can be out of the arm's reach)
        radius = -0.3 * radius
        z = centre_z + 0.007

    def behind(back: float) -> tuple[np.ndarray, np.ndarray, float]:
        p = sc.body_pos(obj)[:2]
        d = goal - p
        u = d / (np.linalg.norm(d) + 1e-9)
        return p - u * (radius + back), u, float(np.linalg.norm(d))

    start, u, _ = behind(0.03 if radius > 0 else 0.0)
    yaw = yaw_for_axis(np.array([-u[1], u[0]]))
    ctx.grip = CLOSE
    yield from transit(ctx, np.array([start[0], start[1], z + 0.06]), yaw, skip=set())
    yield from move_to(ctx, np.array([start[0], start[1], z]), down_rot(yaw), CLOSE, tol=0.008, max_steps=40,
                       speed=0.6, stall_steps=5)
    for _ in range(max_steps):
        point, u, dist = behind(-0.02)
        if dist < tol:
            break
        to_obj = sc.body_pos(obj)[:2] - sc.eef_pos[:2]
        if radius > 0 and float(to_obj @ u) < 0.5 * np.linalg.norm(to_obj):  # hand slid off the object's back
            start, u, _ = behind(0.03)
            yield from move_to(ctx, np.array([*sc.eef_pos[:2], z + 0.05]), down_rot(yaw), CLOSE, tol=0.01, max_steps=20)
            yield from move_to(ctx, np.array([start[0], start[1], z + 0.05]), down_rot(yaw), CLOSE, tol=0.01, max_steps=40)
            yield from move_to(ctx, np.array([start[0], start[1], z]), down_rot(yaw), CLOSE, tol=0.008, max_steps=30,
                               stall_steps=5)
            continue
        speed = 0.35 if dist < 0.05 else 0.6
        yield from move_to(ctx, np.array([point[0], point[1], z]), down_rot(yaw), CLOSE, tol=0.0, max_steps=1,
                           speed=speed, approach=APPROACH)
    yield from move_to(ctx, sc.eef_pos + np.array([0.0, 0.0, 0.08]), down_rot(yaw), CLOSE, tol=0.015, max_steps=25)
    return True


# -- articulated fixtures --------------------------------------------------------------------


def turn_knob(ctx: Ctx, joint: str, on: bool, max_steps: int = 160) -> Actions:
    """Rotate a stove knob by pushing the end of its bar sideways, following the arc.

    Positive joint angle is counter-clockwise about the hinge axis (world +z for LIBERO's
    stoves); turning on raises it past the fixture's `turnon` range, turning off lowers it.
    """
    sc = ctx.scene
    body = sc.joint_body(joint)
    anchor = sc.joint_anchor(joint)
    sign = 1.0 if on else -1.0
    want = 0.75 if on else -0.0
    pts = sc.body_extent(body).points
    z = float(pts[:, 2].max()) - 0.015
    radial = pts[:, :2] - anchor[:2]
    far = radial[np.argmax(np.linalg.norm(radial, axis=1))]
    r = float(np.linalg.norm(far)) - 0.01
    q0 = sc.joint_qpos(joint)
    phi0 = float(np.arctan2(far[1], far[0])) - q0  # bar angle at qpos 0

    def end_point(q: float, ahead: float) -> tuple[np.ndarray, np.ndarray]:
        phi = phi0 + q
        radial_dir = np.array([np.cos(phi), np.sin(phi)])
        tangent = sign * np.array([-np.sin(phi), np.cos(phi)])
        return anchor[:2] + radial_dir * r + tangent * ahead, tangent

    start, tangent = end_point(q0, -0.035)
    yaw = yaw_for_axis(tangent)
    ctx.grip = CLOSE
    yield from transit(ctx, np.array([start[0], start[1], z + 0.06]), yaw, skip=set())
    yield from move_to(ctx, np.array([start[0], start[1], z]), down_rot(yaw), CLOSE, tol=0.008, max_steps=40,
                       speed=0.6, stall_steps=5)
    for _ in range(max_steps):
        q = sc.joint_qpos(joint)
        if (on and q >= want) or (not on and q <= want):
            break
        point, tangent = end_point(q, 0.015)
        yield from move_to(ctx, np.array([point[0], point[1], z]), down_rot(yaw_for_axis(tangent)), CLOSE, tol=0.0,
                           max_steps=1, speed=0.5, approach=APPROACH)
    yield from move_to(ctx, sc.eef_pos + np.array([0.0, 0.0, 0.08]), sc.eef_rot, CLOSE, tol=0.015, max_steps=25)
    return True


def facing_rot(approach_xy: np.ndarray, current: np.ndarray | None = None, flat: bool = False) -> np.ndarray:
    """Hand pointing horizontally along `approach_xy`, fingers opening vertically (or
    horizontally when `flat`: the hand's long side level, for pushing low things).

    Of the two such orientations (rolled 180 degrees about the approach), the one nearer to
    `current`, so the wrist does not swing through a half turn.
    """
    z = np.array([approach_xy[0], approach_xy[1], 0.0])
    z /= np.linalg.norm(z)
    axis = np.cross(np.array([0.0, 0.0, 1.0]), z) if flat else np.array([0.0, 0.0, 1.0])
    options = [np.stack([x, np.cross(z, x), z], axis=1) for x in (axis, -axis)]
    if current is None:
        return options[0]
    return min(options, key=lambda r: float(np.linalg.norm(rotation_error(r, current))))


def _drawer(sc: Scene, region: str) -> tuple[str, np.ndarray, float, float]:
    """A drawer region's slide joint, its opening direction (world), and open/close qpos targets."""
    joint = sc.task.object_sites_dict[region].joints[0]
    art = sc.object(sc.site_parent(region)).object_properties["articulation"]
    open_r, close_r = art["default_open_ranges"], art["default_close_ranges"]
    sign = 1.0 if np.mean(open_r) > np.mean(close_r) else -1.0
    return joint, sign * sc.joint_axis(joint), float(np.mean(open_r)), float(np.mean(close_r))


def _handle(sc: Scene, joint: str, pull: np.ndarray) -> np.ndarray:
    """Centre of the drawer's handle bar: the part of the drawer furthest along `pull`."""
    pts = sc.body_extent(sc.joint_body(joint)).points
    proj = pts @ pull
    return pts[proj > proj.max() - 0.01].mean(axis=0)


def open_drawer(ctx: Ctx, region: str, max_steps: int = 90) -> Actions:
    """Grasp the handle with the hand horizontal (fingers above and below the bar) and pull."""
    sc = ctx.scene
    joint, pull, q_open, _ = _drawer(sc, region)
    handle = _handle(sc, joint, pull) - pull * 0.008
    rot = facing_rot(-pull[:2], down_rot(0.0))
    pre = handle + pull * 0.09
    # turn the hand horizontal in free space in front of the drawer, from the home orientation
    # (turning it near the cabinet, or from a wound-up wrist, swings the arm into the cabinet)
    staging = handle + pull * 0.16 + np.array([0.0, 0.0, 0.05])
    ctx.grip = OPEN
    # from in front of the cabinet (after closing its other drawer) no need to climb over it:
    # a path over a tall cabinet's top can be out of the arm's reach
    in_front = float((sc.eef_pos - handle)[:2] @ pull[:2]) > 0.03
    yield from transit(ctx, staging, 0.0, skip={sc.site_parent(region)} if in_front else set())
    yield from move_to(ctx, staging, rot, OPEN, tol=0.015, rot_tol=0.1, max_steps=50, speed=0.7)
    yield from move_to(ctx, pre, rot, OPEN, tol=0.01, rot_tol=0.1, max_steps=60, speed=0.7)
    yield from move_to(ctx, handle, rot, OPEN, tol=0.006, max_steps=40, speed=0.5, stall_steps=5)
    yield from hold(ctx, ctx.style.close_steps, CLOSE, rot)
    q_start = sc.joint_qpos(joint)
    for _ in range(max_steps):
        q = sc.joint_qpos(joint)
        if abs(q - q_start) >= abs(q_open - q_start) - 0.003:
            break
        yield from move_to(ctx, sc.eef_pos + pull * 0.02, rot, CLOSE, tol=0.0, max_steps=1, speed=0.5, approach=APPROACH)
    yield from hold(ctx, 6, OPEN, rot)
    yield from move_to(ctx, sc.eef_pos + pull * 0.06 + np.array([0.0, 0.0, 0.04]), rot, OPEN, tol=0.015, max_steps=25)
    # back to the top-down home orientation before anything else: later top-down moves that
    # start from the horizontal hand can wind the wrist into its limits
    yield from move_to(ctx, sc.eef_pos + np.array([0.0, 0.0, 0.04]), down_rot(0.0), OPEN, tol=0.02, rot_tol=0.1,
                       max_steps=40)
    return True


def pitched_rot(approach_xy: np.ndarray, pitch: float) -> np.ndarray:
    """Fingers pointing down and tilted by `pitch` (rad) toward `approach_xy`, finger axis level."""
    a = np.array([approach_xy[0], approach_xy[1], 0.0])
    a /= np.linalg.norm(a)
    z = a * np.sin(pitch) + np.array([0.0, 0.0, -1.0]) * np.cos(pitch)
    x = np.cross(np.array([0.0, 0.0, 1.0]), a)
    x /= np.linalg.norm(x)
    options = [np.stack([v, np.cross(z, v), z], axis=1) for v in (x, -x)]
    return min(options, key=lambda r: float(np.linalg.norm(rotation_error(r, down_rot(0.0)))))


def close_drawer(ctx: Ctx, region: str, max_steps: int = 90, pitch: float = 0.8) -> Actions:
    """Push the drawer shut with the closed fingertips on its handle, the hand pitched forward.

    A straight top-down hand cannot reach the handle of a low drawer: its wrist hits the
    cabinet face above before the drawer is shut; a horizontal hand needs free space behind
    it. Fingertips pointing down and forward keep the wrist back and up.
    """
    sc = ctx.scene
    joint, pull, _, q_close = _drawer(sc, region)
    handle = _handle(sc, joint, pull)
    rot = pitched_rot(-pull[:2], pitch)
    ctx.grip = CLOSE
    staging = handle + pull * 0.06 + np.array([0.0, 0.0, 0.06])
    yield from transit(ctx, staging, 0.0, skip=set())
    yield from move_to(ctx, staging, rot, CLOSE, tol=0.015, rot_tol=0.1, max_steps=40, speed=0.7)
    yield from move_to(ctx, handle + pull * 0.02 + np.array([0.0, 0.0, 0.005]), rot, CLOSE, tol=0.008,
                       max_steps=40, speed=0.6, stall_steps=5)
    for _ in range(max_steps):
        if abs(sc.joint_qpos(joint) - q_close) < 0.002:
            break
        handle = _handle(sc, joint, pull)
        yield from move_to(ctx, handle - pull * 0.02 + np.array([0.0, 0.0, 0.005]), rot, CLOSE, tol=0.0,
                           max_steps=1, speed=0.6, approach=APPROACH)
    yield from move_to(ctx, sc.eef_pos + pull * 0.05 + np.array([0.0, 0.0, 0.05]), rot, CLOSE, tol=0.015, max_steps=25)
    yield from move_to(ctx, sc.eef_pos + np.array([0.0, 0.0, 0.03]), down_rot(0.0), OPEN, tol=0.02, rot_tol=0.1,
                       max_steps=30)
    # back toward the rest posture: from the pitched hand low at a cabinet the arm can be left
    # stretched so that the next skill's moves stall at a joint limit (open another drawer)
    yield from move_to(ctx, sc.home, down_rot(0.0), OPEN, tol=0.03, rot_tol=0.1, max_steps=40, speed=0.7)
    return True


def close_door(ctx: Ctx, obj: str, max_steps: int = 200) -> Actions:
    """Swing a hinged door (the microwave's) shut by pushing near its free edge along the arc.

    The closed hand, fingers down at the door's mid-height, starts just outside the open door
    and follows the edge as it turns, as for a stove knob but with a tall panel.
    """
    sc = ctx.scene
    art = sc.object(obj).object_properties["articulation"]
    joint = sc.object(obj).joints[0]
    close_r, open_r = art["default_close_ranges"], art["default_open_ranges"]
    sign = 1.0 if np.mean(close_r) > np.mean(open_r) else -1.0  # direction of closing in qpos
    want = min(close_r) if sign > 0 else max(close_r)
    anchor = sc.joint_anchor(joint)
    turn = sign * float(np.sign(sc.joint_axis(joint)[2]))  # +1: closing turns counter-clockwise seen from above
    pts = sc.body_extent(sc.joint_body(joint)).points
    z = float(0.5 * (pts[:, 2].min() + pts[:, 2].max()))
    radial = pts[:, :2] - anchor[:2]
    far = radial[np.argmax(np.linalg.norm(radial, axis=1))]
    r = 0.8 * float(np.linalg.norm(far))
    q0 = sc.joint_qpos(joint)
    phi0 = float(np.arctan2(far[1], far[0])) - turn * sign * q0

    def edge(q: float, ahead: float) -> tuple[np.ndarray, np.ndarray]:
        phi = phi0 + turn * sign * q
        tangent = turn * np.array([-np.sin(phi), np.cos(phi)])
        return anchor[:2] + r * np.array([np.cos(phi), np.sin(phi)]) + tangent * ahead, tangent

    start, tangent = edge(q0, -0.05)
    yaw = yaw_for_axis(tangent) + np.pi / 2  # fingers along the panel: the hand's broad side pushes
    ctx.grip = CLOSE
    yield from transit(ctx, np.array([start[0], start[1], z + 0.08]), yaw, skip=set())
    yield from move_to(ctx, np.array([start[0], start[1], z]), down_rot(yaw), CLOSE, tol=0.01, max_steps=40,
                       speed=0.6, stall_steps=5)
    for _ in range(max_steps):
        q = sc.joint_qpos(joint)
        if (sign > 0 and q > want) or (sign < 0 and q < want):
            break
        point, tangent = edge(q, 0.03)
        yield from move_to(ctx, np.array([point[0], point[1], z]), down_rot(yaw_for_axis(tangent) + np.pi / 2), CLOSE,
                           tol=0.0, max_steps=1, speed=0.6, approach=APPROACH)
    yield from move_to(ctx, sc.eef_pos + np.array([0.0, 0.0, 0.1]), sc.eef_rot, CLOSE, tol=0.015, max_steps=25)
    return True


# -- into enclosures (a microwave) -----------------------------------------------------------


def _movable_geoms(sc: Scene) -> set[int]:
    return {g for n in sc.object_names() for g in sc.object_geoms(sc.root_body(n))}


def is_enclosed(sc: Scene, region: str) -> bool:
    """A region under a roof of its own parent (a microwave's inside): a top-down hand cannot enter."""
    if not sc.is_site(region) or sc.task.object_sites_dict[region].joints or sc.site_parent(region) is None:
        return False
    parent = sc.object(sc.site_parent(region))
    if parent is None or sc.site_parent(region) not in sc.task.fixtures_dict and sc.site_parent(region) not in sc.task.objects_dict:
        return False
    top, geom = surface_hit(sc, sc.site_pos(region)[:2], _robot_geoms(sc) | _movable_geoms(sc))
    roof = set(sc.object_geoms(parent.root_body))
    return geom in roof and top > sc.site_pos(region)[2] + 0.03


def _opening(sc: Scene, region: str) -> np.ndarray:
    """Horizontal unit vector from the region's centre out through the enclosure's open side
    (the mean of the directions in which a ray meets none of its fixed walls)."""
    parent = sc.object(sc.site_parent(region))
    joint_bodies = {sc.model.body(int(sc.model.jnt_bodyid[sc.model.joint(j).id])).id for j in parent.joints}
    walls = {g for g in sc.object_geoms(parent.root_body) if int(sc.model.geom_bodyid[g]) not in joint_bodies}
    centre = sc.site_pos(region)
    geomid = np.zeros(1, dtype=np.int32)
    free = []
    for ang in np.linspace(0, 2 * np.pi, 32, endpoint=False):
        d = np.array([np.cos(ang), np.sin(ang), 0.0])
        pnt, blocked = centre.copy(), False
        for _ in range(16):  # the first wall along d, looking through everything else
            hit = mujoco.mj_ray(sc.model, sc.data, pnt, d, None, 1, -1, geomid)
            if hit < 0:
                break
            if int(geomid[0]) in walls:
                blocked = True
                break
            pnt = pnt + d * (hit + 1e-4)
        if not blocked:
            free.append(d[:2])
    if not free:
        raise ValueError(f"{region} has no open side")
    mean = np.mean(free, axis=0)
    return mean / np.linalg.norm(mean)


def _side_handle(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """A side handle (a mug's): the narrow end of the footprint's long axis. Returns the grasp
    point on its outer bar (x, y, mid-height) and the horizontal direction from it into the body."""
    centre, minor, major, _, _ = _footprint_axes(pts)
    pM = (pts[:, :2] - centre) @ major
    pm = (pts[:, :2] - centre) @ minor
    for sgn in (1.0, -1.0):
        end = sgn * pM
        outer = pts[end > end.max() - 0.012]
        if np.ptp(pm[end > end.max() - 0.012]) < 0.03 and end.max() > 0.035:
            point = np.array([*outer[:, :2].mean(axis=0), 0.5 * (outer[:, 2].min() + outer[:, 2].max())])
            inward = -sgn * major
            return point, inward / np.linalg.norm(inward)
    return None


def insert(ctx: Ctx, obj: str, region: str) -> Actions:
    """Put `obj` inside an enclosure (a microwave) through its open side.

    The object is held top-down by its side handle, which is turned to face the opening, so
    only the object enters: the hand stays outside, above the handle.
    """
    sc = ctx.scene
    long = long_handle(sc, obj)
    pan = handle_grasp(sc, obj) if long is not None else None
    found = (np.array([*long[0], 0.0]), long[1]) if pan is not None else _side_handle(sc.extent(obj).points)
    if found is None:
        ctx.log.append(f"insert {obj}: no handle")
        return False
    point, inward = found
    out = _opening(sc, region)
    z0 = sc.body_pos(obj)[2]
    if pan is not None:  # a pan's long handle: where it is free to hold
        grasp = pan[0]
    else:
        pts = sc.extent(obj).points
        bar = pts[np.linalg.norm(pts[:, :2] - point[:2], axis=1) < 0.012]
        if len(bar) == 0:
            ctx.log.append(f"insert {obj}: no handle bar to hold")
            return False
        grasp = np.array([point[0], point[1], float(bar[:, 2].max()) - 0.03])
    # fingers across the handle, deep on its outer bar (long pads resist the body's swing); the
    # hand's long side stays level with the opening, which it must not enter
    yaw = yaw_for_axis(np.array([-inward[1], inward[0]]))
    ctx.grip = OPEN
    yield from transit(ctx, grasp + np.array([0.0, 0.0, ctx.style.hover]), yaw, skip={obj})
    yield from move_to(ctx, grasp, down_rot(yaw), OPEN, tol=0.006, max_steps=60, speed=0.6, stall_steps=6)
    yield from hold(ctx, ctx.style.close_steps, CLOSE, down_rot(yaw))
    floor = sc.site_pos(region)[2] - sc.site_half_size(region)[2]
    below = sc.eef_pos[2] - sc.extent(obj).lo[2]
    gap = 0.035
    if pan is not None:  # a pan sags from its handle: carry it higher, as far as the region's height allows
        room = sc.site_pos(region)[2] + sc.site_half_size(region)[2] + 0.02 - floor - float(sc.extent(obj).size[2])
        gap = float(np.clip(room - 0.01, 0.02, 0.06))
    carry_z = max(floor, sc.table_z) + gap + below
    yield from move_to(ctx, np.array([*sc.eef_pos[:2], carry_z + 0.05]), down_rot(yaw), CLOSE, tol=0.01,
                       max_steps=40, speed=0.6)
    if sc.body_pos(obj)[2] < z0 + 0.02:
        ctx.log.append(f"insert {obj}: not lifted")
        yield from release(ctx, steps=6, up=0.06)
        return False
    # turn the handle from `-inward` to `out` (the body goes in first), carry to the opening
    turn = float(np.arctan2(out[1], out[0]) - np.arctan2(-inward[1], -inward[0]))
    turn = (turn + np.pi) % (2 * np.pi) - np.pi
    carry_yaw = _current_yaw(sc) + turn
    reach = float(np.linalg.norm(sc.body_pos(obj)[:2] - sc.eef_pos[:2]))
    centre = sc.site_pos(region)[:2]
    goal = centre + out * (reach - 0.02)
    radius = 0.5 * float(max(sc.extent(obj).size[:2]))
    outside = goal + out * (0.1 + radius + reach)  # the whole object in front of the opening
    yield from move_to(ctx, np.array([*outside, carry_z + 0.05]), down_rot(carry_yaw), CLOSE, tol=0.015, rot_tol=0.1,
                       max_steps=120, speed=0.7)
    yield from move_to(ctx, np.array([*outside, carry_z]), down_rot(carry_yaw), CLOSE, tol=0.01, max_steps=30,
                       speed=0.5)
    yield from move_to(ctx, np.array([*goal, carry_z]), down_rot(carry_yaw), CLOSE, tol=0.008, max_steps=140, speed=0.4)
    yield from move_to(ctx, np.array([*goal, carry_z - 0.03]), down_rot(carry_yaw), CLOSE, tol=0.006, max_steps=20,
                       speed=0.3, stall_steps=4)
    ctx.log.append(f"insert {obj} into {region}: at={sc.eef_pos.round(3)} obj={sc.body_pos(obj).round(3)}")
    yield from hold(ctx, 8, OPEN, down_rot(carry_yaw))
    yield from move_to(ctx, sc.eef_pos + np.array([0.0, 0.0, 0.03]), down_rot(carry_yaw), OPEN, tol=0.01, max_steps=15)
    yield from move_to(ctx, np.array([*outside, sc.eef_pos[2]]), down_rot(carry_yaw), OPEN, tol=0.02, max_steps=60,
                       speed=0.7)
    return True
