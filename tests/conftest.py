"""Shared fixtures: tiny real mp4 datasets in the documented layouts."""

from pathlib import Path

import numpy as np
import pytest

from asva_bench import avio

SR = 16000


@pytest.fixture(scope="module")
def single_thread():
    """Toy-sized models: thread start-up dominates, and on shared cores 2 OpenMP threads ran such
    tests ~15x slower than 1 (measured). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("single_thread")``; the setting is restored after."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_video(path: Path, seconds: float = 3.0, fps: float = 24, size=(48, 64), seed: int = 0,
               audio: bool = True) -> Path:
    """A moving square with a click at each 0.5 s, h264 + AAC like real data."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    h, w = size
    frames = np.empty((n, h, w, 3), np.uint8)
    frames[:] = rng.integers(0, 255, 3, dtype=np.uint8)
    for i in range(n):
        x = int((i / max(1, n - 1)) * (w - 12))
        frames[i, 10:22, x:x + 12] = 255
    wav = None
    if audio:
        wav = (0.02 * rng.standard_normal(int(seconds * SR))).astype(np.float32)
        for t in np.arange(0.25, seconds, 0.5):
            i = int(t * SR)
            wav[i:i + 800] += 0.5 * np.exp(-np.arange(800) / 200.0).astype(np.float32)
    return avio.write_clip(path, frames, fps, audio=wav, sample_rate=SR, preset="ultrafast")


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """AVSync15 layout, 2 classes x (1 train + 2 test) videos of 3 s."""
    root = tmp_path / "tiny"
    train, test = [], []
    for c, cls in enumerate(["dog_bark", "hammer_strike"]):
        for k in range(3):
            rel = f"{cls}/v{k}.mp4"
            make_video(root / "videos" / rel, seconds=3.0 + k, seed=10 * c + k)
            (train if k == 0 else test).append(rel)
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "test.txt").write_text("\n".join(test) + "\n")
    return root
