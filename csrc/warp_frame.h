// warp_frame's per-pixel math, shared by the CPU op (ops_cpu.cpp) and the CUDA kernel
// (ops_cuda.cu). Semantics: deepwarp_fast.ops.warp_frame_reference (SPEC.md, "warp_frame").
//
// Per eye e the host passes params[e] = (A row 0, A row 1, inverse of A's linear part,
// row-major) and boxes[e] = (frame index, x0, y0, box width, box height).
#pragma once

#include "dw_math.h"

namespace deepwarp {

constexpr int WF_NPARAM = 10;
constexpr int WF_NBOX = 5;
enum WarpFrameKernel { WF_BILINEAR = 0, WF_BICUBIC = 1, WF_LANCZOS4 = 2 };

DW_HD int wf_taps(int kernel) { return kernel == WF_BILINEAR ? 2 : (kernel == WF_BICUBIC ? 4 : 8); }

// Unnormalised weight of the tap floor(s) + k at the fraction t = s - floor(s), for the
// polynomial kernels (Lanczos-4 goes through wf_axis_weights).
DW_HD float wf_tap_weight(float t, int k, int kernel) {
  const float d = fabsf(t - static_cast<float>(k));
  if (kernel == WF_BILINEAR) return fmaxf(1.0f - d, 0.0f);
  // Keys' cubic, a = -0.75 (OpenCV's INTER_CUBIC)
  if (d <= 1.0f) return (1.25f * d - 2.25f) * d * d + 1.0f;
  if (d < 2.0f) return ((-0.75f * d + 3.75f) * d - 6.0f) * d + 3.0f;
  return 0.0f;
}

// All NT taps' weights of one axis (k = 1 - NT/2 .. NT/2) at the fraction t; returns their sum.
// Lanczos-4 takes three transcendental calls instead of two per tap:
// sin(pi (t - k)) = (-1)^k sin(pi t), sin(pi (t - k) / 4) = sin(pi t / 4) cos(pi k / 4) - cos(pi t / 4) sin(pi k / 4).
DW_HD float wf_axis_weights(float t, int kernel, float* wt) {
  const int NT = wf_taps(kernel), k0 = 1 - NT / 2;
  float sum = 0.0f;
  if (kernel == WF_LANCZOS4 && t == 0.0f) {  // exactly one-hot at integer positions
    for (int i = 0; i < 8; ++i) wt[i] = (i + k0 == 0) ? 1.0f : 0.0f;
    return 1.0f;
  }
  if (kernel == WF_LANCZOS4) {
    const float PI = 3.14159265358979323846f;
    const float s1 = sinf(PI * t), s4 = sinf(PI * t * 0.25f), c4 = cosf(PI * t * 0.25f);
    // cos and sin of pi k / 4 for k = -3 .. 4
    const float R = 0.70710678118654752f;
    const float ck[8] = {-R, 0.0f, R, 1.0f, R, 0.0f, -R, -1.0f};
    const float sk[8] = {-R, -1.0f, -R, 0.0f, R, 1.0f, R, 0.0f};
    for (int i = 0; i < 8; ++i) {
      const int k = i + k0;
      const float d = t - static_cast<float>(k);
      const float pd = PI * d;
      const float sa = (k & 1) ? -s1 : s1;
      wt[i] = 4.0f * sa * (s4 * ck[i] - c4 * sk[i]) / (pd * pd);
      sum += wt[i];
    }
    return sum;
  }
  for (int i = 0; i < NT; ++i) {
    wt[i] = wf_tap_weight(t, i + k0, kernel);
    sum += wt[i];
  }
  return sum;
}

// Bilinear feather weight at patch position (u, v): taps outside the (h, w) patch read 0.
DW_HD float wf_feather_at(const float* f, float u, float v, int h, int w) {
  if (!(u > -1.0f && u < static_cast<float>(w) && v > -1.0f && v < static_cast<float>(h))) return 0.0f;
  const float u0f = floorf(u), v0f = floorf(v);
  const float fu = u - u0f, fv = v - v0f;
  const int u0 = static_cast<int>(u0f), v0 = static_cast<int>(v0f);
  auto at = [&](int vv, int uu) { return (uu >= 0 && uu < w && vv >= 0 && vv < h) ? f[vv * w + uu] : 0.0f; };
  return (at(v0, u0) * (1.0f - fu) + at(v0, u0 + 1) * fu) * (1.0f - fv) +
         (at(v0 + 1, u0) * (1.0f - fu) + at(v0 + 1, u0 + 1) * fu) * fv;
}

// Bilinear sample of an (h, w) plane at (u, v), border replicate.
DW_HD float wf_bilinear_clamped(const float* p, float u, float v, int h, int w) {
  const float uc = fminf(fmaxf(u, 0.0f), static_cast<float>(w - 1));
  const float vc = fminf(fmaxf(v, 0.0f), static_cast<float>(h - 1));
  const int u0 = static_cast<int>(uc), v0 = static_cast<int>(vc);
  const float fu = uc - static_cast<float>(u0), fv = vc - static_cast<float>(v0);
  const int u1 = u0 + 1 < w ? u0 + 1 : w - 1, v1 = v0 + 1 < h ? v0 + 1 : h - 1;
  return (p[v0 * w + u0] * (1.0f - fu) + p[v0 * w + u1] * fu) * (1.0f - fv) +
         (p[v1 * w + u0] * (1.0f - fu) + p[v1 * w + u1] * fu) * fv;
}

DW_HD void wf_patch_pos(const float* a, float x, float y, float& u, float& v) {
  u = a[0] * x + a[1] * y + a[2];
  v = a[3] * x + a[4] * y + a[5];
}

// sum over the NT x NT taps of wy[ky] wx[kx] frame[iy[ky], ix[kx], c] for the CC channels,
// channels innermost (one address per tap); compile-time sizes so the loops unroll.
template <typename T, int NT, int CC>
DW_HD void wf_accumulate(const T* __restrict__ frame, const int* iy, const int* ix, const float* wy, const float* wx,
                         int64_t s_h, int64_t s_w, float* acc) {
  for (int c = 0; c < CC; ++c) acc[c] = 0.0f;
#pragma unroll
  for (int ky = 0; ky < NT; ++ky) {
    const T* row = frame + iy[ky] * s_h;
    float r[CC];
#pragma unroll
    for (int c = 0; c < CC; ++c) r[c] = 0.0f;
#pragma unroll
    for (int kx = 0; kx < NT; ++kx) {
      const T* p = row + ix[kx] * s_w;
#pragma unroll
      for (int c = 0; c < CC; ++c) r[c] += wx[kx] * static_cast<float>(p[c]);
    }
#pragma unroll
    for (int c = 0; c < CC; ++c) acc[c] += wy[ky] * r[c];
  }
}

template <typename T, int NT>
DW_HD void wf_accumulate_c(const T* frame, const int* iy, const int* ix, const float* wy, const float* wx, int64_t s_h,
                           int64_t s_w, int C, float* acc) {
  switch (C) {
    case 1: wf_accumulate<T, NT, 1>(frame, iy, ix, wy, wx, s_h, s_w, acc); break;
    case 2: wf_accumulate<T, NT, 2>(frame, iy, ix, wy, wx, s_h, s_w, acc); break;
    case 3: wf_accumulate<T, NT, 3>(frame, iy, ix, wy, wx, s_h, s_w, acc); break;
    default: wf_accumulate<T, NT, 4>(frame, iy, ix, wy, wx, s_h, s_w, acc); break;
  }
}

// One frame pixel (x, y) of eye e: writes out[] where the eye owns the pixel.
template <typename T>
DW_HD void warp_frame_pixel(const T* __restrict__ frames, T* __restrict__ out, const float* __restrict__ params,
                            const int* __restrict__ boxes, const float* __restrict__ flow, const float* __restrict__ mask,
                            const float* __restrict__ feather, int E, int e, int x, int y, int Hf, int Wf, int h, int w,
                            int64_t s_n, int64_t s_h, int64_t s_w, int64_t feather_se, float white, int C, int kernel,
                            bool is_int) {
  const int n = boxes[e * WF_NBOX];
  const float* a = params + e * WF_NPARAM;
  const float xf = static_cast<float>(x), yf = static_cast<float>(y);
  float u, v;
  wf_patch_pos(a, xf, yf, u, v);
  const float fw = wf_feather_at(feather + e * feather_se, u, v, h, w);
  if (!(fw > 0.0f)) return;
  for (int j = 0; j < E; ++j) {  // overlaps: the larger weight wins, ties go to the later eye
    if (j == e || boxes[j * WF_NBOX] != n) continue;
    float uj, vj;
    wf_patch_pos(params + j * WF_NPARAM, xf, yf, uj, vj);
    const float fj = wf_feather_at(feather + j * feather_se, uj, vj, h, w);
    if (fj > fw || (fj == fw && j > e)) return;
  }
  const int64_t hw = static_cast<int64_t>(h) * w;
  const float dx = wf_bilinear_clamped(flow + e * 2 * hw, u, v, h, w);
  const float dy = wf_bilinear_clamped(flow + e * 2 * hw + hw, u, v, h, w);
  const float sx = xf + a[6] * dx + a[7] * dy;
  const float sy = yf + a[8] * dx + a[9] * dy;
  const float fxf = floorf(sx), fyf = floorf(sy);
  const float tx = sx - fxf, ty = sy - fyf;
  const int fx = static_cast<int>(fxf), fy = static_cast<int>(fyf);
  const int NT = wf_taps(kernel), k0 = 1 - NT / 2;
  float wx[8], wy[8];
  int ix[8], iy[8];
  const float swx = wf_axis_weights(tx, kernel, wx);
  const float swy = wf_axis_weights(ty, kernel, wy);
  for (int k = 0; k < NT; ++k) {
    const int xi = fx + k + k0, yi = fy + k + k0;
    ix[k] = xi < 0 ? 0 : (xi > Wf - 1 ? Wf - 1 : xi);
    iy[k] = yi < 0 ? 0 : (yi > Hf - 1 ? Hf - 1 : yi);
  }
  const float norm = 1.0f / (swx * swy);
  const float m = mask ? wf_bilinear_clamped(mask + e * hw, u, v, h, w) : 0.0f;
  const T* frame = frames + n * s_n;
  const int64_t here = n * s_n + y * s_h + x * s_w;
  float acc[4];
  if (NT == 8) wf_accumulate_c<T, 8>(frame, iy, ix, wy, wx, s_h, s_w, C, acc);
  else if (NT == 4) wf_accumulate_c<T, 4>(frame, iy, ix, wy, wx, s_h, s_w, C, acc);
  else wf_accumulate_c<T, 2>(frame, iy, ix, wy, wx, s_h, s_w, C, acc);
  for (int c = 0; c < C; ++c) {
    float val = fminf(fmaxf(acc[c] * norm, 0.0f), white);
    val = val + m * (white - val);
    const float old = static_cast<float>(frames[here + c]);
    float nv = old + fw * (val - old);
    if (is_int) nv = fminf(fmaxf(rintf(nv), 0.0f), white);
    out[here + c] = static_cast<T>(nv);
  }
}

}  // namespace deepwarp
