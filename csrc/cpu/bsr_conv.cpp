// CPU implementations of suptickets::bsr_conv2d / bsr_linear and their backward:
// argument checks, packing into reusable scratch buffers, and the kernel calls.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "bsr_conv_kernels.h"
#include "workspace.h"

namespace suptickets {
namespace cpu {
namespace {

using at::IntArrayRef;
using at::Tensor;

struct Layout {
  const Tensor& rows;
  const Tensor& cols;
  const Tensor& row_ptr;
  const Tensor& col_ptr;
  const Tensor& col_perm;
};

void check_index(const Tensor& t, const char* name, int64_t size) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kInt && t.dim() == 1 && t.is_contiguous(),
              "suptickets: layout tensor '", name, "' must be a contiguous 1-D int32 CPU tensor, got ",
              t.scalar_type(), " of shape ", t.sizes(), " on ", t.device());
  TORCH_CHECK(t.numel() == size, "suptickets: layout tensor '", name, "' must have ", size,
              " entries, got ", t.numel());
}

// Validates the layout against the geometry in O(nnz) so that a bad index is an
// error instead of an out-of-bounds access.
void check_layout(const ConvGeometry& g, const Tensor& values, const Layout& L) {
  const int64_t nnz = values.size(0), nrb = g.out_blocks();
  const int64_t ncols = g.KH * g.KW * g.in_blocks();
  check_index(L.rows, "rows", nnz);
  check_index(L.cols, "cols", nnz);
  check_index(L.row_ptr, "row_ptr", nrb + 1);
  check_index(L.col_ptr, "col_ptr", ncols + 1);
  check_index(L.col_perm, "col_perm", nnz);
  const int32_t* rows = L.rows.data_ptr<int32_t>();
  const int32_t* cols = L.cols.data_ptr<int32_t>();
  const int32_t* rp = L.row_ptr.data_ptr<int32_t>();
  const int32_t* cp = L.col_ptr.data_ptr<int32_t>();
  const int32_t* perm = L.col_perm.data_ptr<int32_t>();
  TORCH_CHECK(rp[0] == 0 && rp[nrb] == nnz && cp[0] == 0 && cp[ncols] == nnz,
              "suptickets: row_ptr/col_ptr must run from 0 to nnz=", nnz);
  for (int64_t r = 0; r < nrb; ++r)
    for (int64_t s = rp[r]; s < rp[r + 1]; ++s) {
      TORCH_CHECK(s < nnz && rows[s] == r && cols[s] >= 0 && cols[s] < ncols,
                  "suptickets: slot ", s, " is not a valid block of block-row ", r, " (grid ", nrb,
                  " x ", ncols, ")");
    }
  for (int64_t c = 0; c < ncols; ++c)
    for (int64_t q = cp[c]; q < cp[c + 1]; ++q)
      TORCH_CHECK(q < nnz && perm[q] >= 0 && perm[q] < nnz && cols[perm[q]] == c,
                  "suptickets: col_perm entry ", q, " does not point to a block of block-column ", c);
}

void check_operands(const Tensor& x, const Tensor& values, const char* op) {
  TORCH_CHECK(x.device().is_cpu() && values.device().is_cpu(), "suptickets::", op,
              ": the CPU kernel needs CPU tensors, got input on ", x.device(), " and values on ",
              values.device());
  TORCH_CHECK(x.scalar_type() == values.scalar_type(), "suptickets::", op,
              ": input and values must have the same dtype, got ", x.scalar_type(), " and ",
              values.scalar_type());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, "suptickets::", op,
              ": the CPU kernel supports float32 and float64, got ", x.scalar_type());
  TORCH_CHECK(values.dim() == 3, "suptickets::", op, ": values must be [nnz, br, bc], got shape ",
              values.sizes());
}

