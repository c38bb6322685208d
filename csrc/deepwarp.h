// deepwarp_fast._C: fused inference ops of the accelerated DeepWarp model.
//
// Every op exists for CPU tensors (ops_cpu.cpp) and, when built with CUDA, for CUDA
// tensors (ops_cuda.cu). bindings.cpp checks the arguments (messages name them) and
// dispatches on the device. Shapes and conventions: SPEC.md and accelerate.py.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "dw_math.h"

namespace deepwarp {

// ---- CPU implementations (ops_cpu.cpp); arguments are already checked.
// conv2d with "same" padding (odd k x k), oneDNN where torch has it, in x's layout.
at::Tensor conv2d_same_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);
at::Tensor conv_bias_relu_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                 const c10::optional<at::Tensor>& extra, bool relu);
// avg_pool2d(eyes, 2) written channels-last: eyes (n, Cin, H, W) with packed rows.
at::Tensor avg_pool2_cl_cpu(const at::Tensor& eyes);
// relu(conv(x, weight) + bias (+ extra)) for a k x k "same" convolution, channels-last out,
// by the extension's own register-blocked loops; weight as contiguous (Cin, k, k, Cout) with
// Cout 16 or 32 only (direct_conv_supported). Faster than oneDNN on one eye's small layers
// (see forward_cpu).
bool direct_conv_supported(const at::Tensor& weight);
at::Tensor direct_conv_relu_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                const c10::optional<at::Tensor>& extra);
at::Tensor coarse_tail_cpu(const at::Tensor& feat, const at::Tensor& w1, const at::Tensor& b1,
                              const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& eyes,
                              double scale_x, double scale_y);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fine_tail_cpu(
    const at::Tensor& feat_f, const at::Tensor& feat_c /* undefined without the LCM */, const at::Tensor& eyes, const at::Tensor& up_c,
    const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
    const c10::optional<at::Tensor>& lw1, const c10::optional<at::Tensor>& lb1,
    const c10::optional<at::Tensor>& lw2, const c10::optional<at::Tensor>& lb2,
    const c10::optional<at::Tensor>& lw3, const c10::optional<at::Tensor>& lb3, double scale_x,
    double scale_y, bool intermediates);

// warp_frame: frames (N, H, W, Ct) uint8/uint16/float32 with channels contiguous; params (E, 10)
// float32, boxes (E, 5) int32 (warp_frame.h); flow (E, 2, h, w), mask (E, 1, h, w) or none,
// feather (1 or E, h, w), all float32 contiguous on the frames' device. Writes the pixels the
// eyes own into ``out`` (a copy of frames, same layout) and returns it.
at::Tensor warp_frame_cpu(const at::Tensor& frames, const at::Tensor& params, const at::Tensor& boxes,
                          const at::Tensor& flow, const c10::optional<at::Tensor>& mask, const at::Tensor& feather,
                          int64_t kernel, int64_t channels, at::Tensor out);

#ifdef DEEPWARP_WITH_CUDA
at::Tensor warp_frame_cuda(const at::Tensor& frames, const at::Tensor& params, const at::Tensor& boxes,
                           const at::Tensor& flow, const c10::optional<at::Tensor>& mask, const at::Tensor& feather,
                           int64_t kernel, int64_t channels, int64_t largest, at::Tensor out);
// ---- CUDA implementations (ops_cuda.cu); same contracts, float32/float16/bfloat16 activations.
at::Tensor conv_bias_relu_cuda(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                  const c10::optional<at::Tensor>& extra, bool relu);
at::Tensor coarse_tail_cuda(const at::Tensor& feat, const at::Tensor& w1, const at::Tensor& b1,
                               const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& eyes,
                               double scale_x, double scale_y);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fine_tail_cuda(
    const at::Tensor& feat_f, const at::Tensor& feat_c /* undefined without the LCM */, const at::Tensor& eyes, const at::Tensor& up_c,
    const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
    const c10::optional<at::Tensor>& lw1, const c10::optional<at::Tensor>& lb1,
    const c10::optional<at::Tensor>& lw2, const c10::optional<at::Tensor>& lb2,
    const c10::optional<at::Tensor>& lw3, const c10::optional<at::Tensor>& lb3, double scale_x,
    double scale_y, bool intermediates);
#endif

}  // namespace deepwarp
