"""The channels-last 2-D copy of the NSF-HiFiGAN generator that CPU inference decodes with: the same audio as
``NSFHiFiGAN.decode``, made without random draws, rebuilt when the weights change, and used only where it should."""

import pytest
import torch

from svc_pl.layers.conv import remove_all_weight_norm
from svc_pl.layers.nsf import NSFHiFiGAN
from svc_pl.layers.nsf_planar import PlanarDecoder
from svc_pl.synthesizer import Synthesizer
from tests.test_infer import TINY


def _dec(resblock="1", depthwise=False, gin=16):
    torch.manual_seed(0)
    dec = NSFHiFiGAN(24, 16000, upsample_rates=[4, 4, 2], upsample_kernel_sizes=[8, 8, 4], upsample_initial_channel=32,
                     resblock=resblock, resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]],
                     gin_channels=gin)
    remove_all_weight_norm(dec)
    return dec.eval()


def _inputs(dec, frames=40, per_frame_g=False):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 24, frames, generator=g)
    har = torch.rand(1, 1, frames * dec.upp, generator=g) * 0.2 - 0.1
    gin = dec.cond.in_channels
    cond = torch.randn(1, gin, frames if per_frame_g else 1, generator=g)
    return x, har, cond


@pytest.mark.parametrize("resblock,per_frame_g", [("1", False), ("2", True)])
def test_planar_copy_decodes_what_the_generator_does(resblock, per_frame_g):
    dec = _dec(resblock)
    x, har, g = _inputs(dec, per_frame_g=per_frame_g)
    planar = PlanarDecoder.of(dec, torch.float32)
    with torch.inference_mode():
        ref = dec.decode(x, har, g)
        out = planar(x, har, g)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert (out - ref).abs().max().item() < 1e-5 * max(1.0, ref.abs().max().item())
    # bfloat16: the copy's own rounding, near the float32 result (the autocast path rounds the same convolutions)
    with torch.inference_mode():
        low = PlanarDecoder.of(dec, torch.bfloat16)(x, har, g)
    snr = 10 * torch.log10(ref.pow(2).mean() / (low - ref).pow(2).mean())
    assert low.dtype == torch.float32 and snr > 25, snr


def test_planar_copy_draws_no_random_numbers():
    dec = _dec()
    torch.manual_seed(7)
    PlanarDecoder.of(dec, torch.float32)
    after = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(after, torch.rand(3))


def test_depthwise_blocks_have_no_planar_copy():
    from svc_pl.layers.nsf import ResBlock1

    dec = _dec()
    dec.resblocks[0] = ResBlock1(dec.resblocks[0].convs1[0].in_channels, 3, (1, 3, 5), depthwise=True)
    assert PlanarDecoder.of(dec, torch.float32) is None


def _synth():
    torch.manual_seed(0)
    return Synthesizer(**TINY, spec_channels=513, segment_size=20).prepare_for_inference()


def test_inference_uses_the_planar_copy_on_cpu_and_follows_weight_changes():
    synth = _synth()
    z = torch.randn(1, synth.dec.conv_pre.in_channels, 30)
    with torch.inference_mode():
        first = synth.inference_decoder(z)
        assert isinstance(first, PlanarDecoder) and synth.inference_decoder(z) is first  # made once
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = synth.inference_decoder(z)
        assert isinstance(low, PlanarDecoder) and low.dtype == torch.bfloat16
    # the generator's weights change (a loaded checkpoint, a training step): a new copy with them
    with torch.no_grad():
        synth.dec.conv_post.weight.mul_(2.0)
    with torch.inference_mode():
        second = synth.inference_decoder(z)
        assert second is not first
        assert torch.equal(second.conv_post.weight.squeeze(2), synth.dec.conv_post.weight)
    # training, or gradients on: the generator itself
    assert synth.inference_decoder(z) == synth.dec.decode
    synth.train()
    with torch.inference_mode():
        assert synth.inference_decoder(z) == synth.dec.decode


def test_seeded_infer_is_the_same_with_and_without_the_planar_copy():
    synth = _synth()
    n = 60
    c = torch.randn(1, TINY["ssl_dim"], n)
    f0 = torch.full((1, n), 200.0)
    uv = torch.ones(1, n)
    with torch.inference_mode():
        a, _ = synth.infer(c, f0, uv, 0, noise_scale=0.4, seed=3, decode_window=16)
        b, _ = synth.infer(c, f0, uv, 0, noise_scale=0.4, seed=3)
    synth.inference_decoder = lambda z: synth.dec.decode  # the generator, as before the copy
    with torch.inference_mode():
        ref_w, _ = synth.infer(c, f0, uv, 0, noise_scale=0.4, seed=3, decode_window=16)
        ref, _ = synth.infer(c, f0, uv, 0, noise_scale=0.4, seed=3)
    assert (a - ref_w).abs().max().item() < 1e-5 and (b - ref).abs().max().item() < 1e-5
