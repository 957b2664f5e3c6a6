"""Train a small CNN with DiffConv in PyTorch: build it with ordinary convs, convert, train.

    python examples/torch_train.py --steps 200

Task: 4x super-resolution of smooth random fields (diffconv.lab.models.synthetic). Prints the held-out error in
the 3-pixel boundary ring and in the interior, for zero padding and for DiffConv.
"""

import argparse
import copy

import numpy as np
import torch
from torch import nn

import diffconv.torch as dct
from diffconv.lab.models.synthetic import make_pair, ring_errors


def make_model() -> nn.Module:
    # Any model with size-keeping convs (padding=k//2, odd k, or padding="same") will do.
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.SiLU(),
        nn.Conv2d(8, 8, 5, padding=2), nn.SiLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.SiLU(),
        nn.Conv2d(8, 1, 1),  # 1x1: no border, left as it is
    )


def train(model: nn.Module, steps: int, size: int, seed: int) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        x, y = (torch.from_numpy(a)[:, None] for a in make_pair("superres", np.random.default_rng([seed, step]), 8, size))
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    zero = make_model()
    diff = dct.convert(copy.deepcopy(zero))          # same weights, DiffConv2d layers
    # A checkpoint of the original model loads into the converted one unchanged.
    diff.load_state_dict(zero.state_dict(), strict=True)
    print(diff)

    x_eval, y_eval = make_pair("superres", np.random.default_rng([args.seed, 10**6]), 32, args.size)
    for name, model in (("zero padding", zero), ("DiffConv", diff)):
        train(model, args.steps, args.size, args.seed)
        with torch.no_grad():
            pred = model(torch.from_numpy(x_eval)[:, None])[:, 0].numpy()
        e = ring_errors(pred, y_eval, ring=3)
        print(f"{name:12s} RMSE boundary ring {e['boundary_rmse']:.4f}  interior {e['interior_rmse']:.4f}")


if __name__ == "__main__":
    main()
