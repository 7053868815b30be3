"""Which speaker a conversion renders: a name or id, a static mix, or a mix keyframed over time.

:class:`Speakers` turns :class:`~svc_pl.infer.options.ConvertOptions`'s ``speaker`` / ``speaker_keyframes`` into
what the synthesizer takes for a piece of audio (an id, (S,) weights or (1, S, T) weights per frame) and into the
speaker names that retrieval and unit matching look up. The offline converter and the live one share it.
"""

from __future__ import annotations

import numpy as np
import torch

from svc_pl.infer.loading import VoiceModel
from svc_pl.infer.options import ConvertOptions


class Speakers:
    """The speakers of ``model`` as a conversion chooses them."""

    def __init__(self, model: VoiceModel):
        self.model = model

    def weights(self, spec: dict) -> torch.Tensor:
        """{name or id: weight} -> (S,) weights summing to one."""
        w = torch.zeros(self.model.net.n_speakers)
        for k, v in spec.items():
            w[self.model.speaker_id(k)] += float(v)
        if w.sum() <= 0:
            raise ValueError(f"speaker mix {spec} has no positive weight")
        return w / w.sum()

    def for_piece(self, opts: ConvertOptions, start: int, n_frames: int):
        """Speaker conditioning for a piece starting at sample ``start``: an id, (S,) weights or (1, S, T)."""
        if opts.speaker_keyframes:
            times = np.array([t for t, _ in opts.speaker_keyframes], dtype=np.float64)
            weights = torch.stack([self.weights(w) for _, w in opts.speaker_keyframes]).numpy()
            frame_t = (start + (np.arange(n_frames) + 0.5) * self.model.hop_length) / self.model.sampling_rate
            mix = np.stack([np.interp(frame_t, times, weights[:, s]) for s in range(weights.shape[1])])
            return torch.from_numpy(mix).float().unsqueeze(0)
        if isinstance(opts.speaker, dict):
            return self.weights(opts.speaker)
        return self.model.speaker_id(opts.speaker)

    def target(self, opts: ConvertOptions) -> str | dict[str, float]:
        """The speaker whose unit statistics ``match_units`` moves to: its name, or {name: weight} for a static mix
        (a keyframed mix: its dominant speaker, as retrieval takes)."""
        if isinstance(opts.speaker, dict) and not opts.speaker_keyframes:
            return {self.name_of(k): float(w) for k, w in opts.speaker.items()}
        return self.name(opts)

    def name_of(self, spk: str | int) -> str:
        """A speaker's name, from its name or its id."""
        if isinstance(spk, int) or str(spk).isdigit():
            sid = int(spk)
            return next((k for k, v in self.model.speakers.items() if v == sid), str(sid))
        return str(spk)

    def name(self, opts: ConvertOptions) -> str:
        """The conversion's speaker name (a mix's dominant speaker)."""
        spk = opts.speaker
        if isinstance(spk, dict) or opts.speaker_keyframes:
            spk = max(spk.items(), key=lambda kv: kv[1])[0] if isinstance(spk, dict) else spk
        return self.name_of(spk)


def stack(spks: list) -> torch.Tensor:
    """Pieces' speakers (all ids, all (S,) weights, or (1, S, T) / (S,) weights) as one batch tensor."""
    if all(isinstance(s, int) for s in spks):
        return torch.tensor(spks, dtype=torch.long)
    if all(torch.is_tensor(s) and s.dim() == 1 for s in spks):
        return torch.stack(spks)
    return torch.cat([s if s.dim() == 3 else s.view(1, -1, 1).expand(1, -1, spks[0].shape[-1]) for s in spks])


def per_frame(speaker: int | torch.Tensor, n_speakers: int, n_frames: int) -> torch.Tensor:
    """A piece's speaker (an id, (S,) weights or (1, S, T) keyframed weights) as (1, T, S) weights per frame."""
    if isinstance(speaker, int):
        speaker = torch.nn.functional.one_hot(torch.tensor(speaker), n_speakers).float()
    if speaker.dim() == 1:
        return speaker.float().view(1, 1, -1).expand(1, n_frames, -1)
    return speaker.float().transpose(1, 2)
