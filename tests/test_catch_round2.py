"""Tests that fail on a broken feature where earlier ones passed: the cluster model and feature index pull units
toward the target speaker's and no other's; converted audio follows its input; bf16-mixed training computes in
bf16; grad_clip bounds the gradient the optimizer applies."""

import numpy as np
import pytest
import soundfile as sf
import torch

from svc_pl.cli import main as cli_main
from svc_pl.infer.converter import Converter, ConvertOptions
from tests.test_flags_observed import SR, CheapEncoder, _tone

SPEAKERS = ("alto", "tenor", "bass")  # the tiny voice's, ids 0, 1, 2


# ------------------------------------------------------------------------------------------------ cluster / index


@pytest.fixture(scope="module")
def speaker_units():
    """Units with speaker structure: each speaker's frames lie around 4 points near its own centre, the centres
    far apart and far from the (random) encoder's units. Returns (units by speaker, centre by speaker)."""
    rng = np.random.default_rng(0)
    centres, units = {}, {}
    for name in SPEAKERS:
        centre = rng.standard_normal(768).astype(np.float32) * 3
        points = centre + rng.standard_normal((4, 768)).astype(np.float32) * 0.3
        units[name] = (points[rng.integers(0, 4, 300)] + 0.05 * rng.standard_normal((300, 768))).astype(np.float32)
        centres[name] = centre
    return units, centres


def _units_seen(monkeypatch) -> list[torch.Tensor]:
    """The units (C, T) the synthesizer is given by converters built from now on; the synthesis itself is skipped
    (silence comes out): only the units matter here."""
    seen = []
    init = Converter.__init__

    def spying_init(self, *a, **k):
        init(self, *a, **k)
        hop = self.model.hop_length

        def infer(c, f0, *a, **k):
            seen.extend(c.float().cpu())
            return torch.zeros(c.size(0), 1, c.size(-1) * hop), f0

        monkeypatch.setattr(self.model.net, "infer", infer)

    monkeypatch.setattr(Converter, "__init__", spying_init)
    return seen


@pytest.mark.parametrize("mixer, ratio_flag", [("--cluster-model", "--cluster-ratio"),
                                                ("--feature-index", "--retrieval-ratio")])
def test_units_move_toward_the_target_speaker_only(tmp_path, speaker_units, mixer, ratio_flag, monkeypatch):
    """Through svc-pl infer: at ratio 0.5 every frame's distance to the target speaker's centre halves (a mix of the
    source frame and a frame of that speaker) while its distance to the other speakers' grows; the target is the
    speaker asked for by name, by id, or the heaviest of a mix."""
    from svc_pl.infer.cluster import ClusterModel
    from svc_pl.infer.retrieval import FeatureIndex
    from tests.test_infer import write_tiny_voice

    units, centres = speaker_units
    if mixer == "--cluster-model":
        path = tmp_path / "kmeans.pt"
        ClusterModel.fit(units, n_clusters=4, seed=0).save(path)
    else:
        path = tmp_path / "index"
        FeatureIndex.build(units, seed=0).save(path)
    import svc_pl.data.content as content

    monkeypatch.setattr(content, "random_content_encoder", lambda name, seed=0: CheapEncoder())  # units: any
    voice = write_tiny_voice(tmp_path) / "G_1.pth"
    src = tmp_path / "in.wav"
    sf.write(src, _tone(0.6, 0.3), SR, subtype="FLOAT")
    seen = _units_seen(monkeypatch)

    def units_for(*speaker_args, ratio="0.5"):
        seen.clear()
        assert cli_main(["infer", str(src), "-o", str(tmp_path / "out"), "-m", str(voice), *speaker_args, mixer,
                         str(path), ratio_flag, ratio, "--random-encoder", "--no-progress", "--precision", "fp32",
                         "--backend", "torch"]) == 0
        assert len(seen) == 1
        return seen[0].T  # (T, C)

    plain = units_for("-s", "alto", ratio="0")
    far = {name: torch.cdist(plain, torch.from_numpy(c)[None])[:, 0] for name, c in centres.items()}
    for args, target in ((["-s", "tenor"], "tenor"), (["-s", "2"], "bass"), (["--speaker-mix", "alto:0.7,tenor:0.3"],
                                                                              "alto")):
        mixed = units_for(*args)
        for name, c in centres.items():
            dist = torch.cdist(mixed, torch.from_numpy(c)[None])[:, 0]
            if name == target:
                assert (dist < 0.6 * far[name]).all(), (args, name, (dist / far[name]).max())
            else:
                assert (dist > 0.9 * far[name]).all(), (args, name, (dist / far[name]).min())


# ------------------------------------------------------------------------------------------------ conversion


