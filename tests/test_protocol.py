"""Golden tests of the clip protocol (docs/protocol.md, "Clips")."""

from fractions import Fraction
from math import ceil

import numpy as np
import pytest
import torch

from asva_bench import avio
from asva_bench.protocol import (MINI, PAPER, PAPER_GREATEST_HITS, ProtocolError, audio_window,
                                 clip_start_times, select_frame_indices, spatial_transform,
                                 waveform_to_mel, waveforms_to_mel)

SR = 16000
BITS = 10  # frame index coded in 10 black/white stripes


def coded_frames(n: int, h: int = 64, w: int = 80) -> np.ndarray:
    """Frame i shows i in binary as 10 vertical stripes (robust to h264)."""
    f = np.zeros((n, h, w, 3), np.uint8)
    sw = w // BITS
    for i in range(n):
        for b in range(BITS):
            if (i >> b) & 1:
                f[i, :, b * sw:(b + 1) * sw] = 255
    return f


def read_code(frames: torch.Tensor, w_src: int = 80) -> list[int]:
    """Inverse of coded_frames on protocol frames [T,3,H,W] that kept the full width."""
    out = []
    T, _, H, W = frames.shape
    sw = W / BITS
    for t in range(T):
        v = 0
        for b in range(BITS):
            x = int((b + 0.5) * sw)
            if frames[t, :, H // 2, x].mean() > 0.5:
                v |= 1 << b
        out.append(v)
    return out


def expected_indices(fps: Fraction, n_frames: int, start: Fraction, cfg=PAPER) -> list[int]:
    """Independent rule, in exact arithmetic: frame n has timestamp n / fps;
    pick the first n with n/fps >= t."""
    out = []
    for k in range(cfg.num_frames):
        t = start + Fraction(k, int(cfg.fps))
        n = ceil(t * fps)
        out.append(min(n, n_frames - 1))
    return out


@pytest.mark.parametrize("fps", [Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30)])
def test_frame_selection_on_coded_video(tmp_path, fps):
    duration = 4.3
    n = int(duration * fps)
    path = tmp_path / f"coded_{float(fps):.2f}.mp4"
    audio = np.random.default_rng(0).normal(0, 0.1, int(duration * SR)).astype(np.float32)
    avio.write_clip(path, coded_frames(n), float(fps), audio=audio, sample_rate=SR, lossless=True)
    # 80x64 frames, crop to 64x64 would cut stripes: keep a 4:5-aspect protocol of the same shape;
    # the exact 1/6 s grid is the corrected track's (asva-reference: tests/test_reference_track.py)
    cfg = PAPER.replace(height=64, width=80, track="corrected")
    clips = avio.decode_protocol_clips(path, cfg)
    d = min(n / fps, Fraction(len(avio.read_audio(path)[0]), SR))
    starts = [(d - 2) * i / 2 for i in range(3)]  # exact linspace(0, D - 2, 3)
    assert [c.start for c in clips] == pytest.approx([float(s) for s in starts], abs=1e-5)
    for clip, start in zip(clips, starts):
        got = read_code(clip.frames)
        assert got == expected_indices(fps, n, start, cfg), f"fps {fps} start {start}"
        assert clip.frame_indices.tolist() == got


def test_too_short_video_repeats_last_frame():
    ts = np.arange(30) / 24.0  # 1.25 s of video
    idx = select_frame_indices(ts, 0.5, PAPER)
    # t = 0.5, 0.667, ... 2.33: frames 12, 16, 20, 24, 28, then the last (29) repeated
    assert idx.tolist() == [12, 16, 20, 24, 28] + [29] * 7


def test_timestamp_float_noise_does_not_skip_a_frame():
    ts = np.array([n * (1 / 24.0) for n in range(100)])
    ts[12] = 0.5 - 1e-12  # 0.49999999... stands for 0.5
    assert select_frame_indices(ts, 0.5, PAPER)[0] == 12


def test_clip_start_times():
    assert clip_start_times(10.0, 8.0) == pytest.approx([0.0, 3.0, 6.0])
    assert clip_start_times(2.0, 5.0) == pytest.approx([0.0, 0.0, 0.0])
    one = PAPER.replace(clips_per_video=1)
    assert clip_start_times(6.0, 7.0, one) == pytest.approx([2.0])
    with pytest.raises(ProtocolError, match="shorter than one 2 s clip"):
        clip_start_times(1.5, 5.0, source="v.mp4")


