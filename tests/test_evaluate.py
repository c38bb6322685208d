"""Evaluation: the normalised error, its summary and plots, held-out pairs, the CLI."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from deepwarp_fast.cli import main
from deepwarp_fast.evaluate import (VARIANTS, draw_angles_tilts, evaluate_pairs, heldout_pairs, plot_error_vs_angle,
                                    plot_sorted_errors, run_evaluation, summarize)
from deepwarp_fast.model import DeepWarp
from deepwarp_fast.weights import save_weights


def fake_result(gen, n=300):
    mag = torch.rand(n, generator=gen, dtype=torch.float64).numpy() * 30
    r = {"magnitude": mag, "angles": np.stack([mag, np.zeros(n)], 1), "tilt": (torch.rand(n, generator=gen).numpy() - 0.5) * 40}
    r["output"] = 0.1 + mag / 60  # grows with the angle: median 0.225 up to 15 degrees
    r["fine"] = r["output"] + 0.05
    r["coarse"] = r["output"] + 0.2
    return r


def test_summary_bins_and_targets(gen):
    r = fake_result(gen)
    s = summarize(r, bin_width=15.0, max_angle=30.0)
    out = s["variants"]["output"]
    assert [b["range_deg"] for b in out["bins"]] == [[0.0, 15.0], [15.0, 30.0]]
    assert sum(b["n"] for b in out["bins"]) == 300
    low = r["magnitude"] <= 15
    assert out["up_to_15deg"]["median"] == pytest.approx(np.median(r["output"][low]))
    assert out["bins"][1]["median"] == pytest.approx(np.median(r["output"][~low]))
    assert s["variants"]["fine"]["all"]["median"] == pytest.approx(np.median(r["output"]) + 0.05)
    assert s["targets"] == {"median_up_to_15deg_le_0.4": True, "median_every_bin_lt_0.8": True, "lcm_no_worse_than_cfw": True}
    r["output"] = r["output"] + 0.6  # now worse than the CFW, and the 15-30 bin above 0.8
    t = summarize(r, max_angle=30.0)["targets"]
    assert t == {"median_up_to_15deg_le_0.4": False, "median_every_bin_lt_0.8": False, "lcm_no_worse_than_cfw": False}


def test_plots_are_written(gen, tmp_path):
    r = fake_result(gen)
    for fn, name in ((plot_sorted_errors, "a.png"), (plot_error_vs_angle, "b.png")):
        fn(r, tmp_path / name)
        img = np.asarray(Image.open(tmp_path / name).convert("L"))
        assert img.shape[0] > 100 and img.std() > 10
        assert (tmp_path / name).stat().st_size < 200_000


def test_draw_angles_tilts():
    g = torch.Generator().manual_seed(0)
    a, t = draw_angles_tilts(g, 500, max_angle=20.0, min_angle=2.0, hard_fraction=0.5)
    mag = a.norm(dim=1)
    assert a.shape == (500, 2) and mag.min() >= 2.0 - 1e-4 and mag.max() <= 20.0 + 1e-4
    assert 0.4 < (t.abs() > 8).float().mean() < 0.6 and t.abs().max() <= 20.0
    v, _ = draw_angles_tilts(g, 50, direction="vertical")
    assert bool((v[:, 1].abs() < 1e-5).all())
    with pytest.raises(ValueError, match="direction"):
        draw_angles_tilts(g, 5, direction="diagonal")


def test_heldout_pairs_are_reproducible_and_untrained_model_scores_one():
    p = heldout_pairs(12, seed=3, batch_size=5, max_angle=30.0)
    assert p["input"].shape == (12, 3, 41, 51) and p["angles"].shape == (12, 2)
    assert torch.equal(p["input"], heldout_pairs(12, seed=3, batch_size=5)["input"])
    assert (p["input"] - p["target"]).abs().amax(dim=(1, 2, 3)).min() > 0.01  # every pair redirects
    torch.manual_seed(0)
    r = evaluate_pairs(DeepWarp().eval(), p)
    # An untrained model starts as the identity warp: O_c = O = input, so error 1.
    assert np.allclose(r["fine"], 1.0, atol=1e-6) and np.allclose(r["coarse"], 1.0, atol=1e-6)
    assert np.all(np.abs(r["output"] - 1.0) < 0.05)
    assert np.allclose(r["magnitude"], p["angles"].norm(dim=1).numpy(), atol=1e-5)


def test_evaluate_command_writes_summary_and_plots(tmp_path, capsys):
    torch.manual_seed(0)
    w = save_weights(DeepWarp(), tmp_path / "w.safetensors", provenance={"note": "untrained"})
    out = tmp_path / "ev"
    assert main(["evaluate", "--weights", str(w), "-n", "10", "-o", str(out), "--backend", "reference"]) == 0
    s = json.loads((out / "eval_summary.json").read_text())
    assert s["n_pairs"] == 10 and set(s["variants"]) == set(VARIANTS)
    assert s["variants"]["fine"]["all"]["median"] == pytest.approx(1.0, abs=1e-6)
    assert s["provenance"]["note"] == "untrained"
    assert (out / "eval_sorted_errors.png").is_file() and (out / "eval_error_vs_angle.png").is_file()
    printed = capsys.readouterr().out
    assert "CFW without LCM" in printed and "targets:" in printed


def test_run_evaluation_without_output_folder():
    torch.manual_seed(0)
    s = run_evaluation(DeepWarp(), n=4, seed=1, max_angle=10.0)
    assert s["n_pairs"] == 4 and s["max_angle_deg"] == 10.0
    assert [b["range_deg"] for b in s["variants"]["output"]["bins"]] == [[0.0, 10.0]]
