"""The offline preview mesh: the image's foreground inflated into a closed, smooth 2.5-D shape.

Not TRELLIS.2. Pure numpy, so it runs in Blender's bundled Python. Output follows TRELLIS.2's
conventions: one GLB, about 1 m on the longest side, centred at the origin, PBR textures.
"""
from __future__ import annotations

import time

import numpy as np

from . import glb, png


class Cancelled(Exception):
    pass


GROW_PAD = 3  # cells added around the grid so the outline can be repaired outward


# --- foreground ---------------------------------------------------------------------------------
def foreground_mask(rgba: np.ndarray) -> np.ndarray:
    """Boolean HxW: the alpha channel where the image has one that varies, else pixels that differ
    from the background colour estimated from a border ring."""
    alpha = rgba[..., 3]
    if alpha.min() < 250:
        return alpha >= 128
    rgb = rgba[..., :3].astype(np.int16)
    ring = np.concatenate([rgb[:3].reshape(-1, 3), rgb[-3:].reshape(-1, 3),
                           rgb[:, :3].reshape(-1, 3), rgb[:, -3:].reshape(-1, 3)])
    background = np.median(ring, axis=0)
    spread = np.percentile(np.abs(ring - background).sum(axis=1), 90)
    threshold = max(36.0, 2.5 * spread)
    return np.abs(rgb - background).sum(axis=2) > threshold


