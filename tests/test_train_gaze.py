"""Issue 12 training: flow supervision and TV losses, the anatomical renderer,
init_weights and weight snapshots."""
import math

import pytest
import torch

from deepwarp_fast.data import render_pairs
from deepwarp_fast.training import TrainConfig
from deepwarp_fast.training.losses import flow_iris_loss, flow_points_loss, training_loss, weighted_tv
from deepwarp_fast.training.trainer import Trainer


def test_anatomical_renderer_moves_the_iris_042_sin_angle_eye_widths():
    # from straight ahead, the pupil anchor moves 0.42 sin(angle) eye widths (v1: ~0.36)
    res = {}
    for anatomy in ("v1", "anatomical"):
        b = render_pairs(64, seed=5, angles=[0.0, 20.0], input_gaze=[0.0, 0.0], tilt=0.0, anatomy=anatomy)
        w = (b["anchors"][:, 3] - b["anchors"][:, 0]).norm(dim=1)
        d = (b["target_anchors"][:, 6, 0] - b["anchors"][:, 6, 0]) / w
        res[anatomy] = float(d.mean()) / math.sin(math.radians(20))
    assert res["anatomical"] == pytest.approx(0.42, abs=0.015)
    assert res["v1"] < 0.38
    with pytest.raises(ValueError, match="anatomy"):
        render_pairs(1, seed=0, anatomy="nope")


def test_v1_renderer_pixels_are_unchanged_by_the_option():
    a = render_pairs(4, seed=9)
    b = render_pairs(4, seed=9, anatomy="v1")
    assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])


def test_flow_losses_are_zero_at_the_right_flow_and_positive_elsewhere(gen):
    B, H, W = 3, 41, 51
    anchors = torch.rand(B, 7, 2, generator=gen) * torch.tensor([40.0, 30.0]) + 5
    shift = torch.tensor([1.5, -0.75])
    target_anchors = anchors - shift          # the target's points sit at input - shift
    flow = shift.view(1, 2, 1, 1).expand(B, 2, H, W).clone()   # backward flow = input - target = shift
    iris = (torch.rand(B, 1, H, W, generator=gen) > 0.7).float()
    assert flow_iris_loss(flow, iris, anchors, target_anchors).item() == pytest.approx(0.0, abs=1e-10)
    assert flow_points_loss(flow, anchors, target_anchors).item() == pytest.approx(0.0, abs=1e-10)
    assert weighted_tv(flow, iris).item() == pytest.approx(0.0, abs=1e-10)
    bad = flow + 1.0
    assert flow_iris_loss(bad, iris, anchors, target_anchors).item() == pytest.approx(2.0)
    assert flow_points_loss(bad, anchors, target_anchors).item() == pytest.approx(2.0, rel=1e-5)
    wavy = flow.clone()
    wavy[:, 0, :, ::2] += 0.5
    assert weighted_tv(wavy, torch.ones(B, 1, H, W)).item() > 0.2


def test_training_loss_asks_for_the_masks_it_needs():
    cfg = TrainConfig.from_dict({"loss": {"flow_iris": 0.01}}).loss
    model_out = type("O", (), {})()
    model_out.output = model_out.coarse = torch.zeros(1, 3, 41, 51)
    model_out.flow = model_out.coarse_flow = torch.zeros(1, 2, 41, 51)
    with pytest.raises(KeyError, match="iris"):
        training_loss(model_out, torch.zeros(1, 3, 41, 51), cfg, batch={"anchors": torch.zeros(1, 7, 2),
                                                                        "target_anchors": torch.zeros(1, 7, 2)})


def _tiny_cfg(tmp_path, **run):
    return TrainConfig.from_dict({
        "data": {"bins_per_batch": 2, "easy_per_bin": 2, "hard_per_bin": 1, "anatomy": "anatomical"},
        "loss": {"flow_iris": 0.003, "flow_lids": 0.001, "tv_eye": 0.001, "tv_lids": 0.0005},
        "optim": {"warmup_steps": 1},
        "run": {"steps": 2, "threads": 1, "log_every": 1, "checkpoint_every_s": 0, "init_weights": "default",
                "snapshot_every_steps": 1, **run},
    })


def test_flow_supervised_training_runs_snapshots_and_resumes(tmp_path):
    from deepwarp_fast.weights import default_weights_path, load_model

    if default_weights_path() is None:
        pytest.skip("no bundled weights")
    cfg = _tiny_cfg(tmp_path)
    tr = Trainer(cfg, tmp_path / "run", progress=False)
    shipped = load_model()
    # init_weights="default" starts from the bundled weights
    for (k, v), (k2, v2) in zip(tr.model.state_dict().items(), shipped.state_dict().items()):
        assert k == k2 and torch.equal(v.cpu(), v2)
    s = tr.train()
    assert s["steps"] == 2
    for name in ("weights_step1.safetensors", "weights_step2.safetensors", "weights.safetensors", "metrics.csv"):
        assert (tmp_path / "run" / name).is_file()
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    for term in ("flow_iris", "flow_lids", "tv_eye", "tv_lids"):
        assert term in header
    # resume: continues at step 2 to 3
    cfg3 = cfg.with_overrides(["run.steps=3"])
    tr3 = Trainer(cfg3, tmp_path / "run", resume=True, progress=False)
    assert tr3.step == 2
    assert tr3.train()["steps"] == 3


def test_mixed_anatomy_renders_each_batch_with_one_eyeball_by_its_seed():
    """data.anatomy = "mixed": a batch is the v1 renderer's or the anatomical one's, by its
    seed's parity, bit for bit what that renderer alone gives; a run sees both."""
    from deepwarp_fast.training.sampler import PaperSampler, render_batch

    cfg = TrainConfig.from_dict({"data": {"bins_per_batch": 1, "easy_per_bin": 2, "hard_per_bin": 0, "anatomy": "mixed"}})
    single = {a: TrainConfig.from_dict({"data": {"bins_per_batch": 1, "easy_per_bin": 2, "hard_per_bin": 0, "anatomy": a}})
              for a in ("v1", "anatomical")}
    sampler = PaperSampler(cfg.data)
    seen = set()
    for step in range(6):
        plan = sampler.sample(step)
        which = "anatomical" if plan.seed % 2 else "v1"
        seen.add(which)
        got = render_batch(plan, cfg.data, 41, 51)
        want = render_batch(plan, single[which].data, 41, 51)
        assert torch.equal(got["target"], want["target"]) and torch.equal(got["input"], want["input"])
    assert seen == {"v1", "anatomical"}
    with pytest.raises(ValueError, match="'mixed'"):
        TrainConfig.from_dict({"data": {"anatomy": "both"}})
