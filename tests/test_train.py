"""Training: config files, the paper's losses and batch sampling, the trainer (steps,
learning, checkpoint and resume, CSV metrics). The data here are a stand-in: smooth
random images whose target is the input shifted by an angle-proportional flow."""
import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F

from deepwarp_fast.ops import warp_reference
from deepwarp_fast.training import (PaperSampler, TrainConfig, Trainer, learning_rate, load_config, registration_tolerant_l2,
                                    save_config, training_loss)
from deepwarp_fast.training.config import DataConfig, LossConfig
from deepwarp_fast.training.losses import normalized_error
from deepwarp_fast.weights import load_model, read_metadata


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """The trainer sets torch's (process-wide) thread count: restore it for other tests."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def toy_batch(step, rank=0, B=16):
    """Smooth random eyes; the target moves the image by (angle / 5) pixels."""
    g = torch.Generator().manual_seed(1000 * step + rank + 1)
    img = F.interpolate(torch.rand(B, 3, 11, 13, generator=g), size=(41, 51), mode="bilinear", align_corners=True)
    ang = (torch.rand(B, 2, generator=g) * 2 - 1) * 20
    flow = torch.zeros(B, 2, 41, 51)
    flow[:, 0] = -ang[:, 1].view(B, 1, 1) / 5
    flow[:, 1] = ang[:, 0].view(B, 1, 1) / 5
    anchors = torch.rand(B, 7, 2, generator=g) * torch.tensor([40.0, 30.0]) + 5
    return {"input": img, "target": warp_reference(img, flow), "anchors": anchors, "angles": ang}


def tiny_config(**run):
    d = {"run": {"steps": 4, "threads": 1, "log_every": 1, "checkpoint_every_s": 0, **run},
         "optim": {"warmup_steps": 2}, "data": {"bins_per_batch": 2, "easy_per_bin": 6, "hard_per_bin": 2}}
    return TrainConfig.from_dict(d)


# ---------------------------------------------------------------------- config
def test_config_round_trips_toml_and_json(tmp_path):
    cfg = TrainConfig.from_dict({"model": {"use_lcm": False}, "loss": {"registration_tolerant": True, "l1_output": 0.5},
                                 "optim": {"lr": 3e-4}, "run": {"steps": 7}})
    for name in ("a.toml", "a.json"):
        save_config(cfg, tmp_path / name)
        back = load_config(tmp_path / name)
        assert back.to_dict() == cfg.to_dict()
        assert back.model_config().use_lcm is False


def test_config_rejects_unknown_and_bad_values(tmp_path):
    with pytest.raises(ValueError, match=r"unknown keys in \[optim\]: \['lrr'\]"):
        TrainConfig.from_dict({"optim": {"lrr": 1}})
    with pytest.raises(ValueError, match="unknown config sections"):
        TrainConfig.from_dict({"optimiser": {}})
    with pytest.raises(ValueError, match="unknown DeepWarpConfig fields"):
        TrainConfig.from_dict({"model": {"channels": 3}})
    with pytest.raises(ValueError, match="bins_per_batch"):
        TrainConfig.from_dict({"data": {"bins_per_batch": 16}})
    with pytest.raises(ValueError, match="--set expects"):
        TrainConfig().with_overrides(["steps=3"])
    assert TrainConfig().with_overrides(["run.steps=3", "run.device=cuda"]).run.device == "cuda"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*.toml"))
    assert files, "configs/*.toml missing"
    for f in files:
        load_config(f)
    assert load_config(root / "paper.toml").data.batch_size == 128


# ---------------------------------------------------------------------- losses
def test_registration_tolerant_loss_forgives_shifts_up_to_k(gen):
    img = F.interpolate(torch.rand(2, 3, 15, 17, generator=gen), size=(41, 51), mode="bilinear", align_corners=True)
    big = F.pad(img, (3, 3, 3, 3), mode="replicate")
    # The output equals the target window shifted by (dy, dx) = (2, -3): forgiven at k = 3.
    out = big[:, :, 3 + 2 : 3 + 2 + 41, 3 - 3 : 3 - 3 + 51]
    assert registration_tolerant_l2(out, big, k=3).item() == 0.0
    assert registration_tolerant_l2(out, img, k=3).item() == 0.0  # enlarged by replication
    assert registration_tolerant_l2(out, img, k=1).item() > 1e-4
    # k = 0 is plain L2, and the min never exceeds the unshifted L2.
    noisy = (img + 0.1 * torch.rand(img.shape, generator=gen)).clamp(0, 1)
    assert torch.allclose(registration_tolerant_l2(noisy, img, k=0), F.mse_loss(noisy, img))
    assert registration_tolerant_l2(noisy, img, k=2) <= F.mse_loss(noisy, img)
    with pytest.raises(ValueError, match="target must have shape"):
        registration_tolerant_l2(out, big[:, :, 1:], k=3)


def test_training_loss_terms_follow_switches(gen):
    from deepwarp_fast.model import DeepWarp

    b = toy_batch(0)
    torch.manual_seed(0)
    out = DeepWarp()(b["input"], b["anchors"], b["angles"], return_intermediates=True)
    t = training_loss(out, b["target"], LossConfig(l2_output=1.0, l2_coarse=0.5, l1_output=0.25))
    assert set(t) == {"loss", "l2_output", "l2_coarse", "l1_output"}
    assert torch.allclose(t["loss"], t["l2_output"] + 0.5 * t["l2_coarse"] + 0.25 * t["l1_output"])
    t2 = training_loss(out, b["target"], LossConfig(l2_coarse=0.0, registration_tolerant=True))
    assert set(t2) == {"loss", "l2_output_rt"} and t2["loss"] <= t["l2_output"] + 1e-7
    with pytest.raises(ValueError, match="every loss term is switched off"):
        training_loss(out, b["target"], LossConfig(l2_output=0, l2_coarse=0))


def test_normalized_error_known_answers(gen):
    x, t = torch.rand(4, 3, 41, 51, generator=gen), torch.rand(4, 3, 41, 51, generator=gen)
    assert torch.allclose(normalized_error(x, x, t), torch.ones(4))
    assert torch.all(normalized_error(t, x, t) == 0)
    half = normalized_error((x + t) / 2, x, t)
    assert torch.allclose(half, torch.full((4,), 0.25), atol=1e-6)


# ---------------------------------------------------------------------- sampler
def test_paper_sampler_composition():
    cfg = DataConfig()  # the paper's: 15 bins, 4 bins x (24 easy + 8 hard)
    s = PaperSampler(cfg)
    p = s.sample(step=3)
    assert p.angles.shape == (128, 2) and p.tilt.shape == (128,)
    bins = p.bins.view(4, 32)
    assert len(set(bins[:, 0].tolist())) == 4 and bool((bins == bins[:, :1]).all())
    hard = p.hard.view(4, 32)
    assert hard.sum(1).tolist() == [8] * 4 and not hard[:, :24].any()
    assert bool((p.tilt[p.hard].abs() >= 8.0).all()) and bool((p.tilt[~p.hard].abs() <= 8.0).all())
    mag = p.angles.norm(dim=1)
    width = cfg.max_redirect / cfg.num_bins
    assert torch.all(mag >= p.bins * width - 1e-4) and torch.all(mag <= (p.bins + 1) * width + 1e-4)
    # Deterministic per (seed, step, rank); different across steps and ranks.
    assert torch.equal(s.sample(3).angles, p.angles)
    assert not torch.equal(s.sample(4).angles, p.angles) and not torch.equal(s.sample(3, rank=1).angles, p.angles)


def test_sampler_vertical_binning_and_curriculum():
    cfg = DataConfig(binning="vertical", bins_per_batch=2, easy_per_bin=3, hard_per_bin=1)
    s = PaperSampler(cfg, curriculum_steps=100, curriculum_start_bins=3)
    early = torch.cat([s.sample(k).angles for k in range(4)])  # m = round(3 + 12 k / 100) = 3
    assert bool((early[:, 1] == 0).all())
    assert early[:, 0].abs().max() <= 3 * 60 / 15 / 2 + 1e-4  # only the 3 central bins of [-30, 30]
    late = torch.cat([s.sample(k).angles for k in range(100, 160)])
    assert late[:, 0].abs().max() > 20


def test_learning_rate_schedule():
    cfg = TrainConfig.from_dict({"optim": {"lr": 1e-3, "warmup_steps": 10, "final_lr_fraction": 0.1}, "run": {"steps": 110}})
    assert math.isclose(learning_rate(0, cfg), 1e-4)
    assert math.isclose(learning_rate(9, cfg), 1e-3)
    assert math.isclose(learning_rate(60, cfg), 0.55e-3)
    assert math.isclose(learning_rate(110, cfg), 1e-4)


# ---------------------------------------------------------------------- trainer
def test_trainer_learns_the_toy_redirection(tmp_path):
    cfg = TrainConfig.from_dict({"run": {"steps": 40, "threads": 1, "log_every": 5, "checkpoint_every_s": 0},
                                 "optim": {"warmup_steps": 5, "lr": 3e-3}})
    tr = Trainer(cfg, tmp_path, batch_fn=toy_batch, progress=False)
    probe = toy_batch(10**6, B=32)

    def probe_error():
        tr.model.eval()
        with torch.no_grad():
            out = tr.model(probe["input"], probe["anchors"], probe["angles"])
        tr.model.train()
        return normalized_error(out, probe["input"], probe["target"]).median().item()

    before = probe_error()
    summary = tr.train()
    after = probe_error()
    assert summary["steps"] == 40 and not summary["stopped_early"]
    assert before > 0.95  # identity initialisation: output = input
    assert after < 0.6, f"median normalised error {after:.3f} after 40 steps"
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(5, 41, 5))
    assert {"loss", "l2_output", "l2_coarse", "nerr_median", "lr", "samples_per_s"} <= set(rows[0])
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    meta = read_metadata(tmp_path / "weights.safetensors")
    assert meta["provenance"]["steps"] == 40 and meta["provenance"]["train_config"]["optim"]["lr"] == 3e-3
    assert load_model(tmp_path / "weights.safetensors").config == tr.model.config


def test_resume_continues_the_same_run(tmp_path):
    full = Trainer(tiny_config(steps=4), tmp_path / "full", batch_fn=toy_batch, progress=False)
    full.train()
    half = Trainer(tiny_config(steps=2), tmp_path / "half", batch_fn=toy_batch, progress=False)
    half.train()
    assert (tmp_path / "half" / "checkpoint.pt").is_file()
    resumed = Trainer(tiny_config(steps=4), tmp_path / "half", batch_fn=toy_batch, progress=False, resume=True)
    assert resumed.step == 2
    resumed.train()
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k
    rows = list(csv.DictReader(open(tmp_path / "half" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    other = tiny_config(steps=4).with_overrides(["loss.l2_coarse=0.5"])
    with pytest.raises(ValueError, match=r"cannot resume .* \[loss\] differs"):
        Trainer(other, tmp_path / "half", batch_fn=toy_batch, progress=False, resume=True)


def test_max_wall_time_stops_with_a_checkpoint(tmp_path):
    cfg = tiny_config(steps=1000, max_wall_s=1e-9)
    tr = Trainer(cfg, tmp_path, batch_fn=toy_batch, progress=False)
    s = tr.train()
    assert s["stopped_early"] and s["steps"] == 1
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "weights.safetensors").is_file()


def test_trainer_without_lcm_and_with_channels_last(tmp_path):
    cfg = tiny_config(steps=2, channels_last=True).with_overrides(['model.use_lcm=false'])
    tr = Trainer(cfg, tmp_path, batch_fn=toy_batch, progress=False)
    s = tr.train()
    assert s["steps"] == 2 and tr.model.lcm is None
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())


def test_batch_missing_a_key_is_named(tmp_path):
    def bad(step, rank):
        b = toy_batch(step, rank)
        del b["anchors"]
        return b

    tr = Trainer(tiny_config(steps=1), tmp_path, batch_fn=bad, progress=False)
    with pytest.raises(KeyError, match="needs key 'anchors'"):
        tr.train()


def test_data_workers_give_the_same_batches(tmp_path):
    a = Trainer(tiny_config(steps=3), tmp_path / "a", batch_fn=toy_batch, progress=False)
    a.train()
    b = Trainer(tiny_config(steps=3, data_workers=2), tmp_path / "b", batch_fn=toy_batch, progress=False)
    b.train()
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-6), k


def test_train_command_on_rendered_pairs(tmp_path, capsys):
    """`deepwarp-fast train` end to end on the synthetic generator (2 tiny steps)."""
    from pathlib import Path

    from deepwarp_fast.cli import main

    cfg = Path(__file__).resolve().parents[1] / "configs" / "default.toml"
    args = ["train", "--config", str(cfg), "-o", str(tmp_path), "--steps", "2", "--no-progress",
            "--set", "data.bins_per_batch=2", "--set", "data.easy_per_bin=3", "--set", "data.hard_per_bin=1",
            "--set", "run.data_workers=0", "--set", "run.log_every=1"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    assert summary["steps"] == 2 and summary["batch_per_process"] == 8
    meta = read_metadata(tmp_path / "weights.safetensors")
    import shlex

    sets = [w for w in args if "=" in w]
    expected = ["deepwarp-fast", "train", "--config", str(cfg), "-o", str(tmp_path)] + [w for o in sets for w in ("--set", o)] + ["--steps", "2"]
    assert meta["provenance"]["command"] == shlex.join(expected)
    assert load_config(tmp_path / "config.toml").data.easy_per_bin == 3
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 2 and all(math.isfinite(float(r["loss"])) for r in rows)
