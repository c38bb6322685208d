// Argument checks and device dispatch for the fused ops; the Python module deepwarp_fast._C.
//
// Every check names the argument it rejects. Activations may be float32 on the CPU and
// float32/float16/bfloat16 on CUDA; weights and biases are always contiguous float32
// (folded once when the accelerated model is built).
#include <torch/extension.h>

#include "deepwarp.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <algorithm>
#include <string>
#include <vector>

namespace deepwarp {
namespace {

std::string shape_str(const torch::Tensor& t) {
  std::string s = "(";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + ")";
}

void check_device(const torch::Tensor& t, const char* name, const torch::Tensor& ref, const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), name, " must be on the same device as ", ref_name, " (", ref.device(),
              "), got ", t.device());
}

void check_activation(const torch::Tensor& t, const char* name, int64_t ndim) {
  TORCH_CHECK(t.defined(), name, " must be a tensor, got None");
  TORCH_CHECK(t.dim() == ndim, name, " must have ", ndim, " dims, got shape ", shape_str(t));
  const auto dt = t.scalar_type();
  if (t.is_cuda()) {
    TORCH_CHECK(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16, name,
                " must be float32, float16 or bfloat16 on CUDA, got ", dt);
  } else {
    TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU or CUDA tensor, got device ", t.device());
    TORCH_CHECK(dt == at::kFloat, name, " must be float32 on the CPU, got ", dt);
  }
}

void check_param(const torch::Tensor& t, const char* name, std::initializer_list<int64_t> shape,
                 const torch::Tensor& ref, const char* ref_name) {
  TORCH_CHECK(t.defined(), name, " must be a tensor, got None");
  check_device(t, name, ref, ref_name);
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32 (folded parameters), got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.dim() == static_cast<int64_t>(shape.size()), name, " must have ", shape.size(), " dims, got shape ",
              shape_str(t));
  int64_t i = 0;
  for (int64_t s : shape) {
    TORCH_CHECK(s < 0 || t.size(i) == s, name, " has shape ", shape_str(t), ": dim ", i, " must be ", s);
    ++i;
  }
}

// A tower head's folded parameters: 1x1 conv (hidden, C) + bias, then 1x1 conv (2, hidden) + bias.
void check_head(const torch::Tensor& w1, const torch::Tensor& b1, const torch::Tensor& w2, const torch::Tensor& b2,
                int64_t C, const torch::Tensor& ref, const char* ref_name) {
  TORCH_CHECK(w1.dim() == 2, "w1 must have shape (hidden, C), got ", shape_str(w1));
  const int64_t Ch = w1.size(0);
  check_param(w1, "w1", {Ch, C}, ref, ref_name);
  check_param(b1, "b1", {Ch}, ref, ref_name);
  check_param(w2, "w2", {2, Ch}, ref, ref_name);
  check_param(b2, "b2", {2}, ref, ref_name);
}

// (B, C, H, W) with rows and channels packed: only the batch stride may differ, so that
// channel slices of a bigger stack (eyes = x[:, 0:3]) need no copy.
torch::Tensor packed_planes(const torch::Tensor& t) {
  const bool ok = t.stride(3) == 1 && t.stride(2) == t.size(3) && t.stride(1) == t.size(2) * t.size(3);
  return ok ? t : t.contiguous();
}

torch::Tensor conv_bias_relu(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                             const c10::optional<torch::Tensor>& extra, bool relu) {
  check_activation(x, "x", 4);
  TORCH_CHECK(weight.dim() == 4, "weight must have shape (Cout, Cin, k, k), got ", shape_str(weight));
  const int64_t Cout = weight.size(0), k = weight.size(2);
  TORCH_CHECK(weight.size(3) == k && k % 2 == 1, "weight must have a square, odd kernel (k, k) for 'same' padding, got ",
              shape_str(weight));
  check_param(weight, "weight", {Cout, x.size(1), k, k}, x, "x");
  check_param(bias, "bias", {Cout}, x, "x");
  TORCH_CHECK(x.numel() > 0, "x must not be empty, got shape ", shape_str(x));
  if (extra.has_value() && extra->defined()) {
    check_param(*extra, "extra", {x.size(0), Cout, x.size(2), x.size(3)}, x, "x");
  }
  const auto xc = x.contiguous();
#ifdef DEEPWARP_WITH_CUDA
  if (x.is_cuda()) return conv_bias_relu_cuda(xc, weight, bias, extra, relu);
#endif
  TORCH_CHECK(!x.is_cuda(), "x is a CUDA tensor but deepwarp_fast._C was built without CUDA kernels");
  return conv_bias_relu_cpu(xc, weight, bias, extra, relu);
}

