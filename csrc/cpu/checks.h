// Argument checks shared by the CPU operators. Errors cross into Python typed:
// TORCH_CHECK_TYPE raises TypeError (dtype), TORCH_CHECK_VALUE raises ValueError
// (device, shape, range), each message naming the operator and the argument.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace suptickets {
namespace cpu {

// A float32 or float64 CPU tensor.
inline void check_float_cpu(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), "suptickets::", op, ": ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "suptickets::", op, ": ", name,
                   " must be float32 or float64, got ", t.scalar_type());
}

// An operand of a block-sparse product: float32, float64 or bfloat16 on the CPU.
inline void check_product_float_cpu(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), "suptickets::", op, ": ", name, " must be a CPU tensor, got ", t.device());
  const auto d = t.scalar_type();
  TORCH_CHECK_TYPE(d == at::kFloat || d == at::kDouble || d == at::kBFloat16, "suptickets::", op, ": ", name,
                   " must be float32, float64 or bfloat16, got ", d);
}

// Two tensors of one dtype.
inline void check_same_dtype(const at::Tensor& a, const char* name_a, const at::Tensor& b, const char* name_b,
                             const char* op) {
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), "suptickets::", op, ": ", name_a, " and ", name_b,
                   " must have the same dtype, got ", a.scalar_type(), " and ", b.scalar_type());
}

// A 1-D CPU index tensor of `dtype`; with size >= 0, of exactly that many entries.
inline void check_index(const at::Tensor& t, const char* name, const char* op, at::ScalarType dtype = at::kInt,
                        int64_t size = -1) {
  TORCH_CHECK_VALUE(t.device().is_cpu() && t.scalar_type() == dtype && t.dim() == 1, "suptickets::", op, ": ", name,
                    " must be a 1-D ", dtype, " CPU tensor, got ", t.scalar_type(), " of shape ", t.sizes(), " on ",
                    t.device());
  TORCH_CHECK_VALUE(size < 0 || t.numel() == size, "suptickets::", op, ": ", name, " must have ", size,
                    " entries, got ", t.numel());
}

// An optional bias: 1-D, `out` entries, the dtype of `values`, on the CPU.
inline void check_bias(const std::optional<at::Tensor>& bias, const at::Tensor& values, int64_t out, const char* op) {
  if (!bias.has_value()) return;
  TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == out && bias->device().is_cpu(), "suptickets::", op,
                    ": bias must be a 1-D CPU tensor of ", out, " entries, got shape ", bias->sizes(), " on ",
                    bias->device());
  check_same_dtype(*bias, "bias", values, "values", op);
}

// Geometry arguments of a convolution: pairs, kernel/stride/dilation >= 1, padding >= 0.
inline void check_conv_args(at::IntArrayRef kernel, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, const char* op) {
  TORCH_CHECK_VALUE(kernel.size() == 2 && stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
                    "suptickets::", op, ": kernel_size, stride, padding, dilation need 2 entries each");
  TORCH_CHECK_VALUE(kernel[0] >= 1 && kernel[1] >= 1 && stride[0] >= 1 && stride[1] >= 1 && dilation[0] >= 1 &&
                        dilation[1] >= 1 && padding[0] >= 0 && padding[1] >= 0,
                    "suptickets::", op, ": kernel_size, stride, dilation must be >= 1 and padding >= 0");
}

}  // namespace cpu
}  // namespace suptickets
