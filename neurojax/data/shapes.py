"""Procedural shapes: an offline image benchmark where representations matter.

Each example is a square RGB image of one of ten shapes (``CLASS_NAMES``) with
a random position, scale, rotation and foreground colour, drawn over a
background made of a random two-colour gradient plus a coloured sinusoidal
grating, with Gaussian pixel noise. The label is the shape. Every generative
factor is stored beside the image (see ``FACTOR_SHAPES``), so probes can ask
what a representation keeps besides the class.

Why this dataset: the bundled digits are solved from raw pixels (a logistic
probe reaches ~97%), so representation-learning effects of a few points do
not show. Here the shape's position, size, colour and the background vary
independently of the class, so linear and kNN classifiers on raw pixels stay
near chance while a small conv net learns the task (numbers in
``neurojax/analysis/shapes_calibration.py`` and the README).

Nuisance factors and augmentations: position, scale, rotation, colours,
background and noise are independent of the label. The SSL recipe for
CIFAR (random resized crop, horizontal flip, colour jitter, grayscale) keeps
the label: a flip maps every shape to the same shape at the mirrored
rotation (all ten are mirror-symmetric), and the foreground differs from the
background at the shape's centre by at least 0.1 in luminance, so grayscale
views keep it visible. A crop can cut part of the shape away;
``tests/data/test_shapes.py`` checks from the stored factors that crops with
scale in [0.2, 1] keep at least half of the shape in most cases. The
augmentations remove the nuisance factors only partly: crops vary position
and scale, but no augmentation of the recipe touches rotation, and colour
jitter perturbs the foreground and background colours without making them
uninformative, so a representation can keep all of them; the stored factors
let probes measure how much it does.

Rotation is stored as drawn, in [0, 2*pi); it is only defined modulo the
shape's symmetry (``SYMMETRY_ORDER``: 2*pi/order; disc and ring have none).

Determinism: an example is a function of (version, config seed, split,
index, image size); its label and factors do not depend on the image size,
so ``small`` shows the first 10,000 examples of ``default`` at 16x16.
Parameters are drawn per chunk of ``CHUNK_SIZE`` examples from
``np.random.default_rng([seed, split_id, chunk])`` using only uniform
doubles (``Generator.random``; Gaussian noise is made from them by
Box-Muller): NEP 19 lets NumPy change the algorithms of its other
distributions between versions, and the uniform stream is the least likely
to move. The same version and seed give the same bytes on a platform;
across CPUs, float32 sin/cos may differ in the last bit and, rarely, move a
pixel by one level. Any change to the generator must bump
``NeurojaxShapes.VERSION``.

Preparation is vectorised over a chunk (signed distances on the pixel grid,
with a one-pixel soft edge for antialiasing) and takes seconds; the TFDS
writer dominates (timings in the calibration report).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds

NAME = "neurojax_shapes"
CLASS_NAMES: tuple[str, ...] = (
    "disc",
    "square",
    "triangle",
    "pentagon",
    "hexagon",
    "star",
    "cross",
    "ellipse",
    "ring",
    "frame",
)
NUM_CLASSES = len(CLASS_NAMES)
# Rotations that map the shape onto itself (0: every rotation does).
SYMMETRY_ORDER: Mapping[str, int] = {
    "disc": 0,
    "square": 4,
    "triangle": 3,
    "pentagon": 5,
    "hexagon": 6,
    "star": 5,
    "cross": 4,
    "ellipse": 2,
    "ring": 0,
    "frame": 4,
}

# Stored factors: name -> per-example shape (all float32). Positions and
# lengths are fractions of the image side, so they mean the same at any size.
FACTOR_SHAPES: Mapping[str, tuple[int, ...]] = {
    "center": (2,),  # (x, y) = (column, row) of the shape's centre, in [0, 1]
    "scale": (),  # circumradius (every shape fits its unit circle)
    "rotation": (),  # radians in [0, 2*pi), counter-clockwise on screen
    "fg_color": (3,),  # RGB in [0, 1]
    "bg_color0": (3,),  # gradient colour at one end ...
    "bg_color1": (3,),  # ... and at the other
    "bg_angle": (),  # direction of the gradient, radians
    "texture_freq": (),  # grating frequency, cycles per image side
    "texture_angle": (),  # grating direction, radians
    "texture_phase": (),  # radians
    "texture_amplitude": (),  # grating amplitude, in [0, 1] colour units
    "texture_color": (3,),  # grating colour direction, each in [-1, 1]
    "noise_std": (),  # Gaussian pixel noise, in [0, 1] colour units
}

CHUNK_SIZE = 1000  # Part of the version: chunks seed the generator.
_SPLIT_IDS = {"train": 0, "test": 1}

# Ranges of the factors (fractions of the image side, colour units in [0, 1]).
_SCALE_RANGE = (0.2, 0.42)
_FREQ_RANGE = (1.0, 4.0)
_TEXTURE_AMPLITUDE_RANGE = (0.0, 0.25)
_NOISE_RANGE = (0.02, 0.08)
_MIN_CONTRAST = 0.3  # RGB distance from the foreground to the gradient's colours
_MIN_LUMA_CONTRAST = 0.1  # luminance difference to the background at the centre
# ITU-R BT.601 luma weights, as in grayscale conversions (PIL, torchvision).
LUMA = np.array([0.299, 0.587, 0.114])

# Shape geometry, in units of the circumradius.
_STAR_INNER = 0.45  # inner-vertex radius (a regular pentagram has 0.38)
_RING_INNER = 0.45
_FRAME_INNER = 0.55  # inner square's side relative to the outer one
_CROSS_HALF_WIDTH = 0.3
_ELLIPSE_MINOR = 0.5


def _uniform(rng: np.random.Generator, low: float, high: float, shape=()) -> np.ndarray:
    return low + (high - low) * rng.random(shape)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each row of ``p`` to the segment [a, b] (rows, in RGB)."""
    ab = b - a
    t = np.clip(np.sum((p - a) * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=-1)


def sample_factors(
    rng: np.random.Generator, num_examples: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draws balanced labels and the generative factors of ``num_examples``.

    Labels are a random permutation of ``arange(n) % 10``, so every chunk
    whose size is a multiple of ten is exactly balanced.

    Returns:
        ``(labels int64 [n], factors)`` with ``factors[k]`` float64 of shape
        ``(n, *FACTOR_SHAPES[k])``.
    """
    n = num_examples
    labels = np.argsort(rng.random(n), kind="stable") % NUM_CLASSES
    scale = _uniform(rng, *_SCALE_RANGE, n)
    # Every shape lies inside its circumradius: keep that circle in the frame.
    center = scale[:, None] + (1.0 - 2.0 * scale[:, None]) * rng.random((n, 2))
    factors = {
        "center": center,
        "scale": scale,
        "rotation": _uniform(rng, 0.0, 2 * np.pi, n),
        "bg_color0": rng.random((n, 3)),
        "bg_color1": rng.random((n, 3)),
        "bg_angle": _uniform(rng, 0.0, 2 * np.pi, n),
        "texture_freq": _uniform(rng, *_FREQ_RANGE, n),
        "texture_angle": _uniform(rng, 0.0, np.pi, n),
        "texture_phase": _uniform(rng, 0.0, 2 * np.pi, n),
        "texture_amplitude": _uniform(rng, *_TEXTURE_AMPLITUDE_RANGE, n),
        "texture_color": _uniform(rng, -1.0, 1.0, (n, 3)),
        "noise_std": _uniform(rng, *_NOISE_RANGE, n),
    }
    # Foreground colours overlap the background's range; redraw those too
    # close to the gradient's colours to be seen, or (so that grayscale views
    # keep the shape) too close in luminance to the background at the centre.
    # A few passes; the order of draws is fixed by the rng.
    bg0, bg1 = factors["bg_color0"], factors["bg_color1"]
    local_bg = gradient_color(factors, center)

    def too_close(fg: np.ndarray, idx: np.ndarray) -> np.ndarray:
        rgb = _segment_distance(fg, bg0[idx], bg1[idx]) < _MIN_CONTRAST
        return rgb | (np.abs((fg - local_bg[idx]) @ LUMA) < _MIN_LUMA_CONTRAST)

    fg = rng.random((n, 3))
    bad = too_close(fg, np.arange(n))
    while bad.any():
        idx = np.flatnonzero(bad)
        fg[idx] = rng.random((len(idx), 3))
        bad[idx] = too_close(fg[idx], idx)
    factors["fg_color"] = fg
    return labels.astype(np.int64), {k: factors[k] for k in FACTOR_SHAPES}


def gradient_color(factors: Mapping[str, np.ndarray], xy: np.ndarray) -> np.ndarray:
    """The background gradient's colour (without the grating) at points ``xy``.

    Args:
        factors: ``bg_color0``, ``bg_color1`` ``[n, 3]`` and ``bg_angle`` ``[n]``.
        xy: ``[n, 2]`` points (x, y) in [0, 1], one per example.
    """
    angle = np.asarray(factors["bg_angle"])
    along = (xy[:, 0] - 0.5) * np.cos(angle) + (xy[:, 1] - 0.5) * np.sin(angle)
    t = np.clip(0.5 + along / np.sqrt(2.0), 0.0, 1.0)[:, None]
    bg0, bg1 = np.asarray(factors["bg_color0"]), np.asarray(factors["bg_color1"])
    return bg0 + t * (bg1 - bg0)


def _grid(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x = column, y = row) as fractions of the side."""
    coords = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
    return coords[None, None, :], coords[None, :, None]  # broadcast to (n, H, W)


def _polygon_sdf(u: np.ndarray, v: np.ndarray, sides: int) -> np.ndarray:
    """Regular polygon of circumradius 1 (a vertex on the +u axis)."""
    offsets = np.pi / sides + 2 * np.pi * np.arange(sides) / sides  # edge normals
    dist = np.max([u * np.cos(a) + v * np.sin(a) for a in offsets], axis=0)
    return dist - np.cos(np.pi / sides)


def _box_sdf(u: np.ndarray, v: np.ndarray, half_u: float, half_v: float) -> np.ndarray:
    return np.maximum(np.abs(u) - half_u, np.abs(v) - half_v)


def _star_sdf(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Five-pointed star: fold into the half-sector between a tip and a notch."""
    sector = 2 * np.pi / 5
    angle = np.abs(np.mod(np.arctan2(v, u) + sector / 2, sector) - sector / 2)
    radius = np.hypot(u, v)
    qu, qv = radius * np.cos(angle), radius * np.sin(angle)
    tip = np.array([1.0, 0.0])
    notch = _STAR_INNER * np.array([np.cos(sector / 2), np.sin(sector / 2)])
    edge = notch - tip
    normal = np.array([edge[1], -edge[0]]) / np.hypot(*edge)  # points away from the centre
    if normal @ tip < 0:
        normal = -normal
    return (qu - tip[0]) * normal[0] + (qv - tip[1]) * normal[1]


def _shape_sdf(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) in units of the circumradius.

    Exact near the edges, which is all the one-pixel soft edge needs.
    """
    name = CLASS_NAMES[label]
    if name == "disc":
        return np.hypot(u, v) - 1.0
    if name == "square":
        return _polygon_sdf(u, v, 4)
    if name == "triangle":
        return _polygon_sdf(u, v, 3)
    if name == "pentagon":
        return _polygon_sdf(u, v, 5)
    if name == "hexagon":
        return _polygon_sdf(u, v, 6)
    if name == "star":
        return _star_sdf(u, v)
    if name == "cross":
        long = np.sqrt(1.0 - _CROSS_HALF_WIDTH**2)
        return np.minimum(
            _box_sdf(u, v, long, _CROSS_HALF_WIDTH), _box_sdf(u, v, _CROSS_HALF_WIDTH, long)
        )
    if name == "ellipse":
        # First-order distance to the ellipse u^2 + (v/b)^2 = 1.
        b = _ELLIPSE_MINOR
        k0 = np.hypot(u, v / b)
        k1 = np.hypot(u, v / b**2)
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)
    if name == "ring":
        mid, half = (1.0 + _RING_INNER) / 2, (1.0 - _RING_INNER) / 2
        return np.abs(np.hypot(u, v) - mid) - half
    if name == "frame":
        outer = np.sqrt(0.5)  # half-side of a square of circumradius 1
        inner = _FRAME_INNER * outer
        return np.maximum(_box_sdf(u, v, outer, outer), -_box_sdf(u, v, inner, inner))
    raise ValueError(f"label must be in [0, {NUM_CLASSES}), got {label}")


def shape_coverage(
    labels: np.ndarray, factors: Mapping[str, np.ndarray], image_size: int
) -> np.ndarray:
    """Fraction of each pixel covered by the shape, float32 ``[n, H, W]``.

    Uses only ``center``, ``scale`` and ``rotation`` from ``factors``; the
    edge is a one-pixel linear ramp of the signed distance (antialiasing).
    """
    labels = np.asarray(labels)
    n = len(labels)
    x, y = _grid(image_size)
    center = np.asarray(factors["center"], np.float32).reshape(n, 2)
    scale = np.asarray(factors["scale"], np.float32).reshape(n, 1, 1)
    rot = np.asarray(factors["rotation"], np.float32).reshape(n, 1, 1)
    dx, dy = x - center[:, 0, None, None], y - center[:, 1, None, None]
    # Rows grow downwards: flip y so that (u, v) is the usual right-handed frame
    # and ``rotation`` turns the shape counter-clockwise on screen.
    cos, sin = np.cos(rot), np.sin(rot)
    u = (cos * dx - sin * dy) / scale
    v = -(sin * dx + cos * dy) / scale
    coverage = np.empty((n, image_size, image_size), np.float32)
    for label in np.unique(labels):  # one vectorised pass per class
        idx = np.flatnonzero(labels == label)
        sdf_pixels = _shape_sdf(int(label), u[idx], v[idx]) * scale[idx] * image_size
        coverage[idx] = np.clip(0.5 - sdf_pixels, 0.0, 1.0)
    return coverage


def render(
    labels: np.ndarray,
    factors: Mapping[str, np.ndarray],
    image_size: int,
    noise_uniforms: np.ndarray,
) -> np.ndarray:
    """Draws the images of ``labels`` with ``factors``: uint8 ``[n, H, W, 3]``.

    Args:
        labels: class indices, shape ``[n]``.
        factors: as returned by :func:`sample_factors`.
        image_size: side of the square image in pixels.
        noise_uniforms: ``[2, n, H, W, 3]`` uniforms in [0, 1) turned into
            standard normal pixel noise by Box-Muller.
    """
    n = len(labels)
    f = {k: np.asarray(v, np.float32).reshape((n,) + FACTOR_SHAPES[k]) for k, v in factors.items()}
    x, y = _grid(image_size)

    def per_example(name: str) -> np.ndarray:  # [n] -> [n, 1, 1] to broadcast over pixels
        return f[name][:, None, None]

    # Gradient: t runs from 0 to 1 across the image along bg_angle.
    angle = per_example("bg_angle")
    along = (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle)
    t = np.clip(0.5 + along / np.sqrt(2.0), 0.0, 1.0)[..., None]
    bg0, bg1 = f["bg_color0"][:, None, None], f["bg_color1"][:, None, None]
    background = bg0 + t * (bg1 - bg0)
    phase = 2 * np.pi * per_example("texture_freq") * (
        x * np.cos(per_example("texture_angle")) + y * np.sin(per_example("texture_angle"))
    ) + per_example("texture_phase")
    grating = (per_example("texture_amplitude") * np.sin(phase))[..., None]
    background = background + grating * f["texture_color"][:, None, None]

    coverage = shape_coverage(labels, factors, image_size)[..., None]
    image = background + coverage * (f["fg_color"][:, None, None] - background)

    # Box-Muller in float64: 1 - u rounds to 0 in float32 for u near 1.
    u1, u2 = np.asarray(noise_uniforms, np.float64)
    normal = (np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)).astype(np.float32)
    image = image + f["noise_std"][:, None, None, None] * normal
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def generate(
    split: str, start: int, stop: int, image_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Examples ``[start, stop)`` of ``split``, identical to the prepared ones.

    ``start`` must be a multiple of ``CHUNK_SIZE`` (chunks are the unit of
    seeding); ``stop`` may cut the last chunk.

    Returns:
        ``(images uint8 [n, H, W, 3], labels int64 [n], factors float32)``.
    """
    if split not in _SPLIT_IDS:
        raise ValueError(f"split must be one of {sorted(_SPLIT_IDS)}, got {split!r}")
    if start % CHUNK_SIZE or not 0 <= start < stop:
        raise ValueError(
            f"start must be a multiple of {CHUNK_SIZE} below stop, got start={start}, stop={stop}"
        )
    images, labels, factors = [], [], []
    for chunk_start in range(start, stop, CHUNK_SIZE):
        rng = np.random.default_rng([seed, _SPLIT_IDS[split], chunk_start // CHUNK_SIZE])
        chunk_labels, chunk_factors = sample_factors(rng, CHUNK_SIZE)
        noise = rng.random((2, CHUNK_SIZE, image_size, image_size, 3))
        # The whole chunk is drawn (the stream stays the same) but only the
        # examples before ``stop`` are rendered.
        keep = min(CHUNK_SIZE, stop - chunk_start)
        chunk_labels = chunk_labels[:keep]
        chunk_factors = {k: v[:keep] for k, v in chunk_factors.items()}
        images.append(render(chunk_labels, chunk_factors, image_size, noise[:, :keep]))
        labels.append(chunk_labels)
        factors.append(chunk_factors)
    return (
        np.concatenate(images),
        np.concatenate(labels),
        {k: np.concatenate([c[k] for c in factors]).astype(np.float32) for k in FACTOR_SHAPES},
    )


@dataclasses.dataclass(eq=False)
class ShapesConfig(tfds.core.BuilderConfig):
    """Image size, split sizes and seed of a shapes dataset."""

    image_size: int = 32
    num_train: int = 50_000
    num_test: int = 10_000
    seed: int = 0


class NeurojaxShapes(tfds.core.GeneratorBasedBuilder):
    """Procedural shapes: ten classes, nuisance factors stored (see module doc)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Ten shapes over a gradient + grating background with pixel noise.",
    }
    BUILDER_CONFIGS = [
        ShapesConfig(name="default", description="32x32 RGB, 50,000 train / 10,000 test."),
        ShapesConfig(
            name="small",
            description="16x16 RGB, 10,000 train / 2,000 test (tests, quick sweeps).",
            image_size=16,
            num_train=10_000,
            num_test=2_000,
        ),
    ]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        size = config.image_size
        factors = {
            name: tfds.features.Tensor(shape=shape, dtype=np.float32)
            for name, shape in FACTOR_SHAPES.items()
        }
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                f"Procedural {size}x{size} RGB images of {NUM_CLASSES} shapes "
                f"({', '.join(CLASS_NAMES)}) with random position, scale, rotation, "
                "foreground colour, gradient + grating background and pixel noise; "
                "every generative factor is stored beside the image."
            ),
            features=tfds.features.FeaturesDict(
                {
                    # Raw uint8: an encoded Image feature could need TensorFlow.
                    "image": tfds.features.Tensor(shape=(size, size, 3), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                    **factors,
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/neurojax/neurojax",
            license="Apache-2.0",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Generated: nothing to download.
        config = self.builder_config
        return {
            "train": self._generate_examples("train", config.num_train),
            "test": self._generate_examples("test", config.num_test),
        }

    def _generate_examples(self, split: str, num_examples: int) -> Iterator[tuple[int, dict]]:
        config = self.builder_config
        for start in range(0, num_examples, CHUNK_SIZE):
            stop = min(start + CHUNK_SIZE, num_examples)
            images, labels, factors = generate(split, start, stop, config.image_size, config.seed)
            for i in range(stop - start):
                example = {"image": images[i], "label": int(labels[i])}
                example.update({k: v[i] for k, v in factors.items()})
                yield start + i, example
