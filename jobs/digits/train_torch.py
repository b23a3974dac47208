"""Digits with PyTorch under Ray Train: an MLP or a small CNN (config["model"]).

A plain Ray Train loop: each worker trains on its shard, every epoch reports
metrics and a checkpoint, and a restarted run resumes from the last one.
Fine-tuning: with ``init_from`` it starts from those weights; config
``classes`` limits the digits, ``new_head`` re-initialises the output layer and
``freeze_epochs`` keeps the rest fixed while the new head warms up.
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
    (x_train, y_train), (x_test, y_test) = load_split(classes=config.get("classes"))
    x_train, y_train = shard(x_train, rank, world), shard(y_train, rank, world)
    x_test_t = torch.from_numpy(x_test).to(device)
    y_test_t = torch.from_numpy(y_test).to(device)

    torch.manual_seed(int(config.get("seed", 0)))
    model = ray.train.torch.prepare_model(build_model(config))
    lr = float(config.get("lr", 3e-3))
    *body, head_weight, head_bias = model.parameters()
    optimizer = torch.optim.Adam([{"params": body}, {"params": [head_weight, head_bias]}], lr=lr)
    start_epoch = restore(model, optimizer, bool(config.get("new_head")))
    freeze_epochs = int(config.get("freeze_epochs", 0))
    scaler = orch_loop.grad_scaler(device)  # loss scaling when orch chose fp16
    batch_size = int(config.get("batch_size", 64))
    rng = np.random.default_rng(rank)

    for epoch in range(start_epoch, int(config.get("epochs", 10))):
        # Fine-tuning warm-up: a new head learns on the kept features before they change too.
        optimizer.param_groups[0]["lr"] = 0.0 if epoch < freeze_epochs else lr
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            xb = torch.from_numpy(x_train[index]).to(device)
            yb = torch.from_numpy(y_train[index]).to(device)
            with orch_loop.autocast(device):
                loss = nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        test_loss, accuracy = evaluate(model, x_test_t, y_test_t)
        metrics = {"epoch": epoch, "train_loss": loss.item(), "test_loss": test_loss, "test_accuracy": accuracy}
        save_and_report(model, optimizer, epoch, metrics, rank)


def restore(model: nn.Module, optimizer, new_head: bool = False) -> int:
    """Resume from the run's last checkpoint, or start from init_from's weights; the epoch to start at."""
    checkpoint, resumed = orch_loop.starting_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        state = torch.load(os.path.join(folder, "model.pt"), map_location="cpu")
    body = getattr(model, "module", model)
    if resumed:
        body.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        return state["epoch"] + 1
    weights = state["model"]
    if new_head:  # keep the features, learn a fresh classifier for the new classes
        head = [name for name, _ in body.named_parameters()][-2:]
        weights = {k: v for k, v in weights.items() if k not in head}
    body.load_state_dict(weights, strict=False)
    return 0


class Predictor:
    """Batch inference for `predict:` jobs (Ray Data's map_batches): the checkpoint's model
    on the device orch's plan chose, one batch of ``x`` at a time."""

    def __init__(self, checkpoint: str, config: dict):
        self.device = orch_loop.device()
        state = torch.load(os.path.join(checkpoint, "model.pt"), map_location="cpu")
        self.model = build_model(config)
        self.model.load_state_dict(state["model"])
        self.model.to(self.device).eval()

    def __call__(self, batch: dict) -> dict:
        with torch.no_grad(), orch_loop.autocast(self.device):
            logits = self.model(torch.as_tensor(batch["x"], device=self.device))
        return {**batch, "prediction": logits.argmax(dim=1).cpu().numpy()}


def save_and_report(model, optimizer, epoch: int, metrics: dict, rank: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:  # the weights are identical on every worker after DDP
            state = {"model": getattr(model, "module", model).state_dict(),
                     "optimizer": optimizer.state_dict(), "epoch": epoch}
            torch.save(state, os.path.join(folder, "model.pt"))
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=checkpoint)