def test_converted_audio_follows_the_input(tmp_path):
    """The conversion's output carries the input's pitch: the tiny voice's NSF source is a sine at the (transposed)
    F0, so the output's spectrum peaks there, and transposing moves the peak. A constant, silent or unrelated output
    fails (test_infer's test_output_length_and_silence passes a constant). The F0s are away from multiples of the
    frame rate (50 Hz), where the random decoder puts tones of its own."""
    from svc_pl.infer.loading import load_voice_model
    from tests.test_flags_observed import write_lively_voice

    conv = Converter(load_voice_model(write_lively_voice(tmp_path)), CheapEncoder())
    t = np.arange(int(1.5 * SR)) / SR
    y = (0.3 * sum(np.sin(2 * np.pi * k * 185.0 * t) / k for k in range(1, 8))).astype(np.float32)
    f0s = (185.0, 185.0 * 2 ** (3 / 12))  # 185 Hz, and 220 Hz three semitones up
    peaks = {}
    for transpose in (0, 3):
        out = conv.convert(y, SR, ConvertOptions(precision="fp32", backend="torch", transpose=transpose, speaker="tenor"))
        assert len(out) == len(y) and np.isfinite(out).all()
        seg = out[int(0.25 * SR):int(1.25 * SR)]  # 1 s in the steady middle: 1 Hz bins
        spec = np.abs(np.fft.rfft((seg - seg.mean()) * np.hanning(len(seg))))
        freqs = np.fft.rfftfreq(len(seg), 1 / SR)
        floor = np.median(spec[(freqs > 100) & (freqs < 2000)]) + 1e-12
        peaks[transpose] = [spec[np.abs(freqs - f) <= 3].max() / floor for f in f0s]
    print("spectral peak over the median at 185 / 220 Hz, per transpose:", peaks)
    assert peaks[0][0] > 10 and peaks[0][0] > 5 * peaks[0][1], peaks
    assert peaks[3][1] > 10 and peaks[3][1] > 5 * peaks[3][0], peaks


# ------------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from tests.datasets import make_dataset

    return make_dataset(tmp_path_factory.mktemp("ds"), clips_per_voice=2)  # one training clip per voice


def _fit_one_batch(root, dataset, *extra):
    """One batch of svc-pl fit with the tiny config: a discriminator step and a generator step."""
    from tests.test_training import TINY

    args = ["fit", "--config", TINY, "--data.dataset_dir", str(dataset), "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0",
            "--data.batch_size", "2", *extra]
    assert cli_main(args) == 0


def _on_train_start(monkeypatch, fn):
    from svc_pl.lightning.module import SVCModule

    start = SVCModule.on_train_start

    def wrapped(self):
        fn(self)
        return start(self)

    monkeypatch.setattr(SVCModule, "on_train_start", wrapped)


@pytest.mark.slow
def test_bf16_mixed_training_computes_in_bf16(tmp_path, dataset, monkeypatch):
    """--trainer.precision bf16-mixed really runs the generator's and the discriminator's convolutions in bf16
    (test_training's test_bf16_mixed_training_step checks finite losses only, which fp32 gives too)."""
    if not torch.amp.is_autocast_available("cpu"):
        pytest.skip("this torch build has no CPU autocast")
    dtypes = {"net": set(), "disc": set()}

    def hook(self):
        for part in dtypes:
            for m in getattr(self, part).modules():
                if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d):
                    m.register_forward_hook(lambda mod, args, out, part=part: dtypes[part].add(out.dtype))

    _on_train_start(monkeypatch, hook)
    _fit_one_batch(tmp_path / "run", dataset, "--trainer.precision", "bf16-mixed")
    assert torch.bfloat16 in dtypes["net"] and torch.bfloat16 in dtypes["disc"], dtypes


@pytest.mark.slow
def test_grad_clip_bounds_the_applied_gradient(tmp_path, dataset, monkeypatch):
    """With --model.grad_clip far below the gradients' norm, each optimizer step (discriminator, then generator)
    applies a gradient of norm grad_clip: measured before the step (as backward left it) and after it (what AdamW
    used: its first moment is (1 - beta1) times it)."""
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    clip = 0.01
    steps = []

    def norm(tensors) -> float:
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.float()) for t in tensors])))

    def grads(opt):
        return [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]

    def before(opt, args, kwargs):
        steps.append({"before": norm(grads(opt))})

    def after(opt, args, kwargs):
        beta1 = opt.param_groups[0]["betas"][0]
        moments = [opt.state[p]["exp_avg"] for g in opt.param_groups for p in g["params"] if p.grad is not None]
        steps[-1].update(after=norm(grads(opt)), moment=norm(moments) / (1 - beta1))

    handles = [register_optimizer_step_pre_hook(before), register_optimizer_step_post_hook(after)]
    try:
        _fit_one_batch(tmp_path / "run", dataset, "--model.grad_clip", str(clip))
    finally:
        for h in handles:
            h.remove()
    assert len(steps) == 2, steps
    for s in steps:
        assert s["before"] > 10 * clip, steps  # the clip engages
        assert s["after"] == pytest.approx(clip, rel=1e-3) and s["moment"] == pytest.approx(clip, rel=1e-3), steps
