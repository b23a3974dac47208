"""scikit-learn's bundled digits (8x8 images, 10 classes), split the same way for every example."""

from __future__ import annotations

import numpy as np


def load_split(test_size: float = 0.25, seed: int = 0):
    """((x_train, y_train), (x_test, y_test)); pixels scaled to [0, 1], float32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    return (x_train, y_train), (x_test, y_test)


def shard(array: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This worker's slice of the training data (data-parallel)."""
    return array[rank::world]
