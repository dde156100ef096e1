"""Writes the notebooks in this folder from the cell sources below.

The ``.ipynb`` files are generated, so that their code can be reviewed here as plain Python
strings and every notebook shares the same install, backend and parameter conventions. After
editing a cell, regenerate them from the repository root::

    python examples/notebooks/build_notebooks.py          # rewrite the .ipynb files
    python examples/notebooks/build_notebooks.py --check  # exit 1 if one is out of date

``tests/test_notebooks.py`` checks that the committed notebooks equal this script's output, and
runs them with smaller sizes injected after the cell tagged ``parameters`` (papermill style).
Every notebook ends by printing one line ``RESULT {...}`` (JSON) with its measured outcomes.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
REPOSITORY = "adamjax/adamjax"
BRANCH = "main"


def colab_badge(name: str) -> str:
    """The "Open in Colab" badge of ``examples/notebooks/<name>.ipynb`` on the main branch."""
    url = (
        f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}"
        f"/examples/notebooks/{name}.ipynb"
    )
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def _clean(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def md(text: str) -> tuple[str, str]:
    return ("markdown", _clean(text))


def code(text: str) -> tuple[str, str]:
    return ("code", _clean(text))


def parameters(text: str) -> tuple[str, str]:
    """The code cell holding every size of the notebook, tagged ``parameters``."""
    return ("parameters", _clean(text))


# Plain Python rather than `!pip`, so that the cell also runs (as a no-op) outside IPython and
# is linted like the rest. Colab already ships jax, optax and flax.
INSTALL = code(
    f"""
    import subprocess
    import sys

    if "google.colab" in sys.modules:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "adamjax[examples] @ git+https://github.com/{REPOSITORY}",
            ],
            check=True,
        )
    else:
        print("Not running on Colab: using the installed adamjax.")
    """
)

PARAMETERS_NOTE = md(
    """
    ## Parameters

    Every size in this notebook is set in the next cell; the values there are the full run.
    The cell is tagged `parameters`, so papermill (or the repository's tests, which do the same)
    can override them with a cell inserted right after it.
    """
)

BACKEND = code(
    """
    backend = jax.default_backend()
    accelerator = {"tpu": "TPU", "gpu": "GPU", "cpu": "CPU"}.get(backend, backend.upper())
    print(f"JAX {jax.__version__}, optax {optax.__version__}, adamjax {adamjax.__version__}")
    print(f"backend: {accelerator}; {jax.device_count()} device(s): {jax.devices()}")
    results = {"backend": backend, "device_count": jax.device_count()}
    """
)

RESULT = code(
    """
    # One machine-readable line with this run's outcomes (the tests parse it).
    print("RESULT " + json.dumps(results, sort_keys=True))
    """
)

DIGITS_DATA = code(
    """
    digits = load_digits()
    # Raw pixels are 0..16; the unit range suits the default initializers.
    x_all = (digits.data / 16.0).astype(np.float32)
    y_all = digits.target.astype(np.int32)
    # A fixed, stratified split, so runs with different seeds are scored on the same images.
    x_train, x_test, y_train, y_test = train_test_split(
        x_all, y_all, test_size=0.2, random_state=0, stratify=y_all
    )
    print(f"train {x_train.shape}, test {x_test.shape}, classes {np.unique(y_all).size}")
    """
)

MLP = code(
    """
    class MLP(nnx.Module):
        def __init__(self, in_features, hidden, out_features, *, rngs):
            self.fc1 = nnx.Linear(in_features, hidden, rngs=rngs)
            self.fc2 = nnx.Linear(hidden, hidden, rngs=rngs)
            self.out = nnx.Linear(hidden, out_features, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.fc1(x))
            x = nnx.relu(self.fc2(x))
            return self.out(x)


    def loss_fn(model, x, y):
        logits = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


    @nnx.jit
    def train_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss


    @nnx.jit
    def accuracy(model, x, y):
        return jnp.mean(jnp.argmax(model(x), axis=-1) == y)


    def batches(rng, n, batch_size):
        \"\"\"Shuffled index batches of one epoch; the ragged last batch is dropped, so the
        train step sees one shape and compiles once.\"\"\"
        order = rng.permutation(n)
        steps = n // batch_size
        return np.split(order[: steps * batch_size], steps)
    """
)


QUICKSTART = [
    md(
        f"""
        # adamjax quickstart

        adamjax provides Adam and its relatives (AdamW, AMSGrad, NAdam, Adamax, RAdam,
        AdaBound, Adafactor, SWATS) for JAX as pure optax gradient transformations. This
        notebook uses `adamjax.adamw` inside an `optax.chain` on a least-squares problem, shows
        how the places where torch, Keras and optax disagree become options (and that
        `adamjax.adam` reproduces `optax.adam`), trains a Flax nnx MLP on scikit-learn's digits,
        and watches the effective learning rate from inside the jitted step with
        `adamjax.with_diagnostics`. It runs unchanged on CPU, GPU and TPU.

        {colab_badge("quickstart")}
        """
    ),
    INSTALL,
    PARAMETERS_NOTE,
    parameters(
        """
        lsq_steps = 300  # steps on the least-squares problem
        compare_steps = 200  # steps of each run in the conventions comparison
        epochs = 30  # passes over the digits training set
        batch_size = 64  # examples per update
        hidden = 128  # width of the MLP's two hidden layers
        diag_epochs = 10  # epochs of the run with diagnostics
        seed = 0  # parameter init, data and shuffling
        """
    ),
    code(
        """
        import json

        import jax
        import jax.numpy as jnp
        import matplotlib.pyplot as plt
        import numpy as np
        import optax
        from flax import nnx
        from IPython.display import display
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        import adamjax
        """
    ),
    BACKEND,
    md(
        r"""
        ## 1. An optax transformation

        Every adamjax optimizer returns an `optax.GradientTransformationExtraArgs`, so it
        chains with the rest of optax: here behind global-norm clipping, with an optax
        schedule as the learning rate, minimising $\frac{1}{2n}\lVert Ax - b\rVert^2$ with an
        ordinary `init`/`update`/`apply_updates` loop.
        """
    ),
    code(
        """
        key_a, key_x = jax.random.split(jax.random.key(seed))
        A = jax.random.normal(key_a, (128, 16))
        x_true = jax.random.normal(key_x, (16,))
        b = A @ x_true


        def lsq_loss(params):
            return 0.5 * jnp.mean((A @ params["x"] - b) ** 2)


        tx = optax.chain(
            optax.clip_by_global_norm(1.0),
            adamjax.adamw(optax.cosine_decay_schedule(0.1, lsq_steps), weight_decay=1e-4),
        )
        params = {"x": jnp.zeros(16)}
        opt_state = tx.init(params)


        @jax.jit
        def lsq_step(params, opt_state):
            loss, grads = jax.value_and_grad(lsq_loss)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss


        for step in range(lsq_steps):
            params, opt_state, loss = lsq_step(params, opt_state)
            if step % max(1, lsq_steps // 5) == 0:
                print(f"step {step:4d}  loss {float(loss):.3e}")
        final_loss = float(lsq_loss(params))
        rel_error = float(jnp.linalg.norm(params["x"] - x_true) / jnp.linalg.norm(x_true))
        print(f"final loss {final_loss:.3e}, relative error of x {rel_error:.2e}")
        results["lsq_final_loss"] = final_loss
        results["lsq_relative_error"] = rel_error
        """
    ),
    md(
        r"""
        ## 2. Conventions are options

        Implementations of Adam agree on the paper's equations but not on a few details;
        adamjax makes each one an argument (the README has the full table):

        * `adamjax.adam(lr)` is `optax.adam(lr)` and `torch.optim.Adam`: it divides by
          $\sqrt{\hat v_t} + \varepsilon$ (`eps_mode="paper"`).
        * AMSGrad: torch keeps the running maximum of the raw second moment $v_t$ and then
          bias-corrects it (`max_of="raw"`, the default); optax takes the maximum of the
          bias-corrected $\hat v_t$ (`max_of="corrected"`).
        * Keras puts $\hat\varepsilon$ inside
          $\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,\frac{m_t}{\sqrt{v_t}+\hat\varepsilon}$
          (`eps_mode="hat"`), i.e. an effective $\varepsilon = \hat\varepsilon/\sqrt{1-\beta_2^t}$,
          larger in the first steps.

        Each run below takes `compare_steps` steps on the least-squares problem, compiled as one
        `fori_loop`, and the table shows the largest difference between the final parameters
        of two runs. "raw" and "corrected" are the two values of `max_of`; "eps paper" and
        "eps hat" the two values of `eps_mode`, with `eps=1e-3` so that the difference shows
        (with Keras's default 1e-7 it is tiny).
        """
    ),
    code(
        """
        def run(tx, steps=compare_steps):
            \"\"\"Minimises lsq_loss with `tx` from zeros; returns the final parameters.\"\"\"

            def body(_, carry):
                params, state = carry
                updates, state = tx.update(jax.grad(lsq_loss)(params), state, params)
                return optax.apply_updates(params, updates), state

            params = {"x": jnp.zeros(16)}
            return jax.jit(lambda p: jax.lax.fori_loop(0, steps, body, (p, tx.init(p)))[0])(params)


        lr = 1e-2
        variants = {
            "adamjax.adam": adamjax.adam(lr),
            "optax.adam": optax.adam(lr),
            "adamjax.adam, nesterov": adamjax.adam(lr, nesterov=True),
            "optax.nadam": optax.nadam(lr),
            "adamjax.amsgrad, raw": adamjax.amsgrad(lr, max_of="raw"),
            "adamjax.amsgrad, corrected": adamjax.amsgrad(lr, max_of="corrected"),
            "optax.amsgrad": optax.amsgrad(lr),
            "adamjax.adam, eps paper": adamjax.adam(lr, eps=1e-3),
            "adamjax.adam, eps hat": adamjax.adam(lr, eps=1e-3, eps_mode="hat"),
        }
        finals = {label: run(tx)["x"] for label, tx in variants.items()}
        pairs = {
            "adam_vs_optax_adam": ("adamjax.adam", "optax.adam"),
            "nesterov_vs_optax_nadam": ("adamjax.adam, nesterov", "optax.nadam"),
            "amsgrad_corrected_vs_optax": ("adamjax.amsgrad, corrected", "optax.amsgrad"),
            "amsgrad_raw_vs_optax": ("adamjax.amsgrad, raw", "optax.amsgrad"),
            "eps_hat_vs_paper": ("adamjax.adam, eps hat", "adamjax.adam, eps paper"),
        }
        for key, (a, b_) in pairs.items():
            diff = float(jnp.max(jnp.abs(finals[a] - finals[b_])))
            results[f"max_abs_diff/{key}"] = diff
            print(f"{a:>26} vs {b_:<24} max |diff| = {diff:.3g}")
        """
    ),
    md(
        """
        The first three pairs are the same algorithm (differences at float32 rounding level or
        exactly zero); the last two are the conventions that differ, visibly.

        ## 3. A Flax nnx train step on digits

        The digits data set (1,797 8×8 images, 10 classes) ships with scikit-learn, so nothing
        is downloaded. The train step is the usual nnx one:
        `nnx.Optimizer(model, tx, wrt=nnx.Param)` and `optimizer.update(model, grads)`.
        """
    ),
    DIGITS_DATA,
    MLP,
    code(
        """
        model = MLP(x_train.shape[1], hidden, 10, rngs=nnx.Rngs(seed))
        optimizer = nnx.Optimizer(model, adamjax.adamw(2e-3, weight_decay=1e-4), wrt=nnx.Param)
        rng = np.random.default_rng(seed)
        epoch_losses = []
        for epoch in range(epochs):
            losses = [
                train_step(model, optimizer, x_train[idx], y_train[idx])
                for idx in batches(rng, len(x_train), batch_size)
            ]
            # One host sync per epoch rather than per step.
            epoch_losses.append(float(jnp.mean(jnp.stack(losses))))
            if epoch % max(1, epochs // 6) == 0 or epoch == epochs - 1:
                print(f"epoch {epoch + 1:3d}  train loss {epoch_losses[-1]:.4f}")
        test_accuracy = float(accuracy(model, x_test, y_test))
        print(f"test accuracy: {test_accuracy:.4f}")
        results["test_accuracy"] = test_accuracy
        results["train_loss_first_epoch"] = epoch_losses[0]
        results["train_loss_last_epoch"] = epoch_losses[-1]

        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(np.arange(1, epochs + 1), epoch_losses, marker=".")
        ax.set(xlabel="epoch", ylabel="mean train loss", yscale="log", title="adamjax.adamw")
        plt.show()
        """
    ),
    md(
        r"""
        ## 4. Watching Adam from inside the jitted step

        `adamjax.with_diagnostics(tx)` keeps the latest step's metrics in the optimizer state;
        `adamjax.diagnostics(optimizer.opt_state)` reads them inside the jitted step, so they
        come back with the loss and no host callback runs. `adamjax.History` collects them on
        the host. The effective learning rate of an entry is
        $\alpha_t / (\sqrt{\hat v_t} + \varepsilon)$: the step Adam would take for a unit
        first moment. Its maximum sits near $\alpha/\varepsilon$ for the weights of pixels that
        are zero in every image (their gradient, hence $\hat v$, is always 0).
        """
    ),
    code(
        """
        @nnx.jit
        def train_step_with_metrics(model, optimizer, x, y):
            loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
            optimizer.update(model, grads)
            return loss, adamjax.diagnostics(optimizer.opt_state)


        model = MLP(x_train.shape[1], hidden, 10, rngs=nnx.Rngs(seed))
        tx = adamjax.with_diagnostics(adamjax.adamw(2e-3, weight_decay=1e-4))
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        history = adamjax.History()
        rng = np.random.default_rng(seed)
        for _ in range(diag_epochs):
            for idx in batches(rng, len(x_train), batch_size):
                x, y = x_train[idx], y_train[idx]
                loss, metrics = train_step_with_metrics(model, optimizer, x, y)
                history.append(metrics, loss=loss)

        keys = ["loss", "grad_norm", "effective_lr/mean", "effective_lr/min", "effective_lr/max"]
        print(history.summary(keys))
        record = history.to_dict()
        results["diagnostics_steps"] = len(history)
        results["effective_lr_mean_last"] = float(record["effective_lr/mean"][-1])
        results["effective_lr_min_last"] = float(record["effective_lr/min"][-1])
        display(history.plot(title="adamjax.adamw on digits: diagnostics"))
        """
    ),
    RESULT,
]


FLAX_MLP_RNN = [
    md(
        f"""
        # Flax nnx MLP and LSTM with adamjax

        Two Flax nnx models trained with adamjax optimizers: an MLP classifying scikit-learn's
        digits, with the optimizer picked by name from a small dict of adamjax variants and a
        loss-curve comparison of Adam, AMSGrad and NAdam from the same initialisation and batch
        order; and an LSTM (`nnx.RNN` over an `nnx.LSTMCell`) forecasting a noisy sum of sines
        one step ahead, scored against the naive forecast that repeats the last value. It runs
        unchanged on CPU, GPU and TPU.

        {colab_badge("flax_mlp_rnn")}
        """
    ),
    INSTALL,
    PARAMETERS_NOTE,
    parameters(
        """
        # MLP on digits
        optimizer_name = "adamw"  # a key of OPTIMIZERS below
        learning_rate = 2e-3
        epochs = 30  # passes over the training set with optimizer_name
        batch_size = 64
        hidden = 128  # width of the MLP's two hidden layers
        compare_epochs = 15  # epochs of each run in the Adam / AMSGrad / NAdam comparison
        # LSTM forecaster
        series_length = 2000  # points of the noisy multi-sine series
        noise = 0.1  # standard deviation of the noise added to the series
        window = 32  # past values the LSTM reads to predict the next one
        lstm_hidden = 64
        lstm_steps = 2000  # optimizer steps
        lstm_batch_size = 64
        seed = 0  # parameter init, data and shuffling
        """
    ),
    code(
        """
        import json

        import jax
        import jax.numpy as jnp
        import matplotlib.pyplot as plt
        import numpy as np
        import optax
        from flax import nnx
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        import adamjax
        """
    ),
    BACKEND,
    md(
        """
        ## 1. An MLP on digits, with a choice of optimizer

        Each entry of `OPTIMIZERS` maps a learning rate to an adamjax transformation; change
        `optimizer_name` in the parameter cell to train with another one.
        """
    ),
    DIGITS_DATA,
    MLP,
    code(
        """
        OPTIMIZERS = {
            "adam": lambda lr: adamjax.adam(lr),
            "adamw": lambda lr: adamjax.adamw(lr, weight_decay=1e-4),
            "amsgrad": lambda lr: adamjax.amsgrad(lr),  # torch's convention (max of raw v)
            "nadam": lambda lr: adamjax.nadam(lr),  # torch's NAdam (momentum schedule)
            "radam": lambda lr: adamjax.radam(lr),
            "adamax": lambda lr: adamjax.adamax(lr),
        }


        def train_mlp(name, epochs):
            \"\"\"Trains a new MLP with OPTIMIZERS[name]; returns it and the step losses.\"\"\"
            model = MLP(x_train.shape[1], hidden, 10, rngs=nnx.Rngs(seed))
            optimizer = nnx.Optimizer(model, OPTIMIZERS[name](learning_rate), wrt=nnx.Param)
            rng = np.random.default_rng(seed)  # the same batch order for every optimizer
            losses = []
            for _ in range(epochs):
                for idx in batches(rng, len(x_train), batch_size):
                    losses.append(train_step(model, optimizer, x_train[idx], y_train[idx]))
            return model, np.asarray(jnp.stack(losses))


        model, losses = train_mlp(optimizer_name, epochs)
        steps_per_epoch = len(x_train) // batch_size
        mlp_accuracy = float(accuracy(model, x_test, y_test))
        print(f"{optimizer_name}: {epochs} epochs, {losses.size} steps")
        print(
            f"train loss: first epoch {losses[:steps_per_epoch].mean():.4f}, "
            f"last epoch {losses[-steps_per_epoch:].mean():.4f}"
        )
        print(f"test accuracy: {mlp_accuracy:.4f}")
        results["mlp"] = {"optimizer": optimizer_name, "test_accuracy": mlp_accuracy}
        """
    ),
    md(
        """
        ### Adam vs AMSGrad vs NAdam

        The same initialisation and the same batches for each, so the curves differ only by the
        optimizer. The plot shows the training loss averaged over each epoch's steps.
        """
    ),
    code(
        """
        comparison = {}
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for name in ("adam", "amsgrad", "nadam"):
            model, losses = train_mlp(name, compare_epochs)
            per_epoch = losses.reshape(compare_epochs, -1).mean(axis=1)
            comparison[name] = {
                "final_train_loss": float(per_epoch[-1]),
                "test_accuracy": float(accuracy(model, x_test, y_test)),
            }
            ax.plot(np.arange(1, compare_epochs + 1), per_epoch, marker=".", label=name)
            print(
                f"{name:>8}: last-epoch train loss {per_epoch[-1]:.4f}, "
                f"test accuracy {comparison[name]['test_accuracy']:.4f}"
            )
        ax.set(xlabel="epoch", ylabel="mean train loss", yscale="log", title="MLP on digits")
        ax.legend()
        plt.show()
        results["comparison"] = comparison
        """
    ),
    md(
        """
        On a problem this small the three curves stay close; the printed last-epoch losses and
        test accuracies show how far apart they end.
        """
    ),
    md(
        r"""
        ## 2. An LSTM forecasting a noisy multi-sine series

        The series is $\sin(2\pi t/50) + 0.5\sin(2\pi t/23 + 1) + 0.3\sin(2\pi t/11 + 2)$ plus
        Gaussian noise. Each example is a window of `window` past values and the target is the
        next value. The first 80% of the series trains, the rest tests (with a gap of one
        window, so no test target appears in a training window). The model predicts the change
        from the last value: at initialisation it is close to the naive forecast, which it has
        to beat. The noise variance is the floor: no forecast can predict the noise.
        """
    ),
    code(
        """
        rng = np.random.default_rng(seed)
        t = np.arange(series_length)
        clean = (
            np.sin(2 * np.pi * t / 50)
            + 0.5 * np.sin(2 * np.pi * t / 23 + 1)
            + 0.3 * np.sin(2 * np.pi * t / 11 + 2)
        )
        series = (clean + noise * rng.standard_normal(series_length)).astype(np.float32)

        starts = np.arange(series_length - window)
        windows = series[starts[:, None] + np.arange(window)][..., None]  # (n, window, 1)
        targets = series[starts + window]
        split = int(0.8 * len(starts))
        x_tr, y_tr = windows[:split], targets[:split]
        x_te, y_te = windows[split + window :], targets[split + window :]
        print(f"train windows {x_tr.shape}, test windows {x_te.shape}")


        class Forecaster(nnx.Module):
            def __init__(self, hidden, *, rngs):
                self.rnn = nnx.RNN(nnx.LSTMCell(1, hidden, rngs=rngs))
                self.head = nnx.Linear(hidden, 1, rngs=rngs)

            def __call__(self, x):  # x: (batch, window, 1) -> (batch,)
                h = self.rnn(x)  # (batch, window, hidden)
                return x[:, -1, 0] + self.head(h[:, -1])[:, 0]


        def mse_loss(model, x, y):
            return jnp.mean((model(x) - y) ** 2)


        @nnx.jit
        def lstm_step(model, optimizer, x, y):
            loss, grads = nnx.value_and_grad(mse_loss)(model, x, y)
            optimizer.update(model, grads)
            return loss


        forecaster = Forecaster(lstm_hidden, rngs=nnx.Rngs(seed))
        tx = optax.chain(
            optax.clip_by_global_norm(1.0),
            adamjax.adamw(optax.cosine_decay_schedule(3e-3, lstm_steps), weight_decay=1e-4),
        )
        lstm_optimizer = nnx.Optimizer(forecaster, tx, wrt=nnx.Param)
        lstm_losses = []
        for _ in range(lstm_steps):
            idx = rng.integers(0, len(x_tr), lstm_batch_size)
            lstm_losses.append(lstm_step(forecaster, lstm_optimizer, x_tr[idx], y_tr[idx]))
        lstm_losses = np.asarray(jnp.stack(lstm_losses))

        prediction = np.asarray(nnx.jit(lambda m, x: m(x))(forecaster, x_te))
        lstm_mse = float(np.mean((prediction - y_te) ** 2))
        naive_mse = float(np.mean((x_te[:, -1, 0] - y_te) ** 2))
        print(
            f"train loss: first 50 steps {lstm_losses[:50].mean():.4f}, "
            f"last 50 steps {lstm_losses[-50:].mean():.4f}"
        )
        print(f"test MSE: LSTM {lstm_mse:.4f}, naive {naive_mse:.4f}, noise floor {noise**2:.4f}")
        results["lstm"] = {"test_mse": lstm_mse, "naive_mse": naive_mse, "noise_var": noise**2}
        """
    ),
    code(
        """
        shown = min(200, len(y_te))
        time_axis = starts[split + window :][:shown] + window
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ax.plot(time_axis, y_te[:shown], ".", ms=3, color="gray", label="noisy series")
        ax.plot(time_axis, clean[time_axis], lw=1, color="black", label="noise-free signal")
        ax.plot(time_axis, prediction[:shown], lw=1.5, label=f"LSTM (MSE {lstm_mse:.4f})")
        naive_label = f"last value (MSE {naive_mse:.4f})"
        ax.plot(time_axis, x_te[:shown, -1, 0], lw=1, alpha=0.6, label=naive_label)
        ax.set(xlabel="t", title="one-step-ahead forecasts on the test range")
        ax.legend(loc="upper right", fontsize="small", ncols=2)
        plt.show()
        """
    ),
    RESULT,
]


COLAB_GPU_TPU = [
    md(
        f"""
        # adamjax on GPU and TPU

        The same code on CPU, GPU or TPU: this notebook reports the accelerator, trains a small
        CNN on scikit-learn's digits with `adamjax.adamw` under `jit`, with the batch split over
        all devices through a one-axis `jax.sharding.Mesh` (one device is the degenerate case of
        the same code), and times the jitted optimizer step of `adamjax.adam` against
        `optax.adam` on a large parameter vector. In Colab, pick a GPU or TPU under
        *Runtime → Change runtime type*.

        {colab_badge("colab_gpu_tpu")}
        """
    ),
    INSTALL,
    PARAMETERS_NOTE,
    parameters(
        """
        # CNN on digits
        epochs = 40
        batch_size = 128  # global batch; rounded down to a multiple of the device count
        channels = 32  # the first conv's channels (the second has twice as many)
        hidden = 256  # width of the dense layer
        learning_rate = 2e-3
        # Timing of the optimizer step
        timing_size = 16_777_216  # entries of the parameter vector (2**24)
        timing_reps = 50  # timed steps per optimizer; the median is reported
        seed = 0  # parameter init and shuffling
        """
    ),
    code(
        """
        import json
        import time

        import jax
        import jax.numpy as jnp
        import matplotlib.pyplot as plt
        import numpy as np
        import optax
        from flax import nnx
        from jax.sharding import Mesh, NamedSharding
        from jax.sharding import PartitionSpec as P
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        import adamjax
        """
    ),
    BACKEND,
    code(
        """
        device = jax.devices()[0]
        print(f"device kind: {device.device_kind}, platform: {device.platform}")
        if accelerator == "CPU":
            print("No accelerator found: everything below runs on the CPU, only slower.")
        """
    ),
    md(
        """
        ## 1. Data-parallel training of a small CNN

        A one-axis mesh over `jax.devices()` shards each batch along its first axis (`P("batch")`)
        and replicates the model and optimizer state (`P()`); `jit` then runs the step on every
        device and inserts the gradient all-reduce. With a single device the mesh has one entry
        and this is plain single-device training: the code does not change.
        """
    ),
    code(
        """
        n_devices = jax.device_count()
        mesh = Mesh(np.array(jax.devices()), ("batch",))
        data_sharding = NamedSharding(mesh, P("batch"))
        replicated = NamedSharding(mesh, P())
        global_batch = max(n_devices, batch_size // n_devices * n_devices)
        if n_devices > 1:
            print(
                f"data parallel over {n_devices} devices: {global_batch // n_devices} "
                "examples per device per step"
            )
        else:
            print("one device: the mesh has a single entry, so this is single-device training")
        results["global_batch"] = global_batch
        """
    ),
    code(
        """
        digits = load_digits()
        x_all = (digits.data / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)  # NHWC images
        y_all = digits.target.astype(np.int32)
        x_train, x_test, y_train, y_test = train_test_split(
            x_all, y_all, test_size=0.2, random_state=0, stratify=y_all
        )


        class CNN(nnx.Module):
            def __init__(self, channels, hidden, *, rngs):
                self.conv1 = nnx.Conv(1, channels, (3, 3), rngs=rngs)
                self.conv2 = nnx.Conv(channels, 2 * channels, (3, 3), rngs=rngs)
                self.fc = nnx.Linear(4 * 4 * 2 * channels, hidden, rngs=rngs)
                self.out = nnx.Linear(hidden, 10, rngs=rngs)

            def __call__(self, x):  # (batch, 8, 8, 1) -> (batch, 10)
                x = nnx.relu(self.conv1(x))
                x = nnx.relu(self.conv2(x))
                x = nnx.avg_pool(x, (2, 2), strides=(2, 2))  # (batch, 4, 4, 2 * channels)
                x = nnx.relu(self.fc(x.reshape(x.shape[0], -1)))
                return self.out(x)


        def loss_fn(model, x, y):
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


        @nnx.jit
        def train_step(model, optimizer, x, y):
            loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
            optimizer.update(model, grads)
            return loss


        @nnx.jit
        def accuracy(model, x, y):
            return jnp.mean(jnp.argmax(model(x), axis=-1) == y)


        model = CNN(channels, hidden, rngs=nnx.Rngs(seed))
        tx = adamjax.adamw(learning_rate, weight_decay=1e-4)
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        # Replicate the parameters and the optimizer state on every device of the mesh.
        for node in (model, optimizer):
            nnx.update(node, jax.device_put(nnx.state(node), replicated))
        n_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
        print(f"CNN with {n_params:,} parameters")
        """
    ),
    code(
        """
        rng = np.random.default_rng(seed)
        steps_per_epoch = len(x_train) // global_batch
        epoch_losses, epoch_seconds = [], []
        for epoch in range(epochs):
            start = time.perf_counter()
            order = rng.permutation(len(x_train))
            losses = []
            for step in range(steps_per_epoch):
                idx = order[step * global_batch : (step + 1) * global_batch]
                x = jax.device_put(x_train[idx], data_sharding)
                y = jax.device_put(y_train[idx], data_sharding)
                losses.append(train_step(model, optimizer, x, y))
            epoch_losses.append(float(jnp.mean(jnp.stack(losses))))  # waits for the epoch
            epoch_seconds.append(time.perf_counter() - start)
            if epoch % max(1, epochs // 5) == 0 or epoch == epochs - 1:
                ms_epoch = epoch_seconds[-1] * 1e3
                print(f"epoch {epoch + 1:3d}  loss {epoch_losses[-1]:.4f}  {ms_epoch:7.1f} ms")
        print(f"each batch is sharded as {x.sharding.spec} over {n_devices} device(s)")
        test_accuracy = float(accuracy(model, x_test, y_test))
        # The first epoch includes compilation; later ones show the steady-state speed.
        steady = np.median(epoch_seconds[1:]) if epochs > 1 else epoch_seconds[0]
        print(
            f"test accuracy {test_accuracy:.4f}; first epoch (with compilation) "
            f"{epoch_seconds[0]:.2f} s, then {steady * 1e3:.1f} ms per epoch"
        )
        results["cnn"] = {
            "n_params": int(n_params),
            "test_accuracy": test_accuracy,
            "train_loss_first_epoch": epoch_losses[0],
            "train_loss_last_epoch": epoch_losses[-1],
        }
        """
    ),
    md(
        """
        ## 2. Timing the optimizer step: adamjax.adam vs optax.adam

        One jitted step (`update` and `apply_updates`) on a parameter vector of `timing_size`
        float32 entries, fed the same gradient. JAX dispatches asynchronously, so each timed step
        ends with `jax.block_until_ready`; the two optimizers alternate step by step, so drifts in
        clock speed or load hit both alike, and the medians are compared. Both start from the same
        state and take the same steps, so their final parameters must also agree.
        """
    ),
    code(
        """
        def make_step(tx):
            @jax.jit
            def step(params, state, grads):
                updates, state = tx.update(grads, state, params)
                return optax.apply_updates(params, updates), state

            return step


        key_p, key_g = jax.random.split(jax.random.key(seed))
        params0 = jax.random.normal(key_p, (timing_size,))
        grads = 1e-2 * jax.random.normal(key_g, (timing_size,))
        contenders = {"adamjax.adam": adamjax.adam(1e-3), "optax.adam": optax.adam(1e-3)}
        steps, carries = {}, {}
        for name, tx in contenders.items():
            steps[name] = make_step(tx)
            jax.block_until_ready(steps[name](params0, tx.init(params0), grads))  # compile
            carries[name] = (params0, tx.init(params0))

        seconds = {name: [] for name in contenders}
        for _ in range(timing_reps):
            for name in contenders:
                start = time.perf_counter()
                carries[name] = jax.block_until_ready(steps[name](*carries[name], grads))
                seconds[name].append(time.perf_counter() - start)

        ms = {name: 1e3 * float(np.median(s)) for name, s in seconds.items()}
        ratio = ms["adamjax.adam"] / ms["optax.adam"]
        for name in contenders:
            print(f"{name:>13}: {ms[name]:8.3f} ms/step (median of {timing_reps})")
        print(f"adamjax.adam / optax.adam: {ratio:.3f}")
        diff = float(jnp.max(jnp.abs(carries["adamjax.adam"][0] - carries["optax.adam"][0])))
        print(f"max |adamjax.adam - optax.adam| after {timing_reps} steps: {diff:.3g}")
        results["timing"] = {
            "size": timing_size,
            "reps": timing_reps,
            "ms_adamjax_adam": ms["adamjax.adam"],
            "ms_optax_adam": ms["optax.adam"],
            "ratio": ratio,
            "max_abs_diff": diff,
        }

        fig, ax = plt.subplots(figsize=(7, 3))
        for name, s in seconds.items():
            ax.plot(np.arange(1, timing_reps + 1), 1e3 * np.asarray(s), ".-", lw=0.8, label=name)
        ax.set(xlabel="repetition", ylabel="ms per step", yscale="log")
        ax.set_title(f"jitted optimizer step, {timing_size:,} parameters ({accelerator})")
        ax.legend()
        plt.show()
        """
    ),
    RESULT,
]


NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "quickstart": QUICKSTART,
    "flax_mlp_rnn": FLAX_MLP_RNN,
    "colab_gpu_tpu": COLAB_GPU_TPU,
}

# Colab reads these to open the notebook with a GPU runtime selected.
_COLAB_METADATA = {
    "colab_gpu_tpu": {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}},
}


# MyST-NB's cell tags, read when the docs site renders the notebooks (Colab ignores them): the
# install cell's output is only about Colab, and the RESULT line is for the tests.
_DOCS_TAGS = {INSTALL: ["remove-output"], RESULT: ["remove-cell"]}


def build(name: str) -> nbformat.NotebookNode:
    """Returns notebook ``name`` with no outputs or execution counts."""
    cells = []
    for i, (kind, source) in enumerate(NOTEBOOKS[name]):
        # Stable ids keep regenerated files byte-identical.
        cell_id = f"cell-{i:02d}"
        if kind == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(source, id=cell_id))
        else:
            cell = nbformat.v4.new_code_cell(source, id=cell_id)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
            elif (kind, source) in _DOCS_TAGS:
                cell.metadata["tags"] = _DOCS_TAGS[kind, source]
            cells.append(cell)
    metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        **_COLAB_METADATA.get(name, {}),
    }
    nb = nbformat.v4.new_notebook(cells=cells, metadata=metadata)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    """The exact text of ``<name>.ipynb``."""
    return nbformat.writes(build(name)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name in NOTEBOOKS:
        path = HERE / f"{name}.ipynb"
        text = render(name)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check:
        if stale:
            names = ", ".join(path.name for path in stale)
            print(f"out of date: {names}; run python {Path(__file__).name}")
            return 1
        print("every notebook is up to date")
        return 0
    if not stale:
        print("nothing to write: every notebook is up to date")
    for path in stale:
        # From the working directory when below it, so the line can be pasted into a shell.
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
