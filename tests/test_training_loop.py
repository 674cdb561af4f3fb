"""The shared training toolkit: step loop with exact resume, LR schedule, folder layout, noise."""

import json
import math
import os
import signal

import numpy as np
import pytest
import torch

from asva_bench.models.avsyncd import make_scheduler
from asva_bench.training.checkpointing import (CHECKPOINT_DIR, CONFIG_FILE, LOG_FILE, PROGRESS_FILE, TrainingError,
                                               TrainingFolder, read_log)
from asva_bench.training.loop import MODEL_STATE_FILE, Budget, Hook, StepResult, step_generator, train_model
from asva_bench.training.noise import draw_timesteps_and_noise, noised
from asva_bench.training.schedule import LRSchedule


# --------------------------------------------------------------------------
# LR schedule: each trainer's recipe, hand-derived values
# --------------------------------------------------------------------------
def test_lr_schedule_golden():
    sync = LRSchedule(100, "cosine", floor=0.05, total_steps=2000)   # sync classifier, mini
    assert sync.factor(0) == pytest.approx(0.01) and sync.factor(99) == pytest.approx(1.0)
    assert sync.factor(100) == pytest.approx(1.0)                    # cosine starts at the top
    assert sync.factor(1050) == pytest.approx(0.05 + 0.95 * 0.5)     # half way: cos = 0
    assert sync.factor(2000) == pytest.approx(0.05) and sync.factor(9000) == pytest.approx(0.05)
    base = LRSchedule(3, "constant")                                 # mini base
    assert [base.factor(s) for s in range(5)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 1.0])
    assert LRSchedule(0, "constant").factor(0) == 1.0                # AVSyncD paper: no warm-up
    # AVSyncD mini: cosine to 10% over steps or training seconds, whichever is further along
    avs = LRSchedule(100, "cosine", floor=0.1, total_steps=1100, total_seconds=600.0)
    assert avs.factor(600, seconds=0.0) == pytest.approx(0.1 + 0.9 * 0.5)      # steps half way
    assert avs.factor(200, seconds=300.0) == pytest.approx(0.1 + 0.9 * 0.5)    # minutes half way
    assert avs.factor(200, seconds=1e6) == pytest.approx(0.1)
    assert LRSchedule(0, "cosine", floor=0.1, total_seconds=100.0).factor(0, 25.0) == \
        pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    with pytest.raises(ValueError, match="total_steps or total_seconds"):
        LRSchedule(10, "cosine")
    with pytest.raises(ValueError, match="schedule must be one of"):
        LRSchedule(10, "linear", total_steps=5)


# --------------------------------------------------------------------------
# Noise: diffusers' add_noise against the DDPM formula computed here
# --------------------------------------------------------------------------
def test_noise_is_the_ddpm_forward_process():
    sched = make_scheduler("ddpm")
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2   # SD 1.5 scaled-linear
    ab = np.cumprod(1.0 - betas)
    lat = torch.randn(3, 4, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    t, noise = draw_timesteps_and_noise(lat, sched, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)   # the documented draw order: timesteps, then noise
    assert torch.equal(t, torch.randint(0, 1000, (3,), generator=g))
    assert torch.equal(noise, torch.randn(lat.shape, generator=g))
    x = noised(sched, lat, noise, t)
    a = torch.tensor(ab[t.numpy()], dtype=torch.float64).view(3, 1, 1, 1, 1)
    want = a.sqrt() * lat.double() + (1 - a).sqrt() * noise.double()
    torch.testing.assert_close(x.double(), want, atol=1e-5, rtol=0)
    v = noised(sched, lat, noise, t, clean_first_frame=True)
    assert torch.equal(v[:, 0], lat[:, 0]) and torch.equal(v[:, 1:], x[:, 1:])


# --------------------------------------------------------------------------
# The loop: a toy regression trained through the shared loop
# --------------------------------------------------------------------------
W_TRUE = torch.tensor([[1.0, -2.0, 0.5, 3.0]])


class Toy:
    """A linear model fitted to noisy targets; every draw of step s comes from (seed 7, s)."""

    def __init__(self, lr=0.05, signal_at=None, nan_at=None):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.01)
        self.lr, self.signal_at, self.nan_at, self.calls = lr, signal_at, nan_at, []

    def step(self, step):
        self.calls.append(step)
        g = step_generator(7, step)
        x = torch.randn(16, 4, generator=g)
        y = x @ W_TRUE.t() + 0.1 * torch.randn(16, 1, generator=g)
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        if step == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step: the step still completes
        if step == self.nan_at:
            return StepResult(float("nan"))
        return StepResult(loss.item(), {"w0": self.model.weight[0, 0].detach()})

    def run(self, out, steps=10, session_steps=None, resume=True, config=None, hooks=(), **kw):
        folder = TrainingFolder(out)
        return train_model(folder, self.step, model=self.model, optimizer=self.opt,
                           config=config or {"lr": self.lr, "steps": steps, "log_every": 2}, resume=resume,
                           may_change=("log_every",), budget=Budget(steps=steps, session_steps=session_steps),
                           lr=self.lr, schedule=LRSchedule(2, "cosine", floor=0.05, total_steps=steps),
                           header={"toy": True}, log_every=2, checkpoint_every=kw.pop("checkpoint_every", 4),
                           progress=False, **kw)


def _state(out):
    return torch.load(out / CHECKPOINT_DIR / MODEL_STATE_FILE, weights_only=True)


