"""The training loop: Adam, warmup + cosine schedule, checkpoints and resume, a
progress bar, metrics to CSV, one process or many (torchrun + DDP).

    from deepwarp_fast.training import Trainer, load_config
    Trainer(load_config("configs/default.toml"), "runs/default").train()

The data come from ``batch_fn(step, rank) -> dict`` (keys "input", "target",
"anchors", "angles"); the default renders the paper-sampled batch of that step with
deepwarp_fast.data.render_pairs, so a batch depends only on (seed, step, rank) and a
resumed run is the same run as an uninterrupted one.
"""
from __future__ import annotations

import csv
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from ..model import DeepWarp, count_parameters
from ..weights import save_weights
from ..data.real_eyes import RealEyeBatches, collect_real_eyes, real_iris_loss, real_lids_loss, real_photos
from . import ddp
from .config import TrainConfig, save_config
from .losses import normalized_error, training_loss
from .sampler import PaperSampler, render_batch

BatchFn = Callable[[int, int], Dict[str, torch.Tensor]]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.csv"
WEIGHTS_NAME = "weights.safetensors"


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """The schedule: linear warmup, then constant or cosine down to lr * final_lr_fraction."""
    o = cfg.optim
    if o.warmup_steps > 0 and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    span = max(1, cfg.run.steps - o.warmup_steps)
    t = min(1.0, max(0.0, (step - o.warmup_steps) / span))
    lo = o.lr * o.final_lr_fraction
    return lo + (o.lr - lo) * 0.5 * (1 + math.cos(math.pi * t))


def resolve_device(name: str, info: ddp.DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"run.device={name!r} but no CUDA device is visible to torch")
        if dev.index is None:
            dev = torch.device("cuda", info.local_rank if info.enabled else torch.cuda.current_device())
    return dev


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads ({os.cpu_count()} CPUs visible)"


class SyntheticBatches:
    """The default data: the paper-sampled batch of (step, rank), rendered on the CPU."""

    def __init__(self, sampler: PaperSampler, data_cfg, height: int, width: int, layers: bool = False):
        self.sampler, self.data_cfg, self.height, self.width, self.layers = sampler, data_cfg, height, width, layers

    def __call__(self, step: int, rank: int) -> Dict[str, torch.Tensor]:
        return render_batch(self.sampler.sample(step, rank), self.data_cfg, self.height, self.width, device="cpu",
                            layers=self.layers)


class _StepBatches(torch.utils.data.IterableDataset):
    """batch_fn(step, rank) for step in [start, stop); worker i of W renders steps
    start+i, start+i+W, ... and the DataLoader interleaves them back in step order."""

    def __init__(self, batch_fn: BatchFn, start: int, stop: int, rank: int):
        self.batch_fn, self.start, self.stop, self.rank = batch_fn, start, stop, rank

    def __iter__(self):
        w = torch.utils.data.get_worker_info()
        i, n = (w.id, w.num_workers) if w is not None else (0, 1)
        for step in range(self.start + i, self.stop, n):
            yield self.batch_fn(step, self.rank)


def _one_thread(_):
    torch.set_num_threads(1)


