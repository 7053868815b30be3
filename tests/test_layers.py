"""Layers: shapes, masks, invertibility and the helpers' exact semantics."""


import pytest
import torch

from svc_pl.layers import commons
from svc_pl.layers.attention import FFN, MultiHeadAttention
from svc_pl.layers.conv import (
    DepthwiseSeparableConv1d,
    DepthwiseSeparableConvTranspose1d,
    remove_weight_norm_modules,
    weight_norm_modules,
)
from svc_pl.layers.discriminator import MultiPeriodDiscriminator
from svc_pl.layers.encoders import F0Decoder, PosteriorEncoder, PriorEncoder
from svc_pl.layers.flow import ResidualCouplingBlock, ResidualCouplingLayer, TransformerCouplingBlock
from svc_pl.layers.norm import ChannelLayerNorm
from svc_pl.layers.nsf import NSFHiFiGAN, ResBlock1, ResBlock2, SineGen
from svc_pl.layers.transformer import CausalTransformer, Encoder
from svc_pl.layers.wavenet import WN
from svc_pl.synthesizer import Synthesizer


def _mask(lengths, t):
    return commons.sequence_mask(torch.tensor(lengths), t).unsqueeze(1).float()


def test_sequence_mask_and_padding():
    m = commons.sequence_mask(torch.tensor([1, 3]), 4)
    assert m.tolist() == [[True, False, False, False], [True, True, True, False]]
    assert commons.get_padding(7, 3) == 9


def test_slice_segments_follow_starts():
    x = torch.arange(2 * 3 * 10).view(2, 3, 10).float()
    out = commons.slice_segments(x, torch.tensor([2, 5]), 4)
    assert torch.equal(out[0], x[0, :, 2:6]) and torch.equal(out[1], x[1, :, 5:9])
    pitch = torch.arange(20).view(2, 10).float()
    assert torch.equal(commons.slice_pitch_segments(pitch, torch.tensor([1, 6]), 4)[1], pitch[1, 6:10])


def test_random_slices_stay_inside_lengths():
    torch.manual_seed(0)
    x = torch.randn(8, 2, 50)
    pitch = torch.randn(8, 50)
    lengths = torch.tensor([10, 20, 30, 40, 50, 12, 15, 11])
    for _ in range(20):
        seg, pseg, ids = commons.rand_slice_segments_with_pitch(x, pitch, lengths, 10)
        assert (ids + 10 <= lengths).all() and (ids >= 0).all()
        for b in range(8):
            assert torch.equal(seg[b], x[b, :, ids[b]:ids[b] + 10])
            assert torch.equal(pseg[b], pitch[b, ids[b]:ids[b] + 10])
        _, _, ids = commons.rand_slice_segments_with_pitch(x, pitch, None, 10)
        assert (ids <= 40).all()


def test_subsequent_mask_and_gate():
    assert commons.subsequent_mask(3)[0, 0].tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    a, b = torch.randn(2, 6, 5), torch.randn(2, 6, 5)
    out = commons.fused_add_tanh_sigmoid_multiply(a, b, 3)
    assert torch.allclose(out, torch.tanh((a + b)[:, :3]) * torch.sigmoid((a + b)[:, 3:]))


def test_relative_position_transforms_are_inverse():
    length = 5
    rel = torch.randn(1, 2, length, 2 * length - 1)
    absolute = MultiHeadAttention._relative_position_to_absolute_position(rel)
    # absolute[i, j] is the logit for offset j - i, stored at rel index (j - i) + length - 1
    for i in range(length):
        for j in range(length):
            assert absolute[0, 0, i, j] == rel[0, 0, i, j - i + length - 1]
    back = MultiHeadAttention._absolute_position_to_relative_position(absolute)
    for i in range(length):
        for j in range(length):
            assert back[0, 1, i, j - i + length - 1] == absolute[0, 1, i, j]


def test_relative_embeddings_window():
    att = MultiHeadAttention(8, 8, 2, window_size=2)
    emb = att._get_relative_embeddings(att.emb_rel_k, 5)
    assert emb.shape == (1, 9, 4)
    assert torch.all(emb[:, :2] == 0) and torch.all(emb[:, -2:] == 0)
    assert torch.equal(emb[:, 2:7], att.emb_rel_k)
    short = att._get_relative_embeddings(att.emb_rel_k, 2)
    assert torch.equal(short, att.emb_rel_k[:, 1:4])


