// Scalar math shared by the CPU and CUDA implementations, written to round like the
// PyTorch reference ops (deepwarp_fast/ops.py) so that fp32 results agree to ~1 ulp.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define DW_HD __host__ __device__ __forceinline__
#else
#define DW_HD inline
#endif

namespace deepwarp {

// Source index of PyTorch's mode="nearest" upsampling with an output size (ATen's
// nearest_idx): floor(dst * (in / out)) with the scale in float, clamped to in - 1.
DW_HD int nearest_src_index(int dst, int in_size, int out_size) {
  if (in_size == out_size) return dst;
  if (out_size == 2 * in_size) return dst >> 1;
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  const int src = static_cast<int>(floorf(static_cast<float>(dst) * scale));
  return src < in_size - 1 ? src : in_size - 1;
}

// Bilinear taps of warp_reference at pixel (x, y) displaced by (dx, dy) pixels: the
// coordinate is clamped to [0, W-1] x [0, H-1] (border replicate).
struct BilinearTaps {
  int i00, i01, i10, i11;  // offsets into one H x W plane
  float fx, fy;
};

DW_HD BilinearTaps bilinear_taps(int x, int y, float dx, float dy, int H, int W) {
  float cx = static_cast<float>(x) + dx;
  float cy = static_cast<float>(y) + dy;
  cx = fminf(fmaxf(cx, 0.0f), static_cast<float>(W - 1));
  cy = fminf(fmaxf(cy, 0.0f), static_cast<float>(H - 1));
  const float x0f = fminf(floorf(cx), static_cast<float>(W - 1));
  const float y0f = fminf(floorf(cy), static_cast<float>(H - 1));
  const int x0 = static_cast<int>(x0f), y0 = static_cast<int>(y0f);
  const int x1 = x0 + 1 < W ? x0 + 1 : W - 1;
  const int y1 = y0 + 1 < H ? y0 + 1 : H - 1;
  BilinearTaps t;
  t.i00 = y0 * W + x0;
  t.i01 = y0 * W + x1;
  t.i10 = y1 * W + x0;
  t.i11 = y1 * W + x1;
  t.fx = cx - x0f;
  t.fy = cy - y0f;
  return t;
}

DW_HD float bilinear_mix(const BilinearTaps& t, float v00, float v01, float v10, float v11) {
  const float top = v00 * (1.0f - t.fx) + v01 * t.fx;
  const float bottom = v10 * (1.0f - t.fx) + v11 * t.fx;
  return top * (1.0f - t.fy) + bottom * t.fy;
}

// softmax over the two palette logits, then out = image * w0 + w1 (eq. (6), white palette).
DW_HD void palette_weights(float l0, float l1, float& w0, float& w1) {
  const float m = fmaxf(l0, l1);
  const float e0 = expf(l0 - m), e1 = expf(l1 - m);
  const float s = e0 + e1;
  w0 = e0 / s;
  w1 = e1 / s;
}

}  // namespace deepwarp
