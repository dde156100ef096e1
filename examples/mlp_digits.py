"""Train a small Flax NNX MLP on scikit-learn's digits with ``adamjax.adamw``.

The digits data set (1,797 grayscale 8x8 images, 10 classes) ships with
scikit-learn, so this example needs no download. Run it from the repository root::

    python examples/mlp_digits.py

Every hyperparameter has a command-line flag; see ``python examples/mlp_digits.py --help``.
With the defaults it reaches roughly 97-98% test accuracy in a few seconds on a laptop CPU.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import adamjax

# The split is pinned independently of --seed so that runs with different seeds are
# scored on the same held-out images and their accuracies are directly comparable.
SPLIT_SEED = 0
NUM_CLASSES = 10


def load_data(
    test_size: float = 0.2, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Loads the digits data set and splits it into train and test sets.

    Args:
        test_size: Fraction of the samples held out for testing.
        seed: Seed of the train/test split.

    Returns:
        ``(x_train, x_test, y_train, y_test)``: features are ``float32`` of shape ``(n, 64)``
        scaled to [0, 1]; labels are ``int32`` in 0..9.
    """
    digits = load_digits()
    # Raw pixels are intensities 0..16; unit range keeps the first layer's
    # pre-activations at a scale that the default initializers expect.
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    # Stratify so that every class has the same share in both splits; with only
    # ~180 images per class an unlucky split would skew the test accuracy.
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    return x_train, x_test, y_train, y_test


class MLP(nnx.Module):
    """A multilayer perceptron with ReLU activations.

    Args:
        in_features: Size of the input vectors.
        hidden: Width of the two hidden layers.
        out_features: Number of output logits.
        rngs: Random number generators for parameter initialization.
    """

    def __init__(self, in_features: int, hidden: int, out_features: int, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(in_features, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, out_features, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps a batch of inputs of shape ``(batch, in_features)`` to logits."""
        x = nnx.relu(self.fc1(x))
        x = nnx.relu(self.fc2(x))
        return self.out(x)


def loss_fn(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
    """Returns the mean softmax cross-entropy of ``model`` on a batch."""
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    """Applies one optimizer update to ``model`` in place and returns the batch loss."""
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def evaluate(model: MLP, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns the mean loss and the accuracy of ``model`` on ``(x, y)``."""
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == y)
    return loss, accuracy


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the command-line flags; ``argv=None`` reads ``sys.argv``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="passes over the training set")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per update")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="AdamW step size")
    parser.add_argument(
        "--weight-decay", type=float, default=1e-4, help="decoupled weight decay coefficient"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for parameter init and batch shuffling"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Trains the MLP and reports its test accuracy.

    Args:
        argv: Command-line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        Final metrics: ``test_accuracy``, ``test_loss``, ``initial_loss`` (mean training loss
        of the first epoch), ``final_loss`` (mean training loss of the last epoch) and
        ``seconds`` (wall time of data loading, compilation and training).
    """
    args = parse_args(argv)
    print(f"JAX backend: {jax.default_backend()}")
    start = time.perf_counter()

    x_train, x_test, y_train, y_test = load_data()
    model = MLP(x_train.shape[1], 128, NUM_CLASSES, rngs=nnx.Rngs(args.seed))
    tx = adamjax.adamw(learning_rate=args.learning_rate, weight_decay=args.weight_decay)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    rng = np.random.default_rng(args.seed)
    # Dropping the ragged last batch keeps one input shape, so train_step compiles once;
    # the reshuffle each epoch means every example is still seen regularly.
    steps_per_epoch = len(x_train) // args.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"--batch-size must be at most {len(x_train)}")

    epoch_losses: list[float] = []
    progress = tqdm(range(args.epochs), desc="training", unit="epoch")
    for _ in progress:
        order = rng.permutation(len(x_train))
        batch_losses = []
        for step in range(steps_per_epoch):
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            batch_losses.append(train_step(model, optimizer, x_train[idx], y_train[idx]))
        # Averaging on device and reading back once per epoch avoids a host sync per step.
        epoch_losses.append(float(jnp.stack(batch_losses).mean()))
        progress.set_postfix(loss=f"{epoch_losses[-1]:.4f}")

    test_loss, test_accuracy = evaluate(model, x_test, y_test)
    seconds = time.perf_counter() - start
    metrics = {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "initial_loss": epoch_losses[0] if epoch_losses else float("nan"),
        "final_loss": epoch_losses[-1] if epoch_losses else float("nan"),
        "seconds": seconds,
    }
    print(f"test accuracy: {metrics['test_accuracy']:.4f}  (test loss {metrics['test_loss']:.4f})")
    print(f"wall time: {seconds:.1f} s")
    return metrics


if __name__ == "__main__":
    main()
