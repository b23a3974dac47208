"""A resumable Ray Train loop: `epochs` epochs of `sleep_s`, a checkpoint each; with
`scribble` (a folder), it writes a file there each epoch, as a job writing outputs into
its own source folder would."""

import json
import os
import tempfile
import time
import uuid

import ray.train


def train_loop(config):
    start = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            with open(os.path.join(folder, "state.json")) as handle:
                start = json.load(handle)["epoch"] + 1
    for epoch in range(start, config.get("epochs", 6)):
        time.sleep(config.get("sleep_s", 1.0))
        if config.get("scribble"):
            with open(os.path.join(config["scribble"], f"out-{uuid.uuid4().hex}.txt"), "w") as handle:
                handle.write(f"epoch {epoch}\n")
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "state.json"), "w") as handle:
                json.dump({"epoch": epoch}, handle)
            ray.train.report({"epoch": epoch}, checkpoint=ray.train.Checkpoint.from_directory(folder))
