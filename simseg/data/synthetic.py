"""Deterministic synthetic images: one textured shape on a cluttered, textured background.

The offline default dataset for all three stages: pretraining uses ``image``, classification ``label`` (the
shape's form, an index into :data:`SHAPE_CLASSES`) and segmentation ``trimap`` in the Oxford-IIIT Pet encoding
(1 = foreground, 2 = background, 3 = boundary). Every shape is a signed distance in pixels (negative inside;
exact, or first-order accurate near the edge), so the boundary band is just ``|d| < boundary_width``. Images
are built channel-first in float32: numpy broadcasts over a leading colour axis far faster than a trailing one.
"""

import colorsys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from simseg.errors import SimsegError

SHAPE_CLASSES: tuple[str, ...] = ("ellipse", "rectangle", "triangle", "star", "ring", "blob")
FOREGROUND, BACKGROUND, BOUNDARY = 1, 2, 3


@dataclass(frozen=True, eq=False)  # eq=False: a field-wise == on arrays would be ambiguous
class SyntheticSample:
    """``image`` (H, W, 3) uint8 RGB; ``trimap`` (H, W) uint8: 1 = fg, 2 = bg, 3 = boundary; ``label`` class index."""
    image: np.ndarray
    trimap: np.ndarray
    label: int


@lru_cache(maxsize=512)
def _interp_matrix(n: int, m: int) -> np.ndarray:
    """(n, m) weights resampling m grid values to n pixels; smoothstep-bilinear, which hides the grid's creases."""
    t = np.linspace(0, m - 1, n)
    i = np.minimum(t.astype(np.int64), m - 2)
    f = (t - i) ** 2 * (3 - 2 * (t - i))
    w = np.zeros((n, m), dtype=np.float32)
    w[np.arange(n), i], w[np.arange(n), i + 1] = 1 - f, f
    return w


def _upsample(grid: np.ndarray, h: int, w: int, out: np.ndarray | None = None) -> np.ndarray:
    """A (..., gh, gw) float32 grid resampled to (..., h, w) by two small matrix products."""
    return np.matmul(_interp_matrix(h, grid.shape[-2]) @ grid, _interp_matrix(w, grid.shape[-1]).T, out=out)


def _ellipse(u, v, a, b):
    """Quilez's first-order distance to the ellipse with semi-axes a, b: accurate near its edge."""
    k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    k1 = np.maximum(np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2), 1e-9)
    return np.where(k0 < 1e-4, -min(a, b), k0 * (k0 - 1) / k1)  # the formula is undefined at the very centre


def _segment(u, v, ax, ay, bx, by):
    """Distance from (u, v) to the segment a-b, and a value > 0 where (u, v) lies left of a-b."""
    ex, ey, wx, wy = bx - ax, by - ay, u - ax, v - ay
    t = np.clip((wx * ex + wy * ey) * (1.0 / (ex * ex + ey * ey)), 0, 1)
    return np.sqrt((wx - ex * t) ** 2 + (wy - ey * t) ** 2), ex * wy - ey * wx


