"""Activation relaxation (AR) from Python: the ar-rs engine, checked against backprop.

AR computes backprop's gradients with local rules only (Millidge, Tschantz, Seth, Buckley 2020).
This package trains MLPs and CNNs with AR, its simplifications, backprop and feedback alignment
from numpy arrays (torch tensors through ``.numpy()`` / ``torch.from_numpy``), with the same
config keys, defaults, results and checkpoints as ``cargo xtask train``.

>>> import arrs
>>> model = arrs.Model("digits-mlp", input_shape=(1, 8, 8), classes=10, seed=0)
>>> trainer = arrs.Trainer(model, "ar", lr=0.1)

``arrs.train(config, data=..., out=...)`` runs a whole training session and writes the usual run
directory. Guide: docs/python.md of the repository.
"""

from ._arrs import BACKENDS, Model, Trainer, defaults, load, train

__all__ = ["BACKENDS", "Model", "Trainer", "defaults", "load", "train"]