ConvGeometry conv_geometry(const Tensor& x, const Tensor& values, int64_t out_channels,
                           IntArrayRef kernel, IntArrayRef stride, IntArrayRef padding,
                           IntArrayRef dilation) {
  check_operands(x, values, "bsr_conv2d");
  TORCH_CHECK(x.dim() == 4, "suptickets::bsr_conv2d: input must be 4-D [B, C, H, W], got shape ",
              x.sizes());
  TORCH_CHECK(kernel.size() == 2 && stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              "suptickets::bsr_conv2d: kernel_size, stride, padding, dilation need 2 entries each");
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
  TORCH_CHECK(g.KH >= 1 && g.KW >= 1 && g.SH >= 1 && g.SW >= 1 && g.DH >= 1 && g.DW >= 1 &&
                  g.PH >= 0 && g.PW >= 0,
              "suptickets::bsr_conv2d: kernel_size, stride, dilation must be >= 1 and padding >= 0");
  TORCH_CHECK(g.br >= 1 && g.bc >= 1 && g.Cout % g.br == 0 && g.Cin % g.bc == 0,
              "suptickets::bsr_conv2d: block (", g.br, ", ", g.bc, ") must divide (out_channels=",
              g.Cout, ", in_channels=", g.Cin, ")");
  g.Ho = (g.H + 2 * g.PH - g.DH * (g.KH - 1) - 1) / g.SH + 1;
  g.Wo = (g.W + 2 * g.PW - g.DW * (g.KW - 1) - 1) / g.SW + 1;
  TORCH_CHECK(g.Ho >= 1 && g.Wo >= 1, "suptickets::bsr_conv2d: input ", x.sizes(),
              " is smaller than the dilated kernel");
  return g;
}

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
  TORCH_CHECK(g.br >= 1 && g.bc >= 1 && g.Cout % g.br == 0 && g.Cin % g.bc == 0,
              "suptickets::bsr_linear: block (", g.br, ", ", g.bc, ") must divide (out_features=",
              g.Cout, ", in_features=", g.Cin, ")");
  return g;
}

// Element strides (b, c, h, w) of an activation, for the packing routine.
struct Strides {
  int64_t b, c, h, w;
};
Strides nchw_strides(const Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }
Strides rows_as_pixels(const Tensor& t2d) { return {0, t2d.stride(1), 0, t2d.stride(0)}; }

template <class T>
T* pack(ScratchSlot slot, const Tensor& t, const Strides& s, int64_t B, int64_t C, int64_t H,
        int64_t W, int64_t bs, int64_t PH, int64_t PW, T* channel_sums = nullptr) {
  Tensor buf = scratch(slot, B * C * (H + 2 * PH) * (W + 2 * PW), t.options());
  pack_stripes<T>(t.data_ptr<T>(), B, C, H, W, s.b, s.c, s.h, s.w, bs, PH, PW, buf.data_ptr<T>(),
                  channel_sums);
  return buf.data_ptr<T>();
}

void check_bias(const std::optional<Tensor>& bias, const Tensor& values, int64_t out) {
  if (!bias.has_value()) return;
  TORCH_CHECK(bias->dim() == 1 && bias->size(0) == out && bias->scalar_type() == values.scalar_type() &&
                  bias->device().is_cpu(),
              "suptickets: bias must be a 1-D CPU tensor of ", out, " ", values.scalar_type(),
              " entries, got ", bias->scalar_type(), " of shape ", bias->sizes());
}

// The input as pack() lays it out: zero-padded stripes. (Reading a row-major input
// in place measured slower than packing it first, packing included.)
Grid packed_input(const ConvGeometry& g) { return {g.in_stripe(), g.bc, g.Hp(), g.Wp(), g.PH, g.PW}; }

// y[pixel][Cout] for the activation `x` seen through `xs`.
void forward(const ConvGeometry& g, const Tensor& x, const Strides& xs, const Tensor& values,
             const Layout& L, const std::optional<Tensor>& bias, Tensor& y) {
  check_layout(g, values, L);
  check_bias(bias, values, g.Cout);
  if (g.B == 0 || g.Wo == 0) return;
  // blocks transposed to [nnz][bc][br] for the forward's tiles
  Tensor vt = scratch(kWeights, values.numel(), values.options()).view({values.size(0), g.bc, g.br});
  vt.copy_(values.transpose(1, 2));
  const Tensor b = bias.has_value() ? bias->contiguous() : Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "suptickets_forward", [&] {
    const scalar_t* xp = pack<scalar_t>(kInput, x, xs, g.B, g.Cin, g.H, g.W, g.bc, g.PH, g.PW);
    conv_forward<scalar_t>(g, xp, packed_input(g), vt.data_ptr<scalar_t>(), L.row_ptr.data_ptr<int32_t>(),
                           L.cols.data_ptr<int32_t>(), b.defined() ? b.data_ptr<scalar_t>() : nullptr,
                           y.data_ptr<scalar_t>());
  });
}

// Gradients of one call, each computed only if defined: dX into `dx` (NHWC pixels,
// or [N, C]), dvalues into `dv`, the bias gradient into `db` (summed while packing dY).
struct Grads {
  Tensor dx, dv, db;
};

