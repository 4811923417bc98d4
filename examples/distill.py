"""Knowledge distillation (Hinton et al. 2015) on scikit-learn's digits with glo_kernels.distillation_loss.

A teacher MLP 64-256-10 (glo_kernels.nn.ReLU) is trained on the labels with cross-entropy. A smaller student,
64-16-10 (glo_kernels.nn.ReLU), is then trained from the same seeds, minibatch order and number of epochs

* on the labels alone (cross-entropy) -- the baseline;
* on the teacher alone: ``loss = glo_kernels.distillation_loss(student_logits, teacher_logits, temperature=T)``
  (KL(softmax(t/T) || softmax(s/T)) * T^2, batch mean; no labels at all);
* mixed: ``loss = alpha * distillation_loss(s, t, T) + (1 - alpha) * cross_entropy(s, labels)``, alpha = 0.5
  (the T^2 factor inside distillation_loss keeps the soft term's gradients on the scale of the hard term's),

for T in {1, 2, 4, 8}. The teacher's logits are computed once (eval mode, no grad) for the training images.
Data: ``load_digits`` scaled to [0, 1], the fixed stratified split 1347 train / 450 test (``random_state=0``).
Optimiser: Adam, lr 0.01 for the student, 0.001 for the teacher, minibatches of 32. Prints the student's test accuracy
(mean and standard deviation over seeds) for each T.

    python examples/distill.py          # 5 seeds, student 40 epochs, teacher 30 epochs (about 45 s on 2 CPU cores)
    python examples/distill.py --fast   # 2 seeds, student 4 epochs, teacher 4 epochs (a few seconds)
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import glo_kernels as gk

TEMPERATURES = (1, 2, 4, 8)
ALPHA = 0.5


def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype("float32") / 16.0
    xtr, xte, ytr, yte = train_test_split(x, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    return (torch.from_numpy(xtr), torch.from_numpy(ytr).long(), torch.from_numpy(xte), torch.from_numpy(yte).long())


def mlp(hidden: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), gk.nn.ReLU(), torch.nn.Linear(hidden, 10))


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def fit(model, data, epochs: int, seed: int, lr: float, teacher_logits=None, temperature=None, alpha=None,
        batch: int = 32) -> float:
    """Train; the loss is cross-entropy (teacher_logits None) or alpha * distillation + (1 - alpha) * cross-entropy.
    Returns the test accuracy."""
    xtr, ytr, xte, yte = data
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(1000 + seed)  # the same minibatch order for every student of this seed
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            logits = model(xtr[idx])
            if teacher_logits is None:
                loss = F.cross_entropy(logits, ytr[idx])
            else:
                loss = alpha * gk.distillation_loss(logits, teacher_logits[idx], temperature=temperature)
                if alpha < 1:
                    loss = loss + (1 - alpha) * F.cross_entropy(logits, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return accuracy(model, xte, yte)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fast", action="store_true", help="2 seeds, 4 epochs (a few seconds)")
    p.add_argument("--seeds", type=int, default=None, help="student seeds (default 5, --fast 2)")
    p.add_argument("--epochs", type=int, default=None, help="student epochs (default 40, --fast 4)")
    p.add_argument("--teacher-epochs", type=int, default=None, help="teacher epochs (default 30, --fast 4)")
    p.add_argument("--student-hidden", type=int, default=16, help="student hidden units (default 16)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: these models are tiny, and on a busy machine more threads "
                        "only wait for each other)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seeds or (2 if args.fast else 5)
    epochs = args.epochs or (4 if args.fast else 40)
    teacher_epochs = args.teacher_epochs or (4 if args.fast else 30)
    hs = args.student_hidden

    t0 = time.perf_counter()
    data = load_data()
    torch.manual_seed(0)
    teacher = mlp(256)
    teacher_acc = fit(teacher, data, teacher_epochs, seed=0, lr=1e-3)
    teacher.eval()
    with torch.no_grad():
        teacher_logits = teacher(data[0])
    print(f"teacher 64-256-10: test accuracy {teacher_acc:.4f} ({teacher_epochs} epochs, cross-entropy)")
    print(f"student 64-{hs}-10: test accuracy, mean +- std over {seeds} seed(s), {epochs} epochs each; "
          f"KD = glo_kernels.distillation_loss(s, t, T); mixed = {ALPHA} KD + {1 - ALPHA} CE")

    def student_runs(**kw):
        accs = []
        for seed in range(seeds):
            torch.manual_seed(seed)
            accs.append(fit(mlp(hs), data, epochs, seed, lr=1e-2, **kw))
        return statistics.mean(accs), (statistics.stdev(accs) if len(accs) > 1 else 0.0)

    def fmt(r):
        return f"{r[0]:.4f} +- {r[1]:.4f}"

    base = student_runs()
    header = f"{'training':<16} | {'KD only':>16} | {'mixed':>16}"
    print(header)
    print("-" * len(header))
    print(f"{'labels only (CE)':<16} | {fmt(base):>16} | {fmt(base):>16}", flush=True)
    for T in TEMPERATURES:
        kd = student_runs(teacher_logits=teacher_logits, temperature=float(T), alpha=1.0)
        mixed = student_runs(teacher_logits=teacher_logits, temperature=float(T), alpha=ALPHA)
        print(f"{'T = ' + str(T):<16} | {fmt(kd):>16} | {fmt(mixed):>16}", flush=True)
    print(f"(total time {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