def test_spatial_transform_crops_aspect_then_resizes():
    # 100 x 200 frame: left quarter red, middle half green, right quarter blue.
    f = np.zeros((1, 100, 200, 3), np.uint8)
    f[:, :, :50, 0] = 255
    f[:, :, 50:150, 1] = 255
    f[:, :, 150:, 2] = 255
    out = spatial_transform(f, PAPER.replace(height=50, width=50))
    assert out.shape == (1, 3, 50, 50) and out.dtype == torch.float32
    # centre square crop keeps only the green middle
    assert torch.allclose(out[0, 1], torch.ones(50, 50))
    assert out[0, 0].abs().max() < 1e-6 and out[0, 2].abs().max() < 1e-6
    # TheGreatestHits 128x256: a 256x256 frame loses top/bottom quarters
    g = np.zeros((1, 256, 256, 3), np.uint8)
    g[:, 64:192] = 200
    out = spatial_transform(g, PAPER_GREATEST_HITS)
    assert out.shape == (1, 3, 128, 256)
    assert torch.allclose(out, torch.full_like(out, 200 / 255))


def test_spatial_transform_is_antialiased():
    # a 1-pixel checkerboard averages to grey when antialiased
    f = (np.indices((256, 256)).sum(0) % 2 * 255).astype(np.uint8)
    f = np.repeat(f[None, :, :, None], 3, axis=3)
    out = spatial_transform(f, MINI)
    assert out.mean() == pytest.approx(0.5, abs=0.01)
    assert out.std() < 0.02


def burst(duration: float, at: float, sr: int, length: float = 0.1) -> np.ndarray:
    a = np.zeros(int(round(duration * sr)), np.float32)
    i0 = int(round(at * sr))
    n = int(round(length * sr))
    a[i0:i0 + n] = 0.5 * np.cos(2 * np.pi * 1000 * np.arange(n) / sr)
    return a


def onset(x, thr=0.1) -> int:
    return int(np.argmax(np.abs(np.asarray(x)) > thr))


def test_audio_window_exact_samples():
    a = burst(6.0, 2.3, SR)
    w = audio_window(a, SR, 1.0)
    assert w.shape == (32000,)
    assert onset(w, 1e-6) == int(round(1.3 * SR))  # the cosine burst is non-zero from its first sample
    assert onset(w, 1e-3) == pytest.approx(1.3 * SR, abs=2)


def test_audio_window_resamples_and_pads():
    a = burst(3.0, 2.5, 44100)
    w = audio_window(a, 44100, 1.8)  # only 1.2 s left: zero-padded at the end
    assert w.shape == (32000,)
    assert onset(w) == pytest.approx(0.7 * SR, abs=3)
    assert torch.all(w[int(1.25 * SR):] == 0)


def test_audio_window_through_aac_round_trip(tmp_path):
    """AAC priming (1024 samples) must not delay decoded audio (docs/protocol.md, "Clips")."""
    a = burst(5.0, 2.3, SR)
    path = tmp_path / "burst.mp4"
    avio.write_clip(path, np.zeros((120, 32, 32, 3), np.uint8), 24, audio=a, sample_rate=SR)
    wav, sr = avio.read_audio(path)
    assert sr == SR
    assert onset(wav) == pytest.approx(2.3 * SR, abs=8)  # 1024 would be a 64 ms error
    clips = avio.decode_protocol_clips(path, PAPER.replace(height=32, width=32, track="corrected"))
    assert [c.start for c in clips] == pytest.approx([0.0, 1.5, 3.0])
    assert onset(clips[1].audio) == pytest.approx(0.8 * SR, abs=8)
    assert clips[0].audio.abs().max() < 0.05 and clips[2].audio.abs().max() < 0.05


