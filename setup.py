"""Install deepwarp_fast; build the C++/CUDA extension deepwarp_fast._C when it can be built.

The extension (csrc/) is a CUDAExtension when torch is a CUDA build and a CUDA
toolkit is found, else a C++-only CppExtension (CPU ops). Set
DEEPWARP_NO_EXTENSION=1 to skip it entirely; the package then runs the reference
and Triton backends (and can JIT-build the extension on first use).
"""
import glob
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def extension_modules():
    if os.environ.get("DEEPWARP_NO_EXTENSION", "0") not in ("", "0"):
        return [], {}
    sources_cpp = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    if not sources_cpp:
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        print("deepwarp_fast: torch is not installed at build time; skipping the extension")
        return [], {}
    # One place for the build flags, shared with the JIT route; loaded by path so that
    # building does not import the package (and its runtime dependencies).
    import importlib.util

    spec = importlib.util.spec_from_file_location("_deepwarp_build", os.path.join(ROOT, "deepwarp_fast", "_build.py"))
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    ext = build.extension_kwargs(cpp_extension, torch)
    if ext is None:
        return [], {}
    return [ext], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extension_modules()

setup(
    name="deepwarp_fast",
    version="0.1.0",
    description="DeepWarp gaze redirection (Ganin et al., ECCV 2016): Triton kernels, a fused C++/CUDA extension, a face pipeline",
    long_description=open(os.path.join(ROOT, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["deepwarp_fast", "deepwarp_fast.*"]) + ["deepwarp_fast.kernels", "deepwarp_fast.csrc"],
    # The Triton kernels live in the top-level kernels/ folder but install as
    # deepwarp_fast.kernels, never as a generic top-level `kernels` package.
    # csrc/ ships inside the package too, so that the JIT route (DEEPWARP_JIT=1) can build
    # the extension from a wheel install.
    package_dir={"deepwarp_fast.kernels": "kernels", "deepwarp_fast.csrc": "csrc"},
    package_data={"deepwarp_fast": ["assets/*", "weights/*.safetensors", "weights/LICENSE-*.txt"],
                  "deepwarp_fast.web": ["static/*"], "deepwarp_fast.csrc": ["*.cpp", "*.cu", "*.h"]},
    include_package_data=False,
    install_requires=[
        "torch>=2.4",
        "numpy",
        "safetensors>=0.4",
        "pillow",
        "tqdm",
        "opencv-python-headless>=4.10,<5",
        "scikit-image",
        "matplotlib",
    ],
    extras_require={
        "face": ["dlib-bin", "face-recognition-models==0.3.0"],
        # deepwarp_fast.export_onnx / `deepwarp-fast export-onnx` (onnxruntime checks the file)
        "onnx": ["onnx", "onnxscript", "onnxruntime"],
        # `deepwarp-fast serve`, the browser demo: the ASGI app, its server and WebSocket support
        "serve": ["starlette>=0.40", "uvicorn>=0.30", "websockets>=12"],
        # tests/test_serve.py drives the app with Starlette's TestClient, which wants httpx2
        # (Starlette 1.10 still takes httpx, with a deprecation warning)
        "test": ["pytest", "pytest-benchmark", "dlib-bin", "face-recognition-models==0.3.0",
                 "starlette>=1.10", "uvicorn>=0.30", "websockets>=12", "httpx2",
                 "onnx", "onnxscript", "onnxruntime"],
    },
    entry_points={"console_scripts": ["deepwarp-fast=deepwarp_fast.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
