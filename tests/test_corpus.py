"""The base's corpus: which voice renders which sentence, and the sung sentences (words beyond the five lyrics)."""

import numpy as np
import pytest

from svc_pl.corpus import (
    BASE_VOICES,
    EXTRA_SENTENCES,
    HELD_OUT_MORE,
    HELD_OUT_MORE_SENTENCES,
    MELODIES,
    SENTENCES,
    SUNG_SENTENCE_IDS,
    SUNG_SENTENCES,
    SUS_SENTENCE_IDS,
    SUS_SENTENCES,
    TRAIN_MELODIES,
    TRAIN_SENTENCES,
    VOICES,
    render_voice,
    spread_over,
    text_of,
)


@pytest.mark.parametrize("items,k", [(EXTRA_SENTENCES, 3), (EXTRA_SENTENCES, 5), (SUNG_SENTENCE_IDS, 4),
                                     (SUS_SENTENCE_IDS, 2), (SUS_SENTENCE_IDS, 1)])
def test_each_item_goes_to_k_different_voices_and_the_load_is_even(items, k):
    n = len(BASE_VOICES)
    per_voice = [spread_over(items, i, n, k) for i in range(n)]
    for item in items:
        assert sum(item in got for got in per_voice) == k, item
    sizes = [len(got) for got in per_voice]
    assert max(sizes) - min(sizes) <= 2, sizes


def test_sung_sentences_are_new_words_at_their_own_indices():
    assert [SENTENCES[i] for i in SUNG_SENTENCE_IDS] == SUNG_SENTENCES and len(set(SENTENCES)) == len(SENTENCES)
    assert text_of(f"raw/es_m1/sungs_{SUNG_SENTENCE_IDS[3]}.wav") == SUNG_SENTENCES[3]
    # the unpredictable sentences come after them, so the indices of the base's earlier material never moved
    assert SUS_SENTENCE_IDS[0] == SUNG_SENTENCE_IDS[-1] + 1 == 136
    assert [SENTENCES[i] for i in SUS_SENTENCE_IDS] == SUS_SENTENCES
    assert text_of(f"raw/es_m1/speech_{SUS_SENTENCE_IDS[-1]}.wav") == SUS_SENTENCES[-1]


def test_more_held_out_sentences_come_last_and_are_in_none_of_the_base_material():
    """bench_quality --more-held-out judges on these: appended after everything the base renders (its indices never
    moved), no index in any of the base's lists, and no sentence the base speaks or sings under another index."""
    assert HELD_OUT_MORE[0] == SUS_SENTENCE_IDS[-1] + 1 and HELD_OUT_MORE[-1] == len(SENTENCES) - 1
    assert [SENTENCES[i] for i in HELD_OUT_MORE] == HELD_OUT_MORE_SENTENCES
    base = set(TRAIN_SENTENCES) | set(EXTRA_SENTENCES) | set(SUNG_SENTENCE_IDS) | set(SUS_SENTENCE_IDS)
    assert not base & set(HELD_OUT_MORE)
    assert not {SENTENCES[i].lower() for i in base} & {t.lower() for t in HELD_OUT_MORE_SENTENCES}
    assert text_of(f"held_out/joe/sungs_{HELD_OUT_MORE[2]}.wav") == HELD_OUT_MORE_SENTENCES[2]


def test_a_sung_sentence_is_rendered_on_its_training_melody(tmp_path):
    import parselmouth

    voice, i = VOICES["es_f2"], SUNG_SENTENCE_IDS[1]
    (path,) = render_voice(tmp_path, voice, [], [], sung_sentences=[i])
    assert path.name == f"sungs_{i}.wav" and text_of(path) == SENTENCES[i]
    from svc_pl.data.audio import load_audio

    y, sr = load_audio(path, 16000)
    assert 2.0 < len(y) / sr < 12.0
    f0 = parselmouth.Sound(y.astype(np.float64), sr).to_pitch(0.01, 60, 1100).selected_array["frequency"]
    voiced = f0[f0 > 0]
    assert len(voiced) > 50
    notes = MELODIES[TRAIN_MELODIES[i % len(TRAIN_MELODIES)]][0]
    midi = 69 + 12 * np.log2(voiced / 440.0) - voice.register
    # sung on the melody's notes: 92-98 % of voiced frames within half a semitone of one (the same sentence spoken
    # at the same speed: 0-38 %)
    near = np.min(np.abs(midi[:, None] - np.asarray(notes, dtype=float)[None]), axis=1)
    assert np.mean(near < 0.5) > 0.8