def test_attention_masks_padding_and_options():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 7)
    mask = _mask([7, 4], 7)
    attn_mask = mask.unsqueeze(2) * mask.unsqueeze(-1)
    for kw in ({"window_size": 2}, {"proximal_bias": True, "proximal_init": True}, {"block_length": 2}, {}):
        att = MultiHeadAttention(8, 6, 2, **kw).eval()
        out = att(x, x, attn_mask)
        assert out.shape == (2, 6, 7)
        # padded frames do not influence valid ones
        x2 = x.clone()
        x2[1, :, 4:] = 100.0
        assert torch.allclose(att(x2, x2, attn_mask)[1, :, :4], out[1, :, :4], atol=1e-5)
    prox = MultiHeadAttention(8, 8, 2, proximal_init=True)
    assert torch.equal(prox.conv_k.weight, prox.conv_q.weight)
    with pytest.raises(ValueError):
        MultiHeadAttention(8, 8, 3)


def test_ffn_causal_and_same_padding():
    x = torch.randn(1, 4, 9)
    mask = torch.ones(1, 1, 9)
    causal = FFN(4, 4, 8, 3, causal=True, activation="gelu").eval()
    y = causal(x, mask)
    x2 = x.clone()
    x2[..., 6:] += 5
    assert torch.allclose(causal(x2, mask)[..., :6], y[..., :6])  # the future does not leak
    same = FFN(4, 5, 8, 4).eval()
    assert same(x, mask).shape == (1, 5, 9)


@pytest.mark.parametrize("cls", [Encoder, CausalTransformer])
def test_attention_stacks_mask_output(cls):
    net = cls(16, 32, 2, 2, 3, 0.0).eval()
    x = torch.randn(2, 16, 11)
    mask = _mask([11, 6], 11)
    out = net(x, mask)
    assert out.shape == x.shape and torch.all(out[1, :, 6:] == 0)


def test_speaker_conditioned_causal_transformer():
    net = CausalTransformer(16, 32, 2, 2, 3, gin_channels=4).eval()
    x = torch.randn(2, 16, 5)
    assert net(x, torch.ones(2, 1, 5), g=torch.randn(2, 4, 1)).shape == (2, 16, 5)


def test_layer_norm_over_channels():
    ln = ChannelLayerNorm(6)
    y = ln(torch.randn(3, 6, 4) * 5 + 2)
    assert torch.allclose(y.mean(1), torch.zeros(3, 4), atol=1e-5)
    assert torch.allclose(y.var(1, unbiased=False), torch.ones(3, 4), atol=1e-3)  # normalised over channels


def test_depthwise_conv_shapes_and_weight_norm():
    conv = DepthwiseSeparableConv1d(4, 6, 3, padding=2, dilation=2)
    x = torch.randn(1, 4, 10)
    y = conv(x)
    assert y.shape == (1, 6, 10)
    weight_norm_modules(conv)
    assert torch.allclose(conv(x), y, atol=1e-6)
    assert "depth_conv.parametrizations.weight.original0" in conv.state_dict()
    remove_weight_norm_modules(conv)
    assert "depth_conv.weight" in conv.state_dict() and torch.allclose(conv(x), y, atol=1e-6)
    up = DepthwiseSeparableConvTranspose1d(4, 2, 4, stride=2, padding=1)
    assert up(x).shape == (1, 2, 20)
    weight_norm_modules(up)
    remove_weight_norm_modules(up)


def test_wavenet_and_posterior_encoder_masks():
    wn = WN(8, 5, 2, 3, gin_channels=4, depthwise=True)
    x = torch.randn(2, 8, 9)
    mask = _mask([9, 5], 9)
    assert torch.all(wn(x, mask, g=torch.randn(2, 4, 1))[1, :, 5:] == 0)
    enc = PosteriorEncoder(10, 4, 8, 5, 1, 2, gin_channels=4)
    z, m, logs, xm = enc(torch.randn(2, 10, 9), torch.tensor([9, 5]), g=torch.randn(2, 4, 1))
    assert z.shape == (2, 4, 9) and torch.all(z[1, :, 5:] == 0) and xm.shape == (2, 1, 9)


