// CPU implementations of the fused ops (float32, NCHW). The 1x1 layers' wide products
// are batched GEMMs over whole images; the per-pixel chains after them run a row of
// pixels at a time with the pixel index innermost (so the compiler vectorises them),
// rows split over threads with at::parallel_for.
#include "deepwarp.h"
#include "warp_frame.h"

#include <limits>
#include <type_traits>
#include <vector>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace deepwarp {

at::Tensor conv2d_same_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const int64_t pad = weight.size(2) / 2;
  // oneDNN directly where torch has it: ATen's conv2d sends small single images (one eye's
  // 20x25 maps, under 20480 values) with 3x3 kernels to its im2col path, 2-3x slower here.
  if (at::hasMKLDNN()) return at::mkldnn_convolution(x, weight, bias, {pad, pad}, {1, 1}, {1, 1}, 1);
  return at::conv2d(x, weight, bias, /*stride=*/1, /*padding=*/pad);
}

at::Tensor conv_bias_relu_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                 const c10::optional<at::Tensor>& extra, bool relu) {
  // The k x k product itself goes to oneDNN (conv2d_same_cpu); the epilogue (extra term,
  // ReLU) is one pass over the output.
  at::Tensor out = conv2d_same_cpu(x, weight, bias);
  if (!out.is_contiguous()) out = out.contiguous();
  const bool has_extra = extra.has_value() && extra->defined();
  if (!has_extra && !relu) return out;
  float* o = out.data_ptr<float>();
  const float* e = has_extra ? extra->data_ptr<float>() : nullptr;
  const int64_t n = out.numel();
  at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
    if (e) {
      for (int64_t i = begin; i < end; ++i) o[i] += e[i];
    }
    if (relu) {
      for (int64_t i = begin; i < end; ++i) o[i] = o[i] > 0.0f ? o[i] : 0.0f;
    }
  });
  return out;
}

