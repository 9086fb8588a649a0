"""One SpaceTime layer: SSM heads -> residual -> MLP (official `Block` with its default configs).

    s   = SSM(norm(z))                     companion (or shift) heads, with the skip D u inside
    out = z + s + MLP(s),  MLP(s) = Linear(Dropout(GELU(s)))          (pre-activation, width d)

This is the official encoder block with `mlp/default.yaml` (pre_activation, one Linear d -> d,
dropout, GELU, the MLP's own skip) and `skip_connection: true`. `layernorm` is false in every
official config, so `norm` defaults to off; with norm=True a LayerNorm is applied before the SSM.
mlp_ratio > 1 widens the MLP to Linear(d, r d) -> GELU -> Linear(r d, d) (not in the paper).
"""

from __future__ import annotations

import torch
from torch import nn

from .companion import CompanionSSM
from .shift import ShiftSSM

__all__ = ["SpaceTimeLayer"]


class SpaceTimeLayer(nn.Module):
    """Multi-head SpaceTime layer.

    Args:
        d_model: channels.
        n_heads: distinct SSMs (divides d_model).
        state_dim: N (companion state size, or FIR length for shift heads).
        kind: "companion" or "shift".
        mlp_ratio: 1 = the paper's single Linear(d, d); r > 1 = two layers through r*d.
        dropout: after the MLP's activation (official: 0.25 on ETT).
        norm: LayerNorm before the SSM (off in the paper).
        shift_init: initial FIR taps of shift heads, "normal" or "residual" (see ShiftSSM).
    Shapes: forward z (B, L, d) -> (B, L, d); step z_t (B, d), state (B, d, N).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        state_dim: int,
        kind: str = "companion",
        mlp_ratio: int = 1,
        dropout: float = 0.0,
        norm: bool = False,
        shift_init: str = "normal",
    ):
        super().__init__()
        if kind == "companion":
            self.ssm = CompanionSSM(d_model, n_heads, state_dim)
        elif kind == "shift":
            self.ssm = ShiftSSM(d_model, n_heads, state_dim, init=shift_init)
        else:
            raise ValueError(f"kind must be 'companion' or 'shift', got {kind!r}")
        self.kind = kind
        self.norm = nn.LayerNorm(d_model) if norm else nn.Identity()
        hidden = d_model * mlp_ratio
        layers: list[nn.Module] = [nn.GELU(), nn.Dropout(dropout), nn.Linear(d_model, hidden)]
        if mlp_ratio != 1:
            layers += [nn.GELU(), nn.Linear(hidden, d_model)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, L, d) -> (B, L, d), causal in L."""
        s = self.ssm(self.norm(z).transpose(1, 2)).transpose(1, 2)
        return z + s + self.mlp(s)

    def initial_state(self, batch: int, dtype=None, device=None) -> torch.Tensor:
        """Zero SSM state (B, d, N)."""
        return self.ssm.initial_state(batch, dtype=dtype, device=device)

    def step(self, z: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: z (B, d) -> (B, d), new state."""
        s, state = self.ssm.step(self.norm(z), state)
        return z + s + self.mlp(s), state