def numpy_kaldi_fbank(x: np.ndarray, sr=SR, n_mels=128, frame_len=400, hop=160) -> np.ndarray:
    """Independent Kaldi fbank (povey-free 'hanning', preemphasis 0.97, DC removal,
    power spectrum, HTK-style mel in Kaldi's 1127 ln(1 + f/700), log)."""
    n_frames = 1 + (len(x) - frame_len) // hop
    frames = np.stack([x[i * hop:i * hop + frame_len] for i in range(n_frames)]).astype(np.float64)
    frames -= frames.mean(1, keepdims=True)
    prev = np.concatenate([frames[:, :1], frames[:, :-1]], 1)
    frames = frames - 0.97 * prev
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_len) / (frame_len - 1))
    frames *= win
    nfft = 512
    spec = np.abs(np.fft.rfft(frames, nfft)) ** 2
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)
    lo, hi = mel(20.0), mel(sr / 2)
    centers = np.linspace(lo, hi, n_mels + 2)
    fft_mel = mel(np.arange(nfft // 2) * sr / nfft)
    bank = np.zeros((n_mels, nfft // 2 + 1))
    for m in range(n_mels):
        left, c, right = centers[m:m + 3]
        up = (fft_mel - left) / (c - left)
        down = (right - fft_mel) / (right - c)
        bank[m, :nfft // 2] = np.maximum(0, np.minimum(up, down))
    e = spec @ bank.T
    return np.log(np.maximum(e, np.finfo(np.float32).eps))


def test_mel_matches_independent_computation():
    rng = np.random.default_rng(1)
    t = np.arange(32000) / SR
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=t.size)).astype(np.float32)
    mel = waveform_to_mel(torch.from_numpy(x))
    assert mel.shape == (1, 128, 204)
    ref = numpy_kaldi_fbank(x - x.mean()).T  # [128, 198]
    ref = np.pad(ref, ((0, 0), (0, 204 - ref.shape[1])))
    ref = (ref - (-4.268)) / 9.138
    np.testing.assert_allclose(mel[0].numpy(), ref, atol=2e-3, rtol=1e-3)
    # the six padded columns are the normalised zero of ImageBind's convention
    assert torch.allclose(mel[0, :, 198:], torch.full((128, 6), 4.268 / 9.138))


def test_batched_mel_is_bit_identical():
    rng = np.random.default_rng(2)
    w = torch.from_numpy(rng.normal(0, 0.2, (5, 32000)).astype(np.float32))
    batched = waveforms_to_mel(w)
    single = torch.stack([waveform_to_mel(x) for x in w])
    assert batched.shape == (5, 1, 128, 204)
    assert torch.equal(batched, single)


@pytest.mark.parametrize("codec,fmt,container", [("aac", "fltp", "mp4"), ("pcm_s16le", "s16", "mkv")])
def test_read_audio_mixes_channels_as_frame_by_frame(tmp_path, codec, fmt, container):
    """read_audio converts all decoded frames at once; the result must be exactly the mean of the
    channels of each frame converted on its own (stereo, planar float AAC and packed int16 PCM)."""
    import av
    t = np.arange(SR * 2) / SR
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 97 * t + 1.0)])
    path = tmp_path / f"stereo.{container}"
    with av.open(str(path), "w") as c:
        st = c.add_stream(codec, rate=SR, layout="stereo")
        st.format = fmt
        for i in range(0, stereo.shape[1], 1024):
            block = stereo[:, i:i + 1024]
            data = (block.astype(np.float32) if fmt == "fltp"
                    else (block.T.reshape(1, -1) * 32767).astype(np.int16))
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout="stereo")
            frame.sample_rate, frame.pts = SR, i
            for pkt in st.encode(frame):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    expect, first = [], None
    with av.open(str(path)) as c:
        for f in c.decode(audio=0):
            a = f.to_ndarray()
            a = a.reshape(2, -1) if f.format.is_planar else a.reshape(-1, 2).T
            if a.dtype.kind == "i":
                a = a.astype(np.float32) / 32767.0
            expect.append(a.astype(np.float32).mean(0))
            first = first if first is not None else float(f.pts * f.time_base)
    expect = np.concatenate(expect)
    if first < 0:
        expect = expect[int(round(-first * SR)):]
    wav, sr = avio.read_audio(path)
    assert sr == SR and wav.dtype == torch.float32
    assert np.array_equal(wav.numpy(), expect[:len(wav)])
    assert len(wav) >= SR * 2 - 1024 and np.abs(wav.numpy()).max() > 0.3   # both channels are in it
