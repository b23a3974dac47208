"""Digits with PyTorch under Ray Train: an MLP or a small CNN (config["model"]).

A plain Ray Train loop: each worker trains on its shard, every epoch reports
metrics and a checkpoint, and a restarted run resumes from the last one.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import ray.train
import ray.train.torch
import torch
from torch import nn

from data import load_split, shard
from orchestrator import loop as orch_loop


def build_model(config: dict) -> nn.Module:
    hidden = int(config.get("hidden", 128))
    if config.get("model", "mlp") == "cnn":
        return nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 4 * 4, hidden), nn.ReLU(), nn.Linear(hidden, 10),
        )
    return nn.Sequential(
        nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(float(config.get("dropout", 0.1))),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10),
    )


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y).item()
        accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    model.train()
    return loss, accuracy


def train_loop(config: dict) -> None:
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    (x_train, y_train), (x_test, y_test) = load_split()
    x_train, y_train = shard(x_train, rank, world), shard(y_train, rank, world)
    x_test_t = torch.from_numpy(x_test).to(device)
    y_test_t = torch.from_numpy(y_test).to(device)

    torch.manual_seed(int(config.get("seed", 0)))
    model = ray.train.torch.prepare_model(build_model(config))
    optimizer = torch.optim.Adam(model.parameters(), lr=float(config.get("lr", 3e-3)))
    start_epoch = restore(model, optimizer)
    batch_size = int(config.get("batch_size", 64))
    rng = np.random.default_rng(rank)

    for epoch in range(start_epoch, int(config.get("epochs", 10))):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            xb = torch.from_numpy(x_train[index]).to(device)
            yb = torch.from_numpy(y_train[index]).to(device)
            with orch_loop.autocast(device):
                loss = nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        test_loss, accuracy = evaluate(model, x_test_t, y_test_t)
        metrics = {"epoch": epoch, "train_loss": loss.item(), "test_loss": test_loss, "test_accuracy": accuracy}
        save_and_report(model, optimizer, epoch, metrics, rank)


def restore(model: nn.Module, optimizer) -> int:
    """Resume from the run's last checkpoint; returns the epoch to start at."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        state = torch.load(os.path.join(folder, "model.pt"), map_location="cpu")
    getattr(model, "module", model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["epoch"] + 1


def save_and_report(model, optimizer, epoch: int, metrics: dict, rank: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:  # the weights are identical on every worker after DDP
            state = {"model": getattr(model, "module", model).state_dict(),
                     "optimizer": optimizer.state_dict(), "epoch": epoch}
            torch.save(state, os.path.join(folder, "model.pt"))
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint)
