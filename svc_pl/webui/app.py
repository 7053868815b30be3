"""The Gradio page of ``svc-pl webui``: Convert, Compare, Train and Live tabs over :mod:`svc_pl.webui.convert`,
:mod:`svc_pl.webui.train` and :mod:`svc_pl.webui.live`. The only module of svc_pl that imports Gradio.

API endpoints (``gradio_client``): ``/convert`` (``audio``, ``model``, ``speaker``, ``transpose``, ``f0_method``
-> converted file, figures JSON), ``/convert_files`` (the page's form), ``/speakers``, ``/train_start``,
``/train_stop``, ``/train_resume``, ``/train_status``, ``/train_export``, ``/live_devices``, ``/live_file``,
``/live_start``, ``/live_stop``, ``/live_status``.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
import zipfile
from pathlib import Path

import gradio as gr

from svc_pl.errors import UserFacingError
from svc_pl.webui.convert import (
    ConvertRequest,
    ConvertService,
    ServerSettings,
    find_diffusion_models,
    find_enhancers,
    find_models,
    model_speakers,
)
from svc_pl.webui.live import LiveRequest, LiveService, list_devices
from svc_pl.webui.train import Trainer, TrainRequest

LOG = logging.getLogger(__name__)

COMPARE_SLOTS = 3
SPEAKER_GROUPS = 4  # upload groups of the Train tab, one speaker each (train_start: speaker_1, recordings_1, ...)
CONVERT_QUEUE = "convert"  # one conversion at a time, page and API alike


def _messages(fn):
    """Errors a user can act on become one message in the page (gr.Error); anything else is logged with its
    traceback and shown as one line. Either way the app keeps working."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UserFacingError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:
            LOG.exception("%s failed", fn.__name__)
            raise gr.Error(f"{type(err).__name__}: {err}", print_exception=False) from None

    return wrapper