def _assert_same_state(a, b):
    sa, sb = _state(a), _state(b)
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    assert sa["optimizer"]["param_groups"] == sb["optimizer"]["param_groups"]
    for i, st in sa["optimizer"]["state"].items():
        for name, v in st.items():
            assert torch.equal(v, sb["optimizer"]["state"][i][name]), (i, name)


def test_resume_continues_exactly_and_the_log_is_cut_back(tmp_path):
    straight = Toy().run(tmp_path / "a")
    assert straight.finished and straight.step == 10 and not straight.interrupted
    first = Toy().run(tmp_path / "b", session_steps=4)
    assert (first.step, first.finished) == (4, False)
    progress = json.loads((tmp_path / "b" / CHECKPOINT_DIR / PROGRESS_FILE).read_text())
    assert progress["step"] == 4 and progress["elapsed_s"] > 0
    # what a killed run leaves after its last checkpoint: records of later steps, a cut line
    with open(tmp_path / "b" / LOG_FILE, "a") as f:
        f.write(json.dumps({"step": 5, "loss": 9.0}) + "\n" + '{"step": 6, "lo')
    toy = Toy()
    second = toy.run(tmp_path / "b")
    assert second.finished and second.start_step == 4 and toy.calls == list(range(4, 10))
    _assert_same_state(tmp_path / "a", tmp_path / "b")
    log = read_log(tmp_path / "b" / LOG_FILE)
    assert [r["step"] for r in log if "loss" in r] == [2, 4, 6, 8, 10]
    assert [r["step"] for r in log if r.get("event") == "start"] == [0, 4] and all(r["toy"] for r in log[:1])
    want = [r["loss"] for r in read_log(tmp_path / "a" / LOG_FILE) if "loss" in r]
    assert [r["loss"] for r in log if "loss" in r] == want
    # the loop set the schedule's rate on the optimizer: warm-up 2 then cosine to 5% at step 10
    assert [r["lr"] for r in log if "loss" in r][:2] == pytest.approx(
        [0.05 * LRSchedule(2, "cosine", 0.05, 10).factor(s) for s in (1, 3)])
    assert json.loads((tmp_path / "b" / CONFIG_FILE).read_text()) == {"lr": 0.05, "steps": 10, "log_every": 2}


def test_sigterm_finishes_the_step_saves_and_resumes_exactly(tmp_path):
    Toy().run(tmp_path / "a")
    cut = Toy(signal_at=5).run(tmp_path / "b")
    assert cut.interrupted and not cut.finished and cut.step == 6
    assert json.loads((tmp_path / "b" / CHECKPOINT_DIR / PROGRESS_FILE).read_text())["step"] == 6
    assert [r["step"] for r in read_log(tmp_path / "b" / LOG_FILE) if "loss" in r] == [2, 4, 6]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL   # the loop put the old handler back
    rest = Toy().run(tmp_path / "b")
    assert rest.finished and rest.start_step == 6
    _assert_same_state(tmp_path / "a", tmp_path / "b")


def test_checkpoint_and_hook_cadence(tmp_path):
    saves, probed = [], []
    toy = Toy()
    folder = TrainingFolder(tmp_path / "c")
    real_save = folder.save

    def counting_save(progress, write):
        saves.append(progress.step)
        return real_save(progress, write)

    folder.save = counting_save
    hook = Hook("probe", 3, lambda s: probed.append(s) or {"at": s})
    out = train_model(folder, toy.step, model=toy.model, optimizer=toy.opt, config={}, resume=True,
                      budget=Budget(steps=10), lr=0.05, schedule=LRSchedule(0, "constant"), header={}, log_every=5,
                      checkpoint_every=4, progress=False)
    assert saves == [4, 8, 10] and out.finished
    assert not probed  # train_model passes no hooks; run_steps below does
    from asva_bench.training.checkpointing import Progress
    from asva_bench.training.loop import run_steps
    out = run_steps(Toy().step, start=Progress(), budget=Budget(steps=10), hooks=[hook], log_every=5,
                    progress=False)
    assert probed == [3, 6, 9, 10] and [r["step"] for r in out.hook_records] == [3, 6, 9, 10]
    assert [r["step"] for r in out.records] == [5, 10] and "w0" in out.records[0]


def test_resume_refusals_and_non_finite_loss(tmp_path):
    Toy().run(tmp_path / "a", session_steps=3)
    with pytest.raises(TrainingError, match=r"different training config \(lr: saved 0\.05, now 0\.1\)"):
        Toy(lr=0.1).run(tmp_path / "a")
    # a runtime setting may change; a fresh start (resume=False) is allowed and clears the log
    Toy().run(tmp_path / "a", session_steps=1, config={"lr": 0.05, "steps": 10, "log_every": 5})
    fresh = Toy().run(tmp_path / "a", session_steps=1, resume=False)
    assert fresh.start_step == 0
    assert [r["step"] for r in read_log(tmp_path / "a" / LOG_FILE) if "loss" in r] == [1]
    folder = TrainingFolder(tmp_path / "a")
    with pytest.raises(TrainingError, match="already holds a training run.*pass --resume"):
        folder.start({"lr": 0.05}, resume=False, refuse_existing=True)
    with pytest.raises(TrainingError, match="loss became nan at step 2"):
        Toy(nan_at=2).run(tmp_path / "n")
    assert not (tmp_path / "n" / CHECKPOINT_DIR).exists()   # nothing saved after a non-finite loss
