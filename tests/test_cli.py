"""The command line: `env` reports backends, `demo` writes its picture."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from deepwarp_fast.cli import main


def test_env_json_lists_every_backend(capsys):
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info["backends"]["cpu"]) == {"reference", "triton", "cuda"}
    assert info["backends"]["cpu"]["reference"] == ""
    assert info["torch"]


@pytest.mark.slow
def test_python_m_env_runs():
    out = subprocess.run([sys.executable, "-m", "deepwarp_fast", "env"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "backends:" in out.stdout and "reference" in out.stdout


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_demo_writes_eye_sweep(tmp_path):
    out = tmp_path / "made" / "here"
    assert main(["demo", "--eye-patch", "-o", str(out), "--steps", "3"]) == 0
    assert not (out / "contact_sheet.png").exists()  # --eye-patch runs the model alone
    img = np.asarray(Image.open(out / "eye_sweep.png"))
    assert img.shape[0] > 41 and img.shape[1] > 3 * 51 and img.std() > 5
