"""The seeds' Keras MLP (Dense 512-512-10 with dropout), on digits, under Ray Train.

TensorflowTrainer sets TF_CONFIG for MultiWorkerMirroredStrategy; tf-keras is
used because Keras 3 does not support that strategy (orch sets
TF_USE_LEGACY_KERAS=1 in the workers' environment).
"""

from __future__ import annotations

import os
import tempfile

import ray.train

from data import load_split
from orchestrator import loop as orch_loop


def build_model(config: dict):
    import tensorflow as tf

    hidden = int(config.get("hidden", 512))
    dropout = float(config.get("dropout", 0.2))
    model = tf.keras.Sequential([
        tf.keras.layers.Input(shape=(64,)),
        tf.keras.layers.Dense(hidden, activation="relu"),
        tf.keras.layers.Dropout(dropout),
        tf.keras.layers.Dense(hidden, activation="relu"),
        tf.keras.layers.Dropout(dropout),
        tf.keras.layers.Dense(10, activation="softmax", dtype="float32"),  # stable softmax under mixed precision
    ])
    model.compile(
        optimizer=tf.keras.optimizers.RMSprop(learning_rate=float(config.get("lr", 1e-3))),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def train_loop(config: dict) -> None:
    import tensorflow as tf

    orch_loop.keras_policy()  # orch's precision decision, before any layer is built
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = build_model(config)
    (x_train, y_train), (x_test, y_test) = load_split()
    batch = int(config.get("batch_size", 64)) * strategy.num_replicas_in_sync
    train = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(2048, seed=0).batch(batch)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train = train.with_options(options)
    rank = ray.train.get_context().get_world_rank()

    for epoch in range(int(config.get("epochs", 10))):
        history = model.fit(train, epochs=1, verbose=0)
        test_loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
        metrics = {"epoch": epoch, "train_loss": float(history.history["loss"][-1]),
                   "test_loss": float(test_loss), "test_accuracy": float(accuracy)}
        with tempfile.TemporaryDirectory() as folder:
            # Every worker saves (the strategy may need all of them), rank 0's is kept.
            model.save_weights(os.path.join(folder, "model.weights.h5"))
            checkpoint = ray.train.Checkpoint.from_directory(folder) if rank == 0 else None
            ray.train.report(metrics, checkpoint=checkpoint)