def _unit_shape(rng: np.random.Generator, form: str):
    """A random shape of ``form`` at unit scale: (sdf(u, v, min_thickness), bounding radius, area)."""
    asp = rng.uniform(0.55, 1.0)
    if form == "ellipse":
        return (lambda u, v, _: _ellipse(u, v, 1.0, asp)), 1.0, np.pi * asp
    if form == "rectangle":
        def box(u, v, _):
            qx, qy = np.abs(u) - 1.0, np.abs(v) - asp
            return np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2) + np.minimum(np.maximum(qx, qy), 0)
        return box, float(np.hypot(1.0, asp)), 4.0 * asp
    if form == "triangle":
        ang, rad = np.arange(3) * (2 * np.pi / 3) + rng.uniform(-0.35, 0.35, 3), rng.uniform(0.85, 1.0, 3)
        px, py = (rad * np.cos(ang)).tolist(), (rad * np.sin(ang) * asp).tolist()  # counter-clockwise
        def triangle(u, v, _):
            (d0, s0), (d1, s1), (d2, s2) = (_segment(u, v, px[i - 1], py[i - 1], px[i], py[i]) for i in range(3))
            dist = np.minimum(np.minimum(d0, d1), d2)
            return np.where((s0 > 0) & (s1 > 0) & (s2 > 0), -dist, dist)
        area = 0.5 * abs(sum(px[i - 1] * py[i] - py[i - 1] * px[i] for i in range(3)))
        return triangle, float(rad.max()), area
    if form == "star":
        n, inner = int(rng.integers(5, 8)), rng.uniform(0.38, 0.6)
        bx, by = inner * float(np.cos(np.pi / n)), inner * float(np.sin(np.pi / n))
        cos_k, sin_k = (f(np.arange(-n, n + 1) * (2 * np.pi / n)).astype(np.float32) for f in (np.cos, np.sin))
        def star(u, v, _):
            # rotate each point into its nearest spike's wedge and mirror it: by symmetry the distance to that
            # wedge's one edge is exact. The spike index k uses a polynomial atan2 (np.arctan2 is slow here).
            au, av = np.abs(u), np.abs(v)
            t = np.minimum(au, av) / np.maximum(np.maximum(au, av), 1e-12)
            a = ((-0.0464964749 * t * t + 0.15931422) * t * t - 0.327622764) * t * t * t + t
            a = np.where(av > au, np.pi / 2 - a, a)
            a = np.where(u < 0, np.pi - a, a)
            k = np.rint(np.where(v < 0, -a, a) * (n / (2 * np.pi))).astype(np.int64) + n
            c, s = cos_k[k], sin_k[k]
            dist, side = _segment(u * c + v * s, np.abs(v * c - u * s), 1.0, 0.0, bx, by)
            return np.where(side > 0, -dist, dist)
        return star, 1.0, n * inner * np.sin(np.pi / n)
    if form == "ring":
        tau = rng.uniform(0.3, 0.55) * asp
        def ring(u, v, min_thickness):
            # the hole is the outline scaled by r, so both stay mildly eccentric (the ellipse distance is good) and
            # the thinnest part, on the minor axis, keeps foreground between the bands of the two edges
            r = 1 - min(max(tau, min_thickness), 0.85 * asp) / asp
            return np.maximum(_ellipse(u, v, 1.0, asp), -_ellipse(u, v, r, r * asp))
        return ring, 1.0, np.pi * asp * (1 - (1 - tau / asp) ** 2)
    # blob: star-convex radius R(theta) = 1 + sum_k Re(c_k e^{ik theta}), via powers of e^{i theta}, not atan2
    coef = (rng.uniform(0, 1, 3) * np.array([0.2, 0.12, 0.08]) * np.exp(1j * rng.uniform(0, 2 * np.pi, 3))).tolist()
    def blob(u, v, _):
        rho = np.sqrt(u * u + v * v)
        z = (u + 1j * v) / np.maximum(rho, 1e-6)
        z2 = z * z
        w = (coef[0] * z2, coef[1] * z2 * z, coef[2] * z2 * z2)
        slope = -(2 * w[0].imag + 3 * w[1].imag + 4 * w[2].imag)
        # dividing by |grad| turns rho - R(theta) into a first-order distance near the edge
        return (rho - 1 - w[0].real - w[1].real - w[2].real) / np.sqrt(1 + (slope / np.maximum(rho, 0.5)) ** 2)
    return blob, 1.0 + sum(map(abs, coef)), np.pi * (1 + sum(abs(c) ** 2 for c in coef) / 2)


def _place(size, cx, cy, scale, angle, reach, sdf, exact=1.0, min_thickness=0.0):
    """``scale * sdf(R(p - c) / scale)`` on the square window of half-width ``reach`` around (cx, cy), clipped
    to the image: (window slices, ys (h, 1), xs (1, w), d (h, w)), or None where the window misses the image.
    ``d`` is exact only where ``|d| < exact``; elsewhere it has the right sign and ``|d| >= exact``."""
    y0, y1 = max(0, int(cy - reach)), min(size, int(cy + reach) + 2)
    x0, x1 = max(0, int(cx - reach)), min(size, int(cx + reach) + 2)
    if y0 >= y1 or x0 >= x1:
        return None
    ys, xs = np.arange(y0, y1, dtype=np.float32)[:, None], np.arange(x0, x1, dtype=np.float32)[None]
    c, s, win = np.float32(np.cos(angle) / scale), np.float32(np.sin(angle) / scale), (slice(y0, y1), slice(x0, x1))
    def evaluate(py, px):
        dx, dy = px - np.float32(cx), py - np.float32(cy)
        return (sdf(dx * c + dy * s, dy * c - dx * s, min_thickness / scale) * np.float32(scale)).astype(np.float32)
    if ys.size * xs.size < 4096:
        return win, ys, xs, evaluate(ys, xs)
    # coarse to fine: sample the centre of each 4x4 block (within 2.2 px of its pixels) and refine only the
    # blocks near the edge; the 5.5 px margin holds for distance functions with slopes up to 2.4
    coarse = evaluate(ys[::4] + 1.5, xs[:, ::4] + 1.5)
    blocks = np.repeat(np.where(coarse < 0, -exact, exact).astype(np.float32)[..., None], 16, axis=2)
    bi, bj = np.nonzero(np.abs(coarse) < exact + 5.5)
    by, bx = (4 * bi + y0).astype(np.float32)[:, None, None], (4 * bj + x0).astype(np.float32)[:, None, None]
    step = np.arange(4, dtype=np.float32)
    blocks[bi, bj] = evaluate(by + step[:, None], bx + step).reshape(-1, 16)
    d = blocks.reshape(coarse.shape + (4, 4)).transpose(0, 2, 1, 3).reshape(4 * coarse.shape[0], -1)
    return win, ys, xs, d[: ys.size, : xs.size]