torch::Tensor coarse_tail(const torch::Tensor& feat, const torch::Tensor& w1, const torch::Tensor& b1,
                          const torch::Tensor& w2, const torch::Tensor& b2, const torch::Tensor& eyes, double scale_x,
                          double scale_y) {
  check_activation(feat, "feat", 4);
  check_activation(eyes, "eyes", 4);
  check_device(eyes, "eyes", feat, "feat");
  TORCH_CHECK(eyes.scalar_type() == feat.scalar_type(), "eyes must have feat's dtype ", feat.scalar_type(), ", got ",
              eyes.scalar_type());
  TORCH_CHECK(eyes.size(0) == feat.size(0), "eyes must have feat's batch size ", feat.size(0), ", got ",
              shape_str(eyes));
  TORCH_CHECK(eyes.numel() > 0 && feat.numel() > 0, "feat and eyes must not be empty");
  const int64_t C = feat.size(1);
  check_head(w1, b1, w2, b2, C, feat, "feat");
#ifdef DEEPWARP_WITH_CUDA
  if (feat.is_cuda()) return coarse_tail_cuda(feat.contiguous(), w1, b1, w2, b2, eyes.contiguous(), scale_x, scale_y);
#endif
  TORCH_CHECK(!feat.is_cuda(), "feat is a CUDA tensor but deepwarp_fast._C was built without CUDA kernels");
  return coarse_tail_cpu(feat.contiguous(), w1, b1, w2, b2, eyes.contiguous(), scale_x, scale_y);
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor> fine_tail(
    const torch::Tensor& feat_f, const c10::optional<torch::Tensor>& feat_c_opt, const torch::Tensor& eyes, const torch::Tensor& up_c,
    const torch::Tensor& w1, const torch::Tensor& b1, const torch::Tensor& w2, const torch::Tensor& b2,
    const c10::optional<torch::Tensor>& lw1, const c10::optional<torch::Tensor>& lb1,
    const c10::optional<torch::Tensor>& lw2, const c10::optional<torch::Tensor>& lb2,
    const c10::optional<torch::Tensor>& lw3, const c10::optional<torch::Tensor>& lb3, double scale_x,
    double scale_y, bool intermediates) {
  const torch::Tensor feat_c = feat_c_opt.has_value() ? *feat_c_opt : torch::Tensor();
  check_activation(feat_f, "feat_f", 4);
  check_activation(eyes, "eyes", 4);
  check_activation(up_c, "up_c", 4);
  for (auto p : {std::make_pair(&eyes, "eyes"), std::make_pair(&up_c, "up_c")}) {
    check_device(*p.first, p.second, feat_f, "feat_f");
    TORCH_CHECK(p.first->scalar_type() == feat_f.scalar_type(), p.second, " must have feat_f's dtype ",
                feat_f.scalar_type(), ", got ", p.first->scalar_type());
  }
  const int64_t B = feat_f.size(0), H = feat_f.size(2), W = feat_f.size(3);
  TORCH_CHECK(feat_f.numel() > 0, "feat_f must not be empty");
  TORCH_CHECK(eyes.size(0) == B && eyes.size(2) == H && eyes.size(3) == W, "eyes must have shape (", B, ", C, ", H,
              ", ", W, ") to match feat_f, got ", shape_str(eyes));
  TORCH_CHECK(up_c.size(0) == B && up_c.size(1) == 2 && up_c.size(2) == H && up_c.size(3) == W,
              "up_c must have shape (", B, ", 2, ", H, ", ", W, "), got ", shape_str(up_c));
  const int64_t Cf = feat_f.size(1);
  check_head(w1, b1, w2, b2, Cf, feat_f, "feat_f");
  const bool use_lcm = lw1.has_value() && lw1->defined();
  if (use_lcm) {
    for (auto p : {std::make_pair(&lb1, "lcm_b1"), std::make_pair(&lw2, "lcm_w2"), std::make_pair(&lb2, "lcm_b2"),
                   std::make_pair(&lw3, "lcm_w3"), std::make_pair(&lb3, "lcm_b3")}) {
      TORCH_CHECK(p.first->has_value() && (*p.first)->defined(), p.second,
                  " must be given when lcm_w1 is (all LCM parameters or none)");
    }
    TORCH_CHECK(feat_c.defined(), "feat_c must be given when the LCM is on");
    check_activation(feat_c, "feat_c", 4);
    check_device(feat_c, "feat_c", feat_f, "feat_f");
    TORCH_CHECK(feat_c.scalar_type() == feat_f.scalar_type(), "feat_c must have feat_f's dtype");
    TORCH_CHECK(feat_c.size(0) == B && feat_c.numel() > 0, "feat_c must have feat_f's batch size ", B, ", got ",
                shape_str(feat_c));
    TORCH_CHECK(lw1->dim() == 2 && lw2->dim() == 2, "lcm_w1 and lcm_w2 must be 2-d (out, in)");
    const int64_t L1 = lw1->size(0), L2 = lw2->size(0);
    check_param(*lw1, "lcm_w1", {L1, feat_c.size(1) + Cf}, feat_f, "feat_f");
    check_param(*lb1, "lcm_b1", {L1}, feat_f, "feat_f");
    check_param(*lw2, "lcm_w2", {L2, L1}, feat_f, "feat_f");
    check_param(*lb2, "lcm_b2", {L2}, feat_f, "feat_f");
    check_param(*lw3, "lcm_w3", {2, L2}, feat_f, "feat_f");
    check_param(*lb3, "lcm_b3", {2}, feat_f, "feat_f");
  }
  const auto fc = use_lcm ? feat_c.contiguous() : feat_c;
#ifdef DEEPWARP_WITH_CUDA
  if (feat_f.is_cuda())
    return fine_tail_cuda(feat_f.contiguous(), fc, packed_planes(eyes), packed_planes(up_c), w1, b1, w2, b2, lw1, lb1,
                          lw2, lb2, lw3, lb3, scale_x, scale_y, intermediates);
#endif
  TORCH_CHECK(!feat_f.is_cuda(), "feat_f is a CUDA tensor but deepwarp_fast._C was built without CUDA kernels");
  return fine_tail_cpu(feat_f.contiguous(), fc, packed_planes(eyes), packed_planes(up_c), w1, b1, w2, b2, lw1, lb1,
                       lw2, lb2, lw3, lb3, scale_x, scale_y, intermediates);
}

// (B, D + 2K) float32: [relu(fc2(relu(fc1(angles)))), anchors' x, anchors' y] (the
// accelerated model's _vec) in plain loops: a few hundred multiply-adds per eye, which as
// PyTorch ops cost ~30-70 us of dispatch per call.
torch::Tensor angle_vec(const torch::Tensor& anchors, const torch::Tensor& angles, const std::vector<torch::Tensor>& emb) {
  TORCH_CHECK(emb.size() == 4, "emb must hold (fc1 weight, fc1 bias, fc2 weight, fc2 bias)");
  TORCH_CHECK(angles.dim() == 2 && angles.size(1) == 2 && angles.scalar_type() == at::kFloat && angles.device().is_cpu(),
              "angles must be a float32 CPU (B, 2) tensor, got ", shape_str(angles));
  const int64_t B = angles.size(0);
  TORCH_CHECK(anchors.dim() == 3 && anchors.size(0) == B && anchors.size(2) == 2 && anchors.scalar_type() == at::kFloat &&
                  anchors.device().is_cpu(),
              "anchors must be a float32 CPU (B, K, 2) tensor with angles' batch size, got ", shape_str(anchors));
  const int64_t Hd = emb[0].size(0), D = emb[2].size(0), K = anchors.size(1);
  check_param(emb[0], "fc1 weight", {Hd, 2}, angles, "angles");
  check_param(emb[1], "fc1 bias", {Hd}, angles, "angles");
  check_param(emb[2], "fc2 weight", {D, Hd}, angles, "angles");
  check_param(emb[3], "fc2 bias", {D}, angles, "angles");
  const auto an = anchors.contiguous(), ag = angles.contiguous();
  torch::Tensor vec = at::empty({B, D + 2 * K}, angles.options());
  const float *w1 = emb[0].data_ptr<float>(), *b1 = emb[1].data_ptr<float>(), *w2 = emb[2].data_ptr<float>(),
              *b2 = emb[3].data_ptr<float>(), *pa = an.data_ptr<float>(), *pg = ag.data_ptr<float>();
  float* v = vec.data_ptr<float>();
  std::vector<float> hid(Hd);
  for (int64_t b = 0; b < B; ++b, v += D + 2 * K) {
    for (int64_t j = 0; j < Hd; ++j) {
      const float h = b1[j] + w1[2 * j] * pg[2 * b] + w1[2 * j + 1] * pg[2 * b + 1];
      hid[j] = h > 0.0f ? h : 0.0f;
    }
    for (int64_t d = 0; d < D; ++d) {
      float o = b2[d];
      for (int64_t j = 0; j < Hd; ++j) o += w2[d * Hd + j] * hid[j];
      v[d] = o > 0.0f ? o : 0.0f;
    }
    for (int64_t k = 0; k < K; ++k) {
      v[D + k] = pa[(b * K + k) * 2];
      v[D + K + k] = pa[(b * K + k) * 2 + 1];
    }
  }
  return vec;
}

// The whole accelerated forward on the CPU, in chunks of at most ``chunk`` eyes (the
// 20x25 and 41x51 maps of 16-32 channels stay in the caches), with no Python between the
// layers and the GIL released. anchors (B, K, 2), angles (B, 2) and emb (the angle
// embedding's fc1 weight, bias, fc2 weight, bias) make vec (B, D + 2K), what the first
// layers' map terms multiply (angle_vec, as accelerate.py's _vec); cw/fw: the towers' k x k weights, channels-last (NHWC: oneDNN's
// direct kernels, no reorder per call); M/PT/inbT: each tower's first-layer map term
// P + (vec M) inb with P and inb transposed, (hw, Cout) and (hw, taps), so that it comes out
// channels-last like the convolution it is added to; lcm: 6 tensors or none.
// eye_threads > 1: the chunks (then at most ceil(B / eye_threads) eyes each) run side by side,
// one per thread, every op inside on its own thread (two whole eyes scale across cores where
// one 41x51 convolution split over them does not); 1: one chunk after the other, each op
// splitting over the intra-op threads.
std::vector<torch::Tensor> forward_cpu(const torch::Tensor& eyes, const torch::Tensor& anchors, const torch::Tensor& angles,
                          const std::vector<torch::Tensor>& emb, const std::vector<torch::Tensor>& cw,
                          const std::vector<torch::Tensor>& cwt,
                          const std::vector<torch::Tensor>& cb, const torch::Tensor& cM, const torch::Tensor& cPT,
                          const torch::Tensor& cinbT, const std::vector<torch::Tensor>& head_c,
                          const std::vector<torch::Tensor>& fw, const std::vector<torch::Tensor>& fwt,
                          const std::vector<torch::Tensor>& fb,
                          const torch::Tensor& fM, const torch::Tensor& fPT, const torch::Tensor& finbT,
                          const std::vector<torch::Tensor>& head_f, const std::vector<torch::Tensor>& lcm,
                          double scale_x, double scale_y, int64_t chunk, int64_t eye_threads, bool fields,
                          bool direct_conv) {
  check_activation(eyes, "eyes", 4);
  TORCH_CHECK(eyes.device().is_cpu(), "forward_cpu runs on CPU tensors, got ", eyes.device());
  const auto vec = angle_vec(anchors, angles, emb);
  TORCH_CHECK(vec.size(0) == eyes.size(0), "anchors and angles must have eyes' batch size ", eyes.size(0), ", got ",
              vec.size(0));
  TORCH_CHECK(!cw.empty() && cw.size() == cb.size() && !fw.empty() && fw.size() == fb.size(),
              "each tower needs as many weights as biases, at least one");
  TORCH_CHECK(cwt.size() == cw.size() && fwt.size() == fw.size(), "coarse_wt and fine_wt must hold every layer's weight");
  for (const auto* ws : {&cw, &fw})
    for (size_t i = 0; i < ws->size(); ++i) {
      const auto& wt = (ws == &cw ? cwt : fwt)[i];
      const auto& w = (*ws)[i];
      TORCH_CHECK(wt.is_contiguous() && wt.dim() == 4 && wt.size(0) == w.size(1) && wt.size(1) == w.size(2) &&
                      wt.size(2) == w.size(3) && wt.size(3) == w.size(0),
                  "the *_wt weights must be the k x k weights as contiguous (Cin, k, k, Cout), got ", shape_str(wt));
    }
  TORCH_CHECK(head_c.size() == 4 && head_f.size() == 4, "head_c and head_f must hold (w1, b1, w2, b2)");
  TORCH_CHECK(lcm.empty() || lcm.size() == 6, "lcm must hold 6 tensors or none");
  TORCH_CHECK(chunk >= 1, "chunk must be >= 1");
  TORCH_CHECK(eye_threads >= 1, "eye_threads must be >= 1");
  const int64_t B = eyes.size(0), C = eyes.size(1), H = eyes.size(2), W = eyes.size(3);
  for (auto t : {std::make_tuple(&cPT, &cinbT, H / 2, W / 2, "coarse"), std::make_tuple(&fPT, &finbT, H, W, "fine")}) {
    const auto& PT = *std::get<0>(t);
    const auto& inbT = *std::get<1>(t);
    TORCH_CHECK(PT.dim() == 2 && PT.size(0) == std::get<2>(t) * std::get<3>(t) && inbT.dim() == 2 &&
                    inbT.size(0) == PT.size(0),
                std::get<4>(t), " map term: PT must be (h*w, Cout) and inbT (h*w, taps), got ", shape_str(PT), " and ",
                shape_str(inbT));
  }
  const auto e_all = eyes.contiguous();
  const auto v_all = vec.contiguous();
  auto opt = [&](size_t i) { return lcm.empty() ? c10::optional<torch::Tensor>() : c10::optional<torch::Tensor>(lcm[i]); };
  // P + A[b] inb, channels-last: (n, hw, Cout) = PT + inbT (hw, taps) . A[b]^T (taps, Cout).
  auto map_term = [](const torch::Tensor& v, const torch::Tensor& M, const torch::Tensor& PT, const torch::Tensor& inbT,
                     int64_t hh, int64_t ww) {
    const int64_t n = v.size(0), Cout = PT.size(1), taps = inbT.size(1);
    const auto A = at::mm(v, M).view({n, Cout, taps}).transpose(1, 2);
    return at::baddbmm(PT.unsqueeze(0), inbT.unsqueeze(0).expand({n, hh * ww, taps}), A)
        .view({n, hh, ww, Cout})
        .permute({0, 3, 1, 2});
  };
  const auto CL = at::MemoryFormat::ChannelsLast;
  std::vector<torch::Tensor> cw_cl, fw_cl;  // no copies when the caller passes them channels-last
  for (const auto& w : cw) cw_cl.push_back(w.contiguous(CL));
  for (const auto& w : fw) fw_cl.push_back(w.contiguous(CL));
  auto conv = [&](const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& wt, const torch::Tensor& b,
                  const c10::optional<torch::Tensor>& extra) {
    // The extension's own loops where they beat oneDNN: one eye (a chunk of one, as B=2 on 2
    // threads runs), layers under ~15M multiply-adds per eye (2-core Xeon, 2026-12-05, one
    // eye: 42 vs 71 us on the coarse 16->32 layer, 79 vs 96 on the coarse 32->32, 113 vs 123
    // on the fine 8->16 5x5, 137 vs 150 on the fine 16->32; oneDNN wins on the fine 32->32,
    // 255 vs 265-275 us, and on chunks of 16 eyes, where the whole forward took 19.1 ms
    // with these loops and 17.3 with oneDNN).
    const int64_t macs = x.size(1) * w.size(0) * w.size(2) * w.size(3) * x.size(2) * x.size(3);
    if (direct_conv && x.size(0) == 1 && direct_conv_supported(wt) && macs < 15000000)
      return direct_conv_relu_cpu(x, wt, b, extra);
    auto y = conv2d_same_cpu(x, w, b);
    if (extra.has_value()) y.add_(*extra);
    return y.relu_();
  };
  // output: [images]; fields: [flow (B, 2, H, W) pixels, mask (B, 1, H, W), empty without the LCM]
  torch::Tensor out = fields ? at::empty({B, 2, H, W}, e_all.options()) : at::empty_like(e_all);
  torch::Tensor mask = fields && !lcm.empty() ? at::empty({B, 1, H, W}, e_all.options()) : at::empty({0}, e_all.options());
  auto run = [&](int64_t b0, int64_t b1) {
    const auto e = e_all.slice(0, b0, b1), v = v_all.slice(0, b0, b1);
    auto x = conv(avg_pool2_cl_cpu(e), cw_cl[0], cwt[0], cb[0], map_term(v, cM, cPT, cinbT, H / 2, W / 2));
    for (size_t i = 1; i < cw.size(); ++i) x = conv(x, cw_cl[i], cwt[i], cb[i], c10::nullopt);
    // The tails read the features only through their 1x1 layers' GEMMs, which take the
    // channels-last maps as they are (a transposed operand): no layout copy.
    const auto feat_c = x;
    const auto x_fine = coarse_tail_cpu(feat_c, head_c[0], head_c[1], head_c[2], head_c[3], e, scale_x, scale_y);
    x = conv(x_fine.contiguous(CL), fw_cl[0], fwt[0], fb[0], map_term(v, fM, fPT, finbT, H, W));
    for (size_t i = 1; i < fw.size(); ++i) x = conv(x, fw_cl[i], fwt[i], fb[i], c10::nullopt);
    auto res = fine_tail_cpu(x, lcm.empty() ? torch::Tensor() : feat_c, x_fine.slice(1, 0, C),
                             x_fine.slice(1, 2 * C, 2 * C + 2), head_f[0], head_f[1], head_f[2], head_f[3], opt(0), opt(1),
                             opt(2), opt(3), opt(4), opt(5), scale_x, scale_y, fields);
    if (!fields) {
      out.slice(0, b0, b1).copy_(std::get<0>(res));
      return;
    }
    out.slice(0, b0, b1).copy_(std::get<2>(res));
    if (!lcm.empty()) mask.slice(0, b0, b1).copy_(std::get<3>(res));
  };
  const int64_t side = std::min<int64_t>({eye_threads, static_cast<int64_t>(at::get_num_threads()), B});
  if (side <= 1) {
    for (int64_t b0 = 0; b0 < B; b0 += chunk) run(b0, std::min(b0 + chunk, B));
  } else {
    // ``side`` threads, each a contiguous run of chunks of ``size`` eyes; every op inside
    // runs on its caller's thread (ATen and oneDNN do not nest parallel regions). The
    // workers take the caller's thread-local state (inference mode, grad mode).
    const int64_t size = std::min<int64_t>(chunk, (B + side - 1) / side);
    const int64_t n_chunks = (B + size - 1) / size;
    const at::ThreadLocalState state;
    at::parallel_for(0, n_chunks, 1, [&](int64_t begin, int64_t end) {
      at::ThreadLocalStateGuard guard(state);
      for (int64_t c = begin; c < end; ++c) run(c * size, std::min((c + 1) * size, B));
    });
  }
  if (fields) return {out, mask};
  return {out};
}

torch::Tensor warp_frame(const torch::Tensor& frames, const torch::Tensor& params, const torch::Tensor& boxes,
                         const torch::Tensor& flow, const c10::optional<torch::Tensor>& mask_opt,
                         const torch::Tensor& feather, int64_t kernel, int64_t channels, int64_t largest,
                         const c10::optional<torch::Tensor>& out_opt) {
  TORCH_CHECK(frames.defined() && frames.dim() == 4, "frames must have shape (N, H, W, C), got ",
              frames.defined() ? shape_str(frames) : std::string("None"));
  const auto dt = frames.scalar_type();
  TORCH_CHECK(dt == at::kByte || dt == at::kUInt16 || dt == at::kFloat, "frames must be uint8, uint16 or float32, got ", dt);
  TORCH_CHECK(frames.size(3) == 1 || frames.stride(3) == 1, "frames must have contiguous channels (stride 1 in the last dim)");
  TORCH_CHECK(frames.numel() > 0, "frames must not be empty, got shape ", shape_str(frames));
  TORCH_CHECK(kernel >= 0 && kernel <= 2, "kernel must be 0 (bilinear), 1 (bicubic) or 2 (lanczos4), got ", kernel);
  TORCH_CHECK(channels >= 1 && channels <= std::min<int64_t>(frames.size(3), 4), "channels must be in [1, min(C, 4)] = [1, ",
              std::min<int64_t>(frames.size(3), 4), "], got ", channels);
  TORCH_CHECK(flow.dim() == 4 && flow.size(1) == 2, "flow must have shape (E, 2, h, w), got ", shape_str(flow));
  const int64_t E = flow.size(0), h = flow.size(2), w = flow.size(3);
  check_param(flow, "flow", {E, 2, h, w}, frames, "frames");
  check_param(params, "params", {E, 10}, frames, "frames");
  TORCH_CHECK(boxes.defined() && boxes.scalar_type() == at::kInt && boxes.is_contiguous() && boxes.dim() == 2 &&
                  boxes.size(0) == E && boxes.size(1) == 5,
              "boxes must be a contiguous int32 (E, 5) tensor, got ", boxes.defined() ? shape_str(boxes) : std::string("None"));
  check_device(boxes, "boxes", frames, "frames");
  TORCH_CHECK(feather.dim() == 3 && (feather.size(0) == 1 || feather.size(0) == E), "feather must have shape (1 or E, h, w), got ",
              shape_str(feather));
  check_param(feather, "feather", {-1, h, w}, frames, "frames");
  c10::optional<torch::Tensor> mask;
  if (mask_opt.has_value() && mask_opt->defined()) {
    check_param(*mask_opt, "mask", {E, 1, h, w}, frames, "frames");
    mask = *mask_opt;
  }
  torch::Tensor out;
  if (out_opt.has_value() && out_opt->defined()) {
    out = *out_opt;
    check_device(out, "out", frames, "frames");
    bool same = out.scalar_type() == frames.scalar_type() && out.sizes() == frames.sizes();
    for (int64_t i = 0; same && i < frames.dim(); ++i) same = frames.size(i) == 1 || out.stride(i) == frames.stride(i);
    TORCH_CHECK(same, "out must have frames' dtype, shape and strides, got ", shape_str(out));
    TORCH_CHECK(out.data_ptr() != frames.data_ptr(), "out must not be frames itself (every eye reads the input)");
  } else {
    out = frames.clone();
  }
#ifdef DEEPWARP_WITH_CUDA
  if (frames.is_cuda()) return warp_frame_cuda(frames, params, boxes, flow, mask, feather, kernel, channels, largest, out);
#endif
  TORCH_CHECK(!frames.is_cuda(), "frames is a CUDA tensor but deepwarp_fast._C was built without CUDA kernels");
  TORCH_CHECK(frames.device().is_cpu(), "frames must be a CPU or CUDA tensor, got device ", frames.device());
  return warp_frame_cpu(frames, params, boxes, flow, mask, feather, kernel, channels, out);
}

bool has_cuda() {
#ifdef DEEPWARP_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace
}  // namespace deepwarp

// The compute ops release the GIL (their arguments are converted before, their results
// after): Python threads run them side by side (accelerate()'s one-eye-per-core split on a
// CPU, and the video pipeline's decode and encode threads during the frame warp).
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "deepwarp_fast fused inference ops (conv + folded BN + ReLU, tower heads + warp, LCM)";
  m.def("has_cuda", &deepwarp::has_cuda, "True when the CUDA kernels were compiled in");
  m.def("conv_bias_relu", &deepwarp::conv_bias_relu, "'same' conv (stride 1) + bias (+ extra) (+ ReLU)",
        py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("extra") = py::none(), py::arg("relu") = true, py::call_guard<py::gil_scoped_release>());
  m.def("coarse_tail", &deepwarp::coarse_tail,
        "coarse head (1x1-ReLU-1x1-tanh), nearest upsample, warp: returns cat(eyes, coarse, up_c)", py::arg("feat"),
        py::arg("w1"), py::arg("b1"), py::arg("w2"), py::arg("b2"), py::arg("eyes"), py::arg("scale_x"),
        py::arg("scale_y"), py::call_guard<py::gil_scoped_release>());
  m.def("warp_frame", &deepwarp::warp_frame,
        "the network's fields applied to whole frames (see warp_frame.h): returns new frames", py::arg("frames"),
        py::arg("params"), py::arg("boxes"), py::arg("flow"), py::arg("mask"), py::arg("feather"), py::arg("kernel"),
        py::arg("channels"), py::arg("largest"), py::arg("out") = py::none(), py::call_guard<py::gil_scoped_release>());
  m.def("fine_tail", &deepwarp::fine_tail,
        "fine head + flow + warp + LCM + blend: returns (output, fine, flow, mask)", py::arg("feat_f"),
        py::arg("feat_c"), py::arg("eyes"), py::arg("up_c"), py::arg("w1"), py::arg("b1"), py::arg("w2"),
        py::arg("b2"), py::arg("lcm_w1") = py::none(), py::arg("lcm_b1") = py::none(), py::arg("lcm_w2") = py::none(),
        py::arg("lcm_b2") = py::none(), py::arg("lcm_w3") = py::none(), py::arg("lcm_b3") = py::none(),
        py::arg("scale_x") = 1.0, py::arg("scale_y") = 1.0, py::arg("intermediates") = false,
        py::call_guard<py::gil_scoped_release>());
  m.def("forward_cpu", &deepwarp::forward_cpu,
        "the whole accelerated forward on the CPU: [output] or, with fields, [flow, mask]; chunk by chunk, "
        "side by side on eye_threads threads, GIL released",
        py::arg("eyes"), py::arg("anchors"), py::arg("angles"), py::arg("emb"), py::arg("coarse_w"), py::arg("coarse_wt"), py::arg("coarse_b"), py::arg("coarse_M"),
        py::arg("coarse_PT"), py::arg("coarse_inbT"), py::arg("head_c"), py::arg("fine_w"), py::arg("fine_wt"), py::arg("fine_b"),
        py::arg("fine_M"), py::arg("fine_PT"), py::arg("fine_inbT"), py::arg("head_f"), py::arg("lcm"),
        py::arg("scale_x"), py::arg("scale_y"), py::arg("chunk"), py::arg("eye_threads") = 1, py::arg("fields") = false, py::arg("direct_conv") = true,
        py::call_guard<py::gil_scoped_release>());
}
