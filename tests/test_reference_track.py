"""Golden tests of the asva-reference track: each behaviour of the reference evaluation it
reproduces, on inputs whose right answer is derived by hand (docs/protocol.md, "Protocol tracks").

Videos are written with PyAV at a 1/3000000 s time base, so each frame's timestamp is chosen to a
third of a microsecond and its rounding to integer microseconds (what the reference's decoder
returns) is known: ticks = 3 * us exactly; ticks = 3 * us + 1 rounds down, + 2 rounds up.
"""

import copy
from fractions import Fraction
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
import torch.nn as nn

from asva_bench import avio, reference_io
from asva_bench.metrics.sync import p_align
from asva_bench.protocol import PAPER, ProtocolError, select_frame_indices
from asva_bench.reference_io import (FrameWalk, clip_starts, decode_reference_clips, decode_reference_generated,
                                     read_audio_frames, read_clip_frames, reference_audio, stream_info,
                                     to_microseconds, walk_frames)
from asva_bench.scoring import alignsync_first_frame_audio, it_text

from .test_protocol import burst, coded_frames, onset, read_code

TB = Fraction(1, 3_000_000)
REF = PAPER.replace(height=64, width=80)                     # track asva-reference (the paper default)
COR = PAPER.replace(height=64, width=80, track="corrected")


def write_coded(path, fps: Fraction, n: int, moved: dict | None = None, audio=None, sr: int = 16000):
    """Frame k shows k in stripes and has pts = k / fps exactly (in TB ticks), except the frames in
    ``moved`` (k -> ticks). Lossless h264 + optional AAC, like real test videos."""
    ticks = [int(k * 3_000_000 / fps) for k in range(n)]
    assert all(int(k * 3_000_000 / fps) == k * 3_000_000 / fps for k in range(n))  # grid is whole ticks
    for k, t in (moved or {}).items():
        ticks[k] = t
    frames = coded_frames(n)
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=fps, options={"crf": "0"})
        vs.width, vs.height, vs.pix_fmt = 80, 64, "yuv420p"
        vs.time_base = TB
        vs.codec_context.time_base = TB
        a_stream = None
        if audio is not None:
            a = np.atleast_2d(np.asarray(audio, np.float32))
            a_stream = c.add_stream("aac", rate=sr)
            a_stream.layout = "stereo" if a.shape[0] == 2 else "mono"
        for k in range(n):
            f = av.VideoFrame.from_ndarray(frames[k], format="rgb24")
            f.pts, f.time_base = ticks[k], TB
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a_stream is not None:
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(a), format="fltp", layout=a_stream.layout.name)
            af.sample_rate, af.pts = sr, 0
            for p in a_stream.encode(af):
                c.mux(p)
            for p in a_stream.encode(None):
                c.mux(p)
    with av.open(str(path)) as c:  # the container kept the time base and every timestamp
        s = c.streams.video[0]
        assert s.time_base == TB and [f.pts for f in c.decode(s)] == ticks
    return path


# --------------------------------------------------------------------------
# (a) timestamps in microseconds, the accumulate-and-walk frame pick
# --------------------------------------------------------------------------
def test_microsecond_rounding_is_ffmpegs():
    assert to_microseconds(2048, Fraction(1, 12288)) == 166667      # 166666.67 rounds up
    assert to_microseconds(4096, Fraction(1, 12288)) == 333333      # 333333.33 rounds down
    assert to_microseconds(3, Fraction(1, 2_000_000)) == 2           # 1.5 us: half away from zero
    assert to_microseconds(-3, Fraction(1, 2_000_000)) == -2
    # clip starts come from linspace(0, D - 2, 3): D = 2.001 s gives a middle start of
    # 0.0004999999999999449 s, 499.99999999994 us: the decoder truncates it to 499
    mid = float(np.linspace(0.0, 2.001 - 2, 3)[1])
    assert reference_io.seek_start_us(mid) == 499 and round(mid * 1e6) == 500


