#!/usr/bin/env bash
# One command on a GPU machine: build, run the tests on the GPU, run `pytest benchmarks/`,
# and write benchmarks/results/<date>-<device>/ (benchmarks.json, the logs, summary.md).
#   bash benchmarks/run_gpu.sh            (PYTHON=... to pick the interpreter)
# The defaults fit one 10-minute call of a lent GPU (build ~40 s, CUDA tests <= TEST_TIMEOUT,
# each benchmark file <= BENCH_TIMEOUT, 30 timed rounds per row): a session's whole device
# budget is 15 minutes, so the run must not need a second try.
# Sections are independent: add new ones (e.g. the C++/CUDA extension's) before "summary".
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
STATUS=0

$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')" || exit 1
unset TRITON_INTERPRET
export DEEPWARP_BENCH_ROUNDS=${DEEPWARP_BENCH_ROUNDS:-30}
# The GPU machine may have no network: install from a carried wheelhouse/ when there is one
# (made beforehand with `pip download -d wheelhouse safetensors pytest-benchmark ...` for its
# Python), then say up front which Python modules are still missing.
if [ -d wheelhouse ]; then
    $PY -m pip install -q --no-index --find-links wheelhouse wheelhouse/*.whl || true
fi
$PY - <<'PYEOF'
import importlib.util
need = ["numpy", "safetensors", "pytest", "pytest_benchmark", "PIL", "tqdm", "cv2", "skimage"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
print("== missing Python modules (tests needing them skip or fail):", ", ".join(missing) if missing else "none")
PYEOF
DATE=$(date +%Y-%m-%d)
DEVICE=$($PY -c "import re, torch; print(re.sub(r'[^A-Za-z0-9]+', '-', torch.cuda.get_device_name()).strip('-'))")
OUT=benchmarks/results/${DATE}-${DEVICE}
mkdir -p "$OUT"
echo "== results go to $OUT"

# ---------------------------------------------------------------- build
if [ -z "${CUDA_HOME:-}" ]; then
    if command -v nvcc >/dev/null; then CUDA_HOME=$(dirname "$(dirname "$(command -v nvcc)")"); else CUDA_HOME=/usr/local/cuda; fi
fi
export CUDA_HOME
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")}
echo "== build (CUDA_HOME=$CUDA_HOME TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)"
if ! $PY -m pip install --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1; then
    echo "!! the build with the extension failed (see $OUT/build.log); installing without it"
    STATUS=1
    DEEPWARP_NO_EXTENSION=1 $PY -m pip install --no-build-isolation --no-deps -e . >>"$OUT/build.log" 2>&1 || exit 1
fi

# ---------------------------------------------------------------- tests on the GPU
# The files whose tests put tensors on CUDA come first (the rest is what CI runs on its CPUs),
# in worker processes (pytest-xdist, when installed): a test that crashes its process (a
# segfault in an extension) is reported as failed and the others still run. -rfE names every
# failure in the log even when the time limit stops the run.
echo "== tests (the kernel tests run on CUDA tensors)"
XDIST=""
if $PY -c "import xdist" 2>/dev/null; then XDIST="-n ${TEST_WORKERS:-8}"; fi
GPU_TESTS=${GPU_TESTS:-"tests/test_warp.py tests/test_input_maps.py tests/test_lcm_blend.py tests/test_kernels_model.py tests/test_warp_frame.py tests/test_extension.py tests/test_accelerate.py tests/test_validation.py tests/test_train.py"}
timeout "${TEST_TIMEOUT:-170}" $PY -m pytest $GPU_TESTS -q -rfEs $XDIST -p no:cacheprovider 2>&1 | tee "$OUT/tests-gpu.txt" || STATUS=1
if [ -n "${ALL_TESTS:-}" ]; then
    timeout "${TEST_TIMEOUT:-240}" $PY -m pytest tests -q -rfEs $XDIST -p no:cacheprovider 2>&1 | tee "$OUT/tests.txt" || STATUS=1
fi

# ---------------------------------------------------------------- benchmarks
# One pytest run (and one JSON) per file, most wanted first, each under a time limit, so a
# slow file cannot take the others' results with it.
echo "== benchmarks"
if $PY -c "import pytest_benchmark" 2>/dev/null; then
    # bench_pipeline needs dlib's landmark model (not in the lent image); bench_synth and
    # bench_cpu_competitors are CPU measurements.
    for f in ${BENCH_FILES:-bench_warp_frame bench_accelerated bench_model bench_ops bench_train}; do
        echo "-- $f"
        timeout "${BENCH_TIMEOUT:-65}" $PY -m pytest "benchmarks/$f.py" -q -p no:cacheprovider \
            --benchmark-json="$OUT/bench-$f.json" 2>&1 | tee "$OUT/bench-$f.txt" || STATUS=1
    done
else
    echo "!! pytest-benchmark is not installed: pip install pytest-benchmark"; STATUS=1
fi

# ---------------------------------------------------------------- C++/CUDA extension, accelerate()
# Build status (the extension's and accelerate()'s tests ran with the CUDA tests above: graph replay and
# fp16/bf16 included), and the low-precision error table. Its timings (eager reference,
# torch.compile default / reduce-overhead, accelerated without / with CUDA graphs, at
# B = 2, 256, 1024) are the "accelerated model" groups of the benchmarks above.
echo "== extension and accelerate()"
{
    $PY -m deepwarp_fast env 2>/dev/null || deepwarp-fast env
    $PY -c "from deepwarp_fast import _ext; m, why = _ext.load(); print('deepwarp_fast._C:', 'loaded, has_cuda=%s' % m.has_cuda() if m else 'MISSING: ' + why)"
} 2>&1 | tee "$OUT/extension.txt"
$PY - "$OUT" <<'PYEOF' 2>&1 | tee -a "$OUT/extension.txt"
# Max abs error of the outputs against float64, per activation dtype (1024 eyes, [0, 1] images).
import copy, os, sys, torch
from deepwarp_fast import DeepWarp, accelerate
torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
torch.manual_seed(0)
ref = DeepWarp()
with torch.no_grad():
    for p in ref.parameters():
        p.add_(torch.randn(p.shape) * 0.05)
ref = ref.cuda().eval()
g = torch.Generator().manual_seed(0)
B, H, W = 1024, 41, 51
eyes = torch.rand(B, 3, H, W, generator=g).cuda()
anchors = (torch.rand(B, 7, 2, generator=g) * torch.tensor([W - 1.0, H - 1.0])).cuda()
angles = ((torch.rand(B, 2, generator=g) - 0.5) * 30).cuda()
with torch.no_grad():
    exact = copy.deepcopy(ref).double()(eyes.double(), anchors.double(), angles.double())
    rows = ["| activations | reference model max / mean abs err | accelerated max / mean abs err |", "|---|---:|---:|"]
    for dt in (torch.float32, torch.float16, torch.bfloat16):
        r = copy.deepcopy(ref).to(dt)(eyes.to(dt), anchors, angles).double()
        a = accelerate(ref, dtype=dt)(eyes, anchors, angles).double()
        er, ea = (r - exact).abs(), (a - exact).abs()
        rows.append(f"| {str(dt)[6:]} | {er.max():.2e} / {er.mean():.2e} | {ea.max():.2e} / {ea.mean():.2e} |")
text = "\n".join(rows)
print(text)
open(os.path.join(sys.argv[1], "extension_precision.md"), "w").write(f"# accelerate(): error against float64 on {torch.cuda.get_device_name()}\n\n{text}\n")
PYEOF

# ---------------------------------------------------------------- summary
$PY benchmarks/summarize.py "$OUT" --versions "$($PY -c 'import torch, triton; print(f"torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda}")')" || STATUS=1
echo "== done: $OUT (status $STATUS)"
exit $STATUS
