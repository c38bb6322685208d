"""Build settings of the C++/CUDA extension deepwarp_fast._C, shared by setup.py and the JIT route.

setup.py loads this file by path (the package is not importable while it is being
built), so it imports nothing from deepwarp_fast. ``extension_kwargs`` returns a
ready Extension (a CUDAExtension when torch is a CUDA build and a CUDA toolkit is
found, else a C++-only CppExtension) or None; ``jit_kwargs`` returns the same flags
for ``torch.utils.cpp_extension.load``.

Choices:
- CUDA_HOME: the environment's, else the toolkit of the nvcc on PATH, else
  /usr/local/cuda. torch's own guess (/usr/local when nvcc is /usr/local/bin/nvcc)
  fails to link -lcudart, so the result is written back to cpp_extension.CUDA_HOME.
- Architectures: TORCH_CUDA_ARCH_LIST when set, else the visible GPU's, else 9.0
  (one architecture keeps the build to a couple of minutes on 2 cores).
- libstdc++: always the shared library, named by its full path on the link line
  (``link_flags``). On the GPU image (Ubuntu 24.04, torch 2.11) CXX=/opt/gcc/bin/g++ is
  a wrapper whose -B folder holds libstdc++.a but no libstdc++.so, so the link silently
  took libstdc++ *statically*: the module carried a private copy of the C++ runtime
  (iostreams, locales) beside the shared one that torch uses, and the first error message
  that formats an integer through an ostringstream (``x must have 4 dims, got ...``)
  crashed the interpreter with SIGSEGV (messages made of strings only went through).
"""
from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ARCH = "9.0"
EXT_NAME = "deepwarp_fast._C"