@pytest.mark.parametrize("share", [False, True])
def test_residual_flow_is_invertible(share):
    torch.manual_seed(0)
    flow = ResidualCouplingBlock(8, 16, 5, 1, 2, n_flows=3, gin_channels=4, share_parameter=share)
    for p in flow.parameters():  # post convs start at zero (identity flow): randomise to test for real
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 8, 12)
    mask = _mask([12, 7], 12)
    x = x * mask
    g = torch.randn(2, 4, 1)
    z = flow(x, mask, g=g)
    assert not torch.allclose(z, x)
    assert torch.allclose(flow(z, mask, g=g, reverse=True), x, atol=1e-5)
    if share:
        assert all(f.enc is flow.wn for f in flow.flows[::2])


def test_affine_coupling_and_transformer_flow_invertible():
    torch.manual_seed(1)
    layer = ResidualCouplingLayer(6, 8, 3, 1, 2, mean_only=False)
    torch.nn.init.normal_(layer.post.weight, std=0.1)
    x, mask = torch.randn(1, 6, 10), torch.ones(1, 1, 10)
    y, logdet = layer(x, mask)
    assert logdet.shape == (1,) and logdet.abs().item() > 0
    assert torch.allclose(layer(y, mask, reverse=True), x, atol=1e-5)
    flow = TransformerCouplingBlock(8, 16, 32, 2, 2, 3, 0.0, n_flows=2, gin_channels=4, share_parameter=True).eval()
    for f in flow.flows[::2]:
        torch.nn.init.normal_(f.post.weight, std=0.1)
    x, g = torch.randn(1, 8, 10), torch.randn(1, 4, 1)
    assert torch.allclose(flow(flow(x, mask, g=g), mask, g=g, reverse=True), x, atol=1e-5)


def test_prior_encoder_and_f0_decoder():
    enc = PriorEncoder(4, 16, 3, 2, 32, 2, 0.0).eval()
    mask = _mask([10, 6], 10)
    z, m, logs, _ = enc(torch.randn(2, 16, 10), mask, torch.randint(1, 256, (2, 10)), noise_scale=0.0)
    assert torch.allclose(z, m * mask) and torch.all(m[1, :, 6:] == 0)
    dec = F0Decoder(1, 16, 32, 2, 2, 3, 0.0, spk_channels=4).eval()
    x = torch.randn(2, 16, 10, requires_grad=True)
    out = dec(x, torch.randn(2, 1, 10), mask, spk_emb=torch.randn(2, 4, 1))
    out.sum().backward()
    assert out.shape == (2, 1, 10) and x.grad is None  # the input is detached, as upstream


def test_resblocks_and_sine_source():
    for block in (ResBlock1(6, 3, (1, 3, 5)), ResBlock2(6, 3, (1, 3))):
        x = torch.randn(1, 6, 20)
        mask = _mask([12], 20)
        assert block(x).shape == x.shape and torch.all(block(x, mask)[..., 12:] == 0)
        block.remove_weight_norm()
    sr, upp = 16000, 160
    f0 = torch.full((1, 50), 200.0)
    f0[:, 25:] = 0
    for mode in ("sample", "frame"):
        torch.manual_seed(0)
        sines, uv = SineGen(sr, harmonic_num=2, mode=mode)(f0, upp)
        assert sines.shape == (1, 50 * upp, 3) and uv.shape == (1, 50 * upp, 1)
        voiced = sines[0, 100:3900, 0].numpy()
        spectrum = abs(torch.fft.rfft(torch.tensor(voiced)))
        peak_hz = spectrum.argmax().item() * sr / len(voiced)
        assert abs(peak_hz - 200) < 6, (mode, peak_hz)
        assert sines[0, 4100:, 0].abs().max() < 0.2 and uv[0, 4100:].sum() == 0


@pytest.mark.parametrize("padding,source", [("sovits", "sample"), ("openvpi", "frame")])
def test_nsf_generator_length(padding, source):
    gen = NSFHiFiGAN(8, 16000, (4, 4), (8, 8), 16, "1", (3,), ((1, 3, 5),), gin_channels=3 if padding == "sovits" else 0,
                     padding=padding, source=source).eval()
    y = gen(torch.randn(2, 8, 10), torch.full((2, 10), 150.0), g=torch.randn(2, 3, 1) if padding == "sovits" else None)
    assert y.shape == (2, 1, 160)


