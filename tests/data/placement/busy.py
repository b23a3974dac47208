"""A loop that keeps each worker busy: it holds ``hold_mib`` MiB of memory and spins a CPU
until the file ``config["stop"]`` exists (or ``max_s`` passes), so monitoring has something to see."""

import os
import time

import numpy as np
import ray.train


def train_loop(config):
    held = np.ones(config["hold_mib"] * 2**20 // 8)  # touched pages: resident, not just reserved
    deadline = time.monotonic() + config.get("max_s", 300)
    while not os.path.exists(config["stop"]) and time.monotonic() < deadline:
        sum(range(100_000))
    ray.train.report({"held_mib": held.nbytes // 2**20})
