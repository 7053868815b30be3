"""Regenerate the so-vits-svc variant parity fixtures from upstream's own code (data only is kept).

    git -C SO_VITS_SVC_REPO archive 730930d | tar -x -C /tmp/up41   # 4.1-Stable
    git -C SO_VITS_SVC_REPO archive 237f351 | tar -x -C /tmp/up40   # last 4.0 commit with 256-dim units
    python tests/data/sovits_variants/make_fixture.py /tmp/up41 /tmp/up40
    python tests/data/sovits_variants/make_fixture.py /tmp/up41 --only sr16k sr16k_model_rate   # some of them

Writes, next to this script:

- ``mel.pt``: upstream ``modules/mel_processing.py`` (``spectrogram_torch``, ``spec_to_mel_torch``,
  ``mel_spectrogram_torch``) on a fixed chirp + noise, at the 4.1 default settings (44.1 kHz, FFT 2048, hop 512)
  and at 16 kHz with a window shorter than the FFT (FFT 1024, window 800, hop 320, 64 mels, 50-7600 Hz).
- ``vol/``, ``tflow/``, ``tflow_shared/``, ``v40/``: a small random generator per variant (4.1 with
  ``vol_embedding``; 4.1 with ``use_transformer_flow``, without and with ``flow_share_parameter``; a 4.0
  ``SynthesizerTrn`` with 256-dim units and 4.0's ``config.json``), each as ``G_0.pth`` in upstream's layout,
  ``config.json``, ``inputs.pt`` and ``expected.pt`` (see README.md).
- ``sr16k/``, ``sr16k_model_rate/``: 4.1 at 16 kHz (hop 320), without ``model.sampling_rate`` (upstream computes
  the NSF source at its 44100 Hz default) and with ``model.sampling_rate: 16000``.

Only upstream's code is run here; none of it is stored. Every weight gets a random offset, so the layers
upstream zero-initialises (the flows' output projections) take part in the outputs.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SEED = 52468
FRAMES = 32

# small dimensions; the switches are what each variant is about
SMALL = dict(inter_channels=8, hidden_channels=8, filter_channels=16, n_heads=2, n_layers=2, gin_channels=8,
             n_speakers=2, upsample_rates=[8, 8, 8], upsample_kernel_sizes=[16, 16, 16], upsample_initial_channel=16,
             resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]])
RESBLOCK2 = dict(resblock="2", resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3], [1, 3]])
VARIANTS_41 = {
    "vol": dict(SMALL, ssl_dim=24, vol_embedding=True, flow_share_parameter=True),
    "tflow": dict(SMALL, **RESBLOCK2, ssl_dim=24, use_transformer_flow=True, n_layers_trans_flow=2,
                  n_flow_layer=3),
    "tflow_shared": dict(SMALL, **RESBLOCK2, ssl_dim=24, use_transformer_flow=True, flow_share_parameter=True,
                         n_layers_trans_flow=2),
}
# 16 kHz data (hop 320 = 10 x 8 x 4); the model block decides the NSF source's rate
SR16K_DATA = dict(sampling_rate=16000, filter_length=1024, hop_length=320, win_length=800, mel_fmax=8000)
SR16K = dict(SMALL, ssl_dim=24, upsample_rates=[10, 8, 4], upsample_kernel_sizes=[20, 16, 8])
VARIANTS_41["sr16k"] = SR16K
VARIANTS_41["sr16k_model_rate"] = dict(SR16K, sampling_rate=16000)
VARIANT_DATA = {"sr16k": SR16K_DATA, "sr16k_model_rate": SR16K_DATA}
SAME_WEIGHTS_AS = {"sr16k_model_rate": "sr16k"}  # same weights and inputs: only the source's rate differs
V40 = dict(SMALL, ssl_dim=256)
MEL_SETTINGS = {
    "sr44100": dict(sampling_rate=44100, n_fft=2048, hop=512, win=2048, n_mels=80, fmin=0.0, fmax=22050.0),
    "sr16000": dict(sampling_rate=16000, n_fft=1024, hop=320, win=800, n_mels=64, fmin=50.0, fmax=7600.0),
}
# upstream's top-level modules: purged between the 4.1 and the 4.0 trees (both are named alike)
_UPSTREAM_MODULES = ("models", "utils", "modules", "vdecoder", "hubert", "vencoder", "diffusion", "cluster")
_ROOT = ""


def _stub_if_missing() -> None:
    """4.1's utils.py imports faiss and scikit-learn at the top for its index training, which is not run here."""
    import importlib.util
    import types

    if importlib.util.find_spec("faiss") is None:
        sys.modules["faiss"] = types.ModuleType("faiss")
    if importlib.util.find_spec("sklearn") is None:
        cluster = types.ModuleType("sklearn.cluster")
        cluster.MiniBatchKMeans = object
        sys.modules["sklearn"] = types.ModuleType("sklearn")
        sys.modules["sklearn.cluster"] = cluster