def test_walk_of_a_generated_6fps_clip_skips_frame_2():
    # a 12-frame 6 fps mp4 (time base 1/12288: pts 2048 k): microsecond stamps 0, 166667, 333333,
    # 500000, 666667, 833333, 1000000, ... The walk from t = 0 (t += 1/6 per kept frame):
    # frame 1: 0.166667 >= 0.1666...6 kept; frame 2: 0.333333 < 0.3333...3 skipped (rounded down);
    # frame 3: 0.5 >= t; from then on t lags a step behind, so every frame is kept; 11 frames fit
    # before the file ends and the last is repeated.
    us = [to_microseconds(2048 * k, Fraction(1, 12288)) for k in range(12)]
    assert us[:6] == [0, 166667, 333333, 500000, 666667, 833333]
    picked = walk_frames([u * 1e-6 for u in us], 0.0, PAPER)
    assert picked == [0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11]
    # the corrected track's exact grid (tolerance 1e-4 s) takes 0..11
    assert select_frame_indices([u * 1e-6 for u in us], 0.0, PAPER).tolist() == list(range(12))


def test_walk_bound_and_repeat():
    # nothing after start + 2 + 1/12 is looked at: frames at 0.5 s steps give 0, 1 (0.5 >= 1/6),
    # 2 (1.0), 3 (1.5), 4 (2.0 <= 2.0833); 2.5 is past the bound; the last kept frame repeats
    assert walk_frames([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0], 0.0, PAPER) == [0, 1, 2, 3, 4] + [4] * 7
    with pytest.raises(ProtocolError):
        walk_frames([5.0], 0.0, PAPER)
    w = FrameWalk(0.0, PAPER.replace(num_frames=1))
    assert [w.offer(0.0), w.offer(0.1)] == ["keep", "stop"]


