"""A predictor that adds to each row the first 48 bits of a SHA-256 hash of the env variable ``config["probe"]`` as its worker sees it."""

import hashlib
import os

import numpy as np


class Predictor:
    def __init__(self, model_dir, config):
        seen = os.environ.get(config["probe"])
        self.digest = int(hashlib.sha256(seen.encode()).hexdigest()[:12], 16) if seen is not None else -1

    def __call__(self, batch):
        return {**batch, "probe": np.full(len(batch["x"]), self.digest)}
