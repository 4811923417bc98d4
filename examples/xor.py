"""XOR with glo_kernels: the hand-made ReLU network of the course, then XOR learned from random initialisation.

Part 1 (Goodfellow, Bengio & Courville, Deep Learning, section 6.1): with W1 = [[1, 1], [1, 1]], b1 = [0, -1],
h = relu(X W1^T + b1) maps (0,0), (0,1), (1,0), (1,1) to (0,0), (1,0), (1,0), (2,1) -- now linearly separable --
and w = [1, -2], b = 0 gives XOR exactly. Computed with glo_kernels.relu.

Part 2: Linear(2, H) -> activation -> Linear(H, 1), trained full batch on the four points (binary cross-entropy on
the logit, Adam), from `--seeds` random initialisations (seeds 0, 1, ...) for each glo_kernels.nn activation; Maxout
uses Linear(2, 2H) -> Maxout(pieces=2) -> Linear(H, 1). A run succeeds when all four points are classified right
(logit > 0 <=> XOR = 1). At H = 2, activations with a torch.nn twin are also trained with the twin from the same
seeds (the counts should agree).

    python examples/xor.py            # 20 seeds, 500 steps, H = 2 and H = 8 (about 1.5 minutes on 2 busy CPU cores)
    python examples/xor.py --fast     # 3 seeds, 150 steps, H = 2 (a few seconds)
"""
from __future__ import annotations

import argparse
import time

import torch

import glo_kernels as gk
from _activations import ACTIVATIONS  # name -> (ours, torch.nn twin or None)

X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = torch.tensor([0.0, 1.0, 1.0, 0.0])


def hand_made() -> float:
    """The course's solution, with glo_kernels ops; prints the table and returns the accuracy."""
    W1 = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    b1 = torch.tensor([0.0, -1.0])
    w = torch.tensor([1.0, -2.0])
    b = 0.0
    h = gk.relu(X @ W1.T + b1)
    score = h @ w + b
    pred = (score > 0.5).float()  # scores are exactly 0 or 1
    print("XOR by hand: W1 = [[1, 1], [1, 1]], b1 = [0, -1], h = glo_kernels.relu(X W1^T + b1); w = [1, -2], b = 0")
    print("  x1 x2 |  h1  h2 | score | XOR")
    for xi, hi, si, yi in zip(X.tolist(), h.tolist(), score.tolist(), Y.tolist()):
        print(f"  {xi[0]:2.0f} {xi[1]:2.0f} | {hi[0]:3.0f} {hi[1]:3.0f} | {si:5.0f} | {yi:3.0f}")
    # h takes only three distinct values, (0,0), (1,0), (2,1): the two XOR = 1 inputs meet at (1,0)
    acc = (pred == Y).float().mean().item()
    print(f"hand-made solution accuracy: {100 * acc:.0f}% ({int((pred == Y).sum())}/4)")
    return acc


def make_model(name: str, hidden: int, twin: bool) -> torch.nn.Module:
    ours, theirs = ACTIVATIONS[name]
    act = (theirs if twin else ours)(hidden)
    width = 2 * hidden if name == "Maxout" else hidden  # Maxout(pieces=2) halves the doubled hidden layer
    return torch.nn.Sequential(torch.nn.Linear(2, width), act, torch.nn.Linear(hidden, 1))


def solves_xor(name: str, hidden: int, twin: bool, seed: int, steps: int, lr: float) -> bool:
    torch.manual_seed(seed)
    model = make_model(name, hidden, twin)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(X).squeeze(1), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return bool((((model(X).squeeze(1)) > 0).float() == Y).all())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fast", action="store_true", help="3 seeds, 150 steps, H = 2 only (a few seconds)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 20, --fast 3)")
    p.add_argument("--steps", type=int, default=None, help="Adam steps per run (default 500, --fast 150)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: these models are tiny, and on a busy machine more threads "
                        "only wait for each other)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seeds or (3 if args.fast else 20)
    steps = args.steps or (150 if args.fast else 500)
    hiddens = [2] if args.fast else [2, 8]

    t0 = time.perf_counter()
    hand_made()
    print()
    print(f"XOR learned from random initialisation: runs reaching 100% accuracy out of {seeds} seeds "
          f"(Linear(2,H) -> act -> Linear(H,1), BCE, Adam lr={args.lr}, {steps} full-batch steps)")
    # the torch.nn twins from the same seeds at H = 2 (at H = 8 only ours, to keep the run short)
    cols = [(h, twin) for h in hiddens for twin in ((False, True) if h == 2 else (False,))]
    header = f"{'activation':<11}" + "".join(f" | {('torch.nn' if twin else 'ours') + ' H=' + str(h):>13}"
                                              for h, twin in cols)
    print(header)
    print("-" * len(header))
    for name, (_, theirs) in ACTIVATIONS.items():
        row = f"{name:<11}"
        for h, twin in cols:
            if twin and theirs is None:
                cell = "-"
            else:
                cell = f"{sum(solves_xor(name, h, twin, s, steps, args.lr) for s in range(seeds))}/{seeds}"
            row += f" | {cell:>13}"
        print(row, flush=True)
    print(f"(Maxout: Linear(2,2H) -> Maxout(pieces=2); total time {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
