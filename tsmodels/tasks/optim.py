"""Optimizer set-up shared by the tasks: AdamW with per-parameter settings and a cosine schedule."""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(module: nn.Module, weight_decay: float, decay_1d: bool = False) -> list[dict]:
    """AdamW parameter groups. Parameters tagged with an ``_optim`` dict (the SSM layers tag A, B
    and the step size with their own lr and no weight decay, as S4 does) get a group per setting;
    1-D parameters (biases, norms) get no weight decay unless ``decay_1d``; the rest
    ``weight_decay``."""
    special: dict[tuple, list] = {}
    decay, no_decay = [], []
    for p in module.parameters():
        if not p.requires_grad:
            continue
        tag = getattr(p, "_optim", None)
        if tag:
            special.setdefault(tuple(sorted(tag.items())), []).append(p)
        elif p.dim() < 2 and not decay_1d:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups += [{"params": ps, **dict(tag)} for tag, ps in special.items()]
    return [g for g in groups if g["params"]]


def adamw_cosine(params, lr: float, weight_decay: float, scheduler: str | None, max_epochs: int | None,
                 warmup_epochs: int = 0):
    """AdamW over ``params`` (tensors or groups), with — when ``scheduler == "cosine"`` and the
    number of epochs is known — a linear warm-up over ``warmup_epochs`` then a cosine decay to 0
    at ``max_epochs``, stepped per epoch. Returns what Lightning's configure_optimizers returns."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if scheduler != "cosine" or not max_epochs or max_epochs < 1:
        return opt
    warm = max(0, min(int(warmup_epochs), max_epochs - 1))

    def factor(epoch: int) -> float:
        if epoch < warm:
            return (epoch + 1) / (warm + 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - warm) / max(1, max_epochs - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
