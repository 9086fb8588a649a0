"""SaShiMi (Goel, Gu, Donahue, Ré, "It's Raw! Audio Generation with State-Space Models", ICML 2022):
an autoregressive waveform model, a multi-scale U-Net of S4 blocks over 8-bit mu-law samples.

    tokens (B, L) -> embedding (B, L, H)
      level 0 (rate 1):   n_layers x [S4 block, MLP block]  -- skip s0
        down-pool x4 (H -> 2H)
        level 1 (rate 1/4):  n_layers x [...]               -- skip s1
          down-pool x4 (2H -> 4H)
          centre (rate 1/16): n_layers x [...] + residual
          up-pool x4 (4H -> 2H) + s1
        n_layers x [...]
        up-pool x4 (2H -> H) + s0
      n_layers x [...]  -> LayerNorm -> Linear(H, 256) logits (B, L, 256)

Causality: the down-pool reads p consecutive samples into one; the up-pool output of pooled step j
is shifted to cover samples (j+1)p ... (j+2)p - 1 (zeros for the first block), so every output at t
depends only on inputs <= t. Logits at t are the distribution of the *next* sample; the task feeds
tokens shifted right by one.

Generation (:meth:`SaShiMi.step`) runs every S4 layer as a recurrence and every pooling layer with
a small buffer, so each new sample costs O(1) in the length generated so far.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from tsmodels.layers.s4d import S4D

__all__ = ["SaShiMi", "DownPool", "UpPool"]

State = Any


class _Residual(nn.Module):
    """Pre-norm residual: x + dropout(layer(LayerNorm(x))). The layer has forward and, if stateful, step."""

    def __init__(self, d: int, layer: nn.Module, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.layer = layer
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.layer(self.norm(x)))

    def default_state(self, batch: int) -> State:
        return self.layer.default_state(batch) if isinstance(self.layer, S4D) else None

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if isinstance(self.layer, S4D):
            y, state = self.layer.step(self.norm(x), state)
        else:
            y = self.layer(self.norm(x))
        return x + y, state


def _blocks(d: int, n_layers: int, d_state: int, mlp_expand: int, dropout: float, s4_kwargs: dict) -> nn.ModuleList:
    layers = []
    for _ in range(n_layers):
        layers.append(_Residual(d, S4D(d, d_state=d_state, dropout=dropout, **s4_kwargs), dropout))
        if mlp_expand > 0:
            mlp = nn.Sequential(nn.Linear(d, mlp_expand * d), nn.GELU(), nn.Linear(mlp_expand * d, d))
            layers.append(_Residual(d, mlp, dropout))
    return nn.ModuleList(layers)


def _run(blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for b in blocks:
        x = b(x)
    return x


def _run_step(blocks: nn.ModuleList, x: torch.Tensor, states: list) -> tuple[torch.Tensor, list]:
    new = []
    for b, s in zip(blocks, states):
        x, s = b.step(x, s)
        new.append(s)
    return x, new


class DownPool(nn.Module):
    """(B, L, H) -> (B, L/p, H_out): p consecutive samples concatenated, then a linear map."""

    def __init__(self, d_in: int, d_out: int, pool: int):
        super().__init__()
        self.pool = pool
        self.linear = nn.Linear(d_in * pool, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, H = x.shape
        return self.linear(x.reshape(B, L // self.pool, self.pool * H))

    def step(self, x: torch.Tensor, buf: list) -> tuple[torch.Tensor | None, list]:
        """Collect samples; returns the pooled (B, H_out) once p have arrived, else None."""
        buf = buf + [x]
        if len(buf) < self.pool:
            return None, buf
        return self.linear(torch.cat(buf, dim=-1)), []


class UpPool(nn.Module):
    """(B, L/p, H_in) -> (B, L, H): a linear map to p samples, shifted one pooled step later so that
    the output at t never sees pooled inputs that include samples after t."""

    def __init__(self, d_in: int, d_out: int, pool: int):
        super().__init__()
        self.pool, self.d_out = pool, d_out
        self.linear = nn.Linear(d_in, d_out * pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, Lp, _ = x.shape
        y = self.linear(x)
        y = nn.functional.pad(y[:, :-1], (0, 0, 1, 0))
        return y.reshape(B, Lp * self.pool, self.d_out)

    def default_state(self, x_like: torch.Tensor, batch: int) -> list:
        # the shift puts zeros (not the bias) in the first p outputs
        return [torch.zeros(batch, self.d_out, device=x_like.device, dtype=x_like.dtype)] * self.pool

    def step(self, x: torch.Tensor | None, buf: list) -> tuple[torch.Tensor, list]:
        """Emit the next buffered output; refill from x (B, H_in) when the buffer runs out."""
        out, buf = buf[0], buf[1:]
        if not buf:
            if x is None:
                raise RuntimeError("UpPool.step: pooled input missing at the end of a block")
            buf = list(self.linear(x).reshape(x.shape[0], self.pool, self.d_out).unbind(1))
        elif x is not None:
            raise RuntimeError("UpPool.step: pooled input arrived mid-block")
        return out, buf


class _Centre(nn.Module):
    def __init__(self, blocks: nn.ModuleList):
        super().__init__()
        self.blocks = blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + _run(self.blocks, x)

    def default_state(self, batch: int, ref: torch.Tensor) -> State:
        return [b.default_state(batch) for b in self.blocks]

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y, state = _run_step(self.blocks, x, state)
        return x + y, state


class _Level(nn.Module):
    """One U-Net level: blocks, down-pool, inner level, up-pool + skip, blocks."""

    def __init__(self, d: int, d_inner: int, pool: int, inner: nn.Module, down_blocks, up_blocks):
        super().__init__()
        self.down_blocks, self.up_blocks = down_blocks, up_blocks
        self.down, self.inner, self.up = DownPool(d, d_inner, pool), inner, UpPool(d_inner, d, pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = _run(self.down_blocks, x)
        y = self.up(self.inner(self.down(s))) + s
        return _run(self.up_blocks, y)

    def default_state(self, batch: int, ref: torch.Tensor) -> State:
        return {
            "down_blocks": [b.default_state(batch) for b in self.down_blocks],
            "pool": [],
            "inner": self.inner.default_state(batch, ref),
            "unpool": self.up.default_state(ref, batch),
            "up_blocks": [b.default_state(batch) for b in self.up_blocks],
        }

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        s, down_states = _run_step(self.down_blocks, x, state["down_blocks"])
        pooled, pool_buf = self.down.step(s, state["pool"])
        inner_state, inner_out = state["inner"], None
        if pooled is not None:
            inner_out, inner_state = self.inner.step(pooled, inner_state)
        u, unpool_buf = self.up.step(inner_out, state["unpool"])
        y, up_states = _run_step(self.up_blocks, u + s, state["up_blocks"])
        return y, {"down_blocks": down_states, "pool": pool_buf, "inner": inner_state,
                   "unpool": unpool_buf, "up_blocks": up_states}


class SaShiMi(nn.Module):
    """SaShiMi autoregressive waveform model over ``n_classes`` quantized levels.

    Args:
        n_classes: quantization levels (256 for 8-bit mu-law).
        d_model: channels H at the full rate; each pooling multiplies them by ``expand``.
        n_layers: [S4 block, MLP block] pairs per level (and in the centre).
        pool: pooling factors, outermost first (default (4, 4)).
        expand: channel growth per pooling.
        d_state: S4D state size N.
        mlp_expand: MLP hidden width factor (0: no MLP blocks).
        dropout: in S4D layers and residual branches.
        init, dt_min, dt_max, s4_lr: forwarded to :class:`S4D`.
        sample_rate: stored for generation (the rate the model was trained at).
        n_labels: if > 0, a class-conditional model: a learned label embedding is added to the input
            at every sample (e.g. the spoken digit); 0 for the unconditional model of the paper.

    forward(tokens (B, L) int64, labels (B,) or None) -> logits (B, L, n_classes); logits[:, t]
    predict tokens[:, t+1].
    L is padded to a multiple of prod(pool) internally (causal, so padding does not change outputs).
    """

    def __init__(
        self,
        n_classes: int = 256,
        d_model: int = 64,
        n_layers: int = 2,
        pool: tuple[int, ...] | list[int] = (4, 4),
        expand: int = 2,
        d_state: int = 64,
        mlp_expand: int = 2,
        dropout: float = 0.0,
        init: str = "legs",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        s4_lr: float | None = 1e-3,
        sample_rate: int = 8000,
        n_labels: int = 0,
    ):
        super().__init__()
        # plain constructor arguments, saved in checkpoints so a model rebuilds without its run's config
        self.config = {"n_classes": n_classes, "d_model": d_model, "n_layers": n_layers, "pool": [int(p) for p in pool],
                       "expand": expand, "d_state": d_state, "mlp_expand": mlp_expand, "dropout": dropout, "init": init,
                       "dt_min": dt_min, "dt_max": dt_max, "s4_lr": s4_lr, "sample_rate": sample_rate,
                       "n_labels": n_labels}
        self.n_classes, self.sample_rate, self.n_labels = n_classes, sample_rate, int(n_labels)
        self.pool = tuple(int(p) for p in pool)
        s4_kwargs = {"init": init, "dt_min": dt_min, "dt_max": dt_max, "lr": s4_lr}
        dims = [d_model * expand**i for i in range(len(self.pool) + 1)]
        level: nn.Module = _Centre(_blocks(dims[-1], n_layers, d_state, mlp_expand, dropout, s4_kwargs))
        for i in reversed(range(len(self.pool))):
            level = _Level(dims[i], dims[i + 1], self.pool[i], level,
                           _blocks(dims[i], n_layers, d_state, mlp_expand, dropout, s4_kwargs),
                           _blocks(dims[i], n_layers, d_state, mlp_expand, dropout, s4_kwargs))
        self.embedding = nn.Embedding(n_classes, d_model)
        self.label_embedding = nn.Embedding(self.n_labels, d_model) if self.n_labels > 0 else None
        self.body = level
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes)

    @property
    def multiple(self) -> int:
        """Sequence lengths are padded to a multiple of this (the product of the pooling factors)."""
        m = 1
        for p in self.pool:
            m *= p
        return m

    def _embed(self, tokens: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        x = self.embedding(tokens)
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError("this SaShiMi is class-conditional: pass labels (B,)")
            e = self.label_embedding(labels)
            x = x + (e[:, None, :] if x.dim() == 3 else e)
        return x

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, L) int64 in [0, n_classes), labels (B,) if conditional -> logits (B, L, n_classes)."""
        L = tokens.shape[1]
        pad = (-L) % self.multiple
        x = self._embed(nn.functional.pad(tokens, (0, pad), value=self.n_classes // 2), labels)
        x = self.head(self.norm(self.body(x)))
        return x[:, :L]

    # -- recurrent generation ------------------------------------------------------------------
    def default_state(self, batch: int) -> State:
        """Initial generation state for ``batch`` sequences (every layer's cache, empty buffers)."""
        ref = self.embedding.weight
        return self.body.default_state(batch, ref)

    def setup_step(self) -> None:
        """Precompute every S4D layer's discretization for fast stepping (weights must not change)."""
        for m in self.modules():
            if isinstance(m, S4D):
                m.setup_step()

    def step(self, token: torch.Tensor, state: State, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """One sample: token (B,) int64 (labels (B,) if conditional) -> logits (B, n_classes) for the
        next sample, new state."""
        x, state = self.body.step(self._embed(token, labels), state)
        return self.head(self.norm(x)), state

    @torch.no_grad()
    def generate(
        self,
        n: int,
        length: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        start: int | None = None,
        callback: Callable[[int], None] | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample ``n`` sequences of ``length`` tokens autoregressively with the recurrent mode.

        Args:
            temperature: logits are divided by it (> 0).
            generator: torch.Generator on the model's device, for reproducible sampling.
            start: the token fed first (default: silence, n_classes // 2).
            callback: called with the number of samples done after each step (progress bars).
            labels: (n,) int64 class of each sequence (conditional models; default i % n_labels).
        Returns: (n, length) int64.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        was_training = self.training
        self.eval()
        self.setup_step()
        dev = self.embedding.weight.device
        token = torch.full((n,), self.n_classes // 2 if start is None else start, dtype=torch.long, device=dev)
        state = self.default_state(n)
        if self.n_labels > 0 and labels is None:
            labels = torch.arange(n, device=dev) % self.n_labels
        if labels is not None:
            labels = labels.to(dev)
        out = torch.empty(n, length, dtype=torch.long, device=dev)
        for t in range(length):
            logits, state = self.step(token, state, labels)
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            out[:, t] = token
            if callback is not None:
                callback(t + 1)
        self.train(was_training)
        return out
