"""Generate golden trajectories of Adam-mini and CAME from the authors' packages (float64).

Sources: ``adam_mini.Adam_mini`` 1.1.1 (the Adam-mini authors' package), ``came_pytorch.CAME``
0.1.3 (the CAME authors' package) and ``pytorch_optimizer.CAME`` 4.1.0.

How to regenerate (from the repository root; a CPU-only torch build is enough):

    pip install torch==2.13.0 adam-mini==1.1.1 came-pytorch==0.1.3 pytorch-optimizer==4.1.0
    python tests/reference/make_golden_mini_came.py

It (re)writes ``tests/reference/golden/{adam_mini,came_pytorch,pytorch_optimizer_came}.npz``.

The problem is the noisy separable quadratic of ``make_golden.py``, ``g = h * (p - c) +
noise[k]``, on a small transformer-like tree for Adam-mini (embedding, query/key/value/out
projections with 2 heads, an MLP with a bias, a norm scale, an output layer) and on matrices and
vectors for CAME. To keep the files small the noise of step ``k`` is ``envelope[k] *
noise_table[k % 7]`` (``noise_table__L`` holds 7 draws per leaf; ``envelope`` is stored too).

Every array is stored in adamjax's (flax) layout: torch's ``(out, in)`` weights are transposed to
``(in, out)`` kernels, and the states are named and shaped as adamjax keeps them:

* Adam-mini: ``param__L``, ``mu__L`` and ``nu__L`` (one entry per block: the leaf's shape with
  the block's axes of size 1; the query/key kernels in the view ``(in, heads, head_dim)``).
* CAME: ``param__L``, ``mu__L``, ``v_row__L``, ``v_col__L``, ``v__L``, ``res_row__L``,
  ``res_col__L`` (``v_row``/``res_row``: the mean over the leaf's *largest* axis, adamjax's
  naming; torch's ``row`` is the mean over the last axis). Unused slots are ``(1,)`` zeros.

Other keys follow ``make_golden.py``: ``meta_generator``, ``meta_convention``, ``hp_*``,
``leaves``, ``steps``, ``p0__L``, ``h__L``, ``c__L``.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import torch

SEED = 20250611
NUM_STEPS = 300
CHECKPOINTS = (1, 2, 3, 5, 10, 30, 100, 200, 300)
TABLE = 7
OUTPUT_DIR = Path(__file__).resolve().parent / "golden"

DIM, HEADS, VOCAB, HIDDEN = 8, 2, 6, 8

#: adamjax name -> (torch name, adamjax (flax) shape, transposed in torch).
MINI_LEAVES = {
    "embed/embedding": ("embed.weight", (VOCAB, DIM), False),
    "attn/query/kernel": ("attn.wq.weight", (DIM, DIM), True),
    "attn/key/kernel": ("attn.wk.weight", (DIM, DIM), True),
    "attn/value/kernel": ("attn.wv.weight", (DIM, DIM), True),
    "attn/out/kernel": ("attn.wo.weight", (DIM, DIM), True),
    "attn_norm/scale": ("attn_norm.weight", (DIM,), False),
    "mlp/up/kernel": ("mlp.up.weight", (DIM, HIDDEN), True),
    "mlp/up/bias": ("mlp.up.bias", (HIDDEN,), False),
    "mlp/down/kernel": ("mlp.down.weight", (HIDDEN, DIM), True),
    "lm_head/kernel": ("lm_head.weight", (DIM, VOCAB), True),
}
CAME_LEAVES = {"w": (4, 6), "v": (6, 3), "b": (5,), "s": (1,)}


def make_problem(shapes: dict[str, tuple[int, ...]], seed: int = SEED) -> dict:
    """Mapping leaf -> {"p0", "h", "c", "noise_table"} (float32-representable float64), and
    the noise envelope."""
    rng = np.random.default_rng(seed)
    envelope = 0.5 * (1 + np.cos(np.linspace(0, 3 * np.pi, NUM_STEPS))) + 0.05
    problem = {}
    for name, shape in shapes.items():
        c = rng.normal(size=shape)
        leaf = {
            "p0": c + rng.normal(size=shape),
            "h": rng.uniform(0.5, 2.0, size=shape),
            "c": c,
            "noise_table": rng.normal(size=(TABLE, *shape)),
        }
        problem[name] = {k: x.astype(np.float32).astype(np.float64) for k, x in leaf.items()}
    return {"leaves": problem, "envelope": envelope}


def gradient(problem: dict, name: str, p: np.ndarray, k: int) -> np.ndarray:
    leaf = problem["leaves"][name]
    return leaf["h"] * (p - leaf["c"]) + problem["envelope"][k] * leaf["noise_table"][k % TABLE]


def run(problem: dict, names: dict[str, str], transposed: dict[str, bool], build, record):
    """Runs ``NUM_STEPS`` torch steps; ``record(optimizer, tensors)`` returns the state to keep
    at each checkpoint, in adamjax's layout."""
    torch.set_default_dtype(torch.float64)
    tensors = {}
    for name, leaf in problem["leaves"].items():
        p0 = leaf["p0"].T if transposed[name] else leaf["p0"]
        tensors[name] = torch.nn.Parameter(torch.tensor(np.ascontiguousarray(p0)))
    opt = build([(names[n], t) for n, t in tensors.items()])
    out: dict[str, list] = {}
    for k in range(NUM_STEPS):
        for name, t in tensors.items():
            p = t.detach().numpy()
            p = p.T if transposed[name] else p
            g = gradient(problem, name, p, k)
            t.grad = torch.tensor(np.ascontiguousarray(g.T if transposed[name] else g))
        opt.step()
        if k + 1 in CHECKPOINTS:
            for key, x in record(opt, tensors).items():
                out.setdefault(key, []).append(x)
    return {key: np.stack(xs) for key, xs in out.items()}