namespace {

// The per-row loops below are compiled three times (AVX-512, AVX2+FMA, baseline x86-64)
// and the best for the CPU is picked when the module loads (GCC's target_clones), so the
// build stays portable while the pixel loops run 16 lanes wide where the CPU has them
// (GCC 11 or later on x86-64 Linux: the x86-64-v3/v4 names; elsewhere one plain build).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && defined(__linux__)
#define DW_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DW_CPU_CLONES
#endif

// exp(x) for vectorised loops (no libm call): Cephes' expf reduction and polynomial, 2^n
// put into the exponent bits; relative error ~2 ulp, x clamped to [-87, 88].
inline float vexp(float x) {
  x = std::fmin(std::fmax(x, -87.0f), 88.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return e * scale;
}

// tanh(x) = (e^2x - 1) / (e^2x + 1): absolute error ~1e-7 (the flow it makes is scaled by
// ~25 pixels: ~3e-6 px); |x| > 9 is +-1 in float anyway.
inline float vtanh(float x) {
  const float e = vexp(2.0f * std::fmin(std::fmax(x, -9.0f), 9.0f));
  return (e - 1.0f) / (e + 1.0f);
}

// r0[x], r1[x] = tanh(b2 + w2 . relu(b1 + G[:, x])) over one row, where G (Ch rows of
// length n, row stride ld) already holds w1 . in (a GEMM over the whole image).
inline void head_epilogue_row(const float* G, int64_t ld, int64_t n, const float* b1, int64_t Ch, const float* w2,
                              const float* b2, float* __restrict r0, float* __restrict r1) {
  for (int64_t x = 0; x < n; ++x) {
    r0[x] = b2[0];
    r1[x] = b2[1];
  }
  for (int64_t j = 0; j < Ch; ++j) {
    const float* __restrict g = G + j * ld;
    const float bj = b1[j], a = w2[j], c = w2[Ch + j];
#pragma omp simd
    for (int64_t x = 0; x < n; ++x) {
      float hv = g[x] + bj;
      hv = hv > 0.0f ? hv : 0.0f;
      r0[x] += a * hv;
      r1[x] += c * hv;
    }
  }
#pragma omp simd
  for (int64_t x = 0; x < n; ++x) {
    r0[x] = vtanh(r0[x]);
    r1[x] = vtanh(r1[x]);
  }
}

// bilinear_taps (dw_math.h) for a row of pixels, split so that the arithmetic vectorises:
// clamped source coordinates in, corner offsets and fractions out (the same operations,
// so the same rounding).
inline void row_taps(int64_t W, int64_t H, int64_t y, const float* __restrict dx, const float* __restrict dy,
                     int32_t* __restrict i00, int32_t* __restrict i01, int32_t* __restrict i10,
                     int32_t* __restrict i11, float* __restrict fx, float* __restrict fy) {
  const float wmax = static_cast<float>(W - 1), hmax = static_cast<float>(H - 1), yf = static_cast<float>(y);
  const int32_t Wi = static_cast<int32_t>(W), Hi = static_cast<int32_t>(H);
#pragma omp simd
  for (int64_t x = 0; x < W; ++x) {
    float cx = static_cast<float>(x) + dx[x];
    float cy = yf + dy[x];
    cx = std::fmin(std::fmax(cx, 0.0f), wmax);
    cy = std::fmin(std::fmax(cy, 0.0f), hmax);
    const float x0f = std::fmin(std::floor(cx), wmax), y0f = std::fmin(std::floor(cy), hmax);
    const int32_t x0 = static_cast<int32_t>(x0f), y0 = static_cast<int32_t>(y0f);
    const int32_t x1 = x0 + 1 < Wi ? x0 + 1 : Wi - 1;
    const int32_t y1 = y0 + 1 < Hi ? y0 + 1 : Hi - 1;
    i00[x] = y0 * Wi + x0;
    i01[x] = y0 * Wi + x1;
    i10[x] = y1 * Wi + x0;
    i11[x] = y1 * Wi + x1;
    fx[x] = cx - x0f;
    fy[x] = cy - y0f;
  }
}

// dst[x] = bilinear_mix of plane p at the row's taps.
inline void row_gather(int64_t W, const float* __restrict p, const int32_t* __restrict i00, const int32_t* __restrict i01,
                       const int32_t* __restrict i10, const int32_t* __restrict i11, const float* __restrict fx,
                       const float* __restrict fy, float* __restrict dst) {
#pragma omp simd
  for (int64_t x = 0; x < W; ++x) {
    const float top = p[i00[x]] * (1.0f - fx[x]) + p[i01[x]] * fx[x];
    const float bottom = p[i10[x]] * (1.0f - fx[x]) + p[i11[x]] * fx[x];
    dst[x] = top * (1.0f - fy[x]) + bottom * fy[x];
  }
}

// Per-row scratch of the tails: the taps of one row and float rows.
struct RowScratch {
  std::vector<int32_t> idx;
  std::vector<float> f;
  RowScratch(int64_t W, int64_t float_rows) : idx(4 * W), f(float_rows * W) {}
};

// The coarse head over rows [begin, end) of (B * h): flow (B, 2, h, w).
DW_CPU_CLONES void coarse_head_rows(int64_t begin, int64_t end, const float* Gp, int64_t Ch, int64_t h, int64_t w,
                                    const float* b1, const float* w2, const float* b2, float* flp) {
  const int64_t hw = h * w;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t b = r / h, y = r % h;
    head_epilogue_row(Gp + b * Ch * hw + y * w, hw, w, b1, Ch, w2, b2, flp + (b * 2 * h + y) * w,
                      flp + ((b * 2 + 1) * h + y) * w);
  }
}

// The coarse tail's full-resolution rows [begin, end) of (B * H): cat(eyes, eyes warped by
// the nearest-upsampled coarse flow, that flow) into op (B, 2 Ci + 2, H, W).
DW_CPU_CLONES void coarse_warp_rows(int64_t begin, int64_t end, const float* ep, const float* flp, int64_t Ci,
                                    int64_t H, int64_t W, int64_t h, int64_t w, float sx, float sy, float* op) {
  const int64_t HW = H * W, Co = 2 * Ci + 2;
  RowScratch s(W, 4);
  std::vector<int32_t> xsrc(W);
  for (int64_t x = 0; x < W; ++x)
    xsrc[x] = nearest_src_index(static_cast<int>(x), static_cast<int>(w), static_cast<int>(W));
  int32_t *i00 = s.idx.data(), *i01 = i00 + W, *i10 = i01 + W, *i11 = i10 + W;
  float *dx = s.f.data(), *dy = dx + W, *fx = dy + W, *fy = fx + W;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t b = r / H, y = r % H;
    const int yl = nearest_src_index(static_cast<int>(y), static_cast<int>(h), static_cast<int>(H));
    const float* f0 = flp + (b * 2 * h + yl) * w;
    const float* f1 = f0 + h * w;
    const float* img = ep + b * Ci * HW;
    float* ob = op + b * Co * HW + y * W;
    for (int64_t c = 0; c < Ci; ++c) std::copy(img + c * HW + y * W, img + c * HW + (y + 1) * W, ob + c * HW);
    float* __restrict u0 = ob + 2 * Ci * HW;
    float* __restrict u1 = u0 + HW;
    for (int64_t x = 0; x < W; ++x) {
      u0[x] = f0[xsrc[x]];
      u1[x] = f1[xsrc[x]];
    }
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) {
      dx[x] = u0[x] * sx;
      dy[x] = u1[x] * sy;
    }
    row_taps(W, H, y, dx, dy, i00, i01, i10, i11, fx, fy);
    for (int64_t c = 0; c < Ci; ++c) row_gather(W, img + c * HW, i00, i01, i10, i11, fx, fy, ob + (Ci + c) * HW);
  }
}

