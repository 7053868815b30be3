"""Regenerate the shallow-diffusion parity fixture from so-vits-svc 4.1's own diffusion code.

    git -C SO_VITS_SVC_REPO archive HEAD diffusion configs_template | tar -x -C /tmp/upstream
    python tests/data/sovits_diffusion/make_fixture.py /tmp/upstream

Builds two small random ``Unit2Mel`` models with upstream's classes (a full 200-step model with 3 speakers and
pitch augmentation; a shallow-only 100-step model with k_step_max 60), saves them in upstream's format
(``model_0.pt`` + ``diffusion.yaml``), and records inputs, the initial noise and upstream's output mel for every
sampler (and the training loss for a fixed step and noise) in ``cases.pt``. Only upstream's code is run here; none
of it is stored. Upstream's vocoder module (torchaudio + NSF-HiFiGAN) is not needed and is stubbed.
"""

from __future__ import annotations

import copy
import sys
import types
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).resolve().parent
UPSTREAM = Path()

MODELS = {
    "full": dict(input_channel=16, n_spk=3, use_pitch_aug=True, out_dims=20, n_layers=3, n_chans=16, n_hidden=12,
                 timesteps=200, k_step_max=0),
    "shallow": dict(input_channel=16, n_spk=1, use_pitch_aug=False, out_dims=20, n_layers=2, n_chans=16,
                    n_hidden=12, timesteps=100, k_step_max=60),
}
# (name, model, from noise?, k_step, method, speedup, batch items, speaker)
CASES = [
    ("shallow_ddpm", "full", False, 30, "dpm-solver++", 1, [0, 1], "ids"),
    ("shallow_ddim", "full", False, 100, "ddim", 10, [0, 1], "ids"),
    ("shallow_pndm", "full", False, 100, "pndm", 10, [0], "ids"),
    ("shallow_dpm", "full", False, 100, "dpm-solver", 10, [0, 1], "ids"),
    ("shallow_dpmpp", "full", False, 100, "dpm-solver++", 10, [0, 1], "ids"),
    ("shallow_unipc", "full", False, 100, "unipc", 10, [0, 1], "ids"),
    ("shallow_dpmpp_mix", "full", False, 100, "dpm-solver++", 10, [0, 1], "mix"),
    ("noise_ddpm", "full", True, 0, "ddim", 1, [0, 1], "ids"),
    ("noise_ddim_uneven", "full", True, 0, "ddim", 30, [0, 1], "ids"),
    ("noise_pndm", "full", True, 0, "pndm", 20, [1], "ids"),
    ("noise_dpm_5steps", "full", True, 0, "dpm-solver", 40, [0, 1], "ids"),
    ("noise_dpmpp", "full", True, 0, "dpm-solver++", 10, [0, 1], "ids"),
    ("noise_unipc_8steps", "full", True, 0, "unipc", 25, [0, 1], "ids"),
    ("noise_unipc", "full", True, 0, "unipc", 10, [0, 1], "ids"),
    ("shallowonly_dpmpp", "shallow", False, 60, "dpm-solver++", 10, [0, 1], "none"),
    ("shallowonly_unipc", "shallow", False, 50, "unipc", 10, [0, 1], "none"),
    ("shallowonly_ddim", "shallow", False, 60, "ddim", 20, [0, 1], "none"),
]


def import_upstream(root: str):
    global UPSTREAM
    UPSTREAM = Path(root).resolve()
    sys.path.insert(0, str(UPSTREAM))
    import diffusion  # noqa: F401  (upstream's package)

    stub = types.ModuleType("diffusion.vocoder")
    stub.Vocoder = object  # unit2mel imports it for load_model_vocoder only
    sys.modules["diffusion.vocoder"] = stub
    from diffusion.unit2mel import Unit2Mel

    return Unit2Mel


