"""Loading a voice model for conversion builds its layers without random draws (``constant_init``): the loaded
weights are exactly those of the file, a weight the file lacks is defined and finite, and torch's initialisers are
given back."""

import torch
from torch.nn import init

from svc_pl.compat import load_sovits
from svc_pl.infer.loading import load_voice_model
from svc_pl.layers.fast_init import constant_init
from svc_pl.pretrained import load_base_synthesizer, write_base_ckpt
from tests.test_infer import write_tiny_voice


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not differ, differ


def test_a_sovits_model_loads_the_files_weights_without_drawing(tmp_path):
    voice = write_tiny_voice(tmp_path)
    expected = load_sovits(voice / "G_1.pth", voice / "config.json").prepare_for_inference()  # built the usual way
    vm = load_voice_model(voice / "G_1.pth")
    _same_state(vm.net, expected)
    assert init.kaiming_uniform_.__module__ == "torch.nn.init" and init.uniform_.__module__ == "torch.nn.init"


def test_a_release_model_without_the_posterior_encoder_loads_with_it_defined(tmp_path):
    voice = write_tiny_voice(tmp_path)
    ckpt = torch.load(voice / "G_1.pth", map_location="cpu", weights_only=True)
    ckpt["model"] = {k: v for k, v in ckpt["model"].items() if not k.startswith("enc_q.")}
    torch.save(ckpt, voice / "G_2.pth")  # as so-vits-svc's compress_model.py writes a release model
    vm = load_voice_model(voice / "G_2.pth")
    enc_q = {k: v for k, v in vm.net.state_dict().items() if k.startswith("enc_q.")}
    assert enc_q and all(torch.isfinite(v).all() for v in enc_q.values())  # weight norm folded without 0/0
    again = load_voice_model(voice / "G_2.pth").net.state_dict()
    assert all(torch.equal(v, again[k]) for k, v in enc_q.items())  # the same on every load
    full = load_voice_model(voice / "G_1.pth").net.state_dict()
    rest = [k for k, v in vm.net.state_dict().items() if not k.startswith("enc_q.") and not torch.equal(v, full[k])]
    assert not rest, rest


def test_an_svc_pl_checkpoint_loads_the_files_weights(tmp_path):
    ckpt = write_base_ckpt(tmp_path / "base.ckpt")
    expected, _ = load_base_synthesizer("tiny-base")
    _same_state(load_voice_model(ckpt).net, expected.prepare_for_inference())


def test_constant_init_gives_the_initialisers_back_after_an_error():
    try:
        with constant_init():
            assert torch.equal(torch.nn.Linear(4, 4).weight, torch.ones(4, 4))
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert torch.nn.Linear(64, 64).weight.unique().numel() > 1


def test_other_threads_keep_drawing_while_a_model_loads():
    import threading

    seen = {}
    inside, done = threading.Event(), threading.Event()

    def other():
        inside.wait(10)
        seen["weight"] = torch.nn.Linear(64, 64).weight  # built while the main thread is in constant_init
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with constant_init():
        inside.set()
        assert done.wait(10)
        assert torch.equal(torch.nn.Linear(4, 4).weight, torch.ones(4, 4))
    t.join()
    assert seen["weight"].unique().numel() > 1
