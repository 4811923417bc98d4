"""Linear classifiers on scikit-learn's handwritten digits (8x8 images), then two layers with each activation.

The course's experiment: the 1797 digits of ``sklearn.datasets.load_digits`` (pixels 0..16 scaled to [0, 1]), a fixed
stratified train/test split (1347 / 450 images, ``random_state=0``), the multiclass hinge loss
(``torch.nn.MultiMarginLoss``), SGD with momentum on minibatches of 32. Models:

* ``linear``: Linear(64, 10) -- one template per class; the learned weights are drawn as 8x8 images (PNG at --out).
* ``linear-linear``: Linear(64, H) -> Linear(H, 10) with nothing in between. No better: the two maps compose into one
  linear map, W = W2 W1, b = W2 b1 + b2, which reproduces the network's outputs (printed).
* Linear(64, H) -> activation -> Linear(H, 10) for each glo_kernels.nn activation (Maxout: Linear(64, 2H) ->
  Maxout(pieces=2) -> Linear(H, 10)), and the torch.nn twin where there is one, trained from the same seeds.

Prints test accuracy (mean over seeds) and the median time per training epoch.

    python examples/digits.py          # 5 seeds, 40 epochs (about 40 s on 2 busy CPU cores)
    python examples/digits.py --fast   # 1 seed, 5 epochs (a few seconds)
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from _activations import ACTIVATIONS  # name -> (ours, torch.nn twin or None)

HIDDEN = 64


def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype("float32") / 16.0
    xtr, xte, ytr, yte = train_test_split(x, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    return (torch.from_numpy(xtr), torch.from_numpy(ytr).long(), torch.from_numpy(xte), torch.from_numpy(yte).long())


def make_model(kind: str, twin: bool = False) -> torch.nn.Module:
    if kind == "linear":
        return torch.nn.Linear(64, 10)
    if kind == "linear-linear":
        return torch.nn.Sequential(torch.nn.Linear(64, HIDDEN), torch.nn.Linear(HIDDEN, 10))
    ours, theirs = ACTIVATIONS[kind]
    act = (theirs if twin else ours)(HIDDEN)
    width = 2 * HIDDEN if kind == "Maxout" else HIDDEN
    return torch.nn.Sequential(torch.nn.Linear(64, width), act, torch.nn.Linear(HIDDEN, 10))


def train(model, data, epochs: int, seed: int, lr: float = 0.05, batch: int = 32):
    """SGD (momentum 0.9) on the multiclass hinge loss; returns (test accuracy, list of seconds per epoch)."""
    xtr, ytr, xte, yte = data
    loss_fn = torch.nn.MultiMarginLoss()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(1000 + seed)  # the same minibatch order for every model of this seed
    times = []
    for _ in range(epochs):
        model.train()
        t = time.perf_counter()
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    return acc, times


def run(kind: str, data, epochs: int, seeds: int, twin: bool = False):
    """Per variant (ours, and the torch.nn twin if `twin`): (mean test accuracy over seeds, median ms per epoch,
    the seed-0 model). The variants alternate seed by seed, so that a load change on the machine hits both alike."""
    variants = (False, True) if twin else (False,)
    accs, times, first = {v: [] for v in variants}, {v: [] for v in variants}, {}
    for seed in range(seeds):
        for v in variants:
            torch.manual_seed(seed)
            model = make_model(kind, v)
            acc, t = train(model, data, epochs, seed)
            accs[v].append(acc)
            times[v] += t
            first.setdefault(v, model)
    results = [(statistics.mean(accs[v]), 1e3 * statistics.median(times[v]), first[v]) for v in variants]
    return results if twin else results[0]


def collapse(model: torch.nn.Sequential, data) -> tuple[float, int, torch.Tensor, torch.Tensor]:
    """The two linear layers as one map: (max abs difference of outputs on the test set, prediction agreements,
    W, b)."""
    l1, l2 = model[0], model[1]
    with torch.no_grad():
        W = l2.weight @ l1.weight
        b = l2.weight @ l1.bias + l2.bias
        xte = data[2]
        net = model(xte)
        one = xte @ W.T + b
    return (net - one).abs().max().item(), int((net.argmax(1) == one.argmax(1)).sum()), W, b


def draw_templates(weight: torch.Tensor, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig, axes = plt.subplots(2, 5, figsize=(10, 4.4))
    lim = weight.abs().max().item()
    for c, ax in enumerate(axes.flat):
        im = ax.imshow(weight[c].reshape(8, 8).numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"class {c}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    fig.suptitle("Linear classifier on the digits (hinge loss): weights of each class as an 8x8 template")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fast", action="store_true", help="1 seed, 5 epochs (a few seconds)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per model (default 5, --fast 1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 40, --fast 5)")
    p.add_argument("--out", default=os.path.join("examples", "out", "digits_templates.png"),
                   help="PNG of the linear model's weights as 8x8 templates (default %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: these models are tiny, and on a busy machine more threads "
                        "only wait for each other)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seeds or (1 if args.fast else 5)
    epochs = args.epochs or (5 if args.fast else 40)

    t0 = time.perf_counter()
    data = load_data()
    print(f"digits: {len(data[0])} train / {len(data[2])} test images of 8x8; MultiMarginLoss, SGD lr 0.05 momentum "
          f"0.9, batch 32, {epochs} epochs, test accuracy = mean over {seeds} seed(s), ms/epoch = median; H = {HIDDEN}")
    header = (f"{'model':<24} | {'test acc':>8} | {'ms/epoch':>8} | {'torch.nn acc':>12} | {'torch.nn ms/epoch':>17}")
    print(header)
    print("-" * len(header))

    def row(label, ours, theirs=None):
        twin = f"{theirs[0]:>12.4f} | {theirs[1]:>17.2f}" if theirs else f"{'-':>12} | {'-':>17}"
        print(f"{label:<24} | {ours[0]:>8.4f} | {ours[1]:>8.2f} | {twin}", flush=True)

    lin = run("linear", data, epochs, seeds)
    row("linear 64-10", lin)
    ll = run("linear-linear", data, epochs, seeds)
    row(f"linear-linear 64-{HIDDEN}-10", ll)
    for name, (_, theirs) in ACTIVATIONS.items():
        if theirs is not None:
            ours, twin = run(name, data, epochs, seeds, twin=True)
        else:
            ours, twin = run(name, data, epochs, seeds), None
        width = f"64-{2 * HIDDEN}-{HIDDEN}-10" if name == "Maxout" else f"64-{HIDDEN}-10"
        row(f"{name} {width}", ours, twin)

    diff, agree, W, _ = collapse(ll[2], data)
    print(f"linear-linear collapses to one linear map W = W2 W1 ({tuple(W.shape)[0]}x{tuple(W.shape)[1]}, rank "
          f"{int(torch.linalg.matrix_rank(W))}), b = W2 b1 + b2: max |net(x) - (W x + b)| = {diff:.2e} on the test "
          f"set, same predictions on {agree}/{len(data[2])}")
    draw_templates(lin[2].weight.detach(), args.out)
    print(f"templates: {args.out}")
    print(f"(Maxout: Linear(64,{2 * HIDDEN}) -> Maxout(pieces=2); total time {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
