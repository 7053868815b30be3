"""``ConvertOptions`` as command-line flags: one flag per field (its type, default, choices and help taken from the
field), the namespace read back into options, and the converter those flags describe. ``svc-pl infer``,
``svc-pl live`` and the web UI's Live tab build their parsers and converters from here."""

from __future__ import annotations

import argparse
import json

# ConvertOptions fields whose flags are not --field-name: short forms and the names users know
_FLAGS: dict[str, tuple[str, ...]] = {
    "transpose": ("-t", "--transpose"),
    "noise_scale": ("-n", "--noise-scale"),
    "f0_method": ("--f0",),
    "f0_model_path": ("--f0-model",),
}
_METAVARS = {"f0_model_path": "PATH", "diffusion_model": "PATH", "diffusion_config": "PATH", "vocoder": "DIR"}
# fields set by flags of their own (see options_from_args): a name or id, a mix, or a keyframe file
_SPEAKER_FIELDS = ("speaker", "speaker_keyframes")


def option_groups(p: argparse.ArgumentParser) -> dict[str, argparse._ArgumentGroup]:
    from svc_pl.infer.options import OPTION_GROUPS

    return {name: p.add_argument_group(name) for name in OPTION_GROUPS}


def add_option_flags(groups: dict[str, argparse._ArgumentGroup]) -> None:
    """One flag per :class:`ConvertOptions` field (but the speaker's), its type, default, choices and help
    taken from the field."""
    import dataclasses
    import typing

    from svc_pl.data.pitch import METHODS
    from svc_pl.infer.options import ConvertOptions

    hints = typing.get_type_hints(ConvertOptions)
    for f in dataclasses.fields(ConvertOptions):
        if f.name in _SPEAKER_FIELDS:
            continue
        flags = _FLAGS.get(f.name, ("--" + f.name.replace("_", "-"),))
        kwargs = {"dest": f.name, "default": f.default, "help": f.metadata["help"]}
        kind = hints[f.name]
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if f.default else "store_true"
        else:
            if typing.get_origin(kind) is typing.Literal:
                kwargs["choices"], kind = typing.get_args(kind), str
            elif f.name == "f0_method":
                kwargs["choices"] = METHODS
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            kwargs["type"] = args[0] if args else kind
            if f.default is not None:
                kwargs["help"] += " (default: %(default)s)"
            if f.name in _METAVARS:
                kwargs["metavar"] = _METAVARS[f.name]
        groups[f.metadata["group"]].add_argument(*flags, **kwargs)


def options_from_args(args):
    import dataclasses

    from svc_pl.infer.options import ConvertOptions

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ConvertOptions)
              if f.name not in _SPEAKER_FIELDS}
    if args.speaker is not None:
        values["speaker"] = args.speaker
    if args.speaker_mix:
        mix = {}
        for part in args.speaker_mix.split(","):
            name, _, w = part.partition(":")
            mix[name.strip()] = float(w or 1)
        values["speaker"] = mix
    if args.speaker_keyframes:
        with open(args.speaker_keyframes, encoding="utf-8") as f:
            values["speaker_keyframes"] = [(float(t), dict(w)) for t, w in json.load(f)]
    return ConvertOptions(**values)


class ConverterFactory:
    """Builds the converter on a given device (picklable, for multi-process runs)."""

    def __init__(self, args):
        self.args = args

    def __call__(self, device):
        from svc_pl.infer.build import build_converter

        a = self.args
        return build_converter(a.model, a.content_encoder, encoder=a.encoder, random_encoder=a.random_encoder,
                               config=a.config, device=device, options=options_from_args(a), enhancer=a.enhancer,
                               cluster_model=a.cluster_model, feature_index=a.feature_index,
                               unit_stats=getattr(a, "unit_stats", None))


def check_speaker(converter, opts) -> None:
    from svc_pl.infer.build import check_speakers

    check_speakers(converter.model, opts)
    converter.check_match_units(opts)