@pytest.mark.parametrize("resblock,rates,kernels,rb_kernels,rb_dils", [
    ("1", (8, 8, 2, 2), (16, 16, 4, 4), (3, 7, 11), ((1, 3, 5),) * 3),  # the 4.1 decoder's layout
    ("2", (5, 4), (11, 8), (3, 5), ((1, 2), (2, 6))),
])
def test_decoder_receptive_field_bounds_dependence(resblock, rates, kernels, rb_kernels, rb_dils):
    """Changing one input frame moves the output only within ``context_frames`` of it (and the bound
    is not loose by more than a few frames)."""
    torch.manual_seed(0)
    gen = NSFHiFiGAN(4, 16000, rates, kernels, 32, resblock, rb_kernels, rb_dils, gin_channels=2).eval().double()
    gen.remove_weight_norm()
    for m in gen.modules():  # unit-gain weights, so a dependence does not fade below float resolution
        if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            torch.nn.init.normal_(m.weight, std=(m.weight.shape[1] * m.weight.shape[2]) ** -0.5)
    n, at, upp, ctx = 80, 40, gen.upp, gen.context_frames
    x, har, g = torch.randn(1, 4, n).double(), torch.randn(1, 1, n * upp).double(), torch.randn(1, 2, 1).double()
    x2 = x.clone()
    x2[..., at] += 1.0
    pre_tanh = []  # tanh saturates and would hide dependence
    gen.conv_post.register_forward_hook(lambda m, i, o: pre_tanh.append(o))
    with torch.no_grad():
        gen.decode(x2, har, g)
        gen.decode(x, har, g)
    changed = torch.nonzero((pre_tanh[0] - pre_tanh[1]).abs()[0, 0] > 0).flatten()
    first, last = changed.min().item() / upp, changed.max().item() / upp
    assert at - ctx <= first and last < at + 1 + ctx, (ctx, first, last)
    assert first < at - ctx + 5 or last > at + ctx - 4, (ctx, first, last)


@pytest.mark.parametrize("per_frame_g", [False, True])
def test_windowed_decode_equals_whole(per_frame_g):
    torch.manual_seed(1)
    gen = NSFHiFiGAN(6, 16000, (4, 4), (8, 8), 16, "1", (3, 5), ((1, 3, 5), (1, 3, 5)), gin_channels=3).eval()
    n = 97
    x, f0 = torch.randn(2, 6, n), 180 + 40 * torch.rand(2, n)
    g = torch.randn(2, 3, n) if per_frame_g else torch.randn(2, 3, 1)
    with torch.no_grad():
        har = gen.m_source(f0, gen.upp)
        whole = gen.decode(x, har, g)
        widths = []
        for balanced in (False, True):
            for window in (1, 10, 33, 96, 500):
                windowed = gen.decode_windowed(x, har, g, window=window, balanced=balanced)
                assert windowed.shape == whole.shape
                assert torch.allclose(windowed, whole, atol=1e-6), (window, (windowed - whole).abs().max())
            for lo, hi in ((0, n), (0, 30), (20, 97), (40, 41), (5, 90)):
                part = gen.decode_windowed(x, har, g, window=16, frames=(lo, hi), balanced=balanced)
                assert torch.allclose(part, whole[..., lo * gen.upp:hi * gen.upp], atol=1e-6), (lo, hi)
            widths.append([])
            gen.decode_windowed(x, har, g, window=33, balanced=balanced,
                                decode=lambda z, *a: widths[-1].append(z.size(-1)) or gen.decode(z, *a))
        # fixed windows: 3 of 33 + 2 x context, the last shifted inwards; balanced: 3 of 33 / 33 / 31 frames
        # with the context that exists, so fewer frames in all
        c = gen.context_frames
        assert widths[0] == [33 + 2 * c] * 3
        assert widths[1] == [33 + c, 33 + 2 * c, 31 + c] and sum(widths[1]) < sum(widths[0])
        with pytest.raises(ValueError, match="frames"):
            gen.decode_windowed(x, har, g, window=16, frames=(50, 40))
        # too little context is visibly different: the receptive field is what makes it exact
        short = gen.decode_windowed(x, har, g, window=10, context=0)
        assert (short - whole).abs().max() > 1e-3
    with pytest.raises(ValueError, match="window"):
        gen.decode_windowed(x, har, g, window=0)


