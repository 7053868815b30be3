"""The speaker adversary (``--model.speaker_adversary``): a probe on the prior's output that learns the speaker while
the prior, through a gradient reversal, is pushed to drop it."""

import pytest
import torch
import torch.nn.functional as F

from svc_pl.cli import main as cli_main
from svc_pl.data.dataset import Batch
from svc_pl.lightning.module import SpeakerProbe, SVCModule
from tests.datasets import make_dataset
from tests.test_speaker_lr import INFO, NET, TINY_NSF


def test_the_probe_descends_its_loss_and_the_prior_gets_the_gradient_reversed_and_scaled():
    torch.manual_seed(0)
    probe = SpeakerProbe(16, 3)
    m_p = torch.randn(2, 16, 10, requires_grad=True)
    mask = torch.ones(2, 1, 10)
    mask[1, :, 7:] = 0
    speaker = torch.tensor([0, 2])
    loss, acc = probe.loss(m_p, mask, speaker, 0.3)
    loss.backward()
    # the same cross-entropy without the reversal
    m_ref = m_p.detach().clone().requires_grad_(True)
    logits = probe.net(m_ref)
    ce = F.cross_entropy(logits, speaker.view(-1, 1).expand(-1, 10), reduction="none")
    valid = mask[:, 0] > 0
    ref = (ce * valid).sum() / valid.sum()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    ref.backward()
    torch.testing.assert_close(m_p.grad, -0.3 * m_ref.grad)
    assert m_p.grad[1, :, 7:].abs().max() == 0  # padding frames get no gradient
    assert 0.0 <= acc.item() <= 1.0


def _batch(speakers: list[int]) -> Batch:
    b, t, hop = len(speakers), 60, INFO["hop_length"]
    return Batch(units=torch.randn(b, INFO["unit_dim"], t), f0=torch.full((b, t), 200.0), voiced=torch.ones(b, t),
                 spec=torch.randn(b, INFO["filter_length"] // 2 + 1, t).abs(), audio=torch.randn(b, 1, t * hop) * 0.1,
                 lengths=torch.full((b,), t), speaker=torch.tensor(speakers), volume=torch.zeros(b, t), names=[])


def _prior_update(adversary: float) -> torch.Tensor:
    """The gradient of the prior's output projection on a fixed batch, with the adversary at ``adversary``."""
    torch.manual_seed(0)
    module = SVCModule(net=NET, dataset_info=INFO, learning_rate=1e-3, use_discriminator=False, c_stft=1.0,
                       speaker_adversary=adversary, segment_frames=20)
    batch = _batch([0, 1])
    out = module.net(batch.units, batch.f0, batch.voiced, batch.spec, batch.speaker, batch.lengths, batch.lengths)
    loss = out.audio.float().pow(2).mean()  # stands for the spectral losses: a gradient for every part
    if module.speaker_probe is not None:
        loss = loss + module.speaker_probe.loss(out.m_p, out.spec_mask, batch.speaker, adversary)[0]
    grads = torch.autograd.grad(loss, module.net.enc_p.proj.weight)
    return grads[0]


def test_the_adversary_is_off_by_default_and_reaches_the_prior_when_on():
    module = SVCModule(net=NET, dataset_info=INFO, use_discriminator=False, c_stft=1.0)
    assert module.speaker_probe is None
    on = SVCModule(net=NET, dataset_info=INFO, use_discriminator=False, c_stft=1.0, speaker_adversary=0.5)
    (opt,), _ = on.configure_optimizers()
    optimised = {id(p) for g in opt.param_groups for p in g["params"]}
    assert all(id(p) in optimised for p in on.speaker_probe.parameters())
    assert not any(n.startswith("speaker_probe") for n, _ in on.net.named_parameters())  # not part of the model
    # the prior's gradient differs when the adversary is on: it acts on what the model trains
    assert not torch.allclose(_prior_update(0.0), _prior_update(0.5))


@pytest.mark.slow
def test_fit_trains_the_probe_and_the_checkpoint_converts(tmp_path):
    """`svc-pl fit --model.speaker_adversary` trains the probe inside the training step (each of its weights got a
    gradient: AdamW keeps state only for those), the checkpoint holds it beside the model, and converts."""
    from svc_pl.infer.loading import load_voice_model

    ds = make_dataset(tmp_path / "ds", voices=("en", "en+f3"), clips_per_voice=2)
    assert cli_main(["fit", "--config", TINY_NSF, "--data.dataset_dir", str(ds), "--trainer.enable_progress_bar",
                     "false", "--trainer.limit_val_batches", "0", "--data.batch_size", "2", "--trainer.max_steps", "3",
                     "--trainer.default_root_dir", str(tmp_path / "on"), "--model.speaker_adversary", "0.5"]) == 0
    (ckpt,) = (tmp_path / "on").rglob("last.ckpt")
    saved = torch.load(ckpt, weights_only=False)
    n_probe = sum(k.startswith("speaker_probe.") for k in saved["state_dict"])
    assert n_probe == 4 and saved["hyper_parameters"]["speaker_adversary"] == 0.5
    gen = saved["optimizer_states"][0]
    probe_ids = gen["param_groups"][0]["params"][-n_probe:]  # the probe closes the generator's first group
    assert all(i in gen["state"] for i in probe_ids)
    model = load_voice_model(ckpt)
    assert not any(k.startswith("speaker_probe") for k in model.net.state_dict())
    audio = model.net.infer(torch.randn(1, model.net.ssl_dim, 20), torch.full((1, 20), 220.0), torch.ones(1, 20), 0)[0]
    assert torch.isfinite(audio).all()