def save(name: str, problem: dict, hp: dict, trajectory: dict, generator: str, convention: str):
    data = {
        "meta_generator": np.array(generator),
        "meta_convention": np.array(convention),
        "leaves": np.array(list(problem["leaves"])),
        "steps": np.array(CHECKPOINTS),
        "envelope": problem["envelope"],
    }
    data.update({f"hp_{k}": np.array(v) for k, v in hp.items()})
    for leaf, arrays in problem["leaves"].items():
        data.update({f"{k}__{leaf}": v for k, v in arrays.items()})
    data.update(trajectory)
    OUTPUT_DIR.mkdir(exist_ok=True)
    np.savez_compressed(OUTPUT_DIR / f"{name}.npz", **data)
    print(f"wrote {name}.npz")


def adam_mini_case() -> None:
    from adam_mini import Adam_mini

    problem = make_problem({n: s for n, (_, s, _) in MINI_LEAVES.items()})
    names = {n: t for n, (t, _, _) in MINI_LEAVES.items()}
    transposed = {n: tr for n, (_, _, tr) in MINI_LEAVES.items()}
    hp = {"lr": 1e-2, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.1, "n_heads": HEADS}

    def build(named):
        return Adam_mini(
            named, lr=hp["lr"], betas=(hp["b1"], hp["b2"]), eps=hp["eps"],
            weight_decay=hp["weight_decay"], dim=DIM, n_heads=HEADS, verbose=False,
        )  # fmt: skip

    def record(opt, tensors):
        out = {}
        for name, t in tensors.items():
            state, shape = opt.state[t], MINI_LEAVES[name][1]
            tr = transposed[name]
            p, m = t.detach().numpy().copy(), state["m"].reshape(t.shape).numpy().copy()
            nu = (state["v"] if "v" in state else state["vmean"]).numpy().copy()
            if "query" in name or "key" in name:
                nu = nu.reshape(1, HEADS, 1)  # (heads, 1) -> flax view (in, heads, head_dim)
            elif tr:
                nu = nu.T  # (out, 1) -> (1, out)
            elif nu.ndim == 0:
                nu = nu.reshape(1)
            out[f"param__{name}"] = p.T if tr else p
            out[f"mu__{name}"] = m.T if tr else m
            out[f"nu__{name}"] = nu
            assert out[f"param__{name}"].shape == shape
        return out

    trajectory = run(problem, names, transposed, build, record)
    version = importlib.metadata.version("adam_mini")
    save(
        "adam_mini", problem, hp, trajectory,
        f"adam_mini {version}: Adam_mini(named_parameters, lr=1e-2, betas=(0.9, 0.999), "
        f"eps=1e-8, weight_decay=0.1, dim={DIM}, n_heads={HEADS}); torch names "
        + ", ".join(f"{t}" for t in names.values()),
        "adamjax.adam_mini(lr, b1, b2, eps, weight_decay, n_heads=2): default partition and "
        "decay mask (no decay for norm/ln/bias names)",
    )  # fmt: skip