def foreground_fraction(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0


MIN_FOREGROUND = 0.002  # fraction of pixels


def has_content(rgba: np.ndarray) -> bool:
    """False for a blank picture: (almost) fully transparent, or a single colour."""
    alpha = rgba[..., 3]
    if alpha.min() < 250:
        return foreground_fraction(alpha >= 128) >= MIN_FOREGROUND
    return int(np.ptp(rgba[..., :3].reshape(-1, 3), axis=0).max()) > 8


# --- small morphology on boolean grids -----------------------------------------------------------
def _shift_any(mask: np.ndarray) -> np.ndarray:
    """True where the cell or a 4-neighbour is True."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _shift_all(mask: np.ndarray) -> np.ndarray:
    return ~_shift_any(~mask)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background regions that do not reach the border become foreground."""
    outside = np.zeros_like(mask)
    outside[0], outside[-1], outside[:, 0], outside[:, -1] = ~mask[0], ~mask[-1], ~mask[:, 0], ~mask[:, -1]
    while True:
        grown = _shift_any(outside) & ~mask
        if np.array_equal(grown, outside):
            return ~outside
        outside = grown


def _resize_mask(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Area-coverage resize of a boolean mask to rows x cols cells (cell inside if mostly covered)."""
    h, w = mask.shape
    r_idx = np.minimum((np.arange(rows * 4) + 0.5) * h / (rows * 4), h - 1).astype(int)
    c_idx = np.minimum((np.arange(cols * 4) + 0.5) * w / (cols * 4), w - 1).astype(int)
    sampled = mask[r_idx][:, c_idx].reshape(rows, 4, cols, 4)
    return sampled.mean(axis=(1, 3)) >= 0.5


def _distance(mask: np.ndarray) -> np.ndarray:
    """Distance (in cells) to the outside, by repeated erosion, then blurred toward Euclidean."""
    dist = np.zeros(mask.shape, np.float32)
    current = mask.copy()
    while current.any():
        dist += current
        current = _shift_all(current)
    for _ in range(4):
        dist = _blur(dist) * mask
    return dist


def _blur(a: np.ndarray) -> np.ndarray:
    p = np.pad(a, 1, mode="edge")
    return (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] + 4 * a) / 8


# --- mesh ----------------------------------------------------------------------------------------
def _build(cells: np.ndarray, height: np.ndarray, back_ratio: float):
    """Closed mesh over the inside cells: front sheet at +h, back at -back_ratio*h, sharing the
    boundary corners. Returns corner grid positions (r, c), z and triangles."""
    rows, cols = cells.shape
    padded = np.pad(cells, 1)
    # For each corner (rows+1 x cols+1): its four adjacent cells.
    around = np.stack([padded[:-1, :-1], padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]])
    used = around.any(axis=0)
    boundary = used & ~around.all(axis=0)
    front = np.full(used.shape, -1, np.int64)
    front[used] = np.arange(used.sum())
    n_front = int(used.sum())
    interior = used & ~boundary
    back = front.copy()
    back[interior] = n_front + np.arange(interior.sum())
    # Corner heights: average of adjacent cell heights, zero on the boundary.
    hp = np.pad(height, 1)
    corner_h = (hp[:-1, :-1] + hp[:-1, 1:] + hp[1:, :-1] + hp[1:, 1:]) / 4
    corner_h[boundary] = 0.0
    r, c = np.nonzero(used)
    rr, cc = np.nonzero(interior)
    grid_r = np.concatenate([r, rr]).astype(np.float32)
    grid_c = np.concatenate([c, cc]).astype(np.float32)
    z = np.concatenate([corner_h[r, c], -back_ratio * corner_h[rr, cc]]).astype(np.float32)
    ci, cj = np.nonzero(cells)
    # Split each cell along a diagonal with at least one interior end, so front and back diagonals
    # never coincide (cells with four boundary corners were pruned by _manifold_cells).
    use_tr_bl = boundary[ci, cj] & boundary[ci + 1, cj + 1]
    tris = []
    for index, flip in ((front, False), (back, True)):
        # Corners tl (i, j), tr (i, j+1), bl (i+1, j), br (i+1, j+1); with y = -row, tl -> bl -> br
        # is counter-clockwise seen from +z.
        tl, tr, bl, br = index[ci, cj], index[ci, cj + 1], index[ci + 1, cj], index[ci + 1, cj + 1]
        a = np.where(use_tr_bl[:, None], np.stack([tl, bl, tr], 1), np.stack([tl, bl, br], 1))
        b = np.where(use_tr_bl[:, None], np.stack([tr, bl, br], 1), np.stack([tl, br, tr], 1))
        pair = np.concatenate([a, b])
        tris.append(pair[:, ::-1] if flip else pair)
    return grid_r, grid_c, z, np.concatenate(tris).astype(np.uint32)


def _corner_boundary(cells: np.ndarray) -> np.ndarray:
    padded = np.pad(cells, 1)
    around = np.stack([padded[:-1, :-1], padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]])
    return around.any(axis=0) & ~around.all(axis=0)


def _manifold_cells(cells: np.ndarray) -> np.ndarray:
    """Grow the cell mask where front and back sheets would touch (a cell with all four corners on
    the outline, an inner edge with both ends on it, cells meeting only at a corner) until none is
    left. Growing only (never removing) always converges."""
    cells = np.pad(cells, GROW_PAD)  # room to grow at the edges
    for _ in range(64):
        b = _corner_boundary(cells)
        bad = np.zeros(b.shape, bool)  # corners to make interior
        thin = cells & b[:-1, :-1] & b[:-1, 1:] & b[1:, :-1] & b[1:, 1:]
        bad[:-1, :-1] |= thin
        neck_h = cells[:-1] & cells[1:] & b[1:-1, :-1] & b[1:-1, 1:]
        bad[1:-1, :-1] |= neck_h
        neck_v = cells[:, :-1] & cells[:, 1:] & b[:-1, 1:-1] & b[1:, 1:-1]
        bad[:-1, 1:-1] |= neck_v
        a, bb, c, d = cells[:-1, :-1], cells[:-1, 1:], cells[1:, :-1], cells[1:, 1:]
        bad[1:-1, 1:-1] |= (a & d & ~bb & ~c) | (bb & c & ~a & ~d)
        if not bad.any():
            return cells
        # A corner becomes interior when its four cells are inside.
        grow = bad[:-1, :-1] | bad[:-1, 1:] | bad[1:, :-1] | bad[1:, 1:]
        cells = cells | grow
    raise ValueError("could not build a closed mesh from this image's outline")


def _vertex_normals(pos: np.ndarray, tris: np.ndarray) -> np.ndarray:
    a, b, c = pos[tris[:, 0]], pos[tris[:, 1]], pos[tris[:, 2]]
    face = np.cross(b - a, c - a)  # length = 2 x area: area-weighted
    normals = np.zeros_like(pos)
    for k in range(3):
        for axis in range(3):
            normals[:, axis] += np.bincount(tris[:, k], weights=face[:, axis], minlength=len(pos))
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return (normals / np.maximum(length, 1e-12)).astype(np.float32)


# --- textures ------------------------------------------------------------------------------------
def _resize_rgba(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of uint8 HxWxC to size x size (separable, in row blocks to bound memory)."""
    h, w, ch = img.shape

    def weights(n_in):
        x = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        i0 = np.floor(x).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (x - i0).astype(np.float32)

    c0, c1, cw = weights(w)
    cols = img[:, c0].astype(np.float32) * (1 - cw)[None, :, None] + img[:, c1].astype(np.float32) * cw[None, :, None]
    r0, r1, rw = weights(h)
    out = np.empty((size, size, ch), np.uint8)
    for start in range(0, size, 512):
        sl = slice(start, min(start + 512, size))
        block = cols[r0[sl]] * (1 - rw[sl])[:, None, None] + cols[r1[sl]] * rw[sl][:, None, None]
        out[sl] = np.clip(block + 0.5, 0, 255)
    return out


def _bleed(rgb: np.ndarray, mask: np.ndarray, steps: int) -> np.ndarray:
    """Push foreground colours outward so texture filtering at the silhouette never picks up
    background."""
    rgb = rgb.astype(np.float32)
    known = mask.copy()
    for _ in range(steps):
        grown = _shift_any(known) & ~known
        if not grown.any():
            break
        total = np.zeros_like(rgb)
        count = np.zeros(mask.shape, np.float32)
        for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
            total += np.roll(rgb * known[..., None], shift, axis)
            count += np.roll(known, shift, axis)
        fill = grown & (count > 0)
        rgb[fill] = total[fill] / count[fill][:, None]
        known |= fill
    return rgb


# --- entry point -------------------------------------------------------------------------------
def generate(rgba: np.ndarray, *, resolution: int, texture_size: int, decimation_target: int, remesh: bool,
             seed: int, out_path: str, progress=None, cancelled=None) -> dict:
    """Write the preview GLB for one seed. Stages reported: mask, shape, texture, export."""
    progress = progress or (lambda stage, step, total: None)
    cancelled = cancelled or (lambda: False)
    timings, clock = {}, time.perf_counter()

    def stage_done(name):
        nonlocal clock
        timings[name] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()
        if cancelled():
            raise Cancelled()

    progress("mask", 0, 2)
    if not has_content(rgba):
        raise ValueError("image has no foreground: it is blank, a single colour or fully transparent")
    mask = foreground_mask(rgba)
    if foreground_fraction(mask) < MIN_FOREGROUND:  # a photo with no plain background: use the frame
        mask = np.ones(mask.shape, bool)
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    margin = max(2, int(0.02 * max(h, w)))
    top, bottom = max(ys.min() - margin, 0), min(ys.max() + margin + 1, h)
    left, right = max(xs.min() - margin, 0), min(xs.max() + margin + 1, w)
    crop_mask, crop_rgba = mask[top:bottom, left:right], rgba[top:bottom, left:right]
    progress("mask", 2, 2)
    stage_done("mask")

    rng = np.random.default_rng(seed)
    back_ratio = float(rng.uniform(0.55, 0.85))
    phases = rng.uniform(0, 2 * np.pi, 3)
    freqs = rng.uniform(0.8, 1.8, 3)
    ch, cw = crop_mask.shape
    cells_long = max(64, resolution // 4)
    progress("shape", 0, 3)
    while True:
        scale = cells_long / max(ch, cw)
        rows, cols = max(8, round(ch * scale)), max(8, round(cw * scale))
        cells = _manifold_cells(_fill_holes(_shift_any(_shift_all(_resize_mask(crop_mask, rows, cols)))))
        faces = 4 * int(cells.sum())
        if faces <= decimation_target or cells_long <= 16:
            break
        cells_long = int(cells_long * (decimation_target / faces) ** 0.5 * 0.98)
    if faces > decimation_target:
        raise ValueError(f"face budget {decimation_target} is too small for this image")
    progress("shape", 1, 3)
    rows, cols = cells.shape
    dist = _distance(cells)
    radius = max(float(dist.max()), 1.0)
    height = np.sqrt(np.clip(2 * radius * dist - dist * dist, 0, None))  # a disc becomes a hemisphere
    yy, xx = np.mgrid[:rows, :cols] / max(rows, cols)
    bumps = sum(np.sin(2 * np.pi * f * (xx * np.cos(p) + yy * np.sin(p)) + p) for f, p in zip(freqs, phases))
    height *= 1 + 0.03 * bumps * (dist / radius)  # seed-dependent relief, none at the silhouette
    for _ in range(6 if remesh else 2):  # remesh: a smoother, more even surface
        height = _blur(height) * cells
    progress("shape", 2, 3)
    grid_r, grid_c, z, tris = _build(cells, height, back_ratio)
    pos = np.stack([grid_c, -grid_r, z], axis=1)
    pos -= (pos.max(axis=0) + pos.min(axis=0)) / 2
    pos /= float((pos.max(axis=0) - pos.min(axis=0)).max())
    inner_rows, inner_cols = rows - 2 * GROW_PAD, cols - 2 * GROW_PAD  # the crop's extent in cells
    uvs = np.stack([(grid_c - GROW_PAD) / inner_cols, (grid_r - GROW_PAD) / inner_rows], axis=1)
    uvs = np.clip(uvs, 0.0, 1.0).astype(np.float32)
    normals = _vertex_normals(pos.astype(np.float32), tris)
    progress("shape", 3, 3)
    stage_done("shape")

    progress("texture", 0, 3)
    inside = _resize_mask(crop_mask, ch, cw) if crop_rgba[..., 3].min() >= 250 else crop_rgba[..., 3] >= 128
    rgb = _bleed(crop_rgba[..., :3], inside, steps=max(4, margin * 2))
    progress("texture", 1, 3)
    alpha = np.where(_shift_any(_shift_any(inside)), 255, crop_rgba[..., 3]).astype(np.float32)
    color = np.concatenate([rgb, alpha[..., None]], axis=2).clip(0, 255).astype(np.uint8)
    base = _resize_rgba(color, texture_size)
    progress("texture", 2, 3)
    f = rgb / 255.0
    saturation = (f.max(axis=2) - f.min(axis=2)) / np.maximum(f.max(axis=2), 1e-3)
    roughness = 0.35 + 0.5 * (1 - saturation) * (0.6 + 0.4 * f.mean(axis=2))
    mr = np.zeros((ch, cw, 3), np.uint8)
    mr[..., 0] = 255  # occlusion channel unused: full
    mr[..., 1] = np.clip(roughness * 255, 0, 255)  # roughness
    mr[..., 2] = 0  # metallic: a painted picture is dielectric
    mr = _resize_rgba(mr, texture_size)
    progress("texture", 3, 3)
    stage_done("texture")

    progress("export", 0, 2)
    base_png, mr_png = png.encode_png(base), png.encode_png(mr)
    progress("export", 1, 2)
    glb.write_glb(out_path, pos.astype(np.float32), normals, uvs, tris, base_png, mr_png, name="preview",
                  alpha_mode="MASK", extras={"generator": "preview", "seed": int(seed),
                                             "resolution": int(resolution), "faces": int(len(tris))})
    progress("export", 2, 2)
    stage_done("export")
    return {"faces": int(len(tris)), "vertices": int(len(pos)), "path": out_path, "seconds": timings}
