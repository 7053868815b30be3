"""The settings of a conversion (:class:`ConvertOptions`): one field per ``svc-pl infer`` flag, with its default,
its ``--help`` group and its help text written once, here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from svc_pl.diffusion.gaussian import Method


def _option(default, group: str, help: str):
    """A :class:`ConvertOptions` field: its default, the ``svc-pl infer --help`` group it is shown in and its help
    (the command's flags are derived from these, so each default and description is written once)."""
    return field(default=default, metadata={"group": group, "help": help})


OPTION_GROUPS = ("input/output", "pitch", "speaker", "quality", "diffusion", "speed")
# the decoder's default window per backend (frames). ONNX Runtime decodes equal windows of up to 1024 frames about as
# fast as whole clips and faster than 256 (decoder alone, 10 s of the 4.1 default: 3.9-4.5 s at 512, whole 3.8-3.9 s,
# 256: 4.4-5.0 s; RSS 1298 / 1535 / 1172 MiB; bench/results/infer-ort-windows.json) and 1024 converts 1.5 % (10 s) and
# 2.3 % (60 s) faster than 512 (fewer window joins: a clip of up to 20 s is one window), peak RSS +124 MiB at 10 s
# (in-process A/B with AVX2 kernels, docs/benchmarks.md); torch's 256 keeps one kernel shape for every length
DECODE_WINDOW = {"torch": 256, "onnxruntime": 1024}


@dataclass
class ConvertOptions:
    """Conversion settings, named as so-vits-svc users know them; each field's help says what it does."""

    speaker: str | int | dict = _option(
        0, "speaker", "target speaker name or id; or a static mix {name_or_id: weight}")
    speaker_keyframes: Sequence[tuple[float, dict]] | None = _option(
        None, "speaker", "time-varying mix [(seconds, {name_or_id: weight}), ...], linearly interpolated between "
        "keyframes (overrides the speaker)")
    transpose: float = _option(0.0, "pitch", "pitch shift in semitones")
    noise_scale: float = _option(0.4, "quality", "prior noise (so-vits-svc's noice_scale); no effect on DDSP "
                                "(tiny) voices, which decode the prior's mean")
    auto_predict_f0: bool = _option(
        False, "pitch", "predict F0 with the model instead of the (transposed) source F0 (speech, not singing)")
    f0_method: str = _option("pm", "pitch", "F0 extractor")
    f0_threshold: float | None = _option(
        None, "pitch", "F0 filter / voicing threshold (so-vits-svc's cr_threshold; default: the method's)")
    f0_model_path: str | None = _option(None, "pitch", "weights of the F0 extractor (rmvpe.pt for rmvpe)")
    cluster_ratio: float = _option(0.0, "quality", "share of k-means cluster centres mixed into the units (0-1)")
    retrieval_ratio: float = _option(0.0, "quality", "share of retrieved features mixed into the units (0-1)")
    match_units: float = _option(
        0.0, "quality", "move the input's content units to the target speaker's unit statistics (each dimension's "
        "mean and spread over its training units; the input's own from the frames converted so far): 0 off, 1 all "
        "the way. Takes out the source voice the units carry; needs a checkpoint from svc-pl fit or --unit-stats")
    loudness_mix: float = _option(
        1.0, "quality", "1 keeps the model's loudness, 0 follows the input's loudness envelope (so-vits-svc's -lea)")
    slice_db: float = _option(-40.0, "quality", "silence threshold of the slicer (dB)")
    max_silence_kept: float = _option(
        0.5, "quality", "seconds of silence kept around voiced audio; longer pauses are not converted and come "
        "out as exact silence (so-vits-svc keeps up to 5 s)")
    min_chunk_seconds: float = _option(
        5.0, "quality", "shortest voiced chunk before a pause may end it (so-vits-svc: 5 s)")
    pad_seconds: float = _option(0.5, "quality", "silence padded around each chunk before conversion (removed after)")
    clip_seconds: float = _option(
        0.0, "quality", "forced clip length (0: automatic, clips of at most max_chunk_seconds)")
    crossfade_seconds: float = _option(0.0, "quality", "overlap cross-faded between consecutive clips of a chunk")
    max_chunk_seconds: float = _option(
        10.0, "speed", "with no forced clip length, voiced chunks longer than this are cut into clips cross-faded "
        "over crossfade_seconds (at least 0.2 s), keeping time and memory linear in length")
    seed: int | None = _option(52468, "quality", "inference seed (so-vits-svc: 52468); None for unseeded")
    enhancer_adaptive_key: float = _option(0.0, "quality", "semitone shift of the enhancer's working range")
    precision: Literal["auto", "fp32", "bf16"] = _option(
        "auto", "speed", "bf16: content encoder and synthesizer under bfloat16 autocast (2-2.8x faster on CPUs "
        "with AVX-512 BF16/AMX, slower than fp32 on an H200 GPU, many times slower on other CPUs; F0, the sine "
        "source's phase and the output stay fp32; the audio moves from fp32's by -30 to -40 dB); auto: bf16 where "
        "the hardware computes it natively, else fp32")
    backend: Literal["auto", "torch", "onnxruntime"] = _option(
        "auto", "speed", "what runs the synthesizer: onnxruntime (CPU, fp32, the same audio as torch fp32 to 1e-6; "
        "its graphs are exported once per model into ~/.cache/svc_pl/onnx or $SVC_PL_CACHE), torch, or auto: "
        "torch on GPUs, where --precision resolves to bf16 and for DDSP (tiny) voices, onnxruntime for fp32 on the "
        "CPU")
    decode_window: int | None = _option(
        None, "speed", "frames the decoder works on at a time (0: whole clips); same audio up to float rounding, "
        "less memory (default: 1024 when ONNX Runtime runs the synthesizer, in equal windows about as fast as whole "
        "clips; 256 for torch, one kernel shape for every clip length)")
    length_bucket_seconds: float = _option(
        0.5, "speed", "pad clips with silence to a multiple of this length (0: a whole frame): few distinct "
        "shapes, so kernels are set up once per length and clips of one length share a batch")
    batch_size: int = _option(
        0, "speed", "most clips of one length synthesised together (0: 1 on CPU, where batching does not pay, "
        "8 on GPUs)")
    diffusion_model: str | None = _option(
        None, "diffusion", "so-vits-svc 4.1 diffusion model (model_<step>.pt) for --shallow-diffusion or "
        "--only-diffusion")
    diffusion_config: str | None = _option(
        None, "diffusion", "its diffusion.yaml (default: diffusion.yaml beside the diffusion model)")
    shallow_diffusion: bool = _option(
        False, "diffusion", "refine the synthesizer's output with the diffusion model: its mel is noised to k_step and "
        "denoised, then rendered by the vocoder (replaces the enhancer)")
    k_step: int = _option(100, "diffusion", "shallow-diffusion depth, at most the model's k_step_max")
    diffusion_method: Method = _option("dpm-solver++", "diffusion", "diffusion sampler")
    diffusion_speedup: int = _option(10, "diffusion", "diffusion steps per sampler step")
    second_encoding: bool = _option(
        False, "diffusion", "condition shallow diffusion on the units of the synthesized audio (re-encoded) instead "
        "of the source's")
    only_diffusion: bool = _option(
        False, "diffusion", "no synthesizer (-m not needed): the diffusion model generates the mel from noise with the "
        "source's units, F0 and volume, the vocoder renders it")
    vocoder: str | None = _option(
        None, "diffusion", "openvpi NSF-HiFiGAN vocoder folder the diffusion model was trained with (default: the "
        "--enhancer folder)")

    @property
    def uses_diffusion(self) -> bool:
        return self.shallow_diffusion or self.only_diffusion
