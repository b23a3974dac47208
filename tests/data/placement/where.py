"""A loop that records where Ray put each worker: node id, node labels, accelerator ids
and the cluster address a worker's Ray calls resolve without one (as Ray Train's own
helpers do); with config "probe", a hash of that env variable as the worker sees it;
with "hold_s", it runs that long and records when it started and ended)."""

import hashlib
import json
import os
import time

import ray
import ray.train
from ray._private import services


def _default_address() -> str:
    try:
        return services.canonicalize_bootstrap_address_or_die(None)
    except Exception as error:  # the record says what a Ray helper would have failed with
        return f"unresolved: {error}"


def train_loop(config):
    context = ray.get_runtime_context()
    train = ray.train.get_context()
    rank = train.get_world_rank()
    started = time.time()
    time.sleep(config.get("hold_s", 0))
    record = {
        "run": train.get_experiment_name(),
        "started": started,
        "ended": time.time(),
        "rank": rank,
        "node_id": context.get_node_id(),
        "labels": context.get_node_labels(),
        "accelerator_ids": {k: list(v) for k, v in context.get_accelerator_ids().items()},
        "default_address": _default_address(),
    }
    if "probe" in config:
        seen = os.environ.get(config["probe"])
        record["probe_sha256"] = hashlib.sha256(seen.encode()).hexdigest() if seen is not None else None
    with open(os.path.join(config["out"], f"{record['run']}-rank-{rank}.json"), "w") as handle:
        json.dump(record, handle)
    ray.train.report({"rank": rank})