class Trainer:
    """One training run in ``out_dir``: checkpoint.pt, metrics.csv, config.toml, weights.safetensors."""

    def __init__(self, cfg: TrainConfig, out_dir, *, batch_fn: Optional[BatchFn] = None, resume: bool = False,
                 progress: bool = True, command: Optional[str] = None):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.info = ddp.init_distributed(resolve_device(cfg.run.device, ddp.env_dist_info()).type)
        self.device = resolve_device(cfg.run.device, self.info)
        if cfg.run.threads > 0:
            torch.set_num_threads(cfg.run.threads)
        torch.manual_seed(cfg.run.seed)  # same initial weights on every rank
        self.model = DeepWarp(cfg.model_config(), backend=cfg.run.backend).to(self.device)
        if cfg.run.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        o = cfg.optim
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        self.sampler = PaperSampler(cfg.data, o.curriculum_steps, o.curriculum_start_bins)
        mc = self.model.config
        self.batch_fn = batch_fn or SyntheticBatches(self.sampler, cfg.data, mc.height, mc.width, layers=cfg.needs_layers)
        self.real_batches = None
        if cfg.data.real_eyes.strip():
            eyes = collect_real_eyes(real_photos(cfg.data.real_eyes), mc.height, mc.width, mc.crop_scale,
                                     copies=cfg.data.real_copies, seed=cfg.data.seed)
            self.real_batches = RealEyeBatches(eyes, cfg.data.real_per_batch, cfg.data.max_redirect, seed=cfg.data.seed)
        self.progress = progress
        self.command = command or " ".join(sys.argv)
        self.step = 0
        self.train_time_s = 0.0
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.run.init_weights:
            self._init_weights(cfg.run.init_weights)
        if resume:
            self._maybe_resume()
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        else:
            self.net = self.model

    # ------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def save_checkpoint(self) -> Optional[Path]:
        if not self.info.is_main:
            return None
        state = {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "train_time_s": self.train_time_s,
            "config": json.dumps(self.cfg.to_dict(), sort_keys=True),
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)
        return self.checkpoint_path

    def _init_weights(self, path: str) -> None:
        from ..weights import load_model

        src = load_model(None if path == "default" else path, backend="reference", device="cpu")
        if src.config != self.model.config:
            raise ValueError(f"run.init_weights={path!r} has a different model config than this run")
        self.model.load_state_dict(src.state_dict())
        self.init_provenance = getattr(src, "provenance", None)

    def _maybe_resume(self) -> None:
        path = self.checkpoint_path
        if not path.is_file():
            return
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = json.loads(state["config"])
        now = self.cfg.to_dict()
        for section in ("model", "data", "loss"):
            if saved[section] != now[section]:
                raise ValueError(f"cannot resume from {path}: its [{section}] differs from this config "
                                 f"({saved[section]} vs {now[section]}); use a new output folder")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.train_time_s = float(state["train_time_s"])
        metrics = self.out_dir / METRICS_NAME
        if self.info.is_main and metrics.is_file():
            # Rows logged after the checkpoint will be logged again: drop them.
            with open(metrics, newline="") as f:
                rows = list(csv.reader(f))
            keep = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= self.step]
            with open(metrics, "w", newline="") as f:
                csv.writer(f).writerows(keep)
        if self.info.is_main:
            print(f"resumed from {path} at step {self.step} ({self.train_time_s:.0f} s trained)", file=sys.stderr)

    # ------------------------------------------------------------------ loop
    def _to_device(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        out = {}
        for k in ("input", "target", "anchors", "angles"):
            if k not in batch:
                raise KeyError(f"a training batch needs key {k!r}; got keys {sorted(batch)}")
            t = batch[k].to(self.device, non_blocking=True).float()
            if k in ("input", "target") and self.cfg.run.channels_last:
                t = t.contiguous(memory_format=torch.channels_last)
            out[k] = t
        for k in ("target_anchors", "iris", "opening", "eye_region", "pupil", "real_input", "real_anchors", "real_angles",
                  "real_width"):
            if k in batch:
                out[k] = batch[k].to(self.device, non_blocking=True).float()
        return out

    def train_step(self, batch: Dict[str, torch.Tensor], validate: bool = False) -> Dict[str, torch.Tensor]:
        """One forward + backward + Adam step at the current learning rate; returns the loss terms."""
        for g in self.optimizer.param_groups:
            g["lr"] = learning_rate(self.step, self.cfg)
        x, a, ang = batch["input"], batch["anchors"], batch["angles"]
        B = x.shape[0]
        real = "real_input" in batch
        if real:  # the real eyes ride in the same forward: redirected, then at angle 0
            xr, ar, angr = batch["real_input"], batch["real_anchors"], batch["real_angles"]
            if self.cfg.run.channels_last:
                xr = xr.contiguous(memory_format=torch.channels_last)
            x, a, ang = torch.cat([x, xr, xr]), torch.cat([a, ar, ar]), torch.cat([ang, angr, torch.zeros_like(angr)])
        out_all = self.net(x, a, ang, return_intermediates=True, validate=validate)
        out = type(out_all)(*[t[:B] if t is not None else None for t in out_all]) if real else out_all
        terms = training_loss(out, batch["target"], self.cfg.loss, batch=batch)
        if real:
            R = batch["real_input"].shape[0]
            w, lc = batch["real_width"], self.cfg.loss

            def iris(f, f0):
                return real_iris_loss(f, f0, ar, angr, w, lc.real_iris_radius, rim=lc.real_iris_rim)

            for name, weight, fn in (("real_iris", lc.real_iris, iris),
                                     ("real_lids", lc.real_lids, lambda f, f0: real_lids_loss(f, f0, ar, angr, w))):
                if weight:
                    value = sum(k * fn(f[B:B + R], f[B + R:]) for k, f in ((1.0, out_all.flow), (0.5, out_all.coarse_flow)))
                    terms[name] = value.detach()
                    terms["loss"] = terms["loss"] + weight * value
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            terms["nerr_median"] = normalized_error(out.output.detach(), batch["input"], batch["target"]).median()
        self.step += 1
        return terms

    def train(self) -> Dict[str, Any]:
        cfg, info = self.cfg, self.info
        total = cfg.run.steps
        if info.is_main:
            save_config(cfg, self.out_dir / "config.toml")
        self.model.train()
        bar = None
        if info.is_main and self.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.step, desc="train", unit="step", mininterval=2.0, dynamic_ncols=True)
        csv_file, writer = None, None
        last_ckpt = time.perf_counter()
        run_start = time.perf_counter()
        time_at_start = self.train_time_s
        last_log_t, last_log_step = run_start, self.step
        stopped_early = False
        terms: Dict[str, torch.Tensor] = {}
        batches = None
        if cfg.run.data_workers > 0:
            loader = torch.utils.data.DataLoader(_StepBatches(self.batch_fn, self.step, total, info.rank), batch_size=None,
                                                 num_workers=cfg.run.data_workers, prefetch_factor=2, worker_init_fn=_one_thread,
                                                 persistent_workers=False)
            batches = iter(loader)
        try:
            while self.step < total:
                if cfg.run.max_wall_s > 0:
                    over = self.train_time_s >= cfg.run.max_wall_s
                    if ddp.any_true(over, info, self.device):
                        stopped_early = True
                        break
                batch = next(batches) if batches is not None else self.batch_fn(self.step, info.rank)
                if self.real_batches is not None:
                    batch = {**batch, **self.real_batches(self.step, info.rank)}
                batch = self._to_device(batch)
                terms = self.train_step(batch, validate=(self.step == 0))
                now = time.perf_counter()
                self.train_time_s = time_at_start + (now - run_start)
                if self.step % cfg.run.log_every == 0 or self.step == total:
                    vals = {k: float(ddp.all_reduce_mean(v.detach().float().reshape(1), info)) for k, v in sorted(terms.items())}
                    if info.is_main:
                        n = batch["input"].shape[0] * info.world_size
                        rate = n * (self.step - last_log_step) / max(now - last_log_t, 1e-9)
                        row = {"step": self.step, "samples": self.step * n, "wall_s": round(self.train_time_s, 2),
                               "lr": learning_rate(self.step - 1, cfg), **{k: round(v, 6) for k, v in vals.items()},
                               "samples_per_s": round(rate, 2)}
                        if writer is None:
                            path = self.out_dir / METRICS_NAME
                            new = not path.is_file() or path.stat().st_size == 0
                            csv_file = open(path, "a", newline="")
                            writer = csv.DictWriter(csv_file, fieldnames=list(row))
                            if new:
                                writer.writeheader()
                        writer.writerow(row)
                        csv_file.flush()
                        if bar is not None:
                            bar.set_postfix(loss=f"{vals['loss']:.4g}", nerr=f"{vals['nerr_median']:.3f}", refresh=False)
                    last_log_t, last_log_step = now, self.step
                if bar is not None:
                    bar.update(1)
                due = (cfg.run.checkpoint_every_steps > 0 and self.step % cfg.run.checkpoint_every_steps == 0) or (
                    cfg.run.checkpoint_every_s > 0 and now - last_ckpt >= cfg.run.checkpoint_every_s)
                if due:
                    self.save_checkpoint()
                    last_ckpt = time.perf_counter()
                snap = cfg.run.snapshot_every_steps
                if snap > 0 and self.step % snap == 0 and info.is_main:
                    self.save_weights(self.out_dir / f"weights_step{self.step}.safetensors",
                                      {"steps": self.step, "train_time_s": round(self.train_time_s, 1), "snapshot": True})
        finally:
            batches = None
            if bar is not None:
                bar.close()
            if csv_file is not None:
                csv_file.close()
        self.save_checkpoint()
        summary = {
            "steps": self.step,
            "stopped_early": stopped_early,
            "train_time_s": round(self.train_time_s, 1),
            "world_size": info.world_size,
            "batch_per_process": cfg.data.batch_size,
            "final_loss": float(terms["loss"].detach()) if terms else None,
            "parameters": count_parameters(self.model),
        }
        if info.is_main:
            self.save_weights(self.out_dir / WEIGHTS_NAME, summary)
        return summary

    def save_weights(self, path, summary: Optional[Dict[str, Any]] = None) -> Path:
        prov = {
            "command": self.command,
            "train_config": self.cfg.to_dict(),
            "data": "deepwarp_fast.data.render_pairs (synthetic eyes), paper batch sampling (deepwarp_fast.training.sampler)"
                    + (f"; real eyes without labels ({self.cfg.data.real_eyes!r}: deepwarp_fast.data.real_eyes, the anatomical "
                       "flow term)" if self.real_batches is not None else ""),
            "hardware": hardware_description(self.device),
            "world_size": self.info.world_size,
            "init_weights": self.cfg.run.init_weights or None,
            **(summary or {}),
        }
        return save_weights(self.model, path, provenance=prov)

    def close(self) -> None:
        ddp.cleanup()