def came_case(which: str) -> None:
    problem = make_problem(CAME_LEAVES, seed=SEED + 1)
    names = {n: n for n in CAME_LEAVES}
    transposed = dict.fromkeys(CAME_LEAVES, False)
    hp = {"lr": 1e-2, "b1": 0.9, "b2": 0.999, "b3": 0.9999, "eps1": 1e-30, "eps2": 1e-16,
          "clip_threshold": 1.0, "weight_decay": 0.1}  # fmt: skip

    def build(named):
        params = [t for _, t in named]
        betas = (hp["b1"], hp["b2"], hp["b3"])
        if which == "came_pytorch":
            from came_pytorch.CAME import CAME

            eps = (hp["eps1"], hp["eps2"])
            return CAME(params, lr=hp["lr"], eps=eps, betas=betas, clip_threshold=1.0,
                        weight_decay=hp["weight_decay"])  # fmt: skip
        from pytorch_optimizer import CAME

        return CAME(params, lr=hp["lr"], betas=betas, weight_decay=hp["weight_decay"],
                    clip_threshold=1.0, eps1=hp["eps1"], eps2=hp["eps2"])  # fmt: skip

    def record(opt, tensors):
        out = {}
        for name, t in tensors.items():
            state, shape = opt.state[t], CAME_LEAVES[name]
            out[f"param__{name}"] = t.detach().numpy().copy()
            out[f"mu__{name}"] = state["exp_avg"].numpy().copy()
            one = np.zeros(1)
            if len(shape) < 2:
                out.update({f"{k}__{name}": one for k in ("v_row", "v_col", "res_row", "res_col")})
                out[f"v__{name}"] = state["exp_avg_sq"].numpy().copy()
                continue
            # torch's row is the mean over the last axis; adamjax's v_row over the largest.
            last_is_largest = shape[-1] >= shape[-2]
            first, second = ("row", "col") if last_is_largest else ("col", "row")
            for kind, key in (("sq", "v"), ("res", "res")):
                out[f"{key}_row__{name}"] = state[f"exp_avg_{kind}_{first}"].numpy().copy()
                out[f"{key}_col__{name}"] = state[f"exp_avg_{kind}_{second}"].numpy().copy()
            out[f"v__{name}"] = one
        return out

    trajectory = run(problem, names, transposed, build, record)
    package = "came_pytorch" if which == "came_pytorch" else "pytorch_optimizer"
    version = importlib.metadata.version(package.replace("_", "-"))
    call = (
        "CAME(params, lr=1e-2, eps=(1e-30, 1e-16), betas=(0.9, 0.999, 0.9999), "
        "clip_threshold=1.0, weight_decay=0.1)"
        if which == "came_pytorch"
        else "CAME(params, lr=1e-2, betas=(0.9, 0.999, 0.9999), weight_decay=0.1, "
        "clip_threshold=1.0, eps1=1e-30, eps2=1e-16)"
    )
    name = "came_pytorch" if which == "came_pytorch" else "pytorch_optimizer_came"
    save(name, problem, hp, trajectory, f"{package} {version}: {call}",
         "adamjax.came(lr, weight_decay=0.1) with the defaults")  # fmt: skip


def main() -> None:
    adam_mini_case()
    came_case("came_pytorch")
    came_case("pytorch_optimizer")


if __name__ == "__main__":
    main()
