"""scikit-learn's bundled digits (8x8 images, 10 classes), split the same way for every example."""

from __future__ import annotations

import numpy as np


def load_split(test_size: float = 0.25, seed: int = 0, classes=None):
    """((x_train, y_train), (x_test, y_test)); pixels scaled to [0, 1], float32.
    ``classes``: keep only these digits (the fine-tuning example trains on 0-4, then 5-9)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    if classes is not None:
        train, test = np.isin(y_train, classes), np.isin(y_test, classes)
        x_train, y_train, x_test, y_test = x_train[train], y_train[train], x_test[test], y_test[test]
    return (x_train, y_train), (x_test, y_test)


def write_test_set(path: str = "data/test.npz") -> None:
    """The test split as the predict example's input: x (float32 pixels) and y (labels)."""
    import os

    _, (x_test, y_test) = load_split()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez_compressed(path, x=x_test, y=y_test)


if __name__ == "__main__":
    write_test_set()


def shard(array: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This worker's slice of the training data (data-parallel)."""
    return array[rank::world]
