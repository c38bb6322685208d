"""Triton kernels for DeepWarp's ops (installed as deepwarp_fast.kernels)."""
raise ImportError("the Triton kernels are not written yet")
