// CPU implementations of the fused ops (float32, NCHW). The per-pixel chains run a row
// of pixels at a time with the pixel index innermost, so the compiler vectorises them;
// rows are split over threads with at::parallel_for.
#include "deepwarp.h"

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

// out[x] = tanh(b2 + w2 . relu(b1 + w1 . in[:, x])) for the two flow channels, over one row.
// in_rows[i] points at input channel i of the row; w1 is (Ch, C), w2 is (2, Ch).
void head_row(const float* const* in_rows, int64_t C, int64_t n, const float* w1, const float* b1, int64_t Ch,
              const float* w2, const float* b2, float* h, float* r0, float* r1) {
  for (int64_t x = 0; x < n; ++x) {
    r0[x] = b2[0];
    r1[x] = b2[1];
  }
  for (int64_t j = 0; j < Ch; ++j) {
    const float bj = b1[j];
    for (int64_t x = 0; x < n; ++x) h[x] = bj;
    for (int64_t i = 0; i < C; ++i) {
      const float wji = w1[j * C + i];
      const float* in = in_rows[i];
      for (int64_t x = 0; x < n; ++x) h[x] += wji * in[x];
    }
    const float a = w2[j], b = w2[Ch + j];
    for (int64_t x = 0; x < n; ++x) {
      const float hv = h[x] > 0.0f ? h[x] : 0.0f;
      r0[x] += a * hv;
      r1[x] += b * hv;
    }
  }
  for (int64_t x = 0; x < n; ++x) {
    r0[x] = std::tanh(r0[x]);
    r1[x] = std::tanh(r1[x]);
  }
}

}  // namespace

at::Tensor coarse_tail_cpu(const at::Tensor& feat, const at::Tensor& w1, const at::Tensor& b1,
                              const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& eyes,
                              double scale_x, double scale_y) {
  const int64_t B = feat.size(0), C = feat.size(1), h = feat.size(2), w = feat.size(3);
  const int64_t Ci = eyes.size(1), H = eyes.size(2), W = eyes.size(3);
  const int64_t Ch = w1.size(0);
  const float* fp = feat.data_ptr<float>();
  const float* ep = eyes.data_ptr<float>();
  const float *w1p = w1.data_ptr<float>(), *b1p = b1.data_ptr<float>();
  const float *w2p = w2.data_ptr<float>(), *b2p = b2.data_ptr<float>();

  // The head at the coarse resolution, (B, 2, h, w): each flow value is then read by
  // the ~4 full-resolution pixels that nearest upsampling maps onto it.
  at::Tensor flow = at::empty({B, 2, h, w}, feat.options());
  float* flp = flow.data_ptr<float>();
  at::parallel_for(0, B * h, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> hbuf(w);
    std::vector<const float*> rows(C);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / h, y = r % h;
      for (int64_t i = 0; i < C; ++i) rows[i] = fp + ((b * C + i) * h + y) * w;
      head_row(rows.data(), C, w, w1p, b1p, Ch, w2p, b2p, hbuf.data(), flp + (b * 2 * h + y) * w,
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

  auto opts = eyes.options();
  at::Tensor out = at::empty({B, Ci, H, W}, opts);
  at::Tensor fine = intermediates ? at::empty({B, Ci, H, W}, opts) : at::empty({0}, opts);
  at::Tensor flow = intermediates ? at::empty({B, 2, H, W}, opts) : at::empty({0}, opts);
  at::Tensor mask = (intermediates && use_lcm) ? at::empty({B, 1, H, W}, opts) : at::empty({0}, opts);

  const float* ffp = feat_f.data_ptr<float>();
  const float* fcp = use_lcm ? feat_c.data_ptr<float>() : nullptr;
  const float* ep = eyes.data_ptr<float>();
  const float* up = up_c.data_ptr<float>();
  const float *w1p = w1.data_ptr<float>(), *b1p = b1.data_ptr<float>();
  const float *w2p = w2.data_ptr<float>(), *b2p = b2.data_ptr<float>();
  const float* lw1p = use_lcm ? lw1->data_ptr<float>() : nullptr;
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
    // Per-row scratch: head hidden, flow (2), LCM input (upsampled feat_c), LCM hidden.
    std::vector<float> hbuf(W), r0(W), r1(W), warped(Ci * W), fcup(Cc * W), h1(L1 * W), h2(W), l0(W), l1(W);
    std::vector<const float*> rows(Cf);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / H, y = r % H;
      for (int64_t i = 0; i < Cf; ++i) rows[i] = ffp + (b * Cf + i) * HW + y * W;
      head_row(rows.data(), Cf, W, w1p, b1p, Ch, w2p, b2p, hbuf.data(), r0.data(), r1.data());
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
      // LCM input: cat(nearest-upsampled feat_c, feat_f) at this row.
      const int yl = nearest_src_index(static_cast<int>(y), static_cast<int>(h), static_cast<int>(H));
      for (int64_t i = 0; i < Cc; ++i) {
        const float* src = fcp + ((b * Cc + i) * h + yl) * w;
        for (int64_t x = 0; x < W; ++x)
          fcup[i * W + x] = src[nearest_src_index(static_cast<int>(x), static_cast<int>(w), static_cast<int>(W))];
      }
      const int64_t Cl = Cc + Cf;
      for (int64_t j = 0; j < L1; ++j) {
        float* hj = &h1[j * W];
        for (int64_t x = 0; x < W; ++x) hj[x] = lb1p[j];
        for (int64_t i = 0; i < Cc; ++i) {
          const float a = lw1p[j * Cl + i];
          const float* in = &fcup[i * W];
          for (int64_t x = 0; x < W; ++x) hj[x] += a * in[x];
        }
        for (int64_t i = 0; i < Cf; ++i) {
          const float a = lw1p[j * Cl + Cc + i];
          const float* in = rows[i];
          for (int64_t x = 0; x < W; ++x) hj[x] += a * in[x];
        }
        for (int64_t x = 0; x < W; ++x) hj[x] = hj[x] > 0.0f ? hj[x] : 0.0f;
      }
      for (int64_t x = 0; x < W; ++x) {
        l0[x] = lb3p[0];
        l1[x] = lb3p[1];
      }
      for (int64_t k = 0; k < L2; ++k) {
        for (int64_t x = 0; x < W; ++x) h2[x] = lb2p[k];
        for (int64_t j = 0; j < L1; ++j) {
          const float a = lw2p[k * L1 + j];
          const float* in = &h1[j * W];
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
