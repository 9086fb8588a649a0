"""Training objectives replayed as CUDA graphs, for tasks whose models are launch-bound.

Small sequence and operator models (SpaceTime on ETT, T1/FNO at 64 x 64) spend their training step
in kernel launches and autograd's CPU work, not on the GPU. ``torch.cuda.make_graphed_callables``
captures the objective's forward and backward once per batch shape and replays them; gradients are
the eager ones. A task mixes in :class:`GraphedObjective`, implements ``_objective(x, y)`` (the
training loss, a tensor or a tuple of tensors, with no host synchronization and no logging inside)
and calls ``self.objective(x, y)`` in ``training_step``.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

Loss = torch.Tensor | tuple[torch.Tensor, ...]


class GraphedObjective:
    """Mixin for a LightningModule with a ``model`` and an ``_objective(x, y) -> Loss`` (the training loss
    of a batch; the task defines it, as OperatorTask and ForecastingTask do).

    ``cuda_graphs`` (set by :meth:`_init_graphs`): on CUDA, in training mode with gradients enabled,
    run the objective through captured graphs; eager otherwise (CPU tensors, evaluation), and when the
    capture fails (a warning). The capture happens at the first batch of each shape; an eager autograd
    graph over the same parameters that is still alive then (an unreleased loss) invalidates it.
    """

    def _init_graphs(self, cuda_graphs: bool) -> None:
        self.cuda_graphs = bool(cuda_graphs)
        # batch shapes -> graphed objective (or None: capture failed, stay eager); a plain dict, so the
        # wrappers are not registered as submodules (no duplicate state_dict keys)
        self._graphed: dict[tuple, nn.Module | None] = {}

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> Loss:
        """The training loss for a batch (x, y), through a CUDA graph when ``cuda_graphs`` applies."""
        if not (self.cuda_graphs and x.is_cuda and torch.is_grad_enabled() and self.training):
            return self._objective(x, y)
        key = (tuple(x.shape), tuple(y.shape), x.dtype, y.dtype, x.device)
        if key not in self._graphed:
            self._graphed[key] = self._capture(x, y)
        graphed = self._graphed[key]
        if graphed is None:
            return self._objective(x, y)
        # the graph's output buffers are overwritten by the next replay; the caller may keep the loss
        out = graphed(x, y)
        return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> nn.Module | None:
        try:
            # warm-up iterations run on a side stream and leave no gradients behind
            return torch.cuda.make_graphed_callables(_Objective(self), (x.detach(), y.detach()), num_warmup_iters=3)
        except Exception as e:  # noqa: BLE001 - any capture failure falls back to the eager objective
            torch.cuda.synchronize()
            warnings.warn(f"CUDA graph capture failed for {type(self.model).__name__} ({type(e).__name__}: {e}); "
                          "training eagerly", stacklevel=3)
            return None

    @property
    def graphed(self) -> bool:
        """True when at least one batch shape trains through a captured CUDA graph."""
        return any(g is not None for g in self._graphed.values())


class _Objective(nn.Module):
    """A task's ``_objective`` as a module of its model (what make_graphed_callables captures)."""

    def __init__(self, task: GraphedObjective):
        super().__init__()
        self.model = task.model
        # the task itself is not a submodule: only the model's parameters are graph inputs
        self._task = [task]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> Loss:
        return self._task[0]._objective(x, y)
