"""SaShiMi: shapes, causality (outputs at t unchanged when inputs after t change), conv mode
against the recurrent mode, pooling layers, generation length and seeded determinism, a tiny
overfit on real audio, and the task's loss shifting."""

import math

import pytest
import torch

from tsmodels.models.sashimi import DownPool, SaShiMi, UpPool
from tsmodels.tasks.audio_generation import AudioGenerationTask


def _tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(n_classes=256, d_model=8, n_layers=1, d_state=8, mlp_expand=1)
    cfg.update(kw)
    return SaShiMi(**cfg).eval()


def test_shapes_and_padding_to_pool_multiple():
    m = _tiny()
    x = torch.randint(0, 256, (3, 50))  # 50 is not a multiple of 16
    assert m(x).shape == (3, 50, 256)


@pytest.mark.parametrize("t", [0, 5, 15, 16, 37, 63])
def test_causality(t):
    m = _tiny()
    x = torch.randint(0, 256, (2, 64))
    x2 = x.clone()
    x2[:, t + 1:] = torch.randint(0, 256, (2, 64 - t - 1))
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    assert torch.allclose(y[:, : t + 1], y2[:, : t + 1], atol=1e-5)
    if t < 63:
        assert not torch.allclose(y[:, t + 1:], y2[:, t + 1:], atol=1e-4)


def test_pooling_shift_is_causal():
    torch.manual_seed(0)
    down, up = DownPool(3, 5, 4), UpPool(5, 3, 4)
    x = torch.randn(1, 16, 3)
    y = up(down(x))
    assert y.shape == (1, 16, 3)
    assert torch.all(y[:, :4] == 0)  # first block sees nothing
    x2 = x.clone()
    x2[:, 4:] += 1.0
    assert torch.allclose(up(down(x2))[:, :8], y[:, :8])  # outputs 4..7 see only samples 0..3


def test_conv_equals_recurrent():
    m = _tiny(pool=[4, 4], n_layers=1)
    x = torch.randint(0, 256, (2, 96))
    with torch.no_grad():
        y = m(x)
        m.setup_step()
        state = m.default_state(2)
        steps = []
        for t in range(96):
            logits, state = m.step(x[:, t], state)
            steps.append(logits)
    assert (torch.stack(steps, 1) - y).abs().max().item() < 1e-4


def test_generate_length_and_seed_determinism():
    m = _tiny()
    a = m.generate(2, 37, generator=torch.Generator().manual_seed(7))
    b = m.generate(2, 37, generator=torch.Generator().manual_seed(7))
    c = m.generate(2, 37, generator=torch.Generator().manual_seed(8))
    assert a.shape == (2, 37) and a.dtype == torch.long
    assert 0 <= a.min() and a.max() < 256
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError):
        m.generate(1, 4, temperature=0)


def test_task_predicts_each_sample_from_its_past():
    m = _tiny()
    task = AudioGenerationTask(m)
    x = torch.randint(0, 256, (1, 32))
    with torch.no_grad():
        logits = task(x)
        # first prediction comes from the start token alone
        direct = m(torch.full((1, 1), 128))[:, 0]
    assert torch.allclose(logits[:, 0], direct, atol=1e-5)


def test_tiny_overfit_on_real_audio(data_dir):
    from datamodules.speech import SpeechDataModule

    root = data_dir / "fsdd" / "recordings"
    if not root.is_dir():
        pytest.skip(f"{root} missing")
    dm = SpeechDataModule(root=root, length=128, batch_size=4, limit=4)
    tokens = next(iter(dm.train_dataloader()))[0]
    torch.manual_seed(0)
    m = SaShiMi(d_model=16, n_layers=1, d_state=8, mlp_expand=1).train()
    task = AudioGenerationTask(m)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    first = None
    for _ in range(25):
        loss = task._nll(tokens).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert first > math.log(256) * 0.8
    assert loss.item() < 0.6 * first


def test_conditional_model_uses_labels_in_both_modes():
    m = _tiny(n_labels=3)
    x = torch.randint(0, 256, (2, 48))
    lab = torch.tensor([0, 2])
    with torch.no_grad():
        y = m(x, lab)
        assert not torch.allclose(y, m(x, torch.tensor([1, 1])), atol=1e-4)
        m.setup_step()
        state = m.default_state(2)
        steps = []
        for t in range(48):
            logits, state = m.step(x[:, t], state, lab)
            steps.append(logits)
    assert (torch.stack(steps, 1) - y).abs().max().item() < 1e-4
    with pytest.raises(ValueError):
        m(x)
    assert m.generate(4, 5, generator=torch.Generator().manual_seed(0)).shape == (4, 5)


def test_conditional_generation_seeded_and_label_dependent():
    m = _tiny(n_labels=4)
    lab = torch.tensor([1, 3])
    a = m.generate(2, 40, generator=torch.Generator().manual_seed(11), labels=lab)
    b = m.generate(2, 40, generator=torch.Generator().manual_seed(11), labels=lab)
    c = m.generate(2, 40, generator=torch.Generator().manual_seed(11), labels=torch.tensor([0, 2]))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # default labels: i mod n_labels, the same as passing them
    d = m.generate(2, 40, generator=torch.Generator().manual_seed(11))
    e = m.generate(2, 40, generator=torch.Generator().manual_seed(11), labels=torch.tensor([0, 1]))
    assert torch.equal(d, e)