def import_upstream(root: str):
    """Put one upstream tree first on sys.path and import its ``models`` (and ``utils``)."""
    _stub_if_missing()
    for name in list(sys.modules):
        if name.split(".")[0] in _UPSTREAM_MODULES:
            del sys.modules[name]
    global _ROOT
    if _ROOT in sys.path:
        sys.path.remove(_ROOT)
    _ROOT = str(Path(root).resolve())
    sys.path.insert(0, _ROOT)
    import models
    import utils

    return models, utils


def perturb(model: torch.nn.Module, seed: int, scale: float = 0.1) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval()


def save_upstream(model, folder: Path, config: dict, release: bool) -> None:
    """``G_0.pth`` + ``config.json``. The checkpoint is laid out as upstream's ``utils.save_checkpoint`` writes it
    (with a fresh AdamW state), or with ``release`` as its ``compress_model.py`` writes it: the posterior
    encoder (``enc_q.*``, unused by inference) dropped."""
    folder.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.AdamW(model.parameters(), config["train"]["learning_rate"], betas=config["train"]["betas"],
                            eps=config["train"]["eps"])
    state = {k: v for k, v in model.state_dict().items() if not (release and "enc_q" in k)}
    torch.save({"model": state, "iteration": 0, "optimizer": opt.state_dict(),
                "learning_rate": config["train"]["learning_rate"]}, folder / "G_0.pth")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def make_config(root: str, model_kw: dict, data_kw: dict | None = None) -> dict:
    cfg = json.loads((Path(root) / "configs_template" / "config_template.json").read_text())
    cfg["model"].update(model_kw)
    cfg["data"].update(data_kw or {})
    cfg["spk"] = {f"speaker{i}": i for i in range(model_kw["n_speakers"])}
    return cfg


