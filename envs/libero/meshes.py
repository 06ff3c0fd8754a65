"""Render-only decimated copies of a scene's meshes, cached on disk.

`decimated_xml(xml)` returns the same MJCF with every `<mesh file=...>` pointing at a
decimated OBJ (quadric edge collapse via `fast-simplification`). Texture coordinates are
carried over per face corner from the nearest original face, so textured objects keep their
look. The decimated file is in the original file's frame: we recover that frame from a
one-mesh model, because MuJoCo re-centres mesh vertices when it compiles them.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np

from atm_bench.paths import cache_subdir

# A mesh keeps at least MIN_FACES faces and at most KEEP_RATIO of them: chosen by looking at
# 128x128 frames side by side (see README, "Fast rendering"); a bump invalidates the cache.
MIN_FACES = 300
KEEP_RATIO = 0.08
_VERSION = 1

_MESH_TAG = re.compile(r"<mesh\b[^>]*>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def decimated_xml(xml: str) -> str:
    """The scene with each mesh file swapped for its cached decimated copy."""
    return _MESH_TAG.sub(_swap_mesh_file, xml)


def _swap_mesh_file(match: re.Match) -> str:
    tag = match.group(0)
    attrs = dict(_ATTR.findall(tag))
    file = attrs.get("file")
    if not file or not os.path.isabs(file) or not os.path.exists(file):
        return tag
    scale = attrs.get("scale", "1 1 1")
    out = decimated_mesh_file(file, scale)
    if out is None:
        return tag
    tag = tag.replace(f'file="{file}"', f'file="{out}"')
    # The decimated file is written with the scale applied.
    return re.sub(r'\sscale="[^"]*"', "", tag)


def decimated_mesh_file(file: str, scale: str = "1 1 1") -> str | None:
    """Path of the decimated OBJ for `file` (made on first use), or None if not worth it."""
    digest = hashlib.sha1()
    digest.update(Path(file).read_bytes())
    digest.update(f"{scale}|{MIN_FACES}|{KEEP_RATIO}|{_VERSION}".encode())
    out = cache_subdir("decimated-meshes") / f"{Path(file).stem}-{digest.hexdigest()[:16]}.obj"
    skip = out.with_suffix(".skip")
    if out.exists():
        return str(out)
    if skip.exists():
        return None
    verts, faces, uv, face_uv = _load_in_file_frame(file, scale)
    if len(faces) <= MIN_FACES:
        skip.touch()
        return None
    target = max(MIN_FACES, int(len(faces) * KEEP_RATIO))
    new_verts, new_faces = _simplify(verts, faces, target)
    new_uv = _transfer_uv(verts, faces, uv, face_uv, new_verts, new_faces) if uv is not None else None
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    _write_obj(tmp, new_verts, new_faces, new_uv)
    os.replace(tmp, out)
    return str(out)


def _load_in_file_frame(file: str, scale: str):
    """Vertices (scaled), faces and per-corner texcoords of a mesh file as MuJoCo reads it."""
    import mujoco

    xml = (
        '<mujoco><compiler inertiagrouprange="0 0"/><asset>'
        f'<mesh name="m" file="{file}" scale="{scale}"/></asset>'
        '<worldbody><geom type="mesh" mesh="m" group="1" contype="0" conaffinity="0"/></worldbody></mujoco>'
    )
    model = mujoco.MjModel.from_xml_string(xml)
    va, vn = model.mesh_vertadr[0], model.mesh_vertnum[0]
    fa, fn = model.mesh_faceadr[0], model.mesh_facenum[0]
    verts = model.mesh_vert[va : va + vn].astype(np.float64)
    faces = model.mesh_face[fa : fa + fn].astype(np.int64)
    # Undo MuJoCo's re-centring: the geom (placed at the origin) carries the mesh's offset.
    rot = np.empty(9)
    mujoco.mju_quat2Mat(rot, model.geom_quat[0])
    verts = verts @ rot.reshape(3, 3).T + model.geom_pos[0]
    uv = face_uv = None
    ta = model.mesh_texcoordadr[0]
    if ta >= 0:
        tn = model.mesh_texcoordnum[0]
        uv = model.mesh_texcoord[ta : ta + tn].astype(np.float64)
        face_uv = model.mesh_facetexcoord[fa : fa + fn].astype(np.int64)
    return verts, faces, uv, face_uv


def _weld(verts: np.ndarray, faces: np.ndarray):
    """Merge vertices at the same position. Asset files often store a triangle soup (three
    private vertices per face); edge collapse needs the shared edges back."""
    keys = np.round(verts / 1e-7).astype(np.int64)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    welded = np.zeros((len(uniq), 3))
    np.add.at(welded, inverse.reshape(-1), verts)
    welded /= np.bincount(inverse.reshape(-1))[:, None]
    new_faces = inverse.reshape(-1)[faces]
    keep = (new_faces[:, 0] != new_faces[:, 1]) & (new_faces[:, 1] != new_faces[:, 2]) & (new_faces[:, 0] != new_faces[:, 2])
    return welded, new_faces[keep]


def _simplify(verts: np.ndarray, faces: np.ndarray, target_faces: int):
    import fast_simplification

    verts, faces = _weld(verts, faces)
    if len(faces) <= target_faces:
        return verts, faces
    reduction = 1.0 - target_faces / len(faces)
    new_verts, new_faces = fast_simplification.simplify(verts, faces, target_reduction=reduction)
    return np.asarray(new_verts, dtype=np.float64), np.asarray(new_faces, dtype=np.int64)


def _transfer_uv(verts, faces, uv, face_uv, new_verts, new_faces) -> np.ndarray:
    """Texcoords per corner of each new face, interpolated on the nearest original face.

    Using the nearest *face* (not vertex) keeps each new face inside one texture chart, so
    seams do not smear across the texture.
    """
    from scipy.spatial import cKDTree

    tri = verts[faces]  # (F0, 3, 3)
    _, nearest = cKDTree(tri.mean(axis=1)).query(new_verts[new_faces].mean(axis=1))
    a, b, c = (tri[nearest, i] for i in range(3))
    corner_uv = uv[face_uv[nearest]]  # (F1, 3, 2)
    out = np.empty((len(new_faces), 3, 2))
    v0, v1 = b - a, c - a
    d00 = np.einsum("ij,ij->i", v0, v0)
    d01 = np.einsum("ij,ij->i", v0, v1)
    d11 = np.einsum("ij,ij->i", v1, v1)
    denom = np.where(np.abs(d00 * d11 - d01 * d01) < 1e-20, 1e-20, d00 * d11 - d01 * d01)
    for k in range(3):
        v2 = new_verts[new_faces[:, k]] - a
        d20 = np.einsum("ij,ij->i", v2, v0)
        d21 = np.einsum("ij,ij->i", v2, v1)
        w1 = np.clip((d11 * d20 - d01 * d21) / denom, 0, 1)
        w2 = np.clip((d00 * d21 - d01 * d20) / denom, 0, 1)
        total = np.maximum(w1 + w2, 1.0)
        w1, w2 = w1 / total, w2 / total
        w0 = 1.0 - w1 - w2
        out[:, k] = w0[:, None] * corner_uv[:, 0] + w1[:, None] * corner_uv[:, 1] + w2[:, None] * corner_uv[:, 2]
    return out


def _write_obj(path: Path, verts: np.ndarray, faces: np.ndarray, corner_uv: np.ndarray | None) -> None:
    lines = [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in verts]
    if corner_uv is None:
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    else:
        # MuJoCo flips v when it reads an OBJ; write 1 - v so the round trip is the identity.
        lines += [f"vt {u:.7g} {1.0 - v:.7g}" for u, v in corner_uv.reshape(-1, 2)]
        lines += [
            f"f {a + 1}/{3 * i + 1} {b + 1}/{3 * i + 2} {c + 1}/{3 * i + 3}"
            for i, (a, b, c) in enumerate(faces)
        ]
    path.write_text("\n".join(lines) + "\n")
