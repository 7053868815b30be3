"""The content loss (``--model.c_content``): the units a frozen content encoder reads from the generated segment
against those of the real one, so the decoder is trained to keep the words as that encoder hears them."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from svc_pl.cli import main as cli_main
from svc_pl.data.content import load_content_encoder
from svc_pl.errors import UserFacingError
from svc_pl.lightning.losses import ContentLoss
from svc_pl.lightning.module import SVCModule
from tests.datasets import make_dataset
from tests.speech import synth_speech
from tests.test_speaker_adversary import _batch
from tests.test_speaker_lr import INFO, NET, TINY_NSF

WHISPER = str(Path(__file__).resolve().parent / "data" / "whisper_ppg" / "random_whisper.pt")


def _speech(tmp_path: Path, text: str, sr: int) -> torch.Tensor:
    import librosa

    y, rate = sf.read(synth_speech(tmp_path / f"{len(text)}.wav", text, voice="en"), dtype="float32")
    y = librosa.resample(y, orig_sr=rate, target_sr=sr)[:sr]  # one second, as a training segment
    return torch.from_numpy(np.pad(y, (0, sr - len(y)))).view(1, 1, -1)


@pytest.mark.parametrize("sr", [16000, 22050])
def test_zero_on_the_real_audio_larger_for_other_words_and_a_gradient_for_the_output(tmp_path, sr):
    loss = ContentLoss(load_content_encoder("whisper-ppg", WHISPER), sr)
    y = _speech(tmp_path, "She sells sea shells by the sea shore.", sr)
    other = _speech(tmp_path, "A big brown dog ran over the lazy fox.", sr)
    assert loss(y, y).item() == 0.0
    near = (y + 0.003 * torch.randn_like(y)).requires_grad_()
    d_near = loss(near, y)
    assert 0.0 < d_near.item() < 0.5 * loss(other, y).item()
    d_near.backward()
    assert near.grad.abs().sum() > 0  # the loss reaches the generated audio
    assert len(loss.state_dict()) == 0  # the frozen encoder is not part of what a checkpoint saves


def test_off_by_default_and_changes_what_the_decoder_learns_when_on():
    assert SVCModule(net=NET, dataset_info=INFO, use_discriminator=False, c_stft=1.0).content_loss is None

    def decoder_grad(c_content: float) -> torch.Tensor:
        torch.manual_seed(0)
        module = SVCModule(net=NET, dataset_info=INFO | {"content_encoder": "vec768l12"}, use_discriminator=False,
                           c_stft=1.0, segment_frames=20, c_content=c_content, content_loss_encoder=WHISPER)
        batch = _batch([0, 1])
        out = module.net(batch.units, batch.f0, batch.voiced, batch.spec, batch.speaker, batch.lengths, batch.lengths)
        y = batch.audio[..., :out.audio.shape[-1]]
        loss = module.mel_loss(out.audio, y)[0]
        if module.content_loss is not None:
            loss = loss + c_content * module.content_loss(out.audio, y)
        return torch.autograd.grad(loss, module.net.dec.out.weight)[0]

    assert not torch.allclose(decoder_grad(0.0), decoder_grad(1.0))


def test_a_content_loss_encoder_that_does_not_load_names_the_option(tmp_path):
    bad = tmp_path / "nothing.pt"
    with pytest.raises(UserFacingError, match="model.content_loss_encoder"):
        SVCModule(net=NET, dataset_info=INFO | {"content_encoder": "vec768l12"}, use_discriminator=False,
                  c_content=1.0, content_loss_encoder=str(bad))


@pytest.mark.slow
def test_fit_with_the_content_loss_logs_it_and_its_checkpoint_converts(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from svc_pl.infer.loading import load_voice_model

    ds = make_dataset(tmp_path / "ds", voices=("en", "en+f3"), clips_per_voice=2)

    def fit(run: str, c_content: float) -> dict:
        assert cli_main(["fit", "--config", TINY_NSF, "--data.dataset_dir", str(ds), "--trainer.enable_progress_bar",
                         "false", "--trainer.limit_val_batches", "0", "--data.batch_size", "2", "--trainer.max_steps",
                         "3", "--trainer.log_every_n_steps", "1", "--trainer.default_root_dir", str(tmp_path / run),
                         "--model.c_content", str(c_content), "--model.content_loss_encoder", WHISPER]) == 0
        (ckpt,) = (tmp_path / run).rglob("last.ckpt")
        return ckpt, torch.load(ckpt, weights_only=False)

    _, without = fit("without", 0.0)
    ckpt, saved = fit("run", 0.5)
    # the same seed and batches: only the content loss differs, and the generator's weights with it
    assert any(not torch.equal(v, without["state_dict"][k]) for k, v in saved["state_dict"].items()
               if k.startswith("net.dec."))
    assert saved["hyper_parameters"]["c_content"] == 0.5
    assert not any("content" in k or "_encoder" in k for k in saved["state_dict"])
    (events,) = {p.parent for p in (tmp_path / "run").rglob("events.out.tfevents*")}
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    values = [e.value for e in acc.Scalars("loss/g/content")]
    assert len(values) >= 2 and all(v > 0 and np.isfinite(v) for v in values)
    model = load_voice_model(ckpt)
    audio = model.net.infer(torch.randn(1, model.net.ssl_dim, 20), torch.full((1, 20), 220.0), torch.ones(1, 20), 0)[0]
    assert torch.isfinite(audio).all()
