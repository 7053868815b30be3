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
    """One press of Convert: the files and the settings (named as :class:`~svc_pl.infer.options.ConvertOptions`)."""

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

    def settings(self) -> dict:
        """The settings (not the files), for the Compare list and the figures' JSON."""
        d = dataclasses.asdict(self)
        d.pop("files")
        d["model"] = str(self.model)
        return d


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


def find_index(model: str | os.PathLike) -> tuple[Path | None, Path | None]:
    """The k-means file and feature-index folder of ``svc-pl train-index`` beside the model (in its folder or the
    folder above, directly or one level down): ``(kmeans.pt or None, index folder or None)``."""
    from svc_pl.infer.retrieval import INDEX_MANIFEST

    cluster = index = None
    model = Path(model).resolve()
    for d in (model.parent, model.parent.parent):
        candidates = [d, *sorted(p for p in d.iterdir() if p.is_dir())] if d.is_dir() else []
        for c in candidates:
            if index is None and (c / INDEX_MANIFEST).is_file():
                index = c
            if cluster is None and (c / "kmeans.pt").is_file():
                cluster = c / "kmeans.pt"
    return cluster, index


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

    def converter(self, model: str, retrieval: bool, cluster: bool):
        """The converter of ``model`` (kept for the next request with the same file and the same index use)."""
        from svc_pl.infer.build import build_converter

        path = Path(model)
        if not path.is_file():
            raise UserFacingError(f"{model}: model file not found (pick one of the list or give a .ckpt or G_*.pth "
                                  "path)")
        kmeans, index = find_index(path)
        if retrieval and index is None:
            raise UserFacingError(f"{model}: the retrieval ratio needs the feature index of svc-pl train-index "
                                  "beside the model (a folder with manifest.json); none was found")
        if cluster and kmeans is None:
            raise UserFacingError(f"{model}: the cluster ratio needs kmeans.pt of svc-pl train-index beside the "
                                  "model; none was found")
        s = self.settings
        key = (str(path.resolve()), path.stat().st_mtime_ns, retrieval, cluster)
        if self._cached is None or self._cached[0] != key:
            self._cached = None  # free the old one before loading the new one
            conv = build_converter(path, s.content_encoder, encoder=s.encoder, random_encoder=s.random_encoder,
                                   device=s.device, cluster_model=kmeans if cluster else None,
                                   feature_index=index if retrieval else None)
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
        from svc_pl.infer.options import ConvertOptions

        report = progress or (lambda *_: None)
        files = [f for f in req.files if f]
        if not files:
            raise UserFacingError("no audio file given: upload or record one")
        opts = ConvertOptions(speaker=req.speaker, transpose=float(req.transpose), f0_method=req.f0_method,
                              auto_predict_f0=bool(req.auto_predict_f0), noise_scale=float(req.noise_scale),
                              retrieval_ratio=float(req.retrieval_ratio), cluster_ratio=float(req.cluster_ratio))
        with self._lock:
            report(0.0, "loading the model")
            conv = self.converter(req.model, opts.retrieval_ratio > 0, opts.cluster_ratio > 0)
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
