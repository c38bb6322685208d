"""Distributed training: torchrun with two CPU processes on the gloo backend.

The test launches this file under torchrun; each process trains a few steps on the
stand-in data of test_train.py and writes a digest of its parameters. DDP averages
the gradients, so both processes must end with identical parameters, different from
the initial ones.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def _worker(out_dir: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_train import tiny_config, toy_batch

    from deepwarp_fast.training import Trainer

    tr = Trainer(tiny_config(steps=3, threads=1), out_dir, batch_fn=toy_batch, progress=False)
    init = [p.detach().clone() for p in tr.model.parameters()]
    summary = tr.train()
    moved = max((p.detach() - q).abs().max().item() for p, q in zip(tr.model.parameters(), init))
    flat = torch.cat([p.detach().flatten() for p in tr.model.parameters()])
    rank = tr.info.rank
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"params": flat.tolist(), "moved": moved, "summary": summary}))
    tr.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_gloo_processes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", __file__, str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["summary"]["world_size"] == 2 and r0["summary"]["steps"] == 3
    assert r0["moved"] > 1e-4
    assert torch.allclose(torch.tensor(r0["params"]), torch.tensor(r1["params"]), atol=1e-6)
    # Only rank 0 writes the run's files; the CSV counts both processes' samples.
    assert (tmp_path / "weights.safetensors").is_file() and (tmp_path / "checkpoint.pt").is_file()
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[1].split(",")[1] == str(2 * 16)


if __name__ == "__main__":
    _worker(sys.argv[1])
