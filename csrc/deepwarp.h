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
at::Tensor conv_bias_relu_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                 const c10::optional<at::Tensor>& extra, bool relu);
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

#ifdef DEEPWARP_WITH_CUDA
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