def build_app(settings: ServerSettings) -> gr.Blocks:
    """The page; ``settings`` says where models are found and which content encoder runs them."""
    from svc_pl.data.audio import FORMATS
    from svc_pl.data.pitch import METHODS
    from svc_pl.diffusion.gaussian import METHODS as SAMPLERS
    from svc_pl.infer.options import ConvertOptions

    default = ConvertOptions()
    service = ConvertService(settings)
    live = LiveService(settings)
    trainer = Trainer(settings.runs or settings.workdir / "runs", settings.content_encoder, settings.encoder,
                      settings.random_encoder)
    models = find_models(settings.runs)
    diffusion_models, enhancers = find_diffusion_models(settings.runs), find_enhancers(settings.runs)

    def _model_path(model: str | None, uploaded: list[str] | None) -> str:
        """An uploaded model (copied with its config.json into a folder of its own) or the picked path."""
        files = [Path(f) for f in uploaded or []]
        weights = [f for f in files if f.suffix in (".ckpt", ".pth")]
        if weights:
            d = Path(tempfile.mkdtemp(prefix="model-", dir=settings.workdir))
            for f in files:
                shutil.copy(f, d / ("config.json" if f.suffix == ".json" else f.name))
            return str(d / weights[0].name)
        if not model:
            raise UserFacingError("pick a voice model (or give the path of a .ckpt or G_*.pth, or upload one)")
        return model

    @_messages
    def speakers(model: str, uploaded: list[str] | None = None):
        names = model_speakers(_model_path(model, uploaded))
        return gr.update(choices=names, value=names[0] if names else None)

    @_messages
    def convert_files(files, recording, model, uploaded_model, speaker, transpose, f0_method, auto_predict_f0,
                      noise_scale, retrieval_ratio, cluster_ratio, output_format, reference, speaker_mix,
                      loudness_mix, slice_db, pad_seconds, clip_seconds, crossfade_seconds, diffusion_model,
                      shallow_diffusion, k_step, diffusion_method, diffusion_speedup, second_encoding, enhancer,
                      enhancer_adaptive_key, match_units, history,
                      progress=gr.Progress()):  # noqa: B008  (how Gradio hands a progress bar in)
        req = ConvertRequest(list(files or []) + ([recording] if recording else []), _model_path(model, uploaded_model),
                             speaker if speaker not in (None, "") else 0, transpose, f0_method, auto_predict_f0,
                             noise_scale, retrieval_ratio, cluster_ratio, output_format, reference,
                             speaker_mix=speaker_mix or "", loudness_mix=loudness_mix, slice_db=slice_db,
                             pad_seconds=pad_seconds, clip_seconds=clip_seconds, crossfade_seconds=crossfade_seconds,
                             diffusion_model=diffusion_model or None, shallow_diffusion=shallow_diffusion,
                             k_step=int(k_step), diffusion_method=diffusion_method,
                             diffusion_speedup=int(diffusion_speedup), second_encoding=second_encoding,
                             enhancer=enhancer or None, enhancer_adaptive_key=enhancer_adaptive_key,
                             match_units=match_units)
        result = service.convert(req, progress=lambda f, d: progress(f, desc=d))
        downloads = [str(p) for p in result.outputs] + ([str(result.archive)] if result.archive else [])
        entry = {"audio": str(result.outputs[0]), "picture": str(result.conversion_png), "figures": result.figures}
        history = ([entry] + list(history or []))[:COMPARE_SLOTS]
        return (str(result.outputs[0]), downloads, str(result.conversion_png), str(result.f0_png), result.figures,
                history, *_compare_updates(history))

    @_messages
    def convert(audio: str, model: str, speaker: str, transpose: float, f0_method: str):
        """One file through one model: the converted file and the figures (F0 agreement, settings) as JSON."""
        req = ConvertRequest([audio], model, speaker if speaker not in (None, "") else 0, transpose or 0.0,
                             f0_method or "pm")
        result = service.convert(req)
        return str(result.outputs[0]), result.figures

    def _train_request(dataset, name, config, init_from, max_steps, checkpoint_every, log_every, f0_method,
                       groups=()):
        uploads = [(groups[i], groups[i + 1] or []) for i in range(0, len(groups), 2)]
        return TrainRequest(dataset or None, name, config, init_from or None, int(max_steps), int(checkpoint_every),
                            int(log_every), f0_method, uploads=uploads)

    @_messages
    def train_start(dataset, name, config, init_from, max_steps, checkpoint_every, log_every, f0_method,
                    speaker_1="", recordings_1=None, speaker_2="", recordings_2=None, speaker_3="", recordings_3=None,
                    speaker_4="", recordings_4=None):
        """Preprocess (a folder of speaker folders, or the uploaded groups) and fit, as processes of their own."""
        groups = (speaker_1, recordings_1, speaker_2, recordings_2, speaker_3, recordings_3, speaker_4, recordings_4)
        return trainer.start(_train_request(dataset, name, config, init_from, max_steps, checkpoint_every, log_every,
                                            f0_method, groups))

    @_messages
    def train_resume(dataset, name, config, init_from, max_steps, checkpoint_every, log_every, f0_method):
        return trainer.start(_train_request(dataset, name, config, init_from, max_steps, checkpoint_every, log_every,
                                            f0_method), resume=True)

    @_messages
    def train_stop():
        return trainer.stop()

    @_messages
    def train_export(name):
        """``svc-pl export`` of the run's newest checkpoint: G_*.pth, D_*.pth, config.json and all three zipped,
        copied into the app's own folder (the only files it serves)."""
        files = trainer.export(name)
        d = Path(tempfile.mkdtemp(prefix="export-", dir=settings.workdir))
        copies = [Path(shutil.copy(f, d / f.name)) for f in files]
        archive = d / f"{name}-sovits.zip"
        with zipfile.ZipFile(archive, "w") as z:
            for f in copies:
                z.write(f, f.name)
        return [str(f) for f in copies] + [str(archive)], f"exported {name}: {', '.join(f.name for f in copies)}"

    def train_status():
        s = trainer.status()
        rows = [{"step": step, "value": value, "curve": tag} for tag, curve in s["losses"].items()
                for step, value in curve]
        text = f"{s['state']} · step {s['step']}" + (f" · {s['run']}" if s["run"] else "")
        return text, _loss_frame(rows), s["log"], s

    def _live_request(model, uploaded_model, speaker, speaker_mix, transpose, f0_method, noise_scale,
                      auto_predict_f0, block_seconds, context_seconds, gate_db, input_device=None, output_device=None):
        return LiveRequest(_model_path(model, uploaded_model), speaker if speaker not in (None, "") else 0,
                           speaker_mix or "", transpose or 0.0, f0_method or "pm", noise_scale, bool(auto_predict_f0),
                           block_seconds, context_seconds, gate_db, input_device or None, output_device or None)

    def live_devices():
        ins, outs, message = list_devices()
        return (gr.update(choices=ins, value=ins[0] if ins else None),
                gr.update(choices=outs, value=outs[0] if outs else None), message)

    @_messages
    def live_file(audio, model, uploaded_model, speaker, speaker_mix, transpose, f0_method, noise_scale,
                  auto_predict_f0, block_seconds, context_seconds, gate_db):
        """``svc-pl live --input-file``: the streamed output (the input's length, delayed by the latency), the
        stream's figures and a one-line message."""
        req = _live_request(model, uploaded_model, speaker, speaker_mix, transpose, f0_method, noise_scale,
                            auto_predict_f0, block_seconds, context_seconds, gate_db)
        out, stats, message = live.stream_file(audio, req)
        return str(out), stats, message

    @_messages
    def live_start(model, uploaded_model, speaker, speaker_mix, transpose, f0_method, noise_scale, auto_predict_f0,
                   block_seconds, context_seconds, gate_db, input_device, output_device):
        return live.start(_live_request(model, uploaded_model, speaker, speaker_mix, transpose, f0_method,
                                        noise_scale, auto_predict_f0, block_seconds, context_seconds, gate_db,
                                        input_device, output_device))

    def live_stop():
        return live.stop()

    def live_status():
        s = live.status()
        return s["state"], s["stats"]

    with gr.Blocks(title="svc_pl", analytics_enabled=False) as app:
        gr.Markdown("## svc_pl: singing voice conversion")
        with gr.Tab("Convert"):
            with gr.Row():
                with gr.Column():
                    files = gr.File(label="Recordings (one or more)", file_count="multiple", elem_id="input-files")
                    recording = gr.Audio(label="or record", sources=["microphone"], type="filepath")
                    model = gr.Dropdown(models, value=models[0] if models else None, label="Voice model",
                                        allow_custom_value=True, info="found under --runs, or a path")
                    uploaded_model = gr.File(label="or upload a model (.ckpt, or G_*.pth with its config.json)",
                                             file_count="multiple")
                    speaker = gr.Dropdown([], label="Speaker", allow_custom_value=True)
                    with gr.Row():
                        transpose = gr.Slider(-24, 24, value=0, step=1, label="Transpose (semitones)")
                        f0_method = gr.Dropdown(list(METHODS), value="pm", label="F0 method")
                    with gr.Accordion("More settings", open=False):
                        auto_f0 = gr.Checkbox(label="Auto-predict F0 (speech, not singing)")
                        noise_scale = gr.Slider(0, 1, value=0.4, step=0.05, label="Noise scale")
                        retrieval = gr.Slider(0, 1, value=0, step=0.05, label="Feature-retrieval ratio",
                                              info="needs the index of svc-pl train-index beside the model")
                        cluster = gr.Slider(0, 1, value=0, step=0.05, label="Cluster ratio",
                                            info="needs kmeans.pt beside the model")
                        match_units = gr.Slider(0, 1, value=0, step=0.05, label="Match units to the target",
                                                info="the source's units given the target's unit statistics: "
                                                "a checkpoint of svc-pl fit, or unit_stats.pt of svc-pl "
                                                "train-index beside the model")
                        fmt = gr.Radio([f.lstrip(".") for f in FORMATS], value="wav", label="Output format")
                        reference = gr.Audio(label="Reference recording of the target (speaker similarity)",
                                             sources=["upload"], type="filepath")
                        speaker_mix = gr.Textbox("", label="Speaker mix (replaces the speaker)", elem_id="speaker-mix",
                                                 placeholder="alto:0.7, tenor:0.3", info="NAME:WEIGHT, ... as "
                                                 "svc-pl infer --speaker-mix")
                        loudness = gr.Slider(0, 1, value=default.loudness_mix, step=0.05, label="Loudness mix",
                                             info="1 keeps the model's loudness, 0 follows the input's")
                    with gr.Accordion("Slicing", open=False):
                        slice_db = gr.Slider(-80, 0, value=default.slice_db, step=1, label="Silence threshold (dB)")
                        with gr.Row():
                            pad = gr.Number(default.pad_seconds, label="Pad (s)", minimum=0)
                            clip = gr.Number(default.clip_seconds, label="Clip length (s, 0: automatic)", minimum=0)
                            crossfade = gr.Number(default.crossfade_seconds, label="Clip crossfade (s)", minimum=0)
                    with gr.Accordion("Shallow diffusion and enhancer", open=False):
                        diffusion = gr.Dropdown(diffusion_models, value=None, label="Diffusion model",
                                                allow_custom_value=True, elem_id="diffusion-model",
                                                info="so-vits-svc model_<step>.pt with diffusion.yaml beside it")
                        with gr.Row():
                            shallow = gr.Checkbox(label="Shallow diffusion", elem_id="shallow-diffusion")
                            k_step = gr.Slider(1, 1000, value=default.k_step, step=1, label="k-step",
                                               info="at most the model's k_step_max")
                        with gr.Row():
                            sampler = gr.Dropdown(list(SAMPLERS), value=default.diffusion_method, label="Sampler")
                            speedup = gr.Number(default.diffusion_speedup, label="Speed-up", precision=0, minimum=1)
                            second = gr.Checkbox(label="Second encoding")
                        enhancer = gr.Dropdown(enhancers, value=None, label="Enhancer (NSF-HiFiGAN folder)",
                                               allow_custom_value=True, elem_id="enhancer",
                                               info="also the vocoder shallow diffusion renders with")
                        enhancer_key = gr.Slider(-12, 12, value=default.enhancer_adaptive_key, step=1,
                                                 label="Enhancer adaptive key (semitones)")
                    go = gr.Button("Convert", variant="primary", elem_id="convert-btn")
                with gr.Column():
                    out_audio = gr.Audio(label="Converted (first file)", type="filepath", elem_id="output-audio",
                                         interactive=False, buttons=["download"])
                    out_files = gr.File(label="Download", file_count="multiple", elem_id="output-files",
                                        interactive=False)
                    picture = gr.Image(label="Conversion: mel spectrograms and F0", type="filepath",
                                       interactive=False, buttons=["download", "fullscreen"])
                    f0_picture = gr.Image(label="F0 agreement", type="filepath", interactive=False,
                                          buttons=["download", "fullscreen"])
                    figures = gr.JSON(label="Figures")
        with gr.Tab("Compare"):
            gr.Markdown("The last few conversions of this page, newest first, with their settings and figures.")
            history = gr.State([])
            slots = []
            with gr.Row():
                for i in range(COMPARE_SLOTS):
                    with gr.Column():
                        slots += [gr.Audio(label=f"#{i + 1}", type="filepath", interactive=False,
                                           buttons=["download"]),
                                  gr.Image(type="filepath", show_label=False, interactive=False,
                                           buttons=["download", "fullscreen"]),
                                  gr.JSON(label="settings and figures")]
        with gr.Tab("Train"):
            with gr.Row():
                with gr.Column():
                    t_data = gr.Textbox("", label="Dataset folder (one sub-folder per speaker, or a preprocessed "
                                              "dataset)", elem_id="train-dataset")
                    groups = []
                    with gr.Accordion("or upload recordings (one group per speaker)", open=False):
                        for i in range(SPEAKER_GROUPS):
                            with gr.Row():
                                groups += [gr.Textbox("", label=f"Speaker {i + 1}", scale=1,
                                                      elem_id=f"train-speaker-{i}"),
                                           gr.File(label="its recordings", file_count="multiple", scale=3,
                                                   elem_id=f"train-files-{i}")]
                    t_name = gr.Textbox(label="Run name", value="my-voice", elem_id="train-name")
                    t_config = gr.Dropdown(["tiny", "tiny-nsf", "44k", "44k-tiny"], value="tiny", label="Config",
                                           allow_custom_value=True)
                    t_init = gr.Textbox(label="Initialise from", value="tiny-base")
                    with gr.Row():
                        t_steps = gr.Number(400, label="Steps", precision=0)
                        t_ckpt = gr.Number(100, label="Checkpoint every", precision=0)
                        t_log = gr.Number(10, label="Log every", precision=0)
                    t_f0 = gr.Dropdown(list(METHODS), value="pm", label="F0 method (preprocessing)")
                    with gr.Row():
                        t_start = gr.Button("Start", variant="primary", elem_id="train-start")
                        t_stop = gr.Button("Stop", elem_id="train-stop")
                        t_resume = gr.Button("Resume", elem_id="train-resume")
                        t_export = gr.Button("Export", elem_id="train-export")
                with gr.Column():
                    t_state = gr.Markdown("idle", elem_id="train-state")
                    t_plot = gr.LinePlot(x="step", y="value", color="curve", label="Losses")
                    t_logtext = gr.Textbox(label="Log", lines=8, interactive=False)
                    t_json = gr.JSON(visible=False)
                    t_exported = gr.File(label="Exported so-vits-svc model (G_*.pth, D_*.pth, config.json)",
                                         file_count="multiple", interactive=False, elem_id="train-exported")
            timer = gr.Timer(2.0)
        with gr.Tab("Live"):
            gr.Markdown("Live conversion on the **server's** audio devices (svc-pl live), with the voice, speaker, "
                        "transpose and F0 settings of the Convert tab. 'Stream a file' runs the same stream on an "
                        "uploaded file (svc-pl live --input-file) and returns what the output device would play.")
            with gr.Row():
                with gr.Column():
                    with gr.Row():
                        l_in = gr.Dropdown([], label="Input device", allow_custom_value=True)
                        l_out = gr.Dropdown([], label="Output device", allow_custom_value=True)
                    l_refresh = gr.Button("List devices", size="sm")
                    l_devices = gr.Markdown(elem_id="live-devices")
                    l_block = gr.Slider(0.02, 1.0, value=0.08, step=0.01, label="Block (s)",
                                        info="the latency is about one block plus 40 ms")
                    with gr.Row():
                        l_context = gr.Number(1.0, label="Context (s)", minimum=0)
                        l_gate = gr.Number(-50.0, label="Noise gate (dBFS)")
                    with gr.Row():
                        l_start = gr.Button("Start", variant="primary", elem_id="live-start")
                        l_stop = gr.Button("Stop", elem_id="live-stop")
                    l_state = gr.Markdown("idle", elem_id="live-state")
                    l_stats = gr.JSON(label="Live stats (latency, blocks, deadline misses, block compute)")
                with gr.Column():
                    l_file = gr.Audio(label="Stream a file", sources=["upload", "microphone"], type="filepath")
                    l_go = gr.Button("Stream the file", elem_id="live-file-btn")
                    l_result = gr.Audio(label="Streamed output", type="filepath", interactive=False,
                                        buttons=["download"], elem_id="live-output")
                    l_file_stats = gr.JSON(label="Stream figures")
                    l_message = gr.Markdown()
            live_timer = gr.Timer(1.0)
        # the API endpoint other tools call: exactly these named inputs (the hidden components carry them)
        with gr.Row(visible=False):
            api_audio = gr.File(label="audio")
            api_model = gr.Textbox(label="model")
            api_speaker = gr.Textbox(label="speaker")
            api_transpose = gr.Number(0, label="transpose")
            api_f0 = gr.Textbox("pm", label="f0_method")
            api_out = gr.File(label="converted")
            api_figures = gr.JSON(label="figures")
            api_button = gr.Button("convert")
        api_button.click(convert, [api_audio, api_model, api_speaker, api_transpose, api_f0], [api_out, api_figures],
                         api_name="convert", concurrency_id=CONVERT_QUEUE, concurrency_limit=1)
        go.click(convert_files, [files, recording, model, uploaded_model, speaker, transpose, f0_method, auto_f0,
                                 noise_scale, retrieval, cluster, fmt, reference, speaker_mix, loudness, slice_db, pad,
                                 clip, crossfade, diffusion, shallow, k_step, sampler, speedup, second, enhancer,
                                 enhancer_key, match_units, history],
                 [out_audio, out_files, picture, f0_picture, figures, history, *slots], api_name="convert_files",
                 concurrency_id=CONVERT_QUEUE, concurrency_limit=1)
        model.change(speakers, [model, uploaded_model], speaker, api_name="speakers")
        uploaded_model.change(speakers, [model, uploaded_model], speaker, api_name=False)
        if models:
            app.load(speakers, [model, uploaded_model], speaker, api_name=False)
        train_inputs = [t_data, t_name, t_config, t_init, t_steps, t_ckpt, t_log, t_f0]
        t_start.click(train_start, train_inputs + groups, t_state, api_name="train_start")
        t_export.click(train_export, t_name, [t_exported, t_state], api_name="train_export")
        t_resume.click(train_resume, train_inputs, t_state, api_name="train_resume")
        t_stop.click(train_stop, None, t_state, api_name="train_stop")
        timer.tick(train_status, None, [t_state, t_plot, t_logtext, t_json], api_name="train_status",
                   show_progress="hidden")
        voice = [model, uploaded_model, speaker, speaker_mix, transpose, f0_method, noise_scale, auto_f0, l_block,
                 l_context, l_gate]
        l_refresh.click(live_devices, None, [l_in, l_out, l_devices], api_name="live_devices")
        app.load(live_devices, None, [l_in, l_out, l_devices], api_name=False)
        l_go.click(live_file, [l_file, *voice], [l_result, l_file_stats, l_message], api_name="live_file",
                   concurrency_id=CONVERT_QUEUE, concurrency_limit=1)
        l_start.click(live_start, [*voice, l_in, l_out], l_state, api_name="live_start")
        l_stop.click(live_stop, None, l_state, api_name="live_stop")
        live_timer.tick(live_status, None, [l_state, l_stats], api_name="live_status", show_progress="hidden")
    app.queue(default_concurrency_limit=1)
    return app