void backward(const ConvGeometry& g, const Tensor& grad, const Strides& gs_strides, const Tensor& x,
              const Strides& xs, const Tensor& values, const Layout& L, Grads& out) {
  check_layout(g, values, L);
  Tensor &dx = out.dx, &dv = out.dv, &db = out.db;
  if (g.B == 0 || g.Wo == 0) {
    for (Tensor* t : {&dx, &dv, &db})
      if (t->defined()) t->zero_();
    return;
  }
  const Tensor vals = values.contiguous();
  // dY is packed once for both products, padded for a gathering dX.
  int64_t top = 0, left = 0;
  if (dx.defined()) grad_out_padding(g, &top, &left);
  const Grid gs{g.B * (g.Ho + 2 * top) * (g.Wo + 2 * left) * g.br, g.br, g.Ho + 2 * top, g.Wo + 2 * left, top,
                left};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "suptickets_backward", [&] {
    const scalar_t* gp = pack<scalar_t>(kGradOut, grad, gs_strides, g.B, g.Cout, g.Ho, g.Wo, g.br, top, left,
                                        db.defined() ? db.data_ptr<scalar_t>() : nullptr);
    const scalar_t* v = vals.data_ptr<scalar_t>();
    const int32_t *rows = L.rows.data_ptr<int32_t>(), *col_ptr = L.col_ptr.data_ptr<int32_t>(),
                  *col_perm = L.col_perm.data_ptr<int32_t>();
    if (dx.defined()) {
      const Grid nhwc{g.bc, g.Cin, g.H, g.W, 0, 0};  // dx itself
      if (grad_input_gathers(g)) {
        conv_grad_input<scalar_t>(g, gp, gs, v, rows, col_ptr, col_perm, dx.data_ptr<scalar_t>(), nhwc);
      } else if (g.PH == 0 && g.PW == 0) {
        dx.zero_();
        conv_grad_input<scalar_t>(g, gp, gs, v, rows, col_ptr, col_perm, dx.data_ptr<scalar_t>(), nhwc);
      } else {
        // scattered into zero-padded stripes, then the interior copied out
        Tensor buf = scratch(kGradInput, g.Cin * g.B * g.Hp() * g.Wp(), x.options());
        buf.zero_();
        conv_grad_input<scalar_t>(g, gp, gs, v, rows, col_ptr, col_perm, buf.data_ptr<scalar_t>(),
                                  {g.in_stripe(), g.bc, g.Hp(), g.Wp(), g.PH, g.PW});
        unpack_stripes<scalar_t>(buf.data_ptr<scalar_t>(), g.B, g.Cin, g.H, g.W, g.bc, g.PH, g.PW,
                                 dx.data_ptr<scalar_t>());
      }
    }
    if (dv.defined()) {
      const scalar_t* xp = pack<scalar_t>(kInput, x, xs, g.B, g.Cin, g.H, g.W, g.bc, g.PH, g.PW);
      conv_grad_values<scalar_t>(g, gp, gs, xp, packed_input(g), rows, L.cols.data_ptr<int32_t>(), values.size(0),
                                 dv.data_ptr<scalar_t>());
    }
  });
}

// Outputs a gradient the caller does not need as an empty tensor (the schema has no
// optional returns).
Tensor grad_or_empty(bool needed, at::IntArrayRef sizes, const at::TensorOptions& opts,
                     at::MemoryFormat format = at::MemoryFormat::Contiguous) {
  return needed ? empty_output(sizes, opts, format) : at::empty({0}, opts);
}

// A 1x1 convolution with stride s and no padding reads every s-th pixel only: it is
// the stride-1 convolution of that subsampled view, which packs s*s times less.
bool pointwise_strided(const ConvGeometry& g) {
  return g.KH == 1 && g.KW == 1 && g.PH == 0 && g.PW == 0 && (g.SH > 1 || g.SW > 1);
}

Tensor subsample(const Tensor& t, const ConvGeometry& g) {
  return t.slice(2, 0, g.H, g.SH).slice(3, 0, g.W, g.SW);
}

ConvGeometry unit_stride(ConvGeometry g) {
  g.H = g.Ho;
  g.W = g.Wo;
  g.SH = g.SW = 1;
  return g;
}

}  // namespace

Tensor bsr_conv2d(const Tensor& x, const Tensor& values, const Tensor& rows, const Tensor& cols,
                  const Tensor& row_ptr, const Tensor& col_ptr, const Tensor& col_perm,
                  const std::optional<Tensor>& bias, int64_t out_channels, IntArrayRef kernel,
                  IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation) {
  const ConvGeometry g = conv_geometry(x, values, out_channels, kernel, stride, padding, dilation);
  Tensor y = empty_output({g.B, g.Cout, g.Ho, g.Wo}, x.options(), at::MemoryFormat::ChannelsLast);
  const Layout L{rows, cols, row_ptr, col_ptr, col_perm};
  if (pointwise_strided(g)) {
    const Tensor xs = subsample(x, g);
    forward(unit_stride(g), xs, nchw_strides(xs), values, L, bias, y);
  } else {
    forward(g, x, nchw_strides(x), values, L, bias, y);
  }
  return y;
}