def test_synthesizer_infer_with_decode_window_matches():
    torch.manual_seed(2)
    model = _tiny_synth().prepare_for_inference()
    c, f0, uv = torch.randn(1, 12, 140), 150 + 100 * torch.rand(1, 140), (torch.rand(1, 140) > 0.2).float()
    whole, _ = model.infer(c, f0, uv, 1, noise_scale=0.4)
    windowed, _ = model.infer(c, f0, uv, 1, noise_scale=0.4, decode_window=16)
    assert torch.allclose(windowed, whole, atol=1e-6)


def test_discriminator_outputs():
    disc = MultiPeriodDiscriminator()
    y, y_hat = torch.randn(2, 1, 2048), torch.randn(2, 1, 2048)
    out = disc(y, y_hat)
    assert len(out.real_logits) == 6 and len(out.fake_fmaps[1]) == 6
    alone, _ = disc.discriminators[3](y)
    assert torch.allclose(alone, out.real_logits[3], atol=1e-5)


def _tiny_synth(**kw):
    args = dict(spec_channels=33, segment_size=4, inter_channels=8, hidden_channels=16, filter_channels=32, n_heads=2,
                n_layers=2, kernel_size=3, p_dropout=0.0, resblock="1", resblock_kernel_sizes=(3,),
                resblock_dilation_sizes=((1, 3, 5),), upsample_rates=(4, 4), upsample_initial_channel=16,
                upsample_kernel_sizes=(8, 8), gin_channels=8, ssl_dim=12, n_speakers=3, sampling_rate=16000)
    args.update(kw)
    return Synthesizer(**args)


@pytest.mark.parametrize("kw", [{}, {"vol_embedding": True, "use_depthwise_conv": True, "flow_share_parameter": True},
                                {"use_transformer_flow": True, "n_layers_trans_flow": 1},
                                {"use_automatic_f0_prediction": False}])
def test_synthesizer_train_and_infer_shapes(kw):
    torch.manual_seed(0)
    model = _tiny_synth(**kw)
    b, t = 2, 12
    c, f0 = torch.randn(b, 12, t), torch.full((b, t), 220.0)
    uv, spec = torch.ones(b, t), torch.randn(b, 33, t).abs()
    vol = torch.rand(b, t)
    lengths = torch.tensor([12, 9])
    out = model(c, f0, uv, spec, torch.tensor([0, 2]), lengths, lengths, vol=vol)
    assert out.audio.shape == (b, 1, 4 * 16) and out.z.shape == (b, 8, t)
    assert (out.ids_slice + 4 <= lengths).all()
    assert (out.pred_lf0 is None) == (not model.use_automatic_f0_prediction)
    model.eval()
    audio, f0_used = model.infer(c, f0, uv, torch.tensor([1, 1]), vol=vol, predict_f0=model.use_automatic_f0_prediction)
    assert audio.shape == (b, 1, t * 16) and f0_used.shape == (b, t)
    again, _ = model.infer(c, f0, uv, torch.tensor([1, 1]), vol=vol, predict_f0=model.use_automatic_f0_prediction)
    assert torch.equal(audio, again)


def test_speaker_mix_static_and_time_varying():
    model = _tiny_synth().eval()
    c, f0, uv = torch.randn(1, 12, 10), torch.full((1, 10), 200.0), torch.ones(1, 10)
    one_hot, _ = model.infer(c, f0, uv, torch.tensor([1.0, 0.0, 0.0]))
    by_id, _ = model.infer(c, f0, uv, 0)
    assert torch.allclose(one_hot, by_id, atol=1e-6)
    varying = torch.zeros(1, 3, 10)
    varying[0, 0] = 1.0
    same, _ = model.infer(c, f0, uv, varying)
    assert torch.allclose(same, by_id, atol=1e-5)
    varying[0, 0, 5:], varying[0, 2, 5:] = 0.0, 1.0
    mixed, _ = model.infer(c, f0, uv, varying)
    assert not torch.allclose(mixed, by_id)
    with pytest.raises(ValueError, match="out of range"):
        model.infer(c, f0, uv, 7)
    with pytest.raises(ValueError, match="3 speakers"):
        model.infer(c, f0, uv, torch.tensor([0.5, 0.5]))
