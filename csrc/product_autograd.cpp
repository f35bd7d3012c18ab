// The autograd formula of the block-sparse products (docs/DESIGN.md, "Ops"), registered in C++ as
// the Autograd kernel of the operators this library defines in C++ (`bsr_linear`, `bsr_conv2d`):
//
//   forward:  y = op(x, values, index..., bias, out, geometry...)      (below autograd)
//   backward: (dX, dvalues, dbias) = op_backward(dY, x, values, index..., geometry...,
//             need_input, need_values, need_bias)                         (any gradient not needed is
//             not computed; the index tensors and integers get none)
//
// A kernel in C++ costs a few microseconds a call; `torch.library.register_autograd` costs the
// Python round trip of its wrapper (an autograd.Function, the schema's defaults rebuilt per call and
// a redispatch), about 100 us per product, which small layers feel. The Triton operators, defined in
// Python, register the same formula from python/suptickets/ops/product.py; the kernel tests compare
// both with the reference's autograd.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <utility>
#include <vector>

namespace suptickets {
namespace {

using at::IntArrayRef;
using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr size_t kIndexTensors = 5;  // rows, cols, row_ptr, col_ptr, col_perm
constexpr size_t kBiasEdge = 2 + kIndexTensors;

using LinearSig = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, const std::optional<Tensor>&, int64_t);
using LinearBackwardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                                             const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                                             bool, bool, bool);
using ConvSig = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                       const Tensor&, const std::optional<Tensor>&, int64_t, IntArrayRef, IntArrayRef, IntArrayRef,
                       IntArrayRef);
using ConvBackwardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                                           const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                                           IntArrayRef, IntArrayRef, IntArrayRef, IntArrayRef, bool,
                                                           bool, bool);

template <typename Sig>
c10::TypedOperatorHandle<Sig> handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

// What both products keep for the backward pass: x, values and the index tensors, and whether a
// bias took part (its edge exists only then).
void save(AutogradContext* ctx, const Tensor& x, const Tensor& values, const Tensor& rows, const Tensor& cols,
          const Tensor& row_ptr, const Tensor& col_ptr, const Tensor& col_perm, const std::optional<Tensor>& bias) {
  ctx->save_for_backward({x, values, rows, cols, row_ptr, col_ptr, col_perm});
  ctx->saved_data["bias"] = bias.has_value() && bias->defined();
}

// (need_input, need_values, need_bias) of the pass.
std::tuple<bool, bool, bool> needs(AutogradContext* ctx) {
  const bool with_bias = ctx->saved_data["bias"].toBool();
  return {ctx->needs_input_grad(0), ctx->needs_input_grad(1), with_bias && ctx->needs_input_grad(kBiasEdge)};
}

// One gradient per forward argument: dX, dvalues, none for the index tensors, dbias, none for the
// integers (`n_inputs` arguments in all).
variable_list gradients(std::tuple<Tensor, Tensor, Tensor> grads, std::tuple<bool, bool, bool> need, size_t n_inputs) {
  variable_list out(n_inputs);
  if (std::get<0>(need)) out[0] = std::move(std::get<0>(grads));
  if (std::get<1>(need)) out[1] = std::move(std::get<1>(grads));
  if (std::get<2>(need)) out[kBiasEdge] = std::move(std::get<2>(grads));
  return out;
}

struct BsrLinear : public torch::autograd::Function<BsrLinear> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& values, const Tensor& rows,
                        const Tensor& cols, const Tensor& row_ptr, const Tensor& col_ptr, const Tensor& col_perm,
                        const std::optional<Tensor>& bias, int64_t out_features) {
    static const auto op = handle<LinearSig>("suptickets::bsr_linear");
    save(ctx, x, values, rows, cols, row_ptr, col_ptr, col_perm, bias);
    at::AutoDispatchBelowADInplaceOrView below;
    return op.call(x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, out_features);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    static const auto op = handle<LinearBackwardSig>("suptickets::bsr_linear_backward");
    const auto s = ctx->get_saved_variables();
    const auto need = needs(ctx);
    auto grads = op.call(grad_out[0], s[0], s[1], s[2], s[3], s[4], s[5], s[6], std::get<0>(need), std::get<1>(need),
                         std::get<2>(need));
    return gradients(std::move(grads), need, 9);
  }
};

struct BsrConv2d : public torch::autograd::Function<BsrConv2d> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& values, const Tensor& rows,
                        const Tensor& cols, const Tensor& row_ptr, const Tensor& col_ptr, const Tensor& col_perm,
                        const std::optional<Tensor>& bias, int64_t out_channels, IntArrayRef kernel, IntArrayRef stride,
                        IntArrayRef padding, IntArrayRef dilation) {
    static const auto op = handle<ConvSig>("suptickets::bsr_conv2d");
    save(ctx, x, values, rows, cols, row_ptr, col_ptr, col_perm, bias);
    ctx->saved_data["kernel"] = kernel.vec();
    ctx->saved_data["stride"] = stride.vec();
    ctx->saved_data["padding"] = padding.vec();
    ctx->saved_data["dilation"] = dilation.vec();
    at::AutoDispatchBelowADInplaceOrView below;
    return op.call(x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, out_channels, kernel, stride, padding,
                   dilation);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    static const auto op = handle<ConvBackwardSig>("suptickets::bsr_conv2d_backward");
    const auto s = ctx->get_saved_variables();
    const auto need = needs(ctx);
    const auto kernel = ctx->saved_data["kernel"].toIntVector();
    const auto stride = ctx->saved_data["stride"].toIntVector();
    const auto padding = ctx->saved_data["padding"].toIntVector();
    const auto dilation = ctx->saved_data["dilation"].toIntVector();
    auto grads = op.call(grad_out[0], s[0], s[1], s[2], s[3], s[4], s[5], s[6], kernel, stride, padding, dilation,
                         std::get<0>(need), std::get<1>(need), std::get<2>(need));
    return gradients(std::move(grads), need, 13);
  }
};

Tensor bsr_linear_autograd(const Tensor& x, const Tensor& values, const Tensor& rows, const Tensor& cols,
                           const Tensor& row_ptr, const Tensor& col_ptr, const Tensor& col_perm,
                           const std::optional<Tensor>& bias, int64_t out_features) {
  return BsrLinear::apply(x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, out_features);
}

Tensor bsr_conv2d_autograd(const Tensor& x, const Tensor& values, const Tensor& rows, const Tensor& cols,
                           const Tensor& row_ptr, const Tensor& col_ptr, const Tensor& col_perm,
                           const std::optional<Tensor>& bias, int64_t out_channels, IntArrayRef kernel,
                           IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation) {
  return BsrConv2d::apply(x, values, rows, cols, row_ptr, col_ptr, col_perm, bias, out_channels, kernel, stride,
                          padding, dilation);
}

}  // namespace

TORCH_LIBRARY_IMPL(suptickets, Autograd, m) {
  m.impl("bsr_linear", &bsr_linear_autograd);
  m.impl("bsr_conv2d", &bsr_conv2d_autograd);
}

}  // namespace suptickets
