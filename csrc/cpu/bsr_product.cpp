// The torch side of the block-sparse products (bsr_product.h).
#include "bsr_product.h"

#include <ATen/Dispatch.h>

#include "checks.h"
#include "element_product.h"
#include "workspace.h"

namespace suptickets {
namespace cpu {
namespace {

// Validates the layout against the geometry in O(nnz) so that a bad index is an
// error instead of an out-of-bounds access.
void check_layout(const ConvGeometry& g, const Tensor& values, const Layout& L, const char* op) {
  for (const Tensor* t : {&L.rows, &L.cols, &L.row_ptr, &L.col_ptr, &L.col_perm})
    TORCH_CHECK_VALUE(t->is_contiguous(), "suptickets::", op, ": layout index tensors must be contiguous");
  const int64_t nnz = values.size(0), nrb = g.out_blocks();
  const int64_t ncols = g.KH * g.KW * g.in_blocks();
  check_index(L.rows, "rows", op, at::kInt, nnz);
  check_index(L.cols, "cols", op, at::kInt, nnz);
  check_index(L.row_ptr, "row_ptr", op, at::kInt, nrb + 1);
  check_index(L.col_ptr, "col_ptr", op, at::kInt, ncols + 1);
  check_index(L.col_perm, "col_perm", op, at::kInt, nnz);
  const int32_t* rows = L.rows.data_ptr<int32_t>();
  const int32_t* cols = L.cols.data_ptr<int32_t>();
  const int32_t* rp = L.row_ptr.data_ptr<int32_t>();
  const int32_t* cp = L.col_ptr.data_ptr<int32_t>();
  const int32_t* perm = L.col_perm.data_ptr<int32_t>();
  TORCH_CHECK(rp[0] == 0 && rp[nrb] == nnz && cp[0] == 0 && cp[ncols] == nnz,
              "suptickets: row_ptr/col_ptr must run from 0 to nnz=", nnz);
  for (int64_t r = 0; r < nrb; ++r)
    for (int64_t s = rp[r]; s < rp[r + 1]; ++s) {
      TORCH_CHECK(s < nnz && rows[s] == r && cols[s] >= 0 && cols[s] < ncols, "suptickets: slot ", s,
                  " is not a valid block of block-row ", r, " (grid ", nrb, " x ", ncols, ")");
    }
  for (int64_t c = 0; c < ncols; ++c)
    for (int64_t q = cp[c]; q < cp[c + 1]; ++q)
      TORCH_CHECK(q < nnz && perm[q] >= 0 && perm[q] < nnz && cols[perm[q]] == c, "suptickets: col_perm entry ", q,
                  " does not point to a block of block-column ", c);
}

template <class T>
T* pack(ScratchSlot slot, const Tensor& t, const Strides& s, int64_t B, int64_t C, int64_t H, int64_t W, int64_t bs,
        int64_t PH, int64_t PW, T* channel_sums = nullptr) {
  Tensor buf = scratch(slot, B * C * (H + 2 * PH) * (W + 2 * PW), t.options());
  pack_stripes<T>(t.data_ptr<T>(), B, C, H, W, s.b, s.c, s.h, s.w, bs, PH, PW, buf.data_ptr<T>(), channel_sums);
  return buf.data_ptr<T>();
}

// The input as pack() lays it out: zero-padded stripes. (Reading a row-major input
// in place measured slower than packing it first, packing included.)
Grid packed_input(const ConvGeometry& g) { return {g.in_stripe(), g.bc, g.Hp(), g.Wp(), g.PH, g.PW}; }

// bf16 on the tile kernels (blocks of 8 and more, bound by arithmetic, not by loads): the
// operands widened to float32, the float32 product, its results rounded into the bf16 outputs.
bool tiles_in_float32(const ConvGeometry& g, const Tensor& x) {
  return x.scalar_type() == at::kBFloat16 && !element_kernels_run(g.br, g.bc);
}

Tensor as_float32(const Tensor& t) { return t.defined() ? t.to(at::kFloat) : t; }

Tensor float32_like(const Tensor& t) {
  return t.defined() ? at::empty_strided(t.sizes(), t.strides(), t.options().dtype(at::kFloat)) : t;
}

}  // namespace

void check_operands(const Tensor& x, const Tensor& values, const char* op) {
  check_product_float_cpu(x, "input", op);
  check_product_float_cpu(values, "values", op);
  check_same_dtype(x, "input", values, "values", op);
  TORCH_CHECK_VALUE(values.dim() == 3, "suptickets::", op, ": values must be [nnz, br, bc], got shape ",
                    values.sizes());
}

void product_forward(const ConvGeometry& g, const Tensor& x, const Strides& xs, const Tensor& values, const Layout& L,
                     const std::optional<Tensor>& bias, Tensor& y, const char* op) {
  check_layout(g, values, L, op);
  check_bias(bias, values, g.Cout, op);
  if (g.B == 0 || g.Wo == 0) return;
  if (tiles_in_float32(g, x)) {
    const Tensor x32 = as_float32(x);
    const std::optional<Tensor> b32 = bias.has_value() ? std::optional<Tensor>(as_float32(*bias)) : std::nullopt;
    Tensor y32 = float32_like(y);
    product_forward(g, x32, strides_of(x32), as_float32(values), L, b32, y32, op);
    y.copy_(y32);
    return;
  }
  if (element_kernels_run(g.br, g.bc)) {
    const Tensor b = bias.has_value() ? bias->contiguous() : Tensor();
    return element_product_forward(g, x, xs, values, L, b, y, strides_of(y));
  }
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

void product_backward(const ConvGeometry& g, const Tensor& grad, const Strides& gs, const Tensor& x, const Strides& xs,
                      const Tensor& values, const Layout& L, Grads& out) {
  check_layout(g, values, L, "bsr_product_backward");
  Tensor &dx = out.dx, &dv = out.dv, &db = out.db;
  if (g.B == 0 || g.Wo == 0) {
    for (Tensor* t : {&dx, &dv, &db})
      if (t->defined()) t->zero_();
    return;
  }
  if (element_kernels_run(g.br, g.bc))
    return element_product_backward(g, grad, gs, x, xs, values, L, out, dx.defined() ? strides_of(dx) : Strides{});
  if (tiles_in_float32(g, x)) {
    const Tensor g32 = as_float32(grad), x32 = as_float32(x);
    Grads out32{float32_like(dx), float32_like(dv), float32_like(db)};
    product_backward(g, g32, strides_of(g32), x32, strides_of(x32), as_float32(values), L, out32);
    for (auto [t, t32] : {std::pair{&dx, &out32.dx}, {&dv, &out32.dv}, {&db, &out32.db}})
      if (t->defined()) t->copy_(*t32);
    return;
  }
  if (dx.defined() && dx.dim() == 4 && !dx.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    // the tile kernels write dX as NHWC: into a channels_last copy, then into dx's own format
    Grads nhwc{at::empty(dx.sizes(), dx.options().memory_format(at::MemoryFormat::ChannelsLast)), dv, db};
    product_backward(g, grad, gs, x, xs, values, L, nhwc);
    dx.copy_(nhwc.dx);
    return;
  }
  const Tensor vals = values.contiguous();
  // dY is packed once for both products, padded for a gathering dX.
  int64_t top = 0, left = 0;
  if (dx.defined()) grad_out_padding(g, &top, &left);
  const Grid ggrid{g.B * (g.Ho + 2 * top) * (g.Wo + 2 * left) * g.br, g.br, g.Ho + 2 * top, g.Wo + 2 * left, top, left};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "suptickets_backward", [&] {
    const scalar_t* gp = pack<scalar_t>(kGradOut, grad, gs, g.B, g.Cout, g.Ho, g.Wo, g.br, top, left,
                                        db.defined() ? db.data_ptr<scalar_t>() : nullptr);
    const scalar_t* v = vals.data_ptr<scalar_t>();
    const int32_t *rows = L.rows.data_ptr<int32_t>(), *col_ptr = L.col_ptr.data_ptr<int32_t>(),
                  *col_perm = L.col_perm.data_ptr<int32_t>();
    if (dx.defined()) {
      const Grid nhwc{g.bc, g.Cin, g.H, g.W, 0, 0};  // dx itself
      if (grad_input_gathers(g)) {
        conv_grad_input<scalar_t>(g, gp, ggrid, v, rows, col_ptr, col_perm, dx.data_ptr<scalar_t>(), nhwc);
      } else if (g.PH == 0 && g.PW == 0) {
        dx.zero_();
        conv_grad_input<scalar_t>(g, gp, ggrid, v, rows, col_ptr, col_perm, dx.data_ptr<scalar_t>(), nhwc);
      } else {
        // scattered into zero-padded stripes, then the interior copied out
        Tensor buf = scratch(kGradInput, g.Cin * g.B * g.Hp() * g.Wp(), x.options());
        buf.zero_();
        conv_grad_input<scalar_t>(g, gp, ggrid, v, rows, col_ptr, col_perm, buf.data_ptr<scalar_t>(),
                                  {g.in_stripe(), g.bc, g.Hp(), g.Wp(), g.PH, g.PW});
        unpack_stripes<scalar_t>(buf.data_ptr<scalar_t>(), g.B, g.Cin, g.H, g.W, g.bc, g.PH, g.PW,
                                 dx.data_ptr<scalar_t>());
      }
    }
    if (dv.defined()) {
      const scalar_t* xp = pack<scalar_t>(kInput, x, xs, g.B, g.Cin, g.H, g.W, g.bc, g.PH, g.PW);
      conv_grad_values<scalar_t>(g, gp, ggrid, xp, packed_input(g), rows, L.cols.data_ptr<int32_t>(), values.size(0),
                                 dv.data_ptr<scalar_t>());
    }
  });
}

Tensor grad_or_empty(bool needed, at::IntArrayRef sizes, const at::TensorOptions& opts, at::MemoryFormat format) {
  return needed ? empty_output(sizes, opts, format) : at::empty({0}, opts);
}

}  // namespace cpu
}  // namespace suptickets