# Hand-derived picks (the float facts they rest on are asserted in test_float_facts):
# t_j is 1/6 added j times to the start. 24 / 30 fps: the frame on t_j has a microsecond stamp
# that rounds up for j = 1, 4, 7, 10 (kept), is exact for j = 3, 6, 9 (kept: ties and t_6 =
# 0.9999999999999999), and rounds down for j = 2, 5, 8, 11 (skipped: the next frame is taken).
CASES = {
    "6": (Fraction(6), 14, None, 0.0, [0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
    "24": (Fraction(24), 60, None, 0.0, [0, 4, 9, 12, 16, 21, 24, 28, 33, 36, 40, 45]),
    "24-from-0.5s": (Fraction(24), 60, None, 0.5, [12, 16, 21, 24, 28, 33, 36, 40, 45, 48, 52, 57]),
    "30": (Fraction(30), 60, None, 0.0, [0, 5, 11, 15, 20, 26, 30, 35, 41, 45, 50, 56]),
    # 25 fps: only t_6 = 1 s meets a frame (25); moved 1 tick early it is 999999.67 us, rounding up
    # to 1000000 (kept); 2 ticks early 999999.33 us rounds down (skipped: frame 26)
    "25-up": (Fraction(25), 50, {25: 3_000_000 - 1}, 0.0, [0, 5, 9, 13, 17, 21, 25, 30, 34, 38, 42, 46]),
    "25-down": (Fraction(25), 50, {25: 3_000_000 - 2}, 0.0, [0, 5, 9, 13, 17, 21, 26, 30, 34, 38, 42, 46]),
    # 29.97 fps never meets the 1/6 s grid (nearest 33 us); frame 5 moved onto t_1 exactly (500000
    # ticks = 166666.67 us, rounds up: kept) and frame 10 onto t_2 (1000000 ticks = 333333.33 us,
    # rounds down: skipped, frame 11 taken)
    "29.97": (Fraction(30000, 1001), 60, {5: 500_000, 10: 1_000_000}, 0.0,
              [0, 5, 11, 15, 20, 25, 30, 35, 40, 45, 50, 55]),
}


def test_float_facts():
    t = [0.0]
    for _ in range(11):
        t.append(t[-1] + 1 / 6)
    assert t[3] == 0.5 == 500000 * 1e-6 and t[9] == 1.5 == 1500000 * 1e-6
    assert t[6] == 0.9999999999999999 < 1000000 * 1e-6
    assert 999999 * 1e-6 < t[6]
    assert 1833333 * 1e-6 < t[11] and 333333 * 1e-6 < t[2] and 166667 * 1e-6 >= t[1]


@pytest.mark.parametrize("case", list(CASES))
def test_reference_reader_on_coded_videos(tmp_path, case):
    fps, n, moved, start, expected = CASES[case]
    path = write_coded(tmp_path / f"{case}.mp4", fps, n, moved)
    raw, times = read_clip_frames(path, start, REF)
    got = read_code(torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255)
    assert got == expected
    # the stamps the walk saw are the microsecond-rounded ones
    ticks = {k: int(k * 3_000_000 / fps) for k in range(n)} | (moved or {})
    assert times == [to_microseconds(ticks[k], TB) * 1e-6 for k in expected]
    # the corrected track takes the exact grid (first frame within 1e-4 s of each sampling time)
    exact = [ticks[k] / 3e6 for k in range(n)]
    grid = select_frame_indices(exact, start, COR).tolist()
    if case in ("25-up", "25-down"):
        assert grid[6] == 25
    assert (grid == expected) == (case == "25-up")


def test_clip_starts_from_container_metadata(tmp_path):
    # 4.3 s of 24 fps video (103 frames, duration 103/24 s), 4.0 s of audio: D = 4.0 (metadata)
    path = write_coded(tmp_path / "v.mp4", Fraction(24), 103, audio=np.zeros(64000, np.float32))
    info = stream_info(path)
    assert info.video_duration == to_microseconds(103 * 125000, TB) * 1e-6
    assert info.audio_duration == pytest.approx(4.0, abs=0.07)  # AAC: whole 1024-sample frames
    d = min(info.video_duration, info.audio_duration)
    assert clip_starts(d, REF, 3) == [0.0, (d - 2) / 2, d - 2]
    assert clip_starts(2.0, REF, 1) == [0.0] and clip_starts(1.9, REF, 1) == [pytest.approx(-0.05)]
    clips = decode_reference_clips(path, REF)
    assert [c.start for c in clips] == clip_starts(d, REF, 3)


def test_generated_clip_is_read_as_one_centred_clip(tmp_path):
    # a generated clip: 12 frames at 6 fps (time base 1/12288, as `asva-bench run` writes them)
    frames = coded_frames(12)
    long_audio = avio.write_clip(tmp_path / "long.mp4", frames, 6.0, audio=np.zeros(36800, np.float32),
                                 lossless=True)
    short_audio = avio.write_clip(tmp_path / "short.mp4", frames, 6.0, audio=np.zeros(30000, np.float32),
                                  lossless=True)
    # D = min(2.0 s video, audio) = 2.0: start 0, frame 2 skipped (its stamp rounds down)
    clip = decode_reference_generated(long_audio, REF)
    assert clip.start == 0.0 and read_code(clip.frames) == [0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11]
    # audio shorter than 2 s: start (D - 2) / 2 < 0, the walk starts below the grid and keeps all 12
    info = stream_info(short_audio)
    clip = decode_reference_generated(short_audio, REF)
    assert info.audio_duration < 2.0 and clip.start == pytest.approx((info.audio_duration - 2) / 2)
    assert read_code(clip.frames) == list(range(12))


# --------------------------------------------------------------------------
# (b) whole decoded audio frames, torchaudio resampling, centre crop; (6) stereo = channel 0
# --------------------------------------------------------------------------
def decoded_layout(path):
    """(pts in seconds, samples) of every decoded audio frame, read independently with PyAV."""
    with av.open(str(path)) as c:
        st = c.streams.audio[0]
        return [(float(f.pts * st.time_base), f.samples) for f in c.decode(st)], st.codec_context.sample_rate


@pytest.mark.parametrize("sr", [16000, 48000])
def test_audio_window_is_whole_decoded_frames(tmp_path, sr):
    a = burst(5.0, 2.3, sr)
    path = write_coded(tmp_path / "a.mp4", Fraction(24), 120, audio=a, sr=sr)
    layout, rate = decoded_layout(path)
    assert rate == sr and layout[0][0] == 0.0  # the decoder returns no priming: no trim of our own
    start = 1.5
    # frames whose pts lies in [1.5, 3.5]: the first at or after 1.5 s, the last at or before 3.5 s
    inside = [(p, n) for p, n in layout if start <= p <= start + 2]
    first, total = inside[0][0], sum(n for _, n in inside)
    assert first > start  # 1.5 s is not on the 1024-sample frame grid: the window starts late
    n16 = int(np.ceil(total * 16000 / sr))  # torchaudio's resampled length
    crop = max(0, (n16 - 32000) // 2)        # centre crop when longer than 2 s
    expected_onset = (2.3 - first) * 16000 - crop
    chunks, times, rate = read_audio_frames(path, start, REF)
    assert times == [to_microseconds(round(p * sr), Fraction(1, sr)) * 1e-6 for p, _ in inside]
    ra = reference_audio(chunks, rate, REF)
    assert ra.window.shape[1] == n16 and ra.mel_input.shape[0] == min(n16, 32000)
    assert onset(ra.mel_input) == pytest.approx(expected_onset, abs=8)
    # the corrected track's window starts at 1.5 s exactly: the burst 0.8 s in
    corrected = avio.decode_protocol_clips(path, COR, starts=[start])[0]
    assert onset(corrected.audio) == pytest.approx(0.8 * 16000, abs=8)
    shift_ms = 1000 * (onset(corrected.audio) - onset(ra.mel_input)) / 16000
    assert 0 < abs(shift_ms) < 70  # the 10-58 ms differences measured on AVSync15


def test_stereo_reaches_the_mel_as_channel_0(tmp_path):
    left, right = burst(5.0, 1.0, 16000), burst(5.0, 1.5, 16000)
    path = write_coded(tmp_path / "st.mp4", Fraction(24), 120, audio=np.stack([left, right]))
    chunks, _, rate = read_audio_frames(path, 0.0, REF)
    assert chunks[0].shape[0] == 2
    ra = reference_audio(chunks, rate, REF)
    assert ra.window.shape[0] == 2  # muxed into generated clips as it is, two channels
    # 32 whole frames start in [0, 2 s] (pts 0 ... 1.984 s): 32768 samples, centre-cropped by 384
    assert ra.window.shape[1] == 32 * 1024
    x = ra.mel_input.numpy()
    assert onset(x) == pytest.approx(16000 - 384, abs=8)                 # the left burst ...
    assert np.abs(x[int(1.45 * 16000):int(1.65 * 16000)]).max() < 0.02     # ... and no right burst
    # the mean removed is the mean over both channels
    clip = ra.window[:, 384:384 + 32000]
    assert torch.allclose(ra.mel_input, clip[0] - clip.mean(), atol=1e-7)
    # corrected averages the channels: both bursts, at half amplitude
    cor = avio.decode_protocol_clips(path, COR, starts=[0.0])[0].audio
    assert onset(cor, 0.1) == pytest.approx(16000, abs=8)
    assert 0.2 < np.abs(cor.numpy()[int(1.5 * 16000):int(1.6 * 16000)]).max() < 0.3


def test_short_window_is_padded_in_the_mel_domain(tmp_path):
    from asva_bench.protocol import waveform_to_mel, waveforms_to_mel
    path = write_coded(tmp_path / "a.mp4", Fraction(24), 120, audio=burst(5.0, 2.3, 16000))
    clip = decode_reference_clips(path, REF, starts=[1.5])[0]
    n = clip.audio_length
    assert n < 32000  # 31 whole frames (31744 samples) start in [1.5 s, 3.5 s]
    mel = waveforms_to_mel(clip.audio[None], REF, [n])[0]
    assert torch.equal(mel, waveform_to_mel(clip.audio[:n], REF))
    assert not torch.equal(mel, waveforms_to_mel(clip.audio[None], REF)[0])  # != zero-padded samples


# --------------------------------------------------------------------------
# (c) FID Inception with batch-statistics BatchNorm
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_inception():
    from asva_bench.backbones.inception import FIDInception, fid_inception_network
    torch.manual_seed(0)
    net = fid_inception_network()
    for m in net.modules():  # non-trivial running statistics, so eval mode differs from batch mode
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    model = FIDInception(net, 229, "bicubic-antialias").eval().requires_grad_(False)
    return model


def eval_forward_with_batch_stats(model, frames):
    """Independent construction: an eval-mode copy whose every BatchNorm, just before it runs, gets
    running statistics recomputed from its own input (mean and biased variance over N, H, W)."""
    m = copy.deepcopy(model).eval()

    def recompute(bn, args):
        x = args[0]
        bn.running_mean.copy_(x.mean((0, 2, 3)))
        bn.running_var.copy_(x.var((0, 2, 3), unbiased=False))

    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.register_forward_pre_hook(recompute)
    with torch.no_grad():
        return m(m.preprocess(frames))


def test_reference_fid_features_depend_on_the_batch(random_inception):
    torch.manual_seed(1)
    a, b = torch.rand(6, 3, 64, 64), torch.rand(6, 3, 64, 64)
    before = {k: v.clone() for k, v in random_inception.state_dict().items()}
    alone = random_inception.features(a, batch_statistics=True)
    mixed = random_inception.features(torch.cat([a[:3], b[:3]]), batch_statistics=True)
    # the same three frames, in two batches: different features
    assert not torch.allclose(alone[:3], mixed[:3], atol=1e-3)
    # = an eval-mode forward with BatchNorm statistics recomputed from that batch (float32 round-off
    # through 94 BatchNorm layers: relative error ~4e-5; eval mode vs batch mode: ~10, cosine 0.56)
    independent = eval_forward_with_batch_stats(random_inception, a)
    assert ((alone - independent).norm() / independent.norm()).item() < 2e-4
    # deterministic given the batch; running statistics untouched; eval mode unchanged
    torch.testing.assert_close(random_inception.features(a, batch_statistics=True), alone, rtol=0, atol=0)
    after = random_inception.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    ev = random_inception.features(a)
    assert ((ev - alone).norm() / ev.norm()).item() > 1.0
    torch.testing.assert_close(random_inception.features(torch.cat([a, b]))[:6], ev, rtol=1e-4, atol=1e-5)


def test_scoring_groups_fid_batches_like_the_reference(random_inception):
    from asva_bench.scoring import fid_features
    suite = SimpleNamespace(image_features=lambda x, batch_statistics=False:
                            random_inception.features(x, batch_statistics=batch_statistics))
    torch.manual_seed(2)
    clips = torch.rand(2, 12, 3, 32, 32)
    per_clip = fid_features(suite, clips, REF)
    per_video = fid_features(suite, clips, REF, one_batch=True)
    assert per_clip.shape == per_video.shape == (2, 11, 2048)
    torch.testing.assert_close(per_clip[1], random_inception.features(clips[1], batch_statistics=True)[1:])
    both = random_inception.features(clips.flatten(0, 1), batch_statistics=True).view(2, 12, -1)[:, 1:]
    torch.testing.assert_close(per_video, both)
    corrected = fid_features(suite, clips, COR)
    torch.testing.assert_close(corrected[0], random_inception.features(clips[0, 1:]))


# --------------------------------------------------------------------------
# (d) IT text, (e) AlignSync's first-frame audio
# --------------------------------------------------------------------------
def test_it_text_per_track():
    from asva_bench.datasets.base import VideoEntry
    v = VideoEntry("playing_violin__fiddle/x.mp4", "playing_violin__fiddle", "playing violin fiddle", "test", "/x")
    tgh = VideoEntry("x.mp4", "thegreatesthits", "hitting with a stick", "test", "/x")
    land = VideoEntry("test/fire_crackling/y.mp4", "fire_crackling", "fire crackling", "test", "/y")
    assert it_text(v, REF) == "playing_violin__fiddle" and it_text(v, COR) == "playing violin fiddle"
    assert it_text(land, REF) == "fire_crackling" and it_text(land, COR) == "fire crackling"
    assert it_text(tgh, REF) == it_text(tgh, COR) == "hitting with a stick"


def test_alignsync_first_frame_term_uses_ground_truth_audio_on_reference():
    e = torch.eye(4, dtype=torch.float64)
    frames = e[[1, 1]].unsqueeze(0)                  # two generated frames along axis 1
    first = e[[0]]                                   # ground-truth first frame along axis 0
    gen_audio, gt_audio = e[[1]], e[[0]]             # generated audio along 1, ground-truth along 0
    gen, gt = {"audio_embedding": gen_audio}, {"first_frame_audio_embedding": gt_audio}
    assert torch.equal(alignsync_first_frame_audio(gen, gt, REF), gt_audio)
    assert torch.equal(alignsync_first_frame_audio(gen, gt, COR), gen_audio)
    # reference: c_k = cos(frame, gen audio) = 1, c_1 = cos(first, gt audio) = 1 -> sigmoid(0) = 0.5
    assert p_align(frames, first, gen_audio, gt_audio).item() == pytest.approx(0.5)
    # corrected: c_1 = cos(first, gen audio) = 0 -> sigmoid(1)
    assert p_align(frames, first, gen_audio).item() == pytest.approx(1 / (1 + np.exp(-1.0)))


def test_rgb_conversion_ignores_the_colour_space_tag(tmp_path):
    """torchvision's decoder converts with swscale's defaults (BT.601) whatever the stream's tag;
    PyAV would honour a BT.709 tag. Two files with the same pixels, one tagged BT.709, read the same."""
    from av.video.reformatter import Colorspace
    from asva_bench.reference_io import torchvision_rgb
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (12, 64, 80, 3), dtype=np.uint8)
    paths = []
    for tag in (None, Colorspace.ITU709):
        path = tmp_path / f"c{tag}.mp4"
        with av.open(str(path), "w", format="mp4") as c:
            vs = c.add_stream("libx264", rate=6, options={"crf": "0"})
            vs.width, vs.height, vs.pix_fmt = 80, 64, "yuv420p"
            if tag is not None:
                vs.codec_context.colorspace = tag
            for k in range(12):
                f = av.VideoFrame.from_ndarray(rgb[k], format="rgb24").reformat(format="yuv420p", dst_colorspace="ITU601")
                if tag is not None:
                    f.colorspace = tag
                for p in vs.encode(f):
                    c.mux(p)
            for p in vs.encode():
                c.mux(p)
        paths.append(path)
    with av.open(str(paths[1])) as c:
        tagged = next(c.decode(video=0))
    assert tagged.colorspace == Colorspace.ITU709
    assert not np.array_equal(tagged.to_ndarray(format="rgb24"), torchvision_rgb(tagged))
    a, _ = read_clip_frames(paths[0], 0.0, REF)
    b, _ = read_clip_frames(paths[1], 0.0, REF)
    assert np.array_equal(a, b)


def test_it_texts_pair_like_the_reference_when_the_split_file_is_unsorted():
    from asva_bench.datasets.base import VideoEntry
    from asva_bench.scoring import it_texts

    def e(rel):
        c = rel.split("/")[0]
        return VideoEntry(rel, c, c.replace("_", " "), "test", "/" + rel)

    sorted_file = [e("a_cls/1.mp4"), e("b_cls/2.mp4"), e("c_cls/3.mp4")]
    assert it_texts(sorted_file, REF) == {"a_cls/1": "a_cls", "b_cls/2": "b_cls", "c_cls/3": "c_cls"}
    # lines out of order: the reference sorts the videos, not the categories read beside them
    unsorted_file = [e("b_cls/2.mp4"), e("a_cls/1.mp4"), e("c_cls/3.mp4")]
    assert it_texts(unsorted_file, REF) == {"a_cls/1": "b_cls", "b_cls/2": "a_cls", "c_cls/3": "c_cls"}
    assert it_texts(unsorted_file, COR) == {"a_cls/1": "a cls", "b_cls/2": "b cls", "c_cls/3": "c cls"}
