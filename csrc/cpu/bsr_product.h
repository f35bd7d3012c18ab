// The torch side of the block-sparse products shared by bsr_linear.cpp and bsr_conv2d.cpp:
// layout validation, packing into reusable scratch buffers, and the calls of the kernels of
// bsr_product_kernels.h. A linear layer is the 1x1 convolution of a 1 x N image whose pixels
// are the rows of its input, so both operators run these two functions on a ConvGeometry.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "bsr_product_kernels.h"

namespace suptickets {
namespace cpu {

using at::Tensor;

// The index tensors of a BlockLayout (int32, contiguous, on the CPU).
struct Layout {
  const Tensor& rows;
  const Tensor& cols;
  const Tensor& row_ptr;
  const Tensor& col_ptr;
  const Tensor& col_perm;
};

// Element strides (b, c, h, w) of an activation, for the packing routine.
struct Strides {
  int64_t b, c, h, w;
};
inline Strides nchw_strides(const Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }
inline Strides rows_as_pixels(const Tensor& t2d) { return {0, t2d.stride(1), 0, t2d.stride(0)}; }
// A product's output: [N, C] rows as pixels, or a 4-D [B, C, H, W] tensor.
inline Strides strides_of(const Tensor& t) { return t.dim() == 2 ? rows_as_pixels(t) : nchw_strides(t); }

// Input and values of an operator `op`: CPU, one float dtype, values [nnz, br, bc].
void check_operands(const Tensor& x, const Tensor& values, const char* op);

// y[pixel][Cout] = the product of the activation `x` (seen through `xs`) with the weight;
// validates the layout and the bias first. `y` is NHWC (or [N, Cout]) and fully written.
void product_forward(const ConvGeometry& g, const Tensor& x, const Strides& xs, const Tensor& values, const Layout& L,
                     const std::optional<Tensor>& bias, Tensor& y, const char* op);

// Gradients of one call, each computed only if defined: dX into `dx` (NHWC pixels,
// or [N, C]), dvalues into `dv`, the bias gradient into `db` (summed while packing dY).
struct Grads {
  Tensor dx, dv, db;
};

// The gradients of `out` that are defined, from grad_out (seen through `gs`) and x.
void product_backward(const ConvGeometry& g, const Tensor& grad, const Strides& gs, const Tensor& x, const Strides& xs,
                      const Tensor& values, const Layout& L, Grads& out);

// A gradient the caller needs (allocated from the output cache), or an empty tensor (the
// schemas have no optional returns).
Tensor grad_or_empty(bool needed, at::IntArrayRef sizes, const at::TensorOptions& opts,
                     at::MemoryFormat format = at::MemoryFormat::Contiguous);

}  // namespace cpu
}  // namespace suptickets
