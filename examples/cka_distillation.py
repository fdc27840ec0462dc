"""Representation distillation with CKA as the loss: a small student MLP learns to match a teacher's layer.

The teacher is a trained MLP (by default the sanity check's network 0, from the checkpoint cache:
784-256-256-256-256-10, seed 0). The student, 784-64-64-10 from a random start, is trained with
no labels at all: its loss is ``cka_loss(student act2, teacher act3)``, one minus linear CKA
between its second hidden layer and the teacher's third, on minibatches of MNIST training
images. After every epoch the script prints linear CKA between the two layers on held-out test
images (a checked value from ``layer_sim.linear_cka``, not the loss), which rises as the
student learns the teacher's representation.

    python examples/cka_distillation.py              # about 30 s on 2 cores once the teacher is cached
    python examples/cka_distillation.py --tiny       # seconds: a small teacher trained on the spot (the tests run this)
"""

from __future__ import annotations

import argparse

import torch

from layer_sim import MLP, Recipe, extract, fit, linear_cka, mnist_task
from layer_sim.measures import cka_loss
from layer_sim.training import DEFAULT_SPEC, train_or_load


def hidden(student: MLP, x: torch.Tensor, layer: int) -> torch.Tensor:
    """The student's hidden layer ``layer`` (1-based), differentiably (extract() records detached copies)."""
    h = x.flatten(start_dim=1)
    for k in range(1, layer + 1):
        h = getattr(student, f"act{k}")(getattr(student, f"fc{k}")(h))
    return h


def main(argv: list[str] | None = None) -> list[float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="small teacher trained here, few examples and epochs")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    if args.tiny:
        task = mnist_task(limit_train=1000)
        teacher = MLP((784, 32, 32, 10), seed=1)
        fit(teacher, task, Recipe(epochs=2, batch_size=100, warmup_epochs=0), seed=1, progress=False)
        teacher_layer, student_widths, student_layer = "act2", (784, 16, 10), 1
        n_train, n_test, epochs, batch = 1000, 500, args.epochs or 4, 100
    else:
        task = mnist_task()
        teacher = train_or_load(DEFAULT_SPEC, 0).model  # the sanity check's network 0
        teacher_layer, student_widths, student_layer = "act3", (784, 64, 64, 10), 2
        n_train, n_test, epochs, batch = 10_000, 2000, args.epochs or 8, 250
    x_train, x_test = task.train[0][:n_train], task.test[0][:n_test]
    target_train = extract(teacher, x_train, layers=[teacher_layer])[teacher_layer]
    target_test = extract(teacher, x_test, layers=[teacher_layer])[teacher_layer].double()

    student = MLP(student_widths, seed=args.seed + 100)
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(args.seed)
    name = f"student act{student_layer} vs teacher {teacher_layer}"

    def held_out() -> float:
        with torch.no_grad():
            return float(linear_cka(hidden(student, x_test, student_layer).double(), target_test))

    history = [held_out()]
    print(f"epoch 0: linear CKA ({name}, {n_test} test images) = {history[-1]:.3f}")
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n_train, generator=gen)
        for s in range(0, n_train, batch):
            idx = order[s : s + batch]
            loss = cka_loss(hidden(student, x_train[idx], student_layer), target_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.append(held_out())
        print(f"epoch {epoch}: linear CKA ({name}, {n_test} test images) = {history[-1]:.3f}")
    return history


if __name__ == "__main__":
    main()
