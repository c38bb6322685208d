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
#include <vector>

namespace deepwarp {

at::Tensor conv_bias_relu_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                 const c10::optional<at::Tensor>& extra, bool relu) {
  const int64_t k = weight.size(2);
  // The k x k product itself goes to ATen's CPU convolution (oneDNN where present);
  // the epilogue (extra term, ReLU) is one pass over the output.
  at::Tensor out = at::conv2d(x, weight, bias, /*stride=*/1, /*padding=*/k / 2);
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

// r0[x], r1[x] = tanh(b2 + w2 . relu(b1 + G[:, x])) over one row, where G (Ch rows of
// length n, row stride ld) already holds w1 . in (a GEMM over the whole image).
void head_epilogue_row(const float* G, int64_t ld, int64_t n, const float* b1, int64_t Ch, const float* w2,
                       const float* b2, float* __restrict r0, float* __restrict r1) {
  for (int64_t x = 0; x < n; ++x) {
    r0[x] = b2[0];
    r1[x] = b2[1];
  }
  for (int64_t j = 0; j < Ch; ++j) {
    const float* __restrict g = G + j * ld;
    const float bj = b1[j], a = w2[j], c = w2[Ch + j];
    for (int64_t x = 0; x < n; ++x) {
      float hv = g[x] + bj;
      hv = hv > 0.0f ? hv : 0.0f;
      r0[x] += a * hv;
      r1[x] += c * hv;
    }
  }
  for (int64_t x = 0; x < n; ++x) {
    r0[x] = std::tanh(r0[x]);
    r1[x] = std::tanh(r1[x]);
  }
}

}  // namespace

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
  const at::Tensor G = at::matmul(w1, feat.reshape({B, C, hw}));  // (B, Ch, hw)
  const float* Gp = G.data_ptr<float>();
  at::Tensor flow = at::empty({B, 2, h, w}, feat.options());
  float* flp = flow.data_ptr<float>();
  at::parallel_for(0, B * h, 4, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / h, y = r % h;
      head_epilogue_row(Gp + b * Ch * hw + y * w, hw, w, b1p, Ch, w2p, b2p, flp + (b * 2 * h + y) * w,
                        flp + ((b * 2 + 1) * h + y) * w);
    }
  });

  const int64_t Co = 2 * Ci + 2;
  at::Tensor out = at::empty({B, Co, H, W}, eyes.options());
  float* op = out.data_ptr<float>();
  const float sx = static_cast<float>(scale_x), sy = static_cast<float>(scale_y);
  const int64_t HW = H * W;
  at::parallel_for(0, B * H, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / H, y = r % H;
      const int yl = nearest_src_index(static_cast<int>(y), static_cast<int>(h), static_cast<int>(H));
      const float* f0 = flp + (b * 2 * h + yl) * w;
      const float* f1 = f0 + h * w;
      const float* img = ep + b * Ci * HW;
      float* ob = op + b * Co * HW;
      for (int64_t c = 0; c < Ci; ++c) std::copy(img + c * HW + y * W, img + c * HW + (y + 1) * W, ob + c * HW + y * W);
      for (int64_t x = 0; x < W; ++x) {
        const int xl = nearest_src_index(static_cast<int>(x), static_cast<int>(w), static_cast<int>(W));
        const float u0 = f0[xl], u1 = f1[xl];
        const BilinearTaps t = bilinear_taps(static_cast<int>(x), static_cast<int>(y), u0 * sx, u1 * sy,
                                             static_cast<int>(H), static_cast<int>(W));
        for (int64_t c = 0; c < Ci; ++c) {
          const float* p = img + c * HW;
          ob[(Ci + c) * HW + y * W + x] = bilinear_mix(t, p[t.i00], p[t.i01], p[t.i10], p[t.i11]);
        }
        ob[(2 * Ci) * HW + y * W + x] = u0;
        ob[(2 * Ci + 1) * HW + y * W + x] = u1;
      }
    }
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
  const at::Tensor G = at::matmul(Wf, feat_f.reshape({B, Cf, HW}));  // (B, Ch + L1, HW)
  const int64_t Gr = Ch + L1;
  at::Tensor Gc;
  if (use_lcm) Gc = at::matmul(lw1->narrow(1, 0, Cc), feat_c.reshape({B, Cc, h * w}));  // (B, L1, hw)

  auto opts = eyes.options();
  at::Tensor out = at::empty({B, Ci, H, W}, opts);
  at::Tensor fine = intermediates ? at::empty({B, Ci, H, W}, opts) : at::empty({0}, opts);
  at::Tensor flow = intermediates ? at::empty({B, 2, H, W}, opts) : at::empty({0}, opts);
  at::Tensor mask = (intermediates && use_lcm) ? at::empty({B, 1, H, W}, opts) : at::empty({0}, opts);

  const float* Gp = G.data_ptr<float>();
  const float* Gcp = use_lcm ? Gc.data_ptr<float>() : nullptr;
  const float* ep = eyes.data_ptr<float>();
  const float* up = up_c.data_ptr<float>();
  const float *b1p = b1.data_ptr<float>(), *w2p = w2.data_ptr<float>(), *b2p = b2.data_ptr<float>();
  const float* lb1p = use_lcm ? lb1->data_ptr<float>() : nullptr;
  const float* lw2p = use_lcm ? lw2->data_ptr<float>() : nullptr;
  const float* lb2p = use_lcm ? lb2->data_ptr<float>() : nullptr;
  const float* lw3p = use_lcm ? lw3->data_ptr<float>() : nullptr;
  const float* lb3p = use_lcm ? lb3->data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  float* finep = intermediates ? fine.data_ptr<float>() : nullptr;
  float* flowp = intermediates ? flow.data_ptr<float>() : nullptr;
  float* maskp = (intermediates && use_lcm) ? mask.data_ptr<float>() : nullptr;
  const float sx = static_cast<float>(scale_x), sy = static_cast<float>(scale_y);

  at::parallel_for(0, B * H, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> r0(W), r1(W), warped(Ci * W), h1(L1 * W), h2(W), l0(W), l1(W);
    std::vector<int> xsrc(W);
    for (int64_t x = 0; x < W; ++x)
      xsrc[x] = nearest_src_index(static_cast<int>(x), static_cast<int>(w), static_cast<int>(W));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / H, y = r % H;
      const float* Grow = Gp + b * Gr * HW + y * W;
      head_epilogue_row(Grow, HW, W, b1p, Ch, w2p, b2p, r0.data(), r1.data());
      const float* u0 = up + b * up_sb + y * W;
      const float* u1 = u0 + HW;
      const float* img = ep + b * eyes_sb;
      for (int64_t x = 0; x < W; ++x) {
        // flow = pixels(U_c + F_r), as the reference: (u + r) * scale.
        const float dx = (u0[x] + r0[x]) * sx, dy = (u1[x] + r1[x]) * sy;
        if (flowp) {
          flowp[(b * 2) * HW + y * W + x] = dx;
          flowp[(b * 2 + 1) * HW + y * W + x] = dy;
        }
        const BilinearTaps t =
            bilinear_taps(static_cast<int>(x), static_cast<int>(y), dx, dy, static_cast<int>(H), static_cast<int>(W));
        for (int64_t c = 0; c < Ci; ++c) {
          const float* p = img + c * HW;
          warped[c * W + x] = bilinear_mix(t, p[t.i00], p[t.i01], p[t.i10], p[t.i11]);
        }
      }
      if (finep) {
        for (int64_t c = 0; c < Ci; ++c) std::copy(&warped[c * W], &warped[(c + 1) * W], finep + (b * Ci + c) * HW + y * W);
      }
      if (!use_lcm) {
        for (int64_t c = 0; c < Ci; ++c) std::copy(&warped[c * W], &warped[(c + 1) * W], op + (b * Ci + c) * HW + y * W);
        continue;
      }
      const int yl = nearest_src_index(static_cast<int>(y), static_cast<int>(h), static_cast<int>(H));
      for (int64_t j = 0; j < L1; ++j) {
        const float* __restrict gf = Grow + (Ch + j) * HW;
        const float* __restrict gc = Gcp + (b * L1 + j) * h * w + yl * w;
        float* __restrict hj = &h1[j * W];
        const float bj = lb1p[j];
        for (int64_t x = 0; x < W; ++x) {
          const float v = gc[xsrc[x]] + gf[x] + bj;
          hj[x] = v > 0.0f ? v : 0.0f;
        }
      }
      for (int64_t x = 0; x < W; ++x) {
        l0[x] = lb3p[0];
        l1[x] = lb3p[1];
      }
      for (int64_t k = 0; k < L2; ++k) {
        for (int64_t x = 0; x < W; ++x) h2[x] = lb2p[k];
        for (int64_t j = 0; j < L1; ++j) {
          const float a = lw2p[k * L1 + j];
          const float* __restrict in = &h1[j * W];
          for (int64_t x = 0; x < W; ++x) h2[x] += a * in[x];
        }
        const float a0 = lw3p[k], a1 = lw3p[L2 + k];
        for (int64_t x = 0; x < W; ++x) {
          const float hv = h2[x] > 0.0f ? h2[x] : 0.0f;
          l0[x] += a0 * hv;
          l1[x] += a1 * hv;
        }
      }
      for (int64_t x = 0; x < W; ++x) {
        float p0, p1;
        palette_weights(l0[x], l1[x], p0, p1);
        for (int64_t c = 0; c < Ci; ++c) op[(b * Ci + c) * HW + y * W + x] = warped[c * W + x] * p0 + p1;
        if (maskp) maskp[b * HW + y * W + x] = 1.0f / (1.0f + std::exp(l0[x] - l1[x]));
      }
    }
  });
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