// Everything the fine tail's per-row pass reads and writes (fine_tail_cpu fills it).
struct FineRows {
  const float *G, *Gc, *eyes, *up, *b1, *w2, *b2, *lb1, *lw2, *lb2, *lw3, *lb3;
  float *out, *fine, *flow, *mask;  // fine, flow, mask: null unless asked for
  int64_t H, W, Ci, Ch, Gr, L1, L2, h, w, eyes_sb, up_sb;
  float sx, sy;
};

// Rows [begin, end) of (B * H): the fine head, flow = pixels(U_c + F_r), the warp, the LCM
// (its coarse half upsampled here) and the blend.
DW_CPU_CLONES void fine_rows(int64_t begin, int64_t end, const FineRows& a) {
  const int64_t H = a.H, W = a.W, HW = H * W, Ci = a.Ci, L1 = a.L1, L2 = a.L2;
  RowScratch s(W, 8 + Ci + L1);
  int32_t *i00 = s.idx.data(), *i01 = i00 + W, *i10 = i01 + W, *i11 = i10 + W;
  float *r0 = s.f.data(), *r1 = r0 + W, *dx = r1 + W, *dy = dx + W, *fx = dy + W, *fy = fx + W, *l0 = fy + W,
        *l1 = l0 + W, *warped = l1 + W, *h1 = warped + Ci * W;
  std::vector<int32_t> xsrc(W);
  for (int64_t x = 0; x < W; ++x)
    xsrc[x] = nearest_src_index(static_cast<int>(x), static_cast<int>(a.w), static_cast<int>(W));
  for (int64_t r = begin; r < end; ++r) {
    const int64_t b = r / H, y = r % H;
    const float* Grow = a.G + b * a.Gr * HW + y * W;
    head_epilogue_row(Grow, HW, W, a.b1, a.Ch, a.w2, a.b2, r0, r1);
    const float* __restrict u0 = a.up + b * a.up_sb + y * W;
    const float* __restrict u1 = u0 + HW;
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) {
      // flow = pixels(U_c + F_r), as the reference: (u + r) * scale.
      dx[x] = (u0[x] + r0[x]) * a.sx;
      dy[x] = (u1[x] + r1[x]) * a.sy;
    }
    if (a.flow) {
      std::copy(dx, dx + W, a.flow + (b * 2) * HW + y * W);
      std::copy(dy, dy + W, a.flow + (b * 2 + 1) * HW + y * W);
    }
    row_taps(W, H, y, dx, dy, i00, i01, i10, i11, fx, fy);
    const float* img = a.eyes + b * a.eyes_sb;
    for (int64_t c = 0; c < Ci; ++c) row_gather(W, img + c * HW, i00, i01, i10, i11, fx, fy, warped + c * W);
    if (a.fine) {
      for (int64_t c = 0; c < Ci; ++c) std::copy(warped + c * W, warped + (c + 1) * W, a.fine + (b * Ci + c) * HW + y * W);
    }
    if (!a.Gc) {
      for (int64_t c = 0; c < Ci; ++c) std::copy(warped + c * W, warped + (c + 1) * W, a.out + (b * Ci + c) * HW + y * W);
      continue;
    }
    const int yl = nearest_src_index(static_cast<int>(y), static_cast<int>(a.h), static_cast<int>(H));
    for (int64_t j = 0; j < L1; ++j) {
      const float* __restrict gf = Grow + (a.Ch + j) * HW;
      const float* __restrict gc = a.Gc + (b * L1 + j) * a.h * a.w + yl * a.w;
      float* __restrict hj = h1 + j * W;
      const float bj = a.lb1[j];
      for (int64_t x = 0; x < W; ++x) hj[x] = gc[xsrc[x]];
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) {
        const float v = hj[x] + gf[x] + bj;
        hj[x] = v > 0.0f ? v : 0.0f;
      }
    }
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) {
      l0[x] = a.lb3[0];
      l1[x] = a.lb3[1];
    }
    float* __restrict h2 = fx;  // the taps' fractions are spent
    for (int64_t k = 0; k < L2; ++k) {
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) h2[x] = a.lb2[k];
      for (int64_t j = 0; j < L1; ++j) {
        const float c = a.lw2[k * L1 + j];
        const float* __restrict in = h1 + j * W;
#pragma omp simd
        for (int64_t x = 0; x < W; ++x) h2[x] += c * in[x];
      }
      const float a0 = a.lw3[k], a1 = a.lw3[L2 + k];
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) {
        const float hv = h2[x] > 0.0f ? h2[x] : 0.0f;
        l0[x] += a0 * hv;
        l1[x] += a1 * hv;
      }
    }
    // softmax over the two palette logits (palette_weights): p1 = 1 / (1 + e^(l0 - l1)) is
    // the mask, p0 = 1 - p1; out = warped * p0 + p1 (white palette).
