// The torch side of the element-sparse products (element_product.h).
#include "element_product.h"

#include <ATen/Dispatch.h>

#include <algorithm>
#include <type_traits>

#include "element_kernels.h"
#include "workspace.h"

namespace suptickets {
namespace cpu {
namespace {

// The kernels' storage type of a tensor's scalar type (bf16 for c10::BFloat16, bit-compatible).
template <class T>
struct Storage {
  using type = T;
};
template <>
struct Storage<c10::BFloat16> {
  using type = bf16;
};

static_assert(sizeof(bf16) == sizeof(c10::BFloat16), "bf16 is c10::BFloat16's bits");

// A tensor's data as the kernels' storage type S.
template <class S>
S* data_of(const Tensor& t) {
  using T = std::conditional_t<std::is_same_v<S, bf16>, c10::BFloat16, S>;
  return reinterpret_cast<S*>(t.data_ptr<T>());
}

template <class S>
void pack(const Tensor& t, const Strides& s, int64_t B, int64_t C, int64_t H, int64_t W, const Planes& p, int64_t numel,
          S* dst, compute_t<S>* channel_sums = nullptr) {
  pack_planes<S>(data_of<S>(t), B, C, H, W, s.b, s.c, s.h, s.w, p, numel, dst, channel_sums);
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
template <class C>
ElementWeights<C>& thread_weights() {
  static thread_local ElementWeights<C> w;
  return w;
}

}  // namespace

void element_product_forward(const ConvGeometry& g, const Tensor& x, const Strides& xs, const Tensor& values,
                             const Layout& L, const Tensor& bias, Tensor& y, const Strides& ys) {
  const ElementLayouts el = checked_layouts(g, "bsr_product");
  const Tensor vals = values.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "suptickets_element_forward", [&] {
    using S = typename Storage<scalar_t>::type;
    ElementWeights<compute_t<S>>& w = thread_weights<compute_t<S>>();
    element_weights<S>(g, el, data_of<S>(vals), L.rows.data_ptr<int32_t>(), L.cols.data_ptr<int32_t>(),
                       L.row_ptr.data_ptr<int32_t>(), L.col_ptr.data_ptr<int32_t>(), L.col_perm.data_ptr<int32_t>(),
                       true, false, &w);
    Tensor xbuf = scratch(kInput, el.x_numel + kElementAlign, x.options());
    pack<S>(x, xs, g.B, g.Cin, g.H, g.W, el.x, xbuf.numel(), data_of<S>(xbuf));
    const ElementOutput<S> out{data_of<S>(y), ys.b, ys.c, ys.h, ys.w, g.B, g.Wo};
    element_forward<S>(g, el, w, data_of<S>(xbuf), bias.defined() ? data_of<S>(bias) : nullptr, out);
  });
}

void element_product_backward(const ConvGeometry& g, const Tensor& grad, const Strides& gs, const Tensor& x,
                              const Strides& xs, const Tensor& values, const Layout& L, Grads& out, const Strides& ds) {
  const ElementLayouts el = element_layouts(g);
  const Tensor vals = values.contiguous();
  Tensor &dx = out.dx, &dv = out.dv, &db = out.db;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "suptickets_element_backward", [&] {
    using S = typename Storage<scalar_t>::type;
    using C = compute_t<S>;
    ElementWeights<C>& w = thread_weights<C>();
    element_weights<S>(g, el, data_of<S>(vals), L.rows.data_ptr<int32_t>(), L.cols.data_ptr<int32_t>(),
                       L.row_ptr.data_ptr<int32_t>(), L.col_ptr.data_ptr<int32_t>(), L.col_perm.data_ptr<int32_t>(),
                       dv.defined(), dx.defined(), &w);
    Tensor dybuf = scratch(kGradOut, el.dy_numel + kElementAlign, x.options());
    // the bias gradient summed in the compute type (float32 for bf16), then stored in db's dtype
    Tensor sums = db.defined() ? (db.scalar_type() == c10::CppTypeToScalarType<C>::value
                                      ? db
                                      : at::empty({g.Cout}, db.options().dtype(c10::CppTypeToScalarType<C>::value)))
                               : Tensor();
    pack<S>(grad, gs, g.B, g.Cout, g.Ho, g.Wo, el.dy, dybuf.numel(), data_of<S>(dybuf),
            sums.defined() ? sums.data_ptr<C>() : nullptr);
    if (sums.defined() && !sums.is_same(db)) db.copy_(sums);
    if (dx.defined()) {
      const ElementOutput<S> out{data_of<S>(dx), ds.b, ds.c, ds.h, ds.w, g.B, g.W};
      element_grad_input<S>(g, el, w, data_of<S>(dybuf), out);
    }
    if (dv.defined()) {
      Tensor xbuf = scratch(kInput, el.x_numel + kElementAlign, x.options());
      pack<S>(x, xs, g.B, g.Cin, g.H, g.W, el.x, xbuf.numel(), data_of<S>(xbuf));
      element_grad_values<S>(g, el, w, data_of<S>(dybuf), data_of<S>(xbuf), dv.numel(), data_of<S>(dv));
    }
  });
}

}  // namespace cpu
}  // namespace suptickets
