"""The shipped mini checkpoints: AVSyncD-mini and I2VD-mini load on the shipped base and audio
encoder, sample valid clips, react to their audio, and fit the size budget."""

import json

import pytest
import torch

from asva_bench.adapters import build_adapter
from asva_bench.adapters.api import ClipBatch, validate_output
from asva_bench.datasets.synth import render_clip
from asva_bench.models.avsyncd.components import SHIPPED_MINI, TRAINING_RECORD, WEIGHTS_DIR
from asva_bench.protocol import MINI, audio_window, spatial_transform, waveforms_to_mel



pytestmark = pytest.mark.usefixtures("single_thread")  # conftest.py


def synth_batch(n: int = 2) -> ClipBatch:
    """Protocol clips cut from freshly rendered synth clips (no mp4 round trip needed)."""
    frames, audio, texts = [], [], []
    for i, folder in enumerate(["hammer_strike", "dog_bark"][:n]):
        video, wav, record = render_clip(folder, seed=123, index=i)  # uint8 [T,256,256,3] at 24 fps
        idx = [round(k * record["fps"] / MINI.fps) for k in range(MINI.num_frames)]
        frames.append(spatial_transform(video[idx], MINI))
        audio.append(audio_window(torch.as_tensor(wav), record["sample_rate"], 0.0, MINI))
        texts.append(record["text"])
    audio = torch.stack(audio)
    return ClipBatch(first_frame=torch.stack([f[0] for f in frames]), audio=audio, mel=waveforms_to_mel(audio, MINI),
                     text=texts, clip_ids=[f"c{i}" for i in range(n)], seeds=[11 + i for i in range(n)],
                     protocol=MINI)


def test_shipped_checkpoints_are_recorded_and_fit_the_budget():
    total = 0
    for kind, folder in SHIPPED_MINI.items():
        record = json.loads((folder / TRAINING_RECORD).read_text())
        assert record["model"] == kind and record["step"] > 0 and record["train_seconds"] > 0
        assert not (folder / "optimizer.pt").exists()  # the package ships weights, not optimizer state
        total += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    base = sum(p.stat().st_size for p in (WEIGHTS_DIR / "mini_base").rglob("*") if p.is_file())
    avsyncd = sum(p.stat().st_size for p in SHIPPED_MINI["avsyncd"].rglob("*") if p.is_file())
    assert base + avsyncd <= 30e6, "issue budget: base + AVSyncD-mini at most 30 MB"


@pytest.mark.parametrize("kind", ["avsyncd", "i2vd"])
def test_shipped_checkpoint_samples_valid_clips(kind):
    batch = synth_batch()
    a = build_adapter(kind, {"steps": 3})
    a.setup(MINI, "cpu")  # checks the checkpoint's record against the shipped base / encoder
    out = a.generate(batch)
    assert out.shape == (2, 12, 3, 64, 64) and torch.isfinite(out).all()
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    frames = validate_output(a, batch, out)
    assert torch.equal(frames[:, 0], batch.first_frame)
    # a trained model keeps the scene: later frames stay close to the first
    assert float((out[:, 1:] - out[:, :1]).abs().mean()) < 0.2


def test_shipped_avsyncd_listens_to_its_audio():
    batch = synth_batch()
    a = build_adapter("avsyncd", {"steps": 3, "eta": 4})
    a.setup(MINI, "cpu")
    out = a.generate(batch)
    import dataclasses
    silent = dataclasses.replace(batch, audio=torch.zeros_like(batch.audio),
                                 mel=waveforms_to_mel(torch.zeros_like(batch.audio), MINI))
    assert float((a.generate(silent) - out).abs().max()) > 1e-3