#pragma omp simd
    for (int64_t x = 0; x < W; ++x) {
      const float p1 = 1.0f / (1.0f + vexp(l0[x] - l1[x]));
      l0[x] = 1.0f - p1;
      l1[x] = p1;
    }
    for (int64_t c = 0; c < Ci; ++c) {
      float* __restrict o = a.out + (b * Ci + c) * HW + y * W;
      const float* __restrict wv = warped + c * W;
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) o[x] = wv[x] * l0[x] + l1[x];
    }
    if (a.mask) std::copy(l1, l1 + W, a.mask + b * HW + y * W);
  }
}


// A k x k "same" convolution + bias (+ extra) + ReLU over output rows [begin, end) of
// (n * h), channels-last: pin is the input zero-padded to (n, h + k - 1, wp, Cin), wt the
// weight as (Cin, k, k, CO), extra (n, h, w, CO) or null. XB output pixels of a row at a
// time, CO output channels each: XB x CO accumulators in registers (CO = 16 or 32: one or
// two AVX-512 vectors), every weight vector loaded once per XB pixels, every input value
// broadcast once per CO channels.
template <int XB, int CO>
DW_CPU_CLONES void direct_conv_rows(int64_t begin, int64_t end, const float* __restrict pin, int64_t wp,
                                    const float* __restrict wt, const float* __restrict bias,
                                    const float* __restrict extra, int64_t h, int64_t w, int64_t Cin, int64_t k,
                                    float* __restrict out) {
  const int64_t hp = h + k - 1;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t b = r / h, y = r % h;
    for (int64_t x0 = 0; x0 < w; x0 += XB) {
      const int64_t nb = std::min<int64_t>(XB, w - x0);
      float acc[XB][CO];
      for (int i = 0; i < XB; ++i) {
        const float* e = extra ? extra + ((b * h + y) * w + std::min<int64_t>(x0 + i, w - 1)) * CO : nullptr;
#pragma omp simd
        for (int c = 0; c < CO; ++c) acc[i][c] = bias[c] + (e ? e[c] : 0.0f);
      }
      for (int64_t ky = 0; ky < k; ++ky) {
        const float* row = pin + ((b * hp + y + ky) * wp + x0) * Cin;
        for (int64_t kx = 0; kx < k; ++kx) {
          for (int64_t ci = 0; ci < Cin; ++ci) {
            const float* __restrict wr = wt + ((ci * k + ky) * k + kx) * CO;
            for (int i = 0; i < XB; ++i) {
              const float v = row[(i + kx) * Cin + ci];
#pragma omp simd
              for (int c = 0; c < CO; ++c) acc[i][c] += v * wr[c];
            }
          }
        }
      }
      float* o = out + ((b * h + y) * w + x0) * CO;
      for (int64_t i = 0; i < nb; ++i) {
#pragma omp simd
        for (int c = 0; c < CO; ++c) o[i * CO + c] = acc[i][c] > 0.0f ? acc[i][c] : 0.0f;
      }
    }
  }
}

}  // namespace

