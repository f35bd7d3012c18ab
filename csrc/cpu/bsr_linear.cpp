// CPU implementation of suptickets::bsr_linear and its backward: the block-sparse product
// (bsr_product.h) with the rows of the input as the pixels of a 1 x N image.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

#include "bsr_product.h"
#include "workspace.h"

namespace suptickets {
namespace cpu {
namespace {

// A linear layer is the 1x1 convolution of a 1 x N image whose pixels are the rows of x.
ConvGeometry linear_geometry(const Tensor& x2d, const Tensor& values, int64_t out_features) {
  ConvGeometry g{};
  g.B = 1;
  g.Cin = x2d.size(1);
  g.H = 1;
  g.W = x2d.size(0);
  g.Cout = out_features;
  g.Ho = 1;
  g.Wo = g.W;
  g.KH = g.KW = g.SH = g.SW = g.DH = g.DW = 1;
  g.PH = g.PW = 0;
  g.br = values.size(1);
  g.bc = values.size(2);
  TORCH_CHECK_VALUE(g.br >= 1 && g.bc >= 1 && g.Cout % g.br == 0 && g.Cin % g.bc == 0,
                    "suptickets::bsr_linear: block (", g.br, ", ", g.bc, ") must divide (out_features=", g.Cout,
                    ", in_features=", g.Cin, ")");
  return g;
}

}  // namespace

Tensor bsr_linear(const Tensor& x, const Tensor& values, const Tensor& rows, const Tensor& cols, const Tensor& row_ptr,
                  const Tensor& col_ptr, const Tensor& col_perm, const std::optional<Tensor>& bias,
                  int64_t out_features) {
  check_operands(x, values, "bsr_linear");
  TORCH_CHECK_VALUE(x.dim() >= 1, "suptickets::bsr_linear: input must have at least 1 dimension");
  const Tensor x2 = x.reshape({-1, x.size(-1)});
  const ConvGeometry g = linear_geometry(x2, values, out_features);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out_features;
  // The result is allocated in its own shape and written through a 2-D view: an output that
  // is a view would forbid in-place ops on it (e.g. ReLU(inplace=True)) under autograd.
  Tensor out = empty_output(shape, x.options());
  Tensor y = out.view({x2.size(0), out_features});
  product_forward(g, x2, rows_as_pixels(x2), values, {rows, cols, row_ptr, col_ptr, col_perm}, bias, y, "bsr_linear");
  return out;
}

std::tuple<Tensor, Tensor, Tensor> bsr_linear_backward(const Tensor& grad, const Tensor& x, const Tensor& values,
                                                       const Tensor& rows, const Tensor& cols, const Tensor& row_ptr,
                                                       const Tensor& col_ptr, const Tensor& col_perm, bool need_input,
                                                       bool need_values, bool need_bias) {
  check_operands(x, values, "bsr_linear_backward");
  const Tensor x2 = x.reshape({-1, x.size(-1)});
  const Tensor g2 = grad.reshape({-1, grad.size(-1)});
  const ConvGeometry g = linear_geometry(x2, values, g2.size(1));
  TORCH_CHECK_VALUE(g2.size(0) == x2.size(0) && grad.scalar_type() == x.scalar_type(),
                    "suptickets::bsr_linear_backward: grad_out ", grad.sizes(), " does not match input ", x.sizes());
  const Tensor dx_full = grad_or_empty(need_input, x.sizes(), x.options());
  const Tensor dx = need_input ? dx_full.view(x2.sizes()) : dx_full;
  const Tensor dv = grad_or_empty(need_values, values.sizes(), values.options());
  const Tensor db = grad_or_empty(need_bias, {g.Cout}, values.options());
  Grads out{need_input ? dx : Tensor(), need_values ? dv : Tensor(), need_bias ? db : Tensor()};
  product_backward(g, g2, rows_as_pixels(g2), x2, rows_as_pixels(x2), values, {rows, cols, row_ptr, col_ptr, col_perm},
                   out);
  return {dx_full, dv, db};
}

TORCH_LIBRARY_IMPL(suptickets, CPU, m) {
  m.impl("bsr_linear", &bsr_linear);
  m.impl("bsr_linear_backward", &bsr_linear_backward);
}

}  // namespace cpu
}  // namespace suptickets
