// CPU implementation of suptickets::bsr_conv2d and its backward: the convolution's geometry,
// then the shared block-sparse product (bsr_product.h) over zero-padded NHWC stripes.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "bsr_product.h"
#include "checks.h"
#include "workspace.h"

namespace suptickets {
namespace cpu {
namespace {

using at::IntArrayRef;

ConvGeometry conv_geometry(const Tensor& x, const Tensor& values, int64_t out_channels, IntArrayRef kernel,
                           IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation) {
  check_operands(x, values, "bsr_conv2d");
  TORCH_CHECK_VALUE(x.dim() == 4, "suptickets::bsr_conv2d: input must be 4-D [B, C, H, W], got shape ", x.sizes());
  check_conv_args(kernel, stride, padding, dilation, "bsr_conv2d");
  ConvGeometry g;
  g.B = x.size(0);
  g.Cin = x.size(1);
  g.H = x.size(2);
  g.W = x.size(3);
  g.Cout = out_channels;
  g.KH = kernel[0];
  g.KW = kernel[1];
  g.SH = stride[0];
  g.SW = stride[1];
  g.PH = padding[0];
  g.PW = padding[1];
  g.DH = dilation[0];
  g.DW = dilation[1];
  g.br = values.size(1);
  g.bc = values.size(2);
  TORCH_CHECK_VALUE(g.br >= 1 && g.bc >= 1 && g.Cout % g.br == 0 && g.Cin % g.bc == 0,
                    "suptickets::bsr_conv2d: block (", g.br, ", ", g.bc, ") must divide (out_channels=", g.Cout,
                    ", in_channels=", g.Cin, ")");
  g.Ho = conv_output_size(g.H, g.KH, g.SH, g.PH, g.DH);
  g.Wo = conv_output_size(g.W, g.KW, g.SW, g.PW, g.DW);
  TORCH_CHECK_VALUE(g.Ho >= 1 && g.Wo >= 1, "suptickets::bsr_conv2d: input ", x.sizes(),
                    " is smaller than the dilated kernel");
  return g;
}

// A 1x1 convolution with stride s and no padding reads every s-th pixel only: it is
// the stride-1 convolution of that subsampled view, which packs s*s times less.
bool pointwise_strided(const ConvGeometry& g) {
  return g.KH == 1 && g.KW == 1 && g.PH == 0 && g.PW == 0 && (g.SH > 1 || g.SW > 1);
}

Tensor subsample(const Tensor& t, const ConvGeometry& g) { return t.slice(2, 0, g.H, g.SH).slice(3, 0, g.W, g.SW); }

ConvGeometry unit_stride(ConvGeometry g) {
  g.H = g.Ho;
  g.W = g.Wo;
  g.SH = g.SW = 1;
  return g;
}

}  // namespace

Tensor bsr_conv2d(const Tensor& x, const Tensor& values, const Tensor& rows, const Tensor& cols, const Tensor& row_ptr,
                  const Tensor& col_ptr, const Tensor& col_perm, const std::optional<Tensor>& bias,
                  int64_t out_channels, IntArrayRef kernel, IntArrayRef stride, IntArrayRef padding,
                  IntArrayRef dilation) {
  const ConvGeometry g = conv_geometry(x, values, out_channels, kernel, stride, padding, dilation);
  Tensor y = empty_output({g.B, g.Cout, g.Ho, g.Wo}, x.options(), at::MemoryFormat::ChannelsLast);
  const Layout L{rows, cols, row_ptr, col_ptr, col_perm};
  if (pointwise_strided(g)) {
    const Tensor xs = subsample(x, g);
    product_forward(unit_stride(g), xs, nchw_strides(xs), values, L, bias, y, "bsr_conv2d");
  } else {
    product_forward(g, x, nchw_strides(x), values, L, bias, y, "bsr_conv2d");
  }
  return y;
}

std::tuple<Tensor, Tensor, Tensor> bsr_conv2d_backward(const Tensor& grad, const Tensor& x, const Tensor& values,
                                                       const Tensor& rows, const Tensor& cols, const Tensor& row_ptr,
                                                       const Tensor& col_ptr, const Tensor& col_perm,
                                                       IntArrayRef kernel, IntArrayRef stride, IntArrayRef padding,
                                                       IntArrayRef dilation, bool need_input, bool need_values,
                                                       bool need_bias) {
  const ConvGeometry g = conv_geometry(x, values, grad.size(1), kernel, stride, padding, dilation);
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == g.B && grad.size(2) == g.Ho && grad.size(3) == g.Wo &&
                        grad.scalar_type() == x.scalar_type(),
                    "suptickets::bsr_conv2d_backward: grad_out must be [", g.B, ", ", g.Cout, ", ", g.Ho, ", ", g.Wo,
                    "], got ", grad.sizes());
  // dX in x's memory format, as torch's convolutions give it (the element kernels write any strides)
  const Tensor dx = grad_or_empty(need_input, x.sizes(), x.options(), x.suggest_memory_format());
  const Tensor dv = grad_or_empty(need_values, values.sizes(), values.options());
  const Tensor db = grad_or_empty(need_bias, {g.Cout}, values.options());
  const Layout L{rows, cols, row_ptr, col_ptr, col_perm};
  Grads out{need_input ? dx : Tensor(), need_values ? dv : Tensor(), need_bias ? db : Tensor()};
  if (pointwise_strided(g)) {
    // gradients of the subsampled view; dx is zero at the pixels the stride skips
    const Tensor xs = subsample(x, g);
    if (need_input) out.dx = empty_output(xs.sizes(), x.options(), at::MemoryFormat::ChannelsLast);
    product_backward(unit_stride(g), grad, nchw_strides(grad), xs, nchw_strides(xs), values, L, out);
    if (need_input) {
      dx.zero_();
      subsample(dx, g).copy_(out.dx);
    }
  } else {
    product_backward(g, grad, nchw_strides(grad), x, nchw_strides(x), values, L, out);
  }
  return {dx, dv, db};
}

TORCH_LIBRARY_IMPL(suptickets, CPU, m) {
  m.impl("bsr_conv2d", &bsr_conv2d);
  m.impl("bsr_conv2d_backward", &bsr_conv2d_backward);
}

}  // namespace cpu
}  // namespace suptickets