at::Tensor avg_pool2_cl_cpu(const at::Tensor& eyes) {
  const int64_t n = eyes.size(0), Cin = eyes.size(1), H = eyes.size(2), W = eyes.size(3);
  const int64_t h = H / 2, w = W / 2;
  // (a + b + c + d) / 4 in ATen's order, written channels-last
  at::Tensor out = at::empty({n, Cin, h, w}, eyes.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float* e = eyes.data_ptr<float>();
  float* pp = out.data_ptr<float>();
  const int64_t es0 = eyes.stride(0), es1 = eyes.stride(1), es2 = eyes.stride(2);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t c = 0; c < Cin; ++c) {
          const float* q = e + b * es0 + c * es1 + 2 * y * es2 + 2 * x;
          pp[((b * h + y) * w + x) * Cin + c] = (q[0] + q[1] + q[es2] + q[es2 + 1]) / 4.0f;
        }
  return out;
}

bool direct_conv_supported(const at::Tensor& wt) { return wt.size(3) == 16 || wt.size(3) == 32; }

at::Tensor direct_conv_relu_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                const c10::optional<at::Tensor>& extra) {
  const int64_t n = x.size(0), Cin = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t Cout = weight.size(3), k = weight.size(1), p = k / 2;
  constexpr int64_t kMaxBlock = 8;
  // zero padding: k - 1 rows and columns, and a block's worth of columns more so the last
  // (partial) block of a row reads zeros, not the next row
  const int64_t wp = w + k - 1 + kMaxBlock;
  at::Tensor pin = at::zeros({n, h + k - 1, wp, Cin}, x.options());
  pin.narrow(1, p, h).narrow(2, p, w).copy_(x.permute({0, 2, 3, 1}));
  const at::Tensor& wt = weight;  // (Cin, k, k, Cout)
  at::Tensor e;
  if (extra.has_value() && extra->defined()) e = extra->contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor out = at::empty({n, Cout, h, w}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float *pp = pin.data_ptr<float>(), *wp_ = wt.data_ptr<float>(), *bp = bias.data_ptr<float>();
  const float* ep = e.defined() ? e.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  at::parallel_for(0, n * h, 4, [&](int64_t begin, int64_t end) {
    if (Cout == 32)
      direct_conv_rows<4, 32>(begin, end, pp, wp, wp_, bp, ep, h, w, Cin, k, op);
    else
      direct_conv_rows<8, 16>(begin, end, pp, wp, wp_, bp, ep, h, w, Cin, k, op);
  });
  return out;
}

// The 1x1 layers' big products (hidden x C per pixel) run as one batched GEMM over the
// whole image (ATen's CPU BLAS); everything after them is fused per row.
at::Tensor coarse_tail_cpu(const at::Tensor& feat, const at::Tensor& w1, const at::Tensor& b1,
                           const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& eyes, double scale_x,
                           double scale_y) {
  const int64_t B = feat.size(0), C = feat.size(1), h = feat.size(2), w = feat.size(3);
  const int64_t Ci = eyes.size(1), H = eyes.size(2), W = eyes.size(3);
  const int64_t Ch = w1.size(0), hw = h * w;
  const float* ep = eyes.data_ptr<float>();
  const float *b1p = b1.data_ptr<float>(), *w2p = w2.data_ptr<float>(), *b2p = b2.data_ptr<float>();

  // The head at the coarse resolution, (B, 2, h, w): each flow value is then read by
  // the ~4 full-resolution pixels that nearest upsampling maps onto it.
  // bmm, not matmul: matmul may fold a channels-last operand and return G transposed.
  const at::Tensor G = at::bmm(w1.expand({B, Ch, C}), feat.reshape({B, C, hw}));  // (B, Ch, hw)
  TORCH_INTERNAL_ASSERT(G.is_contiguous());
  const float* Gp = G.data_ptr<float>();
  at::Tensor flow = at::empty({B, 2, h, w}, feat.options());
  float* flp = flow.data_ptr<float>();
  at::parallel_for(0, B * h, 4, [&](int64_t begin, int64_t end) {
    coarse_head_rows(begin, end, Gp, Ch, h, w, b1p, w2p, b2p, flp);
  });

  at::Tensor out = at::empty({B, 2 * Ci + 2, H, W}, eyes.options());
  float* op = out.data_ptr<float>();
  const float sx = static_cast<float>(scale_x), sy = static_cast<float>(scale_y);
  at::parallel_for(0, B * H, 8, [&](int64_t begin, int64_t end) {
    coarse_warp_rows(begin, end, ep, flp, Ci, H, W, h, w, sx, sy, op);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fine_tail_cpu(
    const at::Tensor& feat_f, const at::Tensor& feat_c, const at::Tensor& eyes, const at::Tensor& up_c,
    const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
    const c10::optional<at::Tensor>& lw1, const c10::optional<at::Tensor>& lb1,
    const c10::optional<at::Tensor>& lw2, const c10::optional<at::Tensor>& lb2,
    const c10::optional<at::Tensor>& lw3, const c10::optional<at::Tensor>& lb3, double scale_x,
    double scale_y, bool intermediates) {
  const int64_t B = feat_f.size(0), Cf = feat_f.size(1), H = feat_f.size(2), W = feat_f.size(3);
  const int64_t HW = H * W, Ci = eyes.size(1), Ch = w1.size(0);
  const bool use_lcm = lw1.has_value() && lw1->defined();
  const int64_t Cc = use_lcm ? feat_c.size(1) : 0, h = use_lcm ? feat_c.size(2) : 1, w = use_lcm ? feat_c.size(3) : 1;
  const int64_t L1 = use_lcm ? lw1->size(0) : 0, L2 = use_lcm ? lw2->size(0) : 0;
  const int64_t eyes_sb = eyes.stride(0), up_sb = up_c.stride(0);

  // GEMMs: G = [w1; lcm_w1[:, Cc:]] . feat_f at full resolution, and lcm_w1[:, :Cc] .
  // feat_c at the coarse resolution: a 1x1 layer commutes with nearest upsampling, so
  // the LCM's coarse half is computed on 4x fewer pixels and upsampled afterwards.
  const at::Tensor Wf = use_lcm ? at::cat({w1, lw1->narrow(1, Cc, Cf)}, 0) : w1;
  // (feat_f and feat_c NCHW or channels-last: bmm reads either as they are; G is packed)
  const int64_t Gr = Ch + L1;
  const at::Tensor G = at::bmm(Wf.expand({B, Gr, Cf}), feat_f.reshape({B, Cf, HW}));  // (B, Ch + L1, HW)
  at::Tensor Gc;
  if (use_lcm) Gc = at::bmm(lw1->narrow(1, 0, Cc).expand({B, L1, Cc}), feat_c.reshape({B, Cc, h * w}));  // (B, L1, hw)
  TORCH_INTERNAL_ASSERT(G.is_contiguous() && (!use_lcm || Gc.is_contiguous()));

  auto opts = eyes.options();
  at::Tensor out = at::empty({B, Ci, H, W}, opts);
  at::Tensor fine = intermediates ? at::empty({B, Ci, H, W}, opts) : at::empty({0}, opts);
  at::Tensor flow = intermediates ? at::empty({B, 2, H, W}, opts) : at::empty({0}, opts);
  at::Tensor mask = (intermediates && use_lcm) ? at::empty({B, 1, H, W}, opts) : at::empty({0}, opts);

  FineRows a;
  a.G = G.data_ptr<float>();
  a.Gc = use_lcm ? Gc.data_ptr<float>() : nullptr;
  a.eyes = eyes.data_ptr<float>();
  a.up = up_c.data_ptr<float>();
  a.b1 = b1.data_ptr<float>();
  a.w2 = w2.data_ptr<float>();
  a.b2 = b2.data_ptr<float>();
  a.lb1 = use_lcm ? lb1->data_ptr<float>() : nullptr;
  a.lw2 = use_lcm ? lw2->data_ptr<float>() : nullptr;
  a.lb2 = use_lcm ? lb2->data_ptr<float>() : nullptr;
  a.lw3 = use_lcm ? lw3->data_ptr<float>() : nullptr;
  a.lb3 = use_lcm ? lb3->data_ptr<float>() : nullptr;
  a.out = out.data_ptr<float>();
  a.fine = intermediates ? fine.data_ptr<float>() : nullptr;
  a.flow = intermediates ? flow.data_ptr<float>() : nullptr;
  a.mask = (intermediates && use_lcm) ? mask.data_ptr<float>() : nullptr;
  a.H = H;
  a.W = W;
  a.Ci = Ci;
  a.Ch = Ch;
  a.Gr = Gr;
  a.L1 = L1;
  a.L2 = L2;
  a.h = h;
  a.w = w;
  a.eyes_sb = eyes_sb;
  a.up_sb = up_sb;
  a.sx = static_cast<float>(scale_x);
  a.sy = static_cast<float>(scale_y);
  at::parallel_for(0, B * H, 4, [&](int64_t begin, int64_t end) { fine_rows(begin, end, a); });
  return {out, fine, flow, mask};
}

}  // namespace deepwarp

// ----------------------------------------------------------------------- warp_frame
namespace deepwarp {
namespace {

template <typename T>
void run_warp_frame_cpu(const at::Tensor& frames, at::Tensor& out, const float* pp, const int* bp, const float* fl,
                        const float* mk, const float* fe, int E, int Hf, int Wf, int h, int w, int64_t s_n, int64_t s_h,
                        int64_t s_w, int64_t feather_se, int64_t kernel, int64_t channels) {
  const T* src = frames.data_ptr<T>();
  T* dst = out.data_ptr<T>();
  const float white = std::is_floating_point<T>::value ? 1.0f : static_cast<float>(std::numeric_limits<T>::max());
  const bool is_int = !std::is_floating_point<T>::value;
  // One work item per (eye, box row): rows of all eyes in one parallel loop.
  std::vector<int64_t> first(E + 1, 0);
  for (int e = 0; e < E; ++e) first[e + 1] = first[e] + bp[e * WF_NBOX + 4];
  at::parallel_for(0, first[E], 4, [&](int64_t begin, int64_t end) {
    int e = 0;
    for (int64_t r = begin; r < end; ++r) {
      while (r >= first[e + 1]) ++e;
      const int* b = bp + e * WF_NBOX;
      const int y = b[2] + static_cast<int>(r - first[e]);
      for (int x = b[1]; x < b[1] + b[3]; ++x)
        warp_frame_pixel<T>(src, dst, pp, bp, fl, mk, fe, E, e, x, y, Hf, Wf, h, w, s_n, s_h, s_w, feather_se, white,
                            static_cast<int>(channels), static_cast<int>(kernel), is_int);
    }
  });
}

}  // namespace

at::Tensor warp_frame_cpu(const at::Tensor& frames, const at::Tensor& params, const at::Tensor& boxes,
                          const at::Tensor& flow, const c10::optional<at::Tensor>& mask, const at::Tensor& feather,
                          int64_t kernel, int64_t channels, at::Tensor out) {
  const int E = static_cast<int>(flow.size(0));
  const int h = static_cast<int>(flow.size(2)), w = static_cast<int>(flow.size(3));
  const int Hf = static_cast<int>(frames.size(1)), Wf = static_cast<int>(frames.size(2));
  const int64_t feather_se = feather.size(0) == 1 ? 0 : static_cast<int64_t>(h) * w;
  const float* pp = params.data_ptr<float>();
  const int* bp = boxes.data_ptr<int>();
  const float* fl = flow.data_ptr<float>();
  const float* mk = (mask.has_value() && mask->defined()) ? mask->data_ptr<float>() : nullptr;
  const float* fe = feather.data_ptr<float>();
  const int64_t s_n = frames.stride(0), s_h = frames.stride(1), s_w = frames.stride(2);
  AT_DISPATCH_SWITCH(frames.scalar_type(), "warp_frame_cpu",
    AT_DISPATCH_CASE(at::kByte, [&] {
      run_warp_frame_cpu<scalar_t>(frames, out, pp, bp, fl, mk, fe, E, Hf, Wf, h, w, s_n, s_h, s_w, feather_se, kernel, channels);
    })
    AT_DISPATCH_CASE(at::kUInt16, [&] {
      run_warp_frame_cpu<scalar_t>(frames, out, pp, bp, fl, mk, fe, E, Hf, Wf, h, w, s_n, s_h, s_w, feather_se, kernel, channels);
    })
    AT_DISPATCH_CASE(at::kFloat, [&] {
      run_warp_frame_cpu<scalar_t>(frames, out, pp, bp, fl, mk, fe, E, Hf, Wf, h, w, s_n, s_h, s_w, feather_se, kernel, channels);
    }));
  return out;
}

}  // namespace deepwarp