def _paint(img, win, d, c1, c2=None, weight=None) -> None:
    """Composite colour c1 (3, 1, 1), or c1 + (c2 - c1) * weight (h, w), where d < 0 with one pixel of anti-aliasing.
    In place where possible: each fresh (3, h, w) temporary costs page faults that outweigh its arithmetic."""
    region = img[(slice(None),) + win]
    delta = c1 - region
    if weight is not None:
        delta += weight * (c2 - c1)
    delta *= np.clip(0.5 - d, 0, 1)
    region += delta


def _texture(rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """A (h, w) mixing weight in [0, 1]: stripes, checkerboard, dots or smooth noise."""
    kind, phi, period = int(rng.integers(4)), rng.uniform(0, np.pi), rng.uniform(5.0, 16.0)
    c, s = float(np.cos(phi)) / period, float(np.sin(phi)) / period
    a, b = xs * c + ys * s, ys * c - xs * s  # texture coordinates in periods
    if kind == 0:
        return np.clip(0.5 + rng.uniform(0.5, 3.0) * np.sin(a * np.float32(2 * np.pi) + rng.uniform(0, 6.3)), 0, 1)
    if kind == 1:
        return ((a - np.floor(a) < 0.5) ^ (b - np.floor(b) < 0.5)).astype(np.float32)
    if kind == 2:
        fa, fb = a - np.floor(a + 0.5), b - np.floor(b + 0.5)
        return np.clip((rng.uniform(0.2, 0.4) - np.sqrt(fa * fa + fb * fb)) * period + 0.5, 0, 1)
    g = int(rng.integers(3, 7))
    return np.clip((_upsample(rng.random((g, g), dtype=np.float32), ys.size, xs.size) - 0.5) * 2.5 + 0.5, 0, 1)


def _class_colours(rng: np.random.Generator, label: int) -> tuple[np.ndarray, np.ndarray]:
    """The foreground's two texture colours, (3, 1, 1) each: a light and a dark shade of a hue drawn from the
    label's sixth of the colour wheel. Form alone is not learned by a small ViT in a few minutes of CPU, so the
    class also shows in the colour; neighbouring classes' hue ranges touch, and the clutter uses every hue."""
    hue = (label + rng.uniform(-0.5, 0.5)) / len(SHAPE_CLASSES)
    saturation, light, dark = rng.uniform(0.55, 1.0), rng.uniform(0.75, 1.0), rng.uniform(0.2, 0.45)
    shades = [colorsys.hsv_to_rgb(hue % 1.0, saturation, value) for value in (light, dark)]
    if rng.random() < 0.5:  # either shade may be the texture's ground
        shades.reverse()
    return tuple(np.array(c, dtype=np.float32).reshape(3, 1, 1) for c in shades)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(3, size, size) float32: colour noise, luminance noise, gratings and 3-8 small distractor shapes."""
    # layers mixed into RGB by one matrix product: low-frequency colour noise (3), finer luminance noise, gratings
    waves, k1, k2 = int(rng.integers(1, 3)), int(rng.integers(2, 6)), int(rng.integers(8, 15))
    layers = np.empty((4 + waves, size, size), dtype=np.float32)
    _upsample(rng.random((3, k1, k1), dtype=np.float32), size, size, out=layers[:3])
    _upsample(rng.random((k2, k2), dtype=np.float32), size, size, out=layers[3])
    mix = np.zeros((3, 4 + waves), dtype=np.float32)
    mix[:, :3], mix[:, 3] = np.eye(3) * 0.7, 0.2
    ax = np.arange(size, dtype=np.float32)
    for j in range(4, 4 + waves):  # sin(a + b) = sin a cos b + cos a sin b keeps the trigonometry 1-D
        phi, freq, phase = rng.uniform(0, np.pi), 2 * np.pi / rng.uniform(4.0, 30.0), rng.uniform(0, 2 * np.pi)
        fx, fy = ax * float(np.cos(phi) * freq) + phase, ax * float(np.sin(phi) * freq)
        np.matmul(np.stack([np.cos(fy), np.sin(fy)], 1), np.stack([np.sin(fx), np.cos(fx)]), out=layers[j])
        mix[:, j] = rng.uniform(-1, 1, 3) * rng.uniform(0.04, 0.15)
    img = (mix @ layers.reshape(len(layers), -1)).reshape(3, size, size)
    img += (rng.uniform(0.2, 0.8, 3) - 0.45).astype(np.float32)[:, None, None]  # 0.45: the layers' mean

    for _ in range(int(rng.integers(3, 9))):  # clutter that belongs to the background; the foreground occludes it
        cx, cy, angle = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0, 2 * np.pi)
        colour, form = rng.random((3, 1, 1), dtype=np.float32), int(rng.integers(len(SHAPE_CLASSES) + 1))
        if form == len(SHAPE_CLASSES):  # a thin line segment
            half, width = rng.uniform(0.07, 0.2) * size, rng.uniform(0.6, 1.5)
            sdf = (lambda h, w: lambda u, v, _: np.sqrt((u - np.clip(u, -h, h)) ** 2 + v * v) - w)(half, width)
            scale, bound = 1.0, half + 1
        else:
            sdf, bound, area = _unit_shape(rng, SHAPE_CLASSES[form])
            scale = float(np.sqrt(rng.uniform(0.004, 0.025) * size * size / area))
            if rng.random() < 0.3:  # outline only
                sdf = (lambda f, w: lambda u, v, t: np.abs(f(u, v, t)) - w)(sdf, rng.uniform(0.7, 1.5) / scale)
        placed = _place(size, cx, cy, scale, angle, bound * scale + 2, sdf)
        if placed is not None:
            _paint(img, placed[0], placed[3], colour)
    return img


def make_sample(seed: int, index: int, size: int = 160, boundary_width: int = 3) -> SyntheticSample:
    """Sample ``index`` of the synthetic dataset ``seed``.

    Pure and deterministic: the same (seed, index, size, boundary_width) always gives identical arrays.
    Returns a (size, size, 3) uint8 RGB image, a (size, size) uint8 trimap (1 = foreground shape, 2 = background
    and distractors, 3 = pixels within ``boundary_width`` px of the shape's edge on either side; all three values
    always appear) and the label, an index into :data:`SHAPE_CLASSES`: the shape's form, which also sets the hue of its
    colours (see :func:`_class_colours`).
    """
    if min(seed, index) < 0 or size < 32 or not 1 <= boundary_width <= size // 10:
        raise SimsegError(f"synthetic images need seed, index >= 0, size >= 32 and 1 <= boundary_width <= size // 10;"
                          f" got seed {seed}, index {index}, size {size}, boundary_width {boundary_width}")
    rng = np.random.default_rng([seed, index])
    label = int(rng.integers(len(SHAPE_CLASSES)))
    img = _background(rng, size)
    for attempt in range(6):
        last = attempt == 5  # the fallback, centred and mid-sized, always shows all three regions
        sdf, bound, area = _unit_shape(rng, SHAPE_CLASSES[label])
        frac, angle = (0.25 if last else rng.uniform(0.12, 0.45)), rng.uniform(0, 2 * np.pi)
        cx, cy = (size / 2, size / 2) if last else rng.uniform(0.2, 0.8, 2) * size
        scale = float(np.sqrt(frac * size * size / area))
        win, ys, xs, d = _place(size, cx, cy, scale, angle, bound * scale + boundary_width + 2, sdf,
                                boundary_width, 2 * boundary_width + 2)
        visible = np.count_nonzero(d < 0) / (size * size)
        has_bg = d.size < size * size or bool((d >= boundary_width).any())
        if last or (0.08 <= visible <= 0.55 and has_bg and bool((d <= -boundary_width).any())):
            break
    c1, c2 = _class_colours(rng, label)
    _paint(img, win, d, c1, c2, _texture(rng, ys, xs))

    # global photometrics (contrast with a slight colour cast, brightness) and luminance pixel noise, in place
    gain = (rng.uniform(0.75, 1.25) * rng.uniform(0.92, 1.08, (3, 1, 1)) * 255).astype(np.float32)
    offset = np.float32(255 * (0.5 + rng.uniform(-0.1, 0.1)) + 0.5)  # + 0.5 rounds in the uint8 cast
    noise = np.frombuffer(rng.bytes(size * size), np.uint8).reshape(size, size) * np.float32(rng.uniform(0.03, 0.1))
    img -= np.float32(0.5)
    img *= gain
    img += noise + (offset - noise.mean())
    np.clip(img, 0, 255, out=img)
    image = np.empty((size, size, 3), dtype=np.uint8)
    for c in range(3):  # strided per-channel stores are cheaper than a transposing copy
        image[..., c] = img[c]

    trimap = np.full((size, size), BACKGROUND, dtype=np.uint8)
    trimap[win] = np.where(np.abs(d) < boundary_width, BOUNDARY, np.where(d < 0, FOREGROUND, BACKGROUND))
    return SyntheticSample(image=image, trimap=trimap, label=label)
