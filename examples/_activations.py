"""The activations the course examples compare (imported by xor.py and digits.py, run as scripts from any folder).

name -> (ours, torch.nn twin or None); each builds the activation for h hidden units.
"""
import torch

import glo_kernels as gk

ACTIVATIONS = {
    "ReLU": (lambda h: gk.nn.ReLU(), lambda h: torch.nn.ReLU()),
    "LeakyReLU": (lambda h: gk.nn.LeakyReLU(0.01), lambda h: torch.nn.LeakyReLU(0.01)),
    "PReLU": (lambda h: gk.nn.PReLU(h), lambda h: torch.nn.PReLU(h)),
    "ELU": (lambda h: gk.nn.ELU(), lambda h: torch.nn.ELU()),
    "PELU": (lambda h: gk.nn.PELU(h), None),
    "Maxout": (lambda h: gk.nn.Maxout(2), None),
}