def _compare_updates(history: list[dict]) -> list:
    out = []
    for i in range(COMPARE_SLOTS):
        if i < len(history):
            h = history[i]
            out += [h["audio"], h["picture"], h["figures"]]
        else:
            out += [None, None, None]
    return out


def _loss_frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows or [], columns=["step", "value", "curve"])


def launch(settings: ServerSettings, host: str = "127.0.0.1", port: int = 7860, max_file_size: str = "200mb",
           block: bool = True):
    """Start the app (loopback unless ``host`` says otherwise, never a share link); returns ``(app, url)``.

    Files served: what the app wrote (``settings.workdir``) and Gradio's own upload cache, nothing else."""
    app = build_app(settings)
    for attempt in range(3):
        try:
            _, url, _ = app.launch(server_name=host, server_port=port, share=False, max_file_size=max_file_size,
                                   allowed_paths=[str(settings.workdir)], prevent_thread_lock=not block, quiet=True,
                                   ssr_mode=False, show_error=True, footer_links=["api"], pwa=False,
                                   mcp_server=False, enable_monitoring=False)
            return app, url
        except ValueError as err:  # Gradio gives its own server one 3 s request to answer: too short when busy
            if "localhost is not accessible" not in str(err) or attempt == 2:
                raise
            LOG.warning("the app did not answer on %s:%s within Gradio's 3 s (a busy machine?): starting again",
                        host, port)
            app.close()
    raise AssertionError("unreachable")
