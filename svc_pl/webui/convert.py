"""What the web UI's Convert tab does, without Gradio: find the voice models under a runs folder, build their
converters with the same front door as ``svc-pl infer`` (:func:`svc_pl.infer.build.build_converter`), convert
uploaded files into a folder of their own per request, and measure the results (the demo's conversion picture,
``svc-pl evaluate``'s F0 agreement and, with a reference recording, speaker similarity)."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from svc_pl.errors import UserFacingError

LOG = logging.getLogger(__name__)

MODEL_PATTERNS = ("*.ckpt", "G_*.pth")
EVAL_F0_METHOD = "fcpe"  # the tracker svc-pl evaluate and the demo score with


@dataclass(frozen=True)
class ServerSettings:
    """What ``svc-pl webui`` was started with: where models are found, the content encoder every model is run
    with (as ``svc-pl infer --content-encoder/--encoder/--random-encoder``), the device, and the folder the app
    writes into (one sub-folder per request)."""

    workdir: Path
    runs: Path | None = None
    content_encoder: str | None = None
    encoder: str | None = None
    random_encoder: bool = False
    device: str = "cpu"


@dataclass
class ConvertRequest:
    """One press of Convert: the files and the settings, named as :class:`~svc_pl.infer.options.ConvertOptions`
    (``speaker_mix`` as ``svc-pl infer --speaker-mix``; ``enhancer`` as ``--enhancer``)."""

    files: list[str]
    model: str
    speaker: str | int = 0
    transpose: float = 0.0
    f0_method: str = "pm"
    auto_predict_f0: bool = False
    noise_scale: float = 0.4
    retrieval_ratio: float = 0.0
    cluster_ratio: float = 0.0
    output_format: str = "wav"
    reference: str | None = None  # a recording of the target voice, for speaker similarity
    speaker_mix: str = ""  # "NAME:W,NAME:W" (svc-pl infer --speaker-mix): replaces the speaker when given
    loudness_mix: float = 1.0
    slice_db: float = -40.0
    pad_seconds: float = 0.5
    clip_seconds: float = 0.0
    crossfade_seconds: float = 0.0
    diffusion_model: str | None = None
    shallow_diffusion: bool = False
    k_step: int = 100
    diffusion_method: str = "dpm-solver++"
    diffusion_speedup: int = 10
    second_encoding: bool = False
    enhancer: str | None = None  # an openvpi NSF-HiFiGAN folder (model + config.json)
    enhancer_adaptive_key: float = 0.0
    match_units: float = 0.0

    def settings(self) -> dict:
        """The settings (not the files), for the Compare list and the figures' JSON."""
        d = dataclasses.asdict(self)
        d.pop("files")
        d["model"] = str(self.model)
        return d

    def options(self):
        """The :class:`~svc_pl.infer.options.ConvertOptions` ``svc-pl infer`` builds from the same settings."""
        from svc_pl.infer.options import ConvertOptions

        mix = parse_speaker_mix(self.speaker_mix)
        return ConvertOptions(
            speaker=mix or (self.speaker if self.speaker not in (None, "") else 0), transpose=float(self.transpose),
            f0_method=self.f0_method, auto_predict_f0=bool(self.auto_predict_f0), noise_scale=float(self.noise_scale),
            retrieval_ratio=float(self.retrieval_ratio), cluster_ratio=float(self.cluster_ratio),
            loudness_mix=float(self.loudness_mix), slice_db=float(self.slice_db), pad_seconds=float(self.pad_seconds),
            clip_seconds=float(self.clip_seconds), crossfade_seconds=float(self.crossfade_seconds),
            diffusion_model=self.diffusion_model or None, shallow_diffusion=bool(self.shallow_diffusion),
            k_step=int(self.k_step), diffusion_method=self.diffusion_method,
            diffusion_speedup=int(self.diffusion_speedup), second_encoding=bool(self.second_encoding),
            enhancer_adaptive_key=float(self.enhancer_adaptive_key), match_units=float(self.match_units))


def parse_speaker_mix(text: str | None) -> dict[str, float] | None:
    """``"alto:0.7, tenor:0.3"`` -> ``{"alto": 0.7, "tenor": 0.3}`` as ``svc-pl infer --speaker-mix`` reads it (a
    name without a weight weighs 1); None for an empty text.

    Raises:
        UserFacingError: a weight that is not a number, or no weight above 0.
    """
    if not text or not str(text).strip():
        return None
    mix: dict[str, float] = {}
    for part in str(text).split(","):
        name, _, w = part.partition(":")
        if not name.strip():
            raise UserFacingError(f"speaker mix {text!r}: an entry without a speaker name (write NAME:WEIGHT, ...)")
        try:
            mix[name.strip()] = float(w or 1)
        except ValueError:
            raise UserFacingError(f"speaker mix {text!r}: weight {w.strip()!r} of {name.strip()!r} is not a "
                                  "number (write NAME:WEIGHT, ...)") from None
    if not any(v > 0 for v in mix.values()):
        raise UserFacingError(f"speaker mix {text!r}: give at least one speaker a weight above 0")
    return mix