def source_dir() -> Optional[str]:
    """The csrc/ folder: at the repository root (source checkout, editable install), or
    inside the installed package."""
    for cand in (os.path.join(ROOT, "csrc"), os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")):
        if glob.glob(os.path.join(cand, "*.cpp")):
            return cand
    return None


def sources(with_cuda: bool, relative_to: Optional[str] = None) -> List[str]:
    src = source_dir()
    if src is None:
        return []
    files = sorted(glob.glob(os.path.join(src, "*.cpp")))
    if with_cuda:
        files += sorted(glob.glob(os.path.join(src, "*.cu")))
    if relative_to:
        files = [os.path.relpath(f, relative_to) for f in files]
    return files


def _has_toolkit(home: str) -> bool:
    nvcc = os.path.join(home, "bin", "nvcc")
    libs = glob.glob(os.path.join(home, "lib64", "libcudart*")) + glob.glob(os.path.join(home, "lib", "libcudart*"))
    libs += glob.glob(os.path.join(home, "targets", "*", "lib", "libcudart*"))
    return os.path.exists(nvcc) and bool(libs)


def find_cuda_home() -> Tuple[Optional[str], str]:
    """(CUDA_HOME, '') or (None, why no usable toolkit was found)."""
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env:
        if _has_toolkit(env):
            return env, ""
        return None, f"CUDA_HOME={env} has no bin/nvcc and libcudart"
    cands = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        cands.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    cands += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for cand in cands:
        if _has_toolkit(cand):
            return cand, ""
    return None, "no CUDA toolkit found (nvcc with libcudart: set CUDA_HOME)"


def cuda_status(torch) -> Tuple[bool, str]:
    """(build the CUDA kernels?, why not)."""
    if os.environ.get("DEEPWARP_CPU_ONLY_EXTENSION", "0") not in ("", "0"):
        return False, "DEEPWARP_CPU_ONLY_EXTENSION is set"
    if not getattr(torch.version, "cuda", None):
        return False, f"torch {torch.__version__} is a CPU build (only a CUDA build of torch can build .cu sources)"
    home, why = find_cuda_home()
    if home is None:
        return False, why
    nvcc_version = _nvcc_release(home)
    torch_major = str(torch.version.cuda).split(".")[0]
    if nvcc_version and nvcc_version.split(".")[0] != torch_major:
        return False, (f"nvcc {nvcc_version} in {home} does not match torch's CUDA {torch.version.cuda} "
                       "(the major versions must agree): set CUDA_HOME to a matching toolkit")
    return True, ""


def _nvcc_release(home: str) -> Optional[str]:
    """'13.0' from `nvcc --version`, or None when it cannot be read."""
    import re
    import subprocess

    try:
        out = subprocess.run([os.path.join(home, "bin", "nvcc"), "--version"], capture_output=True, text=True, timeout=60).stdout
    except Exception:
        return None
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else None


def _arch_list(torch) -> str:
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if arch:
        return arch
    try:
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            return f"{major}.{minor}"
    except Exception:
        pass
    return DEFAULT_ARCH


def _prepare_cuda(cpp_extension, torch) -> None:
    home, _ = find_cuda_home()
    os.environ["CUDA_HOME"] = home
    cpp_extension.CUDA_HOME = home  # torch computed its guess at import time
    os.environ["TORCH_CUDA_ARCH_LIST"] = _arch_list(torch)


def _openmp() -> List[str]:
    """-fopenmp on Linux: ATen's at::parallel_for is a header template whose OpenMP pragma
    is compiled into this module; without the flag every CPU op of the extension ran on
    one thread whatever torch.set_num_threads said. The module then needs libgomp.so.1,
    which the torch wheel has already loaded (the same runtime, so one thread pool and
    torch's thread count)."""
    return ["-fopenmp"] if sys.platform.startswith("linux") else []


def compile_flags(with_cuda: bool) -> Dict[str, List[str]]:
    cxx = ["-O3"] + _openmp()
    nvcc = ["-O3"]
    if with_cuda:
        cxx.append("-DDEEPWARP_WITH_CUDA")
        nvcc.append("-DDEEPWARP_WITH_CUDA")
    return {"cxx": cxx, "nvcc": nvcc} if with_cuda else {"cxx": cxx}


def _loaded_libstdcxx() -> Optional[str]:
    """The libstdc++ mapped into this process (the one torch runs with), or None."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if os.path.basename(path).startswith("libstdc++.so") and os.path.isfile(path):
                    return path
    except OSError:
        pass
    return None


def shared_libstdcxx() -> Optional[str]:
    """The full path of a shared libstdc++ to link (Linux), or None: the compiler's own
    libstdc++.so, else the libstdc++.so.6 this process runs with, else the one the
    compiler finds."""
    if not sys.platform.startswith("linux"):
        return None
    cxx = shlex.split(os.environ.get("CXX") or "c++")

    def ask(name: str) -> Optional[str]:
        try:
            out = subprocess.run(cxx + [f"-print-file-name={name}"], capture_output=True, text=True,
                                 timeout=60).stdout.strip()
        except Exception:
            return None
        # The driver echoes the bare name when it finds no such file.
        return out if os.path.isabs(out) and os.path.isfile(out) else None

    return ask("libstdc++.so") or _loaded_libstdcxx() or ask("libstdc++.so.6")


def link_flags() -> List[str]:
    """Extra linker arguments: the shared libstdc++ by full path, so that no -L folder
    holding a libstdc++.a (or a compiler that defaults to -static-libstdc++) can link a
    private copy of the C++ runtime into the module. They follow the objects on the link
    line, before the driver's own -lstdc++, so every C++ runtime symbol binds to it."""
    lib = shared_libstdcxx()
    return _openmp() + ([lib] if lib else [])


def extension_kwargs(cpp_extension, torch):
    """The Extension that setup.py builds, or None when there is nothing to build."""
    if not sources(False):
        return None
    with_cuda, why = cuda_status(torch)
    if with_cuda:
        _prepare_cuda(cpp_extension, torch)
        print(f"deepwarp_fast: building {EXT_NAME} with CUDA kernels (CUDA_HOME={os.environ['CUDA_HOME']}, "
              f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']})")
        cls = cpp_extension.CUDAExtension
    else:
        print(f"deepwarp_fast: building {EXT_NAME} with CPU ops only: {why}")
        cls = cpp_extension.CppExtension
    return cls(
        name=EXT_NAME,
        sources=sources(with_cuda, relative_to=ROOT),
        include_dirs=[source_dir()],
        extra_compile_args=compile_flags(with_cuda),
        extra_link_args=link_flags(),
    )


def jit_kwargs(cpp_extension, torch, build_directory: str) -> Dict:
    """Arguments of cpp_extension.load for the same extension, built on first use."""
    src = source_dir()
    if src is None:
        raise FileNotFoundError("the extension's sources (csrc/*.cpp) are not in this install")
    with_cuda, _ = cuda_status(torch)
    if with_cuda:
        _prepare_cuda(cpp_extension, torch)
    flags = compile_flags(with_cuda)
    kw = dict(
        name="deepwarp_fast_C",
        sources=sources(with_cuda),
        extra_include_paths=[src],
        extra_cflags=flags["cxx"],
        extra_ldflags=link_flags(),
        build_directory=build_directory,
        with_cuda=with_cuda,
        verbose=os.environ.get("DEEPWARP_JIT_VERBOSE", "0") not in ("", "0"),
    )
    if with_cuda:
        kw["extra_cuda_cflags"] = flags["nvcc"]
    return kw