def build(models, cfg: dict, seed: int):
    torch.manual_seed(seed)
    net = models.SynthesizerTrn(cfg["data"]["filter_length"] // 2 + 1,
                                cfg["train"]["segment_size"] // cfg["data"]["hop_length"], **cfg["model"])
    return perturb(net, seed + 1000)


def make_inputs(ssl_dim: int, seed: int, extra_f0: list[float] = (), vol: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(FRAMES, dtype=torch.float32)
    f0 = 180.0 * torch.pow(2.0, t / FRAMES * 1.5) + 10 * torch.sin(t / 3)  # a rising glide with vibrato
    f0[12:17] = 0.0  # unvoiced
    for i, v in enumerate(extra_f0):  # values where upstream versions part ways (see main)
        f0[FRAMES - len(extra_f0) + i] = v
    inputs = {"c": torch.randn(1, ssl_dim, FRAMES, generator=g), "f0": f0[None], "uv": (f0 > 0).float()[None],
              "sid": torch.tensor([1]), "vol": None}
    if vol:
        inputs["vol"] = 0.05 + 0.5 * torch.rand(1, FRAMES, generator=g)
    return inputs


@torch.no_grad()
def run_variant(net, utils, inputs: dict, predict_f0: bool, seeded_infer: bool) -> dict:
    """Upstream's outputs: intermediates (noise scale 0) and seeded ``infer`` audio."""
    c, f0, uv, sid, vol = inputs["c"], inputs["f0"], inputs["uv"], inputs["sid"], inputs["vol"]
    out = {"f0_coarse": utils.f0_to_coarse(f0.clone()).long()}
    mask = torch.ones(1, 1, FRAMES)
    g = net.emb_g(sid[None]).transpose(1, 2)
    x = net.pre(c) * mask + net.emb_uv(uv.long()).transpose(1, 2)
    if vol is not None:
        x = x + net.emb_vol(vol[:, :, None]).transpose(1, 2)
    out["prior_input"] = x
    _, out["m_p"], out["logs_p"], _ = net.enc_p(x, mask, f0=out["f0_coarse"], noice_scale=0)
    out["z_from_m_p"] = net.flow(out["m_p"], mask, g=g, reverse=True)

    def infer(**kw):
        if seeded_infer:  # 4.1 seeds inside infer
            return net.infer(c, f0, uv, g=sid, seed=SEED, **kw)
        torch.manual_seed(SEED)  # 4.0's infer has no seed: its caller's random state is what counts
        return net.infer(c, f0, uv, g=sid[None], **kw), None  # 4.0 takes (B, 1) speaker ids

    kw = {"vol": vol} if vol is not None else {}
    out["audio_noise0.4"], _ = infer(noice_scale=0.4, **kw)
    if predict_f0:  # the F0 decoder's prediction (it sees the volume embedding too); its audio is not kept
        _, out["f0_predicted"] = infer(noice_scale=0.4, predict_f0=True, **kw)
    for k, v in out.items():
        if v is not None:
            assert torch.isfinite(v.float()).all(), k
    return out


def make_mel(root: str) -> dict:
    import modules.mel_processing as mp

    out = {}
    g = torch.Generator().manual_seed(4321)
    for name, s in MEL_SETTINGS.items():
        sr = s["sampling_rate"]
        n = 16 * s["hop"] + s["n_fft"] // 3  # not a whole number of hops
        t = torch.arange(n, dtype=torch.float64) / sr
        f_lo, f_hi = 80.0, 0.45 * sr  # exponential chirp over most of the band
        k = math.log(f_hi / f_lo) / (n / sr)
        chirp = torch.sin(2 * math.pi * f_lo * (torch.exp(k * t) - 1) / k)
        y = (0.6 * chirp + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)).float()[None]
        y[:, : s["n_fft"]] = 0.0  # silent first frames: the 1e-6 magnitude floor and the 1e-5 mel clamp
        spec = mp.spectrogram_torch(y, s["n_fft"], sr, s["hop"], s["win"], center=False)
        mel_from_spec = mp.spec_to_mel_torch(spec, s["n_fft"], s["n_mels"], sr, s["fmin"], s["fmax"])
        mel = mp.mel_spectrogram_torch(y, s["n_fft"], s["n_mels"], sr, s["hop"], s["win"], s["fmin"], s["fmax"])
        out[name] = {"settings": dict(s), "audio": y, "spec": spec, "mel_from_spec": mel_from_spec, "mel": mel}
    return out


def coarse_table(utils41, utils40=None) -> dict:
    """Upstream's f0_to_coarse over 0-2000 Hz in 0.5 Hz steps, the values around the range ends, and every
    4.0/4.1 rounding tie in 50-1100 Hz found on a 2M-point grid; indices stored as uint8."""
    f0 = torch.cat([torch.arange(0, 2000.5, 0.5), torch.tensor([49.9, 50.0, 50.1, 1099.9, 1100.0, 1104.9, 1105.0,
                                                               1105.5, 1106.0, 1e4]), torch.tensor(_ties(None))])
    table = {"f0": f0, "coarse_41": utils41.f0_to_coarse(f0.clone()).to(torch.uint8)}
    if utils40 is not None:
        table["coarse_40"] = utils40.f0_to_coarse(f0.clone()).to(torch.uint8)
    return table


def _ties(limit: int | None) -> list[float]:
    import numpy as np

    mmin, mmax = 1127 * np.log(1 + 50.0 / 700), 1127 * np.log(1 + 1100.0 / 700)
    f = torch.linspace(50, 1100, 2_000_001)
    mel = 1127 * (1 + f / 700).log()
    v40 = ((mel - mmin) * 254 / (mmax - mmin) + 1 + 0.5).long()
    v41 = torch.round(mel * (254 / (mmax - mmin)) - (mmin * (254 / (mmax - mmin)) - 1.0)).long()
    return f[v40 != v41][:limit].tolist()


def coarse_boundaries() -> list[float]:
    """F0 values where 4.0's f0_to_coarse ((x + 0.5) floor, clip to 255) and 4.1's (round half to even,
    past 255 -> 0) give different bins: three rounding ties, then two values above 1105 Hz."""
    ties = [t for t in _ties(None) if t > 100][:3]
    assert len(ties) == 3
    return ties + [1200.0, 1500.0]


def main(root41: str, root40: str | None, only: list[str] | None = None) -> None:
    """Write every fixture, or with ``only`` just those named (variant folders, ``mel``, ``coarse``)."""
    def wanted(name: str) -> bool:
        return only is None or name in only

    models, utils = import_upstream(root41)
    if wanted("mel"):
        torch.save(make_mel(root41), HERE / "mel.pt")
    for name, kw in VARIANTS_41.items():
        if not wanted(name):
            continue
        i = list(VARIANTS_41).index(SAME_WEIGHTS_AS.get(name, name))
        cfg = make_config(root41, kw, VARIANT_DATA.get(name))
        net = build(models, cfg, seed=10 + i)
        save_upstream(net, HERE / name, cfg, release=True)
        inputs = make_inputs(kw["ssl_dim"], seed=20 + i, vol=kw.get("vol_embedding", False))
        expected = run_variant(net, utils, inputs, predict_f0=name == "vol", seeded_infer=True)
        torch.save(inputs, HERE / name / "inputs.pt")
        torch.save(expected, HERE / name / "expected.pt")
    utils41 = utils
    if only is not None:
        if wanted("coarse") or wanted("v40"):
            sys.exit("--only: coarse.pt and v40/ are written by a full run with both trees")
    elif root40:
        ties = coarse_boundaries()
        models, utils = import_upstream(root40)
        torch.save(coarse_table(utils41, utils), HERE / "coarse.pt")
        cfg = make_config(root40, V40)
        net = build(models, cfg, seed=40)
        save_upstream(net, HERE / "v40", cfg, release=False)
        inputs = make_inputs(V40["ssl_dim"], seed=41, extra_f0=ties)
        expected = run_variant(net, utils, inputs, predict_f0=False, seeded_infer=False)
        torch.save(inputs, HERE / "v40" / "inputs.pt")
        torch.save(expected, HERE / "v40" / "expected.pt")
    else:
        torch.save(coarse_table(utils41), HERE / "coarse.pt")
    print(f"wrote the fixtures to {HERE}")


if __name__ == "__main__":
    args = sys.argv[1:]
    only = None
    if "--only" in args:
        only, args = args[args.index("--only") + 1:], args[:args.index("--only")]
    if len(args) not in (1, 2) or only == []:
        sys.exit(__doc__)
    main(args[0], args[1] if len(args) == 2 else None, only)