@dataclass
class ConvertResult:
    outputs: list[Path]  # one converted file per input, in the request's own folder
    archive: Path | None  # all outputs zipped, when there are several
    conversion_png: Path | None  # mel spectrograms + F0 curves of the first file (the demo's picture)
    f0_png: Path | None  # svc-pl evaluate's F0 plot of the first file
    figures: dict = field(default_factory=dict)  # per output name: F0 agreement (+ similarity); JSON-ready


def find_models(runs: Path | None) -> list[str]:
    """The ``.ckpt`` and ``G_*.pth`` files under ``runs``, newest first."""
    if runs is None or not Path(runs).is_dir():
        return []
    found = {p for pattern in MODEL_PATTERNS for p in Path(runs).rglob(pattern) if p.is_file()}
    return [str(p) for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def find_diffusion_models(runs: Path | None) -> list[str]:
    """so-vits-svc diffusion models under ``runs`` (``model_*.pt`` with a ``diffusion.yaml`` beside them)."""
    if runs is None or not Path(runs).is_dir():
        return []
    return sorted(str(p) for p in Path(runs).rglob("model_*.pt") if p.with_name("diffusion.yaml").is_file())


def find_enhancers(runs: Path | None) -> list[str]:
    """openvpi NSF-HiFiGAN folders under ``runs`` (a ``model`` file and its ``config.json``)."""
    if runs is None or not Path(runs).is_dir():
        return []
    return sorted(str(p.parent) for p in Path(runs).rglob("model") if p.is_file() and
                  p.with_name("config.json").is_file())


def find_index(model: str | os.PathLike) -> tuple[Path | None, Path | None]:
    """The k-means file and feature-index folder of ``svc-pl train-index`` beside the model (in its folder or the
    folder above, directly or one level down): ``(kmeans.pt or None, index folder or None)``."""
    from svc_pl.infer.retrieval import INDEX_MANIFEST

    cluster = index = None
    for c in _beside(model):
        if index is None and (c / INDEX_MANIFEST).is_file():
            index = c
        if cluster is None and (c / "kmeans.pt").is_file():
            cluster = c / "kmeans.pt"
    return cluster, index


def find_unit_stats(model: str | os.PathLike) -> Path | None:
    """The ``unit_stats.pt`` of ``svc-pl train-index`` beside the model, searched as :func:`find_index` searches."""
    from svc_pl.data.unit_stats import FILE_NAME

    return next((c / FILE_NAME for c in _beside(model) if (c / FILE_NAME).is_file()), None)


def _beside(model: str | os.PathLike) -> Iterator[Path]:
    """The folders where files made for a model are looked for: its own and the one above, each followed by its
    sub-folders."""
    model = Path(model).resolve()
    for d in (model.parent, model.parent.parent):
        if d.is_dir():
            yield d
            yield from sorted(p for p in d.iterdir() if p.is_dir())


def model_speakers(model: str | os.PathLike) -> list[str]:
    """The speaker names of a voice model (ids as strings for models without names)."""
    from svc_pl.infer.loading import load_voice_model

    vm = load_voice_model(model)
    if vm.speakers:
        return [k for k, _ in sorted(vm.speakers.items(), key=lambda kv: kv[1])]
    return [str(i) for i in range(vm.net.n_speakers)]


class ConvertService:
    """Converts requests one at a time (the app queues them) with a cached converter per model file."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        Path(settings.workdir).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._cached: tuple[tuple, object] | None = None

    def converter(self, model: str, opts, enhancer: str | None = None):
        """The converter of ``model`` for the options ``opts`` (:class:`~svc_pl.infer.options.ConvertOptions`),
        built by :func:`svc_pl.infer.build.build_converter` as ``svc-pl infer`` builds it, with the index files
        found beside the model and ``enhancer`` (a folder); kept for the next request that needs the same."""
        from svc_pl.infer.build import build_converter
        from svc_pl.infer.diffusion import requested_speakers

        path = Path(model)
        if not path.is_file():
            raise UserFacingError(f"{model}: model file not found (pick one of the list or give a .ckpt or G_*.pth "
                                  "path)")
        retrieval, cluster = opts.retrieval_ratio > 0, opts.cluster_ratio > 0
        kmeans, index = find_index(path)
        if retrieval and index is None:
            raise UserFacingError(f"{model}: the retrieval ratio needs the feature index of svc-pl train-index "
                                  "beside the model (a folder with manifest.json); none was found")
        if cluster and kmeans is None:
            raise UserFacingError(f"{model}: the cluster ratio needs kmeans.pt of svc-pl train-index beside the "
                                  "model; none was found")
        for what, p, kind in (("diffusion model", opts.diffusion_model, "file"), ("enhancer", enhancer, "folder")):
            if p and not (Path(p).is_file() if kind == "file" else Path(p).is_dir()):
                raise UserFacingError(f"{p}: {what} {kind} not found")
        if opts.shallow_diffusion and not opts.diffusion_model:
            raise UserFacingError("shallow diffusion needs a diffusion model (so-vits-svc's model_<step>.pt with "
                                  "its diffusion.yaml beside it)")
        s = self.settings
        diffusion = ((str(opts.diffusion_model), Path(opts.diffusion_model).stat().st_mtime_ns, opts.k_step,
                      opts.diffusion_method, opts.diffusion_speedup, tuple(map(str, requested_speakers(opts))))
                     if opts.uses_diffusion else None)
        stats = find_unit_stats(path) if opts.match_units > 0 else None  # used where the model stores none
        key = (str(path.resolve()), path.stat().st_mtime_ns, retrieval, cluster, diffusion, enhancer or None,
               str(stats) if stats else None)
        if self._cached is None or self._cached[0] != key:
            self._cached = None  # free the old one before loading the new one
            conv = build_converter(path, s.content_encoder, encoder=s.encoder, random_encoder=s.random_encoder,
                                   device=s.device, options=opts, enhancer=enhancer or None,
                                   cluster_model=kmeans if cluster else None,
                                   feature_index=index if retrieval else None)
            if stats and conv.unit_matcher is None:  # a model without its own: train-index's file beside it
                from svc_pl.data.unit_stats import read_unit_stats
                from svc_pl.infer.unit_match import UnitMatcher

                conv.unit_matcher = UnitMatcher(read_unit_stats(stats), str(stats))
            if opts.match_units > 0 and conv.unit_matcher is None:
                raise UserFacingError(f"{model}: matching units needs the unit statistics of the speakers' training "
                                      "data: this model stores none and no unit_stats.pt (svc-pl train-index) is "
                                      "beside it")
            self._cached = (key, conv)
        return self._cached[1]

    def convert(self, req: ConvertRequest, progress=None) -> ConvertResult:
        """Convert every file of ``req`` into a fresh folder of its own and measure the first one.

        Args:
            progress: optional ``callable(fraction, description)``.

        Raises:
            UserFacingError: no files, a bad file, a bad model or setting (the message names which).
        """
        from svc_pl.infer.batch import Job, convert_file
        from svc_pl.infer.build import check_speakers
        report = progress or (lambda *_: None)
        files = [f for f in req.files if f]
        if not files:
            raise UserFacingError("no audio file given: upload or record one")
        opts = req.options()
        with self._lock:
            report(0.0, "loading the model")
            conv = self.converter(req.model, opts, req.enhancer)
            check_speakers(conv.model, opts)
            out_dir = Path(tempfile.mkdtemp(prefix="convert-", dir=self.settings.workdir))
            outputs = []
            for i, src in enumerate(files):
                report(i / (len(files) + 1), f"converting {Path(src).name}")
                name = _unique(f"{Path(src).stem}.{req.output_format.lstrip('.')}", outputs)
                convert_file(conv, Job(str(src), str(out_dir / name)), opts)
                outputs.append(out_dir / name)
        report(len(files) / (len(files) + 1), "measuring")
        result = ConvertResult(outputs, None, None, None)
        if len(outputs) > 1:
            result.archive = out_dir / "converted.zip"
            with zipfile.ZipFile(result.archive, "w") as z:
                for p in outputs:
                    z.write(p, p.name)
        result.figures = {"settings": req.settings(), "files": {}}
        for i, (src, out) in enumerate(zip(files, outputs)):
            result.figures["files"][out.name] = self._measure(src, out, req, out_dir if i == 0 else None, result)
        report(1.0, "done")
        return result

    def _measure(self, src: str, out: Path, req: ConvertRequest, png_dir: Path | None, result: ConvertResult) -> dict:
        from svc_pl.data.audio import load_audio
        from svc_pl.evaluate import evaluate_f0, plot_f0, speaker_similarity

        y, sr = load_audio(src)
        c, csr = load_audio(out)
        f0 = evaluate_f0(y, c, sr, csr, transpose=float(req.transpose), method=EVAL_F0_METHOD)
        figures = {"f0": _finite(f0.to_dict())}
        if req.reference:
            r, rsr = load_audio(req.reference)
            figures["similarity"] = _finite(speaker_similarity(c, csr, r, rsr, source=y, sr_source=sr))
        if png_dir is not None:
            from svc_pl.evaluate import plot_conversion

            result.conversion_png = plot_conversion(y, sr, c, csr, float(req.transpose), png_dir / "conversion.png")
            result.f0_png = png_dir / "f0.png"
            plot_f0(f0, str(result.f0_png))
        return figures


def _unique(name: str, taken: list[Path]) -> str:
    names = {p.name for p in taken}
    stem, dot, ext = name.rpartition(".")
    k = 1
    while name in names:
        k += 1
        name = f"{stem}-{k}{dot}{ext}"
    return name


def _finite(d: dict) -> dict:
    """NaN/inf -> None, so the figures are valid JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