std::tuple<Tensor, Tensor, Tensor> bsr_conv2d_backward(
    const Tensor& grad, const Tensor& x, const Tensor& values, const Tensor& rows, const Tensor& cols,
    const Tensor& row_ptr, const Tensor& col_ptr, const Tensor& col_perm, IntArrayRef kernel,
    IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, bool need_input, bool need_values,
    bool need_bias) {
  const ConvGeometry g = conv_geometry(x, values, grad.size(1), kernel, stride, padding, dilation);
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == g.B && grad.size(2) == g.Ho && grad.size(3) == g.Wo &&
                  grad.scalar_type() == x.scalar_type(),
              "suptickets::bsr_conv2d_backward: grad_out must be [", g.B, ", ", g.Cout, ", ", g.Ho,
              ", ", g.Wo, "], got ", grad.sizes());
  const Tensor dx = grad_or_empty(need_input, x.sizes(), x.options(), at::MemoryFormat::ChannelsLast);
  const Tensor dv = grad_or_empty(need_values, values.sizes(), values.options());
  const Tensor db = grad_or_empty(need_bias, {g.Cout}, values.options());
  const Layout L{rows, cols, row_ptr, col_ptr, col_perm};
  Grads out{need_input ? dx : Tensor(), need_values ? dv : Tensor(), need_bias ? db : Tensor()};
  if (pointwise_strided(g)) {
    // gradients of the subsampled view; dx is zero at the pixels the stride skips
    const Tensor xs = subsample(x, g);
    if (need_input) out.dx = empty_output(xs.sizes(), x.options(), at::MemoryFormat::ChannelsLast);
    backward(unit_stride(g), grad, nchw_strides(grad), xs, nchw_strides(xs), values, L, out);
    if (need_input) {
      dx.zero_();
      subsample(dx, g).copy_(out.dx);
    }
  } else {
    backward(g, grad, nchw_strides(grad), x, nchw_strides(x), values, L, out);
  }
  return {dx, dv, db};
}

Tensor bsr_linear(const Tensor& x, const Tensor& values, const Tensor& rows, const Tensor& cols,
                  const Tensor& row_ptr, const Tensor& col_ptr, const Tensor& col_perm,
                  const std::optional<Tensor>& bias, int64_t out_features) {
  check_operands(x, values, "bsr_linear");
  TORCH_CHECK(x.dim() >= 1, "suptickets::bsr_linear: input must have at least 1 dimension");
  const Tensor x2 = x.reshape({-1, x.size(-1)});
  const ConvGeometry g = linear_geometry(x2, values, out_features);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out_features;
  // The result is allocated in its own shape and written through a 2-D view: an output that
  // is a view would forbid in-place ops on it (e.g. ReLU(inplace=True)) under autograd.
  Tensor out = empty_output(shape, x.options());
  Tensor y = out.view({x2.size(0), out_features});
  forward(g, x2, rows_as_pixels(x2), values, {rows, cols, row_ptr, col_ptr, col_perm}, bias, y);
  return out;
}

std::tuple<Tensor, Tensor, Tensor> bsr_linear_backward(
    const Tensor& grad, const Tensor& x, const Tensor& values, const Tensor& rows, const Tensor& cols,
    const Tensor& row_ptr, const Tensor& col_ptr, const Tensor& col_perm, bool need_input,
    bool need_values, bool need_bias) {
  check_operands(x, values, "bsr_linear_backward");
  const Tensor x2 = x.reshape({-1, x.size(-1)});
  const Tensor g2 = grad.reshape({-1, grad.size(-1)});
  const ConvGeometry g = linear_geometry(x2, values, g2.size(1));
  TORCH_CHECK(g2.size(0) == x2.size(0) && grad.scalar_type() == x.scalar_type(),
              "suptickets::bsr_linear_backward: grad_out ", grad.sizes(), " does not match input ",
              x.sizes());
  const Tensor dx_full = grad_or_empty(need_input, x.sizes(), x.options());
  const Tensor dx = need_input ? dx_full.view(x2.sizes()) : dx_full;
  const Tensor dv = grad_or_empty(need_values, values.sizes(), values.options());
  const Tensor db = grad_or_empty(need_bias, {g.Cout}, values.options());
  Grads out{need_input ? dx : Tensor(), need_values ? dv : Tensor(), need_bias ? db : Tensor()};
  backward(g, g2, rows_as_pixels(g2), x2, rows_as_pixels(x2), values, {rows, cols, row_ptr, col_ptr, col_perm},
           out);
  return {dx_full, dv, db};
}

TORCH_LIBRARY_IMPL(suptickets, CPU, m) {
  m.impl("bsr_conv2d", &bsr_conv2d);
  m.impl("bsr_conv2d_backward", &bsr_conv2d_backward);
  m.impl("bsr_linear", &bsr_linear);
  m.impl("bsr_linear_backward", &bsr_linear_backward);
}

}  // namespace cpu
}  // namespace suptickets
