"""Your model, your data, your space: a raynas searcher over your own choices, through ``tune.Tuner``.

    .venv/bin/python examples/your_model_your_data.py [--searcher bonas] [--num-samples 24]

The architecture space is a :class:`raynas.spaces.PositionalSpace` of your
own choices (here: an MLP's width, depth, activation and dropout), the data
are your own tensors (here scikit-learn's bundled digits, so it runs
offline), and the training function is yours: it builds the network from
``Architecture.from_config(config)``, trains it and reports the validation
accuracy every epoch, so ASHA can stop poor trials early. A learning rate is
searched beside the architecture (a Tune domain in ``param_space``).

Two things Tune needs that are easy to miss: ``metric`` and ``mode`` go in
``TuneConfig`` (ASHA and the searcher both read them there), and
``param_space`` must be non-empty so that Tune hands them to the searcher.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from torch import nn

from raynas.architecture import Architecture
from raynas.data.digits import load_digits_split
from raynas.searchers import make_searcher
from raynas.spaces.positional import PositionalSpace

#: Your space: one choice per position (choices are strings).
SPACE = PositionalSpace({
    "width": ["16", "32", "64", "128"],
    "depth": ["1", "2", "3"],
    "activation": ["relu", "gelu", "tanh"],
    "dropout": ["0.0", "0.1", "0.3"],
}, name="digits_mlp")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def build(arch: Architecture) -> nn.Module:
    """Your model from an architecture of :data:`SPACE`."""
    choice = dict(zip(SPACE.position_names, arch.ops))
    width, depth = int(choice["width"]), int(choice["depth"])
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = 64
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), ACTIVATIONS[choice["activation"]](), nn.Dropout(float(choice["dropout"]))]
        fan_in = width
    layers.append(nn.Linear(fan_in, 10))
    return nn.Sequential(*layers)


def train(config: dict, data: tuple[torch.Tensor, ...]) -> None:
    """Your training function: one report per epoch (``training_iteration`` is the epoch)."""
    torch.set_num_threads(1)
    x_train, y_train, x_val, y_val = data
    torch.manual_seed(0)
    model = build(Architecture.from_config(config))
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    generator = torch.Generator().manual_seed(0)
    for _ in range(config["epochs"]):
        model.train()
        for batch in torch.randperm(len(x_train), generator=generator).split(64):
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_acc = float((model(x_val).argmax(1) == y_val).float().mean()) * 100
        tune.report({"val_acc": val_acc})


def run(searcher_name: str = "bonas", num_samples: int = 24, train_epochs: int = 6, storage: str | None = None,
        seed: int = 0, **searcher_options) -> tune.ResultGrid:
    """The search; returns Tune's ``ResultGrid`` (``searcher_options``: the searcher's own keyword arguments)."""
    epochs = train_epochs
    data = tuple(load_digits_split(0.2, 0))  # your tensors: x_train, y_train, x_val, y_val
    searcher = make_searcher(searcher_name, SPACE, seed=seed, **searcher_options)
    tuner = tune.Tuner(
        tune.with_parameters(train, data=data),  # large data travel once, through the object store
        param_space={"epochs": epochs, "lr": tune.loguniform(3e-4, 3e-2)},
        tune_config=tune.TuneConfig(
            search_alg=searcher, metric="val_acc", mode="max",  # here, not in the scheduler
            scheduler=ASHAScheduler(max_t=epochs, grace_period=2, reduction_factor=2),
            num_samples=num_samples, max_concurrent_trials=2, reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=f"your-space-{searcher_name}", storage_path=storage, verbose=0),
    )
    return tuner.fit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searcher", default="bonas", help="random, regevo, nasbot, gpnas or bonas")
    parser.add_argument("--num-samples", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    results = run(args.searcher, args.num_samples, args.epochs)
    best = results.get_best_result()
    arch = Architecture.from_config(best.config)
    print(f"best: {SPACE.describe(arch)}  lr={best.config['lr']:.2e}  val_acc={best.metrics['val_acc']:.2f}%")
    frame = results.get_dataframe()
    print(f"{len(frame)} trials, {int((frame['training_iteration'] < args.epochs).sum())} stopped early by ASHA; "
          f"median val_acc {np.median(frame['val_acc']):.2f}%")


if __name__ == "__main__":
    main()
