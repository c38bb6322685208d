// CUDA implementations of the fused ops. Activations are float32, float16 or bfloat16
// (NCHW); weights stay float32 and every sum accumulates in float32.
//
// conv_bias_relu: a direct convolution, one thread per output pixel and CO_TILE output
//   channels per block; the block's weights sit in shared memory as [ci][tap][co], so a
//   tap's CO_TILE weights are four float4 broadcast reads. At these channel counts
//   (<= 38 in, <= 32 out, 41x51 pixels) the layers are launch- and latency-bound, where a
//   direct kernel with the epilogue (bias, extra term, ReLU) fused beats an im2col GEMM.
// coarse_tail / fine_tail: one thread per full-resolution pixel runs the whole per-pixel
//   chain (1x1 layers, tanh, flow, bilinear warp, LCM, softmax, blend) with its vectors
//   in shared memory, stored [channel][thread] so that the threads hit distinct banks.
#include "deepwarp.h"

#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

namespace deepwarp {
namespace {

#define DW_DISPATCH(TYPE, NAME, ...)                        \
  AT_DISPATCH_SWITCH(TYPE, NAME,                           \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)  \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

constexpr int CO_TILE = 16;          // output channels per conv block (4 float4 weight reads per tap)
constexpr int CONV_THREADS = 128;    // output pixels per conv block
constexpr int CONV_SMEM_FLOATS = 8192;  // 32 KB of weights per input-channel chunk
constexpr int TAIL_THREADS = 64;
constexpr size_t SMEM_LIMIT = 48 * 1024;

template <typename T>
__device__ __forceinline__ float ld(const T* p) {
  return static_cast<float>(*p);
}

// x: (B, Cin, H, W), w: (Cout, Cin, K, K), bias: (Cout), extra: (B, Cout, H, W) or null,
// out: (B, Cout, H, W). grid = (ceil(H*W / CONV_THREADS), ceil(Cout / CO_TILE), B).
template <typename scalar_t>
__global__ void __launch_bounds__(CONV_THREADS) _conv_bias_relu_fwd_kernel(
    const scalar_t* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
    const float* __restrict__ extra, scalar_t* __restrict__ out, int Cin, int H, int W, int Cout, int K,
    int cin_chunk, bool relu) {
  extern __shared__ float4 conv_smem4[];
  float* sw = reinterpret_cast<float*>(conv_smem4);
  const int HW = H * W;
  const int pix = blockIdx.x * blockDim.x + threadIdx.x;
  const int co0 = blockIdx.y * CO_TILE;
  const int b = blockIdx.z;
  const bool valid = pix < HW;
  const int y = valid ? pix / W : 0, xo = valid ? pix % W : 0;
  const int KK = K * K, P = K / 2;
  float acc[CO_TILE];
#pragma unroll
  for (int q = 0; q < CO_TILE; ++q) acc[q] = 0.0f;
  const scalar_t* xb = x + static_cast<int64_t>(b) * Cin * HW;
  for (int ci0 = 0; ci0 < Cin; ci0 += cin_chunk) {
    const int n = min(cin_chunk, Cin - ci0);
    __syncthreads();
    for (int i = threadIdx.x; i < n * KK * CO_TILE; i += blockDim.x) {
      const int co = i % CO_TILE, rest = i / CO_TILE;
      const int t = rest % KK, ci = rest / KK;
      sw[i] = (co0 + co < Cout) ? w[(static_cast<int64_t>(co0 + co) * Cin + ci0 + ci) * KK + t] : 0.0f;
    }
    __syncthreads();
    if (valid) {
      for (int ci = 0; ci < n; ++ci) {
        const scalar_t* xc = xb + static_cast<int64_t>(ci0 + ci) * HW;
        for (int ky = 0; ky < K; ++ky) {
          const int iy = y + ky - P;
          if (iy < 0 || iy >= H) continue;
          for (int kx = 0; kx < K; ++kx) {
            const int ix = xo + kx - P;
            if (ix < 0 || ix >= W) continue;
            const float v = ld(xc + iy * W + ix);
            const float4* wv = reinterpret_cast<const float4*>(sw + (ci * KK + ky * K + kx) * CO_TILE);
#pragma unroll
            for (int q = 0; q < CO_TILE / 4; ++q) {
              const float4 ww = wv[q];
              acc[4 * q + 0] += v * ww.x;
              acc[4 * q + 1] += v * ww.y;
              acc[4 * q + 2] += v * ww.z;
              acc[4 * q + 3] += v * ww.w;
            }
          }
        }
      }
    }
  }
  if (!valid) return;
#pragma unroll
  for (int q = 0; q < CO_TILE; ++q) {
    const int co = co0 + q;
    if (co < Cout) {
      const int64_t o = (static_cast<int64_t>(b) * Cout + co) * HW + pix;
      float r = acc[q] + bias[co];
      if (extra != nullptr) r += extra[o];
      if (relu) r = fmaxf(r, 0.0f);
      out[o] = static_cast<scalar_t>(r);
    }
  }
}

__device__ __forceinline__ void copy_to_smem(float* dst, const float* __restrict__ src, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

// feat: (B, C, h, w); eyes: (B, Ci, H, W); out: (B, 2Ci + 2, H, W) = cat(eyes, coarse, up_c).
// One thread per full-resolution pixel; grid = ceil(B*H*W / TAIL_THREADS).
template <typename scalar_t>
__global__ void __launch_bounds__(TAIL_THREADS) _coarse_tail_fwd_kernel(
    const scalar_t* __restrict__ feat, const float* __restrict__ w1, const float* __restrict__ b1,
    const float* __restrict__ w2, const float* __restrict__ b2, const scalar_t* __restrict__ eyes,
    scalar_t* __restrict__ out, int B, int C, int h, int w, int Ch, int Ci, int H, int W, float sx, float sy) {
  extern __shared__ float4 tail_smem4[];
  float* sw1 = reinterpret_cast<float*>(tail_smem4);
  float* sb1 = sw1 + Ch * C;
  float* sw2 = sb1 + Ch;
  float* sb2 = sw2 + 2 * Ch;
  float* scratch = sb2 + 2;
  copy_to_smem(sw1, w1, Ch * C);
  copy_to_smem(sb1, b1, Ch);
  copy_to_smem(sw2, w2, 2 * Ch);
  copy_to_smem(sb2, b2, 2);
  __syncthreads();
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int HW = H * W;
  if (idx >= static_cast<int64_t>(B) * HW) return;
  const int x = idx % W, y = (idx / W) % H, b = idx / HW;
  const int yl = nearest_src_index(y, h, H), xl = nearest_src_index(x, w, W);
  const int T = blockDim.x;
  float* in = scratch + threadIdx.x;
  const scalar_t* fp = feat + (static_cast<int64_t>(b) * C * h + yl) * w + xl;
  for (int i = 0; i < C; ++i) in[i * T] = ld(fp + static_cast<int64_t>(i) * h * w);
  float f0 = sb2[0], f1 = sb2[1];
  for (int j = 0; j < Ch; ++j) {
    float a = sb1[j];
    for (int i = 0; i < C; ++i) a += sw1[j * C + i] * in[i * T];
    a = fmaxf(a, 0.0f);
    f0 += sw2[j] * a;
    f1 += sw2[Ch + j] * a;
  }
  const float u0 = tanhf(f0), u1 = tanhf(f1);
  const BilinearTaps t = bilinear_taps(x, y, u0 * sx, u1 * sy, H, W);
  const int Co = 2 * Ci + 2;
  const scalar_t* img = eyes + static_cast<int64_t>(b) * Ci * HW;
  scalar_t* ob = out + static_cast<int64_t>(b) * Co * HW + y * W + x;
  for (int c = 0; c < Ci; ++c) {
    const scalar_t* p = img + c * HW;
    ob[c * HW] = p[y * W + x];
    ob[(Ci + c) * HW] = static_cast<scalar_t>(bilinear_mix(t, ld(p + t.i00), ld(p + t.i01), ld(p + t.i10), ld(p + t.i11)));
  }
  ob[2 * Ci * HW] = static_cast<scalar_t>(u0);
  ob[(2 * Ci + 1) * HW] = static_cast<scalar_t>(u1);
}

struct FineTailWeights {
  const float *w1, *b1, *w2, *b2;                // head: (Ch, Cf), (Ch), (2, Ch), (2)
  const float *lw1, *lb1, *lw2, *lb2, *lw3, *lb3;  // LCM: (L1, Cc+Cf), (L1), (L2, L1), (L2), (2, L2), (2); null without
  int Cf, Ch, Cc, L1, L2;
};

// feat_f: (B, Cf, H, W); feat_c: (B, Cc, h, w); eyes: (B, Ci, H, W) and up_c: (B, 2, H, W)
// with batch strides eyes_sb / up_sb. out, fine: (B, Ci, H, W); flow: (B, 2, H, W);
// mask: (B, 1, H, W) (fine, flow, mask null unless asked for).
template <typename scalar_t>
__global__ void __launch_bounds__(TAIL_THREADS) _fine_tail_fwd_kernel(
    const scalar_t* __restrict__ feat_f, const scalar_t* __restrict__ feat_c, const scalar_t* __restrict__ eyes,
    const scalar_t* __restrict__ up_c, int64_t eyes_sb, int64_t up_sb, FineTailWeights p, scalar_t* __restrict__ out,
    scalar_t* __restrict__ fine, scalar_t* __restrict__ flow, scalar_t* __restrict__ mask, int B, int Ci, int h,
    int w, int H, int W, float sx, float sy) {
  extern __shared__ float4 tail_smem4[];
  const int Cf = p.Cf, Ch = p.Ch, Cc = p.Cc, L1 = p.L1, L2 = p.L2, Cl = Cc + Cf;
  float* s = reinterpret_cast<float*>(tail_smem4);
  float* sw1 = s;
  float* sb1 = sw1 + Ch * Cf;
  float* sw2 = sb1 + Ch;
  float* sb2 = sw2 + 2 * Ch;
  float* slw1 = sb2 + 2;
  float* slb1 = slw1 + L1 * Cl;
  float* slw2 = slb1 + L1;
  float* slb2 = slw2 + L2 * L1;
  float* slw3 = slb2 + L2;
  float* slb3 = slw3 + 2 * L2;
  float* scratch = slb3 + 2;
  copy_to_smem(sw1, p.w1, Ch * Cf);
  copy_to_smem(sb1, p.b1, Ch);
  copy_to_smem(sw2, p.w2, 2 * Ch);
  copy_to_smem(sb2, p.b2, 2);
  if (L1 > 0) {
    copy_to_smem(slw1, p.lw1, L1 * Cl);
    copy_to_smem(slb1, p.lb1, L1);
    copy_to_smem(slw2, p.lw2, L2 * L1);
    copy_to_smem(slb2, p.lb2, L2);
    copy_to_smem(slw3, p.lw3, 2 * L2);
    copy_to_smem(slb3, p.lb3, 2);
  }
  __syncthreads();
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int HW = H * W;
  if (idx >= static_cast<int64_t>(B) * HW) return;
  const int x = idx % W, y = (idx / W) % H, b = idx / HW;
  const int pix = y * W + x;
  const int T = blockDim.x;
  // Scratch, [channel][thread]: LCM input cat(feat_c up, feat_f) (Cl), then LCM hidden (L1).
  float* lin = scratch + threadIdx.x;
  float* fin = lin + Cc * T;
  float* hid = lin + Cl * T;
  const scalar_t* ff = feat_f + static_cast<int64_t>(b) * Cf * HW + pix;
  for (int i = 0; i < Cf; ++i) fin[i * T] = ld(ff + static_cast<int64_t>(i) * HW);
  float r0 = sb2[0], r1 = sb2[1];
  for (int j = 0; j < Ch; ++j) {
    float a = sb1[j];
    for (int i = 0; i < Cf; ++i) a += sw1[j * Cf + i] * fin[i * T];
    a = fmaxf(a, 0.0f);
    r0 += sw2[j] * a;
    r1 += sw2[Ch + j] * a;
  }
  r0 = tanhf(r0);
  r1 = tanhf(r1);
  const scalar_t* u = up_c + b * up_sb + pix;
  const float dx = (ld(u) + r0) * sx, dy = (ld(u + HW) + r1) * sy;
  if (flow != nullptr) {
    flow[(static_cast<int64_t>(b) * 2) * HW + pix] = static_cast<scalar_t>(dx);
    flow[(static_cast<int64_t>(b) * 2 + 1) * HW + pix] = static_cast<scalar_t>(dy);
  }
  const BilinearTaps t = bilinear_taps(x, y, dx, dy, H, W);
  float p0 = 1.0f, p1 = 0.0f;
  if (L1 > 0) {
    const int yl = nearest_src_index(y, h, H), xl = nearest_src_index(x, w, W);
    const scalar_t* fc = feat_c + (static_cast<int64_t>(b) * Cc * h + yl) * w + xl;
    for (int i = 0; i < Cc; ++i) lin[i * T] = ld(fc + static_cast<int64_t>(i) * h * w);
    for (int j = 0; j < L1; ++j) {
      float a = slb1[j];
      for (int i = 0; i < Cl; ++i) a += slw1[j * Cl + i] * lin[i * T];
      hid[j * T] = fmaxf(a, 0.0f);
    }
    float l0 = slb3[0], l1 = slb3[1];
    for (int k = 0; k < L2; ++k) {
      float a = slb2[k];
      for (int j = 0; j < L1; ++j) a += slw2[k * L1 + j] * hid[j * T];
      a = fmaxf(a, 0.0f);
      l0 += slw3[k] * a;
      l1 += slw3[L2 + k] * a;
    }
    palette_weights(l0, l1, p0, p1);
    if (mask != nullptr) mask[static_cast<int64_t>(b) * HW + pix] = static_cast<scalar_t>(1.0f / (1.0f + expf(l0 - l1)));
  }
  const scalar_t* img = eyes + b * eyes_sb;
  for (int c = 0; c < Ci; ++c) {
    const scalar_t* q = img + c * HW;
    const float v = bilinear_mix(t, ld(q + t.i00), ld(q + t.i01), ld(q + t.i10), ld(q + t.i11));
    const int64_t o = (static_cast<int64_t>(b) * Ci + c) * HW + pix;
    if (fine != nullptr) fine[o] = static_cast<scalar_t>(v);
    out[o] = static_cast<scalar_t>(L1 > 0 ? v * p0 + p1 : v);
  }
}

template <typename scalar_t>
scalar_t* ptr_or_null(const at::Tensor& t) {
  return t.numel() > 0 ? t.data_ptr<scalar_t>() : nullptr;
}

}  // namespace

at::Tensor conv_bias_relu_cuda(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                  const c10::optional<at::Tensor>& extra, bool relu) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int B = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3);
  const int Cout = weight.size(0), K = weight.size(2);
  at::Tensor out = at::empty({B, Cout, H, W}, x.options());
  const int cin_chunk = std::max(1, std::min(Cin, CONV_SMEM_FLOATS / (CO_TILE * K * K)));
  const size_t smem = static_cast<size_t>(cin_chunk) * K * K * CO_TILE * sizeof(float);
  TORCH_CHECK(B <= 65535, "x has batch ", B, "; conv_bias_relu launches at most 65535 images at once");
  const dim3 grid((H * W + CONV_THREADS - 1) / CONV_THREADS, (Cout + CO_TILE - 1) / CO_TILE, B);
  const float* e = (extra.has_value() && extra->defined()) ? extra->data_ptr<float>() : nullptr;
  auto stream = c10::cuda::getCurrentCUDAStream();
  DW_DISPATCH(x.scalar_type(), "conv_bias_relu_cuda", [&] {
    _conv_bias_relu_fwd_kernel<scalar_t><<<grid, CONV_THREADS, smem, stream>>>(
        x.data_ptr<scalar_t>(), weight.data_ptr<float>(), bias.data_ptr<float>(), e, out.data_ptr<scalar_t>(), Cin,
        H, W, Cout, K, cin_chunk, relu);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor coarse_tail_cuda(const at::Tensor& feat, const at::Tensor& w1, const at::Tensor& b1,
                               const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& eyes,
                               double scale_x, double scale_y) {
  const c10::cuda::CUDAGuard guard(feat.device());
  const int B = feat.size(0), C = feat.size(1), h = feat.size(2), w = feat.size(3);
  const int Ci = eyes.size(1), H = eyes.size(2), W = eyes.size(3), Ch = w1.size(0);
  at::Tensor out = at::empty({B, 2 * Ci + 2, H, W}, eyes.options());
  const size_t smem = (static_cast<size_t>(Ch) * C + 3 * Ch + 2 + static_cast<size_t>(C) * TAIL_THREADS) * sizeof(float);
  TORCH_CHECK(smem <= SMEM_LIMIT, "coarse_tail: feat has ", C, " channels and w1 ", Ch,
              " hidden units, which need ", smem, " bytes of shared memory (limit ", SMEM_LIMIT, ")");
  const int64_t n = static_cast<int64_t>(B) * H * W;
  const unsigned blocks = static_cast<unsigned>((n + TAIL_THREADS - 1) / TAIL_THREADS);
  auto stream = c10::cuda::getCurrentCUDAStream();
  DW_DISPATCH(feat.scalar_type(), "coarse_tail_cuda", [&] {
    _coarse_tail_fwd_kernel<scalar_t><<<blocks, TAIL_THREADS, smem, stream>>>(
        feat.data_ptr<scalar_t>(), w1.data_ptr<float>(), b1.data_ptr<float>(), w2.data_ptr<float>(),
        b2.data_ptr<float>(), eyes.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), B, C, h, w, Ch, Ci, H, W,
        static_cast<float>(scale_x), static_cast<float>(scale_y));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fine_tail_cuda(
    const at::Tensor& feat_f, const at::Tensor& feat_c, const at::Tensor& eyes, const at::Tensor& up_c,
    const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
    const c10::optional<at::Tensor>& lw1, const c10::optional<at::Tensor>& lb1,
    const c10::optional<at::Tensor>& lw2, const c10::optional<at::Tensor>& lb2,
    const c10::optional<at::Tensor>& lw3, const c10::optional<at::Tensor>& lb3, double scale_x,
    double scale_y, bool intermediates) {
  const c10::cuda::CUDAGuard guard(feat_f.device());
  const int B = feat_f.size(0), Cf = feat_f.size(1), H = feat_f.size(2), W = feat_f.size(3);
  const int Ci = eyes.size(1);
  const bool use_lcm = lw1.has_value() && lw1->defined();
  FineTailWeights p{};
  p.w1 = w1.data_ptr<float>();
  p.b1 = b1.data_ptr<float>();
  p.w2 = w2.data_ptr<float>();
  p.b2 = b2.data_ptr<float>();
  p.Cf = Cf;
  p.Ch = w1.size(0);
  int h = 1, w = 1;
  if (use_lcm) {
    p.lw1 = lw1->data_ptr<float>();
    p.lb1 = lb1->data_ptr<float>();
    p.lw2 = lw2->data_ptr<float>();
    p.lb2 = lb2->data_ptr<float>();
    p.lw3 = lw3->data_ptr<float>();
    p.lb3 = lb3->data_ptr<float>();
    p.Cc = feat_c.size(1);
    p.L1 = lw1->size(0);
    p.L2 = lw2->size(0);
    h = feat_c.size(2);
    w = feat_c.size(3);
  }
  const int Cl = p.Cc + p.Cf;
  const size_t weights = static_cast<size_t>(p.Ch) * Cf + 3 * p.Ch + 2 + static_cast<size_t>(p.L1) * Cl + p.L1 +
                         static_cast<size_t>(p.L2) * p.L1 + 3 * p.L2 + 2;
  const size_t smem = (weights + static_cast<size_t>(Cl + p.L1) * TAIL_THREADS) * sizeof(float);
  TORCH_CHECK(smem <= SMEM_LIMIT, "fine_tail: feat_f (", Cf, " channels), feat_c (", p.Cc, ") and the LCM (", p.L1,
              ", ", p.L2, " units) need ", smem, " bytes of shared memory (limit ", SMEM_LIMIT, ")");
  auto opts = eyes.options();
  at::Tensor out = at::empty({B, Ci, H, W}, opts);
  at::Tensor fine = intermediates ? at::empty({B, Ci, H, W}, opts) : at::empty({0}, opts);
  at::Tensor flow = intermediates ? at::empty({B, 2, H, W}, opts) : at::empty({0}, opts);
  at::Tensor mask = (intermediates && use_lcm) ? at::empty({B, 1, H, W}, opts) : at::empty({0}, opts);
  const int64_t n = static_cast<int64_t>(B) * H * W;
  const unsigned blocks = static_cast<unsigned>((n + TAIL_THREADS - 1) / TAIL_THREADS);
  auto stream = c10::cuda::getCurrentCUDAStream();
  DW_DISPATCH(feat_f.scalar_type(), "fine_tail_cuda", [&] {
    _fine_tail_fwd_kernel<scalar_t><<<blocks, TAIL_THREADS, smem, stream>>>(
        feat_f.data_ptr<scalar_t>(), use_lcm ? feat_c.data_ptr<scalar_t>() : nullptr, eyes.data_ptr<scalar_t>(),
        up_c.data_ptr<scalar_t>(), eyes.stride(0), up_c.stride(0), p, out.data_ptr<scalar_t>(),
        ptr_or_null<scalar_t>(fine), ptr_or_null<scalar_t>(flow), ptr_or_null<scalar_t>(mask), B, Ci, h, w, H, W,
        static_cast<float>(scale_x), static_cast<float>(scale_y));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, fine, flow, mask};
}

}  // namespace deepwarp

// ----------------------------------------------------------------------- warp_frame
// One thread per pixel of an eye's footprint box: grid = (ceil(largest box / 256), E).
#include "warp_frame.h"

namespace deepwarp {
namespace {

template <typename T>
__global__ void __launch_bounds__(256) _warp_frame_kernel(
    const T* __restrict__ frames, T* __restrict__ out, const float* __restrict__ params, const int* __restrict__ boxes,
    const float* __restrict__ flow, const float* __restrict__ mask, const float* __restrict__ feather, int E, int Hf,
    int Wf, int h, int w, int64_t s_n, int64_t s_h, int64_t s_w, int64_t feather_se, float white, int C, int kernel,
    bool is_int) {
  const int e = blockIdx.y;
  const int* b = boxes + e * WF_NBOX;
  const int bw = b[3], bh = b[4];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= bw * bh) return;
  warp_frame_pixel<T>(frames, out, params, boxes, flow, mask, feather, E, e, b[1] + i % bw, b[2] + i / bw, Hf, Wf, h,
                      w, s_n, s_h, s_w, feather_se, white, C, kernel, is_int);
}

}  // namespace

at::Tensor warp_frame_cuda(const at::Tensor& frames, const at::Tensor& params, const at::Tensor& boxes,
                           const at::Tensor& flow, const c10::optional<at::Tensor>& mask, const at::Tensor& feather,
                           int64_t kernel, int64_t channels, int64_t largest, at::Tensor out) {
  const c10::cuda::CUDAGuard guard(frames.device());
  const int E = static_cast<int>(flow.size(0));
  if (E == 0 || largest == 0) return out;
  const int h = static_cast<int>(flow.size(2)), w = static_cast<int>(flow.size(3));
  const int Hf = static_cast<int>(frames.size(1)), Wf = static_cast<int>(frames.size(2));
  const int64_t feather_se = feather.size(0) == 1 ? 0 : static_cast<int64_t>(h) * w;
  const float* mk = (mask.has_value() && mask->defined()) ? mask->data_ptr<float>() : nullptr;
  const dim3 grid(static_cast<unsigned>((largest + 255) / 256), static_cast<unsigned>(E));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_SWITCH(frames.scalar_type(), "warp_frame_cuda",
    AT_DISPATCH_CASE(at::kByte, [&] {
      _warp_frame_kernel<scalar_t><<<grid, 256, 0, stream>>>(
          frames.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), params.data_ptr<float>(), boxes.data_ptr<int>(),
          flow.data_ptr<float>(), mk, feather.data_ptr<float>(), E, Hf, Wf, h, w, frames.stride(0), frames.stride(1),
          frames.stride(2), feather_se, 255.0f, static_cast<int>(channels), static_cast<int>(kernel), true);
    })
    AT_DISPATCH_CASE(at::kUInt16, [&] {
      _warp_frame_kernel<scalar_t><<<grid, 256, 0, stream>>>(
          frames.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), params.data_ptr<float>(), boxes.data_ptr<int>(),
          flow.data_ptr<float>(), mk, feather.data_ptr<float>(), E, Hf, Wf, h, w, frames.stride(0), frames.stride(1),
          frames.stride(2), feather_se, 65535.0f, static_cast<int>(channels), static_cast<int>(kernel), true);
    })
    AT_DISPATCH_CASE(at::kFloat, [&] {
      _warp_frame_kernel<scalar_t><<<grid, 256, 0, stream>>>(
          frames.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), params.data_ptr<float>(), boxes.data_ptr<int>(),
          flow.data_ptr<float>(), mk, feather.data_ptr<float>(), E, Hf, Wf, h, w, frames.stride(0), frames.stride(1),
          frames.stride(2), feather_se, 1.0f, static_cast<int>(channels), static_cast<int>(kernel), false);
    }));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace deepwarp
