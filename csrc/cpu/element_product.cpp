// The torch side of the element-sparse products (element_product.h).
#include "element_product.h"

#include <ATen/Dispatch.h>

#include <algorithm>

#include "element_kernels.h"
#include "workspace.h"

namespace suptickets {
namespace cpu {
namespace {

template <class T>
void pack(const Tensor& t, const Strides& s, int64_t B, int64_t C, int64_t H, int64_t W, const Planes& p, int64_t numel,
          T* dst, T* channel_sums = nullptr) {
  pack_planes<T>(t.data_ptr<T>(), B, C, H, W, s.b, s.c, s.h, s.w, p, numel, dst, channel_sums);
}

}  // namespace

bool element_kernels_run(int64_t br, int64_t bc) { return std::min(br, bc) < 8; }

namespace {

ElementLayouts checked_layouts(const ConvGeometry& g, const char* op) {
  const ElementLayouts el = element_layouts(g);
  TORCH_CHECK_VALUE(element_layouts_fit(el), "suptickets::", op, ": the activations (", g.B, " x ", g.Cin, " x ", g.H,
                    " x ", g.W, " input, ", g.Cout, " x ", g.Ho, " x ", g.Wo,
                    " output) exceed the 2^31 elements the kernels of blocks with a side below 8 index; use a "
                    "smaller batch or blocks of at least 8 x 8");
  return el;
}

// The item arrays, kept between calls on this thread (their capacity is reused).
template <class T>
ElementWeights<T>& thread_weights() {
  static thread_local ElementWeights<T> w;
  return w;
}

}  // namespace

void element_product_forward(const ConvGeometry& g, const Tensor& x, const Strides& xs, const Tensor& values,
                             const Layout& L, const Tensor& bias, Tensor& y, const Strides& ys) {
  const ElementLayouts el = checked_layouts(g, "bsr_product");
  const Tensor vals = values.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "suptickets_element_forward", [&] {
    ElementWeights<scalar_t>& w = thread_weights<scalar_t>();
    element_weights<scalar_t>(g, el, vals.data_ptr<scalar_t>(), L.rows.data_ptr<int32_t>(), L.cols.data_ptr<int32_t>(),
                              L.row_ptr.data_ptr<int32_t>(), L.col_ptr.data_ptr<int32_t>(),
                              L.col_perm.data_ptr<int32_t>(), true, false, &w);
    Tensor xbuf = scratch(kInput, el.x_numel + kElementAlign, x.options());
    pack<scalar_t>(x, xs, g.B, g.Cin, g.H, g.W, el.x, xbuf.numel(), xbuf.data_ptr<scalar_t>());
    const ElementOutput<scalar_t> out{y.data_ptr<scalar_t>(), ys.b, ys.c, ys.h, ys.w, g.B, g.Wo};
    element_forward<scalar_t>(g, el, w, xbuf.data_ptr<scalar_t>(), bias.defined() ? bias.data_ptr<scalar_t>() : nullptr,
                              out);
  });
}

void element_product_backward(const ConvGeometry& g, const Tensor& grad, const Strides& gs, const Tensor& x,
                              const Strides& xs, const Tensor& values, const Layout& L, Grads& out, const Strides& ds) {
  const ElementLayouts el = element_layouts(g);
  const Tensor vals = values.contiguous();
  Tensor &dx = out.dx, &dv = out.dv, &db = out.db;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "suptickets_element_backward", [&] {
    ElementWeights<scalar_t>& w = thread_weights<scalar_t>();
    element_weights<scalar_t>(g, el, vals.data_ptr<scalar_t>(), L.rows.data_ptr<int32_t>(), L.cols.data_ptr<int32_t>(),
                              L.row_ptr.data_ptr<int32_t>(), L.col_ptr.data_ptr<int32_t>(),
                              L.col_perm.data_ptr<int32_t>(), dv.defined(), dx.defined(), &w);
    Tensor dybuf = scratch(kGradOut, el.dy_numel + kElementAlign, x.options());
    pack<scalar_t>(grad, gs, g.B, g.Cout, g.Ho, g.Wo, el.dy, dybuf.numel(), dybuf.data_ptr<scalar_t>(),
                   db.defined() ? db.data_ptr<scalar_t>() : nullptr);
    if (dx.defined()) {
      const ElementOutput<scalar_t> out{dx.data_ptr<scalar_t>(), ds.b, ds.c, ds.h, ds.w, g.B, g.W};
      element_grad_input<scalar_t>(g, el, w, dybuf.data_ptr<scalar_t>(), out);
    }
    if (dv.defined()) {
      Tensor xbuf = scratch(kInput, el.x_numel + kElementAlign, x.options());
      pack<scalar_t>(x, xs, g.B, g.Cin, g.H, g.W, el.x, xbuf.numel(), xbuf.data_ptr<scalar_t>());
      element_grad_values<scalar_t>(g, el, w, dybuf.data_ptr<scalar_t>(), xbuf.data_ptr<scalar_t>(), dv.numel(),
                                    dv.data_ptr<scalar_t>());
    }
  });
}

}  // namespace cpu
}  // namespace suptickets
