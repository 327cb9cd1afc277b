"""A seeded procedural 10-class image task, so benchmark CNNs can be trained here (nothing downloaded).

`make_batch(rng, count, resolution)` returns (images [count, 3, R, R] float32,
ImageNet-normalised; labels [count] int64, the classes as evenly spread as `count` allows, in
shuffled order). Each class is a family of patterns: sinusoidal gratings at four orientations,
a rotated checkerboard, concentric rings, and scattered discs, squares, dots or soft blobs.
Period, phase, size, position, colours and additive noise are drawn per image, so a class is
never one picture, and only the structure tells the classes apart. Sizes are in pixels, not
fractions of the image, so a network trained at a low resolution sees the same local patterns
at the benchmark's 224.
"""

from __future__ import annotations

import numpy as np

CLASSES = ("grating_0", "grating_45", "grating_90", "grating_135", "checkerboard", "rings",
           "discs", "squares", "dots", "blobs")
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
_STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def make_batch(rng: np.random.Generator, count: int, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` images at `resolution`; the same generator state gives the same batch."""
    first = rng.integers(len(CLASSES))  # so that one-image batches are of every class too
    labels = rng.permutation((first + np.arange(count)) % len(CLASSES)).astype(np.int64)
    images = np.stack([_image(rng, int(label), resolution) for label in labels])
    return images, labels


def _image(rng: np.random.Generator, label: int, resolution: int) -> np.ndarray:
    pattern = _pattern(rng, label, resolution)
    background, foreground = _colours(rng)
    rgb = background[:, None, None] + pattern[None] * (foreground - background)[:, None, None]
    rgb += rng.normal(0.0, rng.uniform(0.03, 0.15), rgb.shape).astype(np.float32)
    return ((np.clip(rgb, 0.0, 1.0) - _MEAN) / _STD).astype(np.float32)


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Background and pattern colours at least 0.5 apart in RGB, so every pattern stays visible."""
    while True:
        background, foreground = rng.uniform(0.0, 1.0, (2, 3)).astype(np.float32)
        if np.linalg.norm(foreground - background) >= 0.5:
            return background, foreground


def _pattern(rng: np.random.Generator, label: int, resolution: int) -> np.ndarray:
    """The class's structure as an [R, R] map in [0, 1]."""
    y, x = np.mgrid[0:resolution, 0:resolution].astype(np.float32)
    name = CLASSES[label]
    if name.startswith("grating"):
        angle = np.deg2rad(float(name.split("_")[1]) + rng.uniform(-10.0, 10.0))
        return _wave(rng, x * np.cos(angle) + y * np.sin(angle), 6.0, 12.0)
    if name == "checkerboard":
        angle = rng.uniform(0.0, np.pi / 2)
        u, v = x * np.cos(angle) + y * np.sin(angle), y * np.cos(angle) - x * np.sin(angle)
        period = rng.uniform(8.0, 16.0)
        return ((np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
                 * np.sin(2 * np.pi * v / period + rng.uniform(0, 2 * np.pi))) > 0).astype(np.float32)
    if name == "rings":
        centre = rng.uniform(0.0, resolution, 2)
        return _wave(rng, np.hypot(y - centre[0], x - centre[1]), 6.0, 12.0)
    if name == "blobs":
        return _blobs(rng, y, x)
    sizes = {"discs": (5.0, 10.0, 700.0), "squares": (5.0, 10.0, 700.0), "dots": (1.5, 2.5, 100.0)}[name]
    return _stamps(rng, resolution, *sizes, square=name == "squares")


def _wave(rng: np.random.Generator, coordinate: np.ndarray, shortest: float, longest: float) -> np.ndarray:
    period = rng.uniform(shortest, longest)
    return 0.5 + 0.5 * np.sin(2 * np.pi * coordinate / period + rng.uniform(0, 2 * np.pi))


def _stamps(rng: np.random.Generator, resolution: int, smallest: float, largest: float, area_each: float,
            square: bool) -> np.ndarray:
    """Scattered filled discs or axis-aligned squares, about one per `area_each` pixels."""
    pattern = np.zeros((resolution, resolution), np.float32)
    for _ in range(max(1, round(resolution * resolution / area_each * rng.uniform(0.7, 1.3)))):
        radius = rng.uniform(smallest, largest)
        cy, cx = rng.uniform(0.0, resolution, 2)
        y0, y1 = max(int(cy - radius), 0), min(int(cy + radius) + 2, resolution)
        x0, x1 = max(int(cx - radius), 0), min(int(cx + radius) + 2, resolution)
        dy, dx = np.arange(y0, y1)[:, None] - cy, np.arange(x0, x1)[None, :] - cx
        inside = np.maximum(abs(dy), abs(dx)) <= radius if square else dy * dy + dx * dx <= radius * radius
        pattern[y0:y1, x0:x1][inside] = 1.0
    return pattern


def _blobs(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Soft Gaussian blobs, sigma 6-12 pixels, about one per 900 pixels."""
    pattern = np.zeros_like(x)
    for _ in range(max(1, round(x.size / 900.0 * rng.uniform(0.7, 1.3)))):
        cy, cx = rng.uniform(0.0, x.shape[0], 2)
        sigma = rng.uniform(6.0, 12.0)
        pattern += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma * sigma))
    return np.clip(pattern, 0.0, 1.0)
