"""bench/synthetic_images.py, the task the benchmark CNNs are trained on: seeded, well-formed, and its
labels carry information (a nearest-centroid classifier on phase-free spectra beats chance by far)."""

from __future__ import annotations

import numpy as np

from bench.synthetic_images import CLASSES, make_batch


def test_same_seed_same_batch_and_another_seed_another():
    first, first_labels = make_batch(np.random.default_rng(7), 20, 48)
    again, again_labels = make_batch(np.random.default_rng(7), 20, 48)
    other, _ = make_batch(np.random.default_rng(8), 20, 48)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first_labels, again_labels)
    assert not np.allclose(first, other)


def test_shapes_dtypes_classes_and_normalisation():
    images, labels = make_batch(np.random.default_rng(0), 40, 64)
    assert images.shape == (40, 3, 64, 64) and images.dtype == np.float32
    assert labels.shape == (40,) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=len(CLASSES)).tolist() == [4] * len(CLASSES)
    assert np.all(np.isfinite(images))
    channel_means, channel_stds = images.mean(axis=(0, 2, 3)), images.std(axis=(0, 2, 3))
    assert np.all(np.abs(channel_means) < 1.0) and np.all((channel_stds > 0.5) & (channel_stds < 2.0))


def _spectra(images: np.ndarray) -> np.ndarray:
    """Per image: the square root of its normalised power spectrum, summed over channels. Blind
    to phase and position, which the task draws at random, and to overall contrast."""
    power = (np.abs(np.fft.fft2(images - images.mean(axis=(2, 3), keepdims=True))) ** 2).sum(axis=1)
    return np.sqrt(power / power.sum(axis=(1, 2), keepdims=True)).reshape(len(images), -1)


def _nearest_centroid_accuracy(train_labels: np.ndarray, features: np.ndarray, test_labels: np.ndarray,
                               test_features: np.ndarray) -> float:
    centroids = np.stack([features[train_labels == c].mean(axis=0) for c in range(len(CLASSES))])
    distances = ((test_features[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    return float(np.mean(distances.argmin(axis=1) == test_labels))


def test_classes_are_distinguishable_by_a_nearest_centroid_classifier():
    train, train_labels = make_batch(np.random.default_rng(1), 300, 48)
    test, test_labels = make_batch(np.random.default_rng(2), 200, 48)
    features, test_features = _spectra(train), _spectra(test)
    accuracy = _nearest_centroid_accuracy(train_labels, features, test_labels, test_features)
    assert accuracy > 0.6, f"nearest-centroid accuracy {accuracy:.2f} (chance is {1 / len(CLASSES):.2f})"
    shuffled = np.random.default_rng(3).permutation(train_labels)
    control = _nearest_centroid_accuracy(shuffled, features, test_labels, test_features)
    assert control < 0.3, f"shuffled labels should leave nothing to learn, got {control:.2f}"