def build(Unit2Mel, kw: dict, seed: int):
    torch.manual_seed(seed)
    model = Unit2Mel(**kw)
    with torch.no_grad():  # a trained-looking random model: every weight non-zero (upstream zero-inits one)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def write_model(model, kw: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": 0, "model": model.state_dict()}, folder / "model_0.pt")
    cfg = yaml.safe_load((UPSTREAM / "configs_template" / "diffusion_template.yaml").read_text())
    cfg["data"]["encoder_out_channels"] = kw["input_channel"]
    cfg["model"].update({k: kw[k] for k in ("n_layers", "n_chans", "n_hidden", "use_pitch_aug", "timesteps",
                                            "k_step_max")})
    cfg["model"]["n_spk"] = kw["n_spk"]
    cfg["spk"] = {f"spk{i}": i for i in range(kw["n_spk"])}
    (folder / "diffusion.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def main(root: str) -> None:
    Unit2Mel = import_upstream(root)
    models = {name: build(Unit2Mel, kw, seed) for seed, (name, kw) in enumerate(MODELS.items())}
    for name, model in models.items():
        write_model(model, MODELS[name], HERE / name)

    g = torch.Generator().manual_seed(1234)
    frames, dim, mels = 24, 16, 20
    inputs = {
        "units": torch.randn(2, frames, dim, generator=g),
        "f0": 100 + 300 * torch.rand(2, frames, 1, generator=g),
        "volume": torch.rand(2, frames, 1, generator=g),
        "gt_mel": -10 + 9 * torch.rand(2, frames, mels, generator=g),
        "speaker": torch.tensor([[0], [2]]),
        "aug_shift": torch.tensor([[[2.0]], [[-3.0]]]),
        "mix": {0: 0.3, 2: 0.7},
    }
    inputs["f0"][:, :4] = 0.0  # unvoiced frames
    cases = []
    for i, (name, model_name, from_noise, k_step, method, speedup, items, spk) in enumerate(CASES):
        model = models[model_name]
        idx = torch.tensor(items)
        args = [inputs[k][idx] for k in ("units", "f0", "volume")]
        kwargs = dict(gt_spec=None if from_noise else inputs["gt_mel"][idx], infer=True, infer_speedup=speedup,
                      method=method, k_step=k_step, use_tqdm=False)
        if spk == "ids":
            kwargs["spk_id"] = inputs["speaker"][idx]
        elif spk == "mix":
            kwargs["spk_mix_dict"] = inputs["mix"]
        if MODELS[model_name]["use_pitch_aug"]:
            kwargs["aug_shift"] = inputs["aug_shift"][idx]
        seed = 100 + i
        torch.manual_seed(seed)
        # upstream's first draw: torch.randn(B, 1, M, N) from noise; for shallow diffusion randn_like of a
        # transposed (B, N, M) mel, which keeps its strides (and CPU fills a strided tensor element by element)
        if from_noise:
            noise = torch.randn(len(items), 1, mels, frames)[:, 0].transpose(1, 2).contiguous()
        else:
            noise = torch.empty(len(items), frames, mels).transpose(1, 2).normal_().transpose(1, 2).contiguous()
        torch.manual_seed(seed)
        with torch.no_grad():
            mel = model(*args, **kwargs)
        cases.append({"name": name, "model": model_name, "from_noise": from_noise, "k_step": k_step,
                      "method": method, "speedup": speedup, "items": items, "speaker": spk, "seed": seed,
                      "noise": noise.clone(), "mel": mel.clone()})

    losses = []
    for model_name in MODELS:
        model = models[model_name].train()
        kwargs = {"spk_id": inputs["speaker"]} if MODELS[model_name]["n_spk"] > 1 else {}
        if MODELS[model_name]["use_pitch_aug"]:
            kwargs["aug_shift"] = inputs["aug_shift"]
        torch.manual_seed(7)
        k = model.decoder.k_step
        t = torch.randint(0, k, (2,))
        noise = torch.empty(2, frames, mels).transpose(1, 2).normal_().contiguous()  # randn_like(transposed mel)
        torch.manual_seed(7)
        with torch.no_grad():
            loss = model(inputs["units"], inputs["f0"], inputs["volume"], gt_spec=inputs["gt_mel"], infer=False,
                         **kwargs)
        losses.append({"model": model_name, "t": t, "noise": noise, "loss": loss.detach().clone()})
        model.eval()

    torch.save({"inputs": copy.deepcopy(inputs), "cases": cases, "losses": losses}, HERE / "cases.pt")
    print(f"wrote {len(cases)} sampler cases and {len(losses)} losses to {HERE}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
