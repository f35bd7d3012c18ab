// CPU implementation of suptickets::select_k: the k lowest (or highest) of a 1-D score tensor,
// optionally among the entries not marked in `skip`, by exact radix selection (csrc/cpu/select.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <optional>

#include "checks.h"
#include "select.h"

namespace suptickets {
namespace cpu {
namespace {

using at::Tensor;

Tensor select_k_cpu(const Tensor& scores, int64_t k, bool largest, const std::optional<Tensor>& skip) {
  check_float_cpu(scores, "scores", "select_k");
  TORCH_CHECK_VALUE(scores.dim() == 1, "suptickets::select_k: scores must be 1-D, got shape ", scores.sizes());
  const int64_t n = scores.numel();
  TORCH_CHECK_VALUE(k >= 0 && k <= n, "suptickets::select_k: k must be in [0, ", n, "], got ", k);
  Tensor mask;
  if (skip.has_value()) {
    TORCH_CHECK_VALUE(
        skip->device().is_cpu() && skip->scalar_type() == at::kBool && skip->dim() == 1 && skip->numel() == n,
        "suptickets::select_k: skip must be a 1-D bool CPU tensor of ", n, " entries, got ", skip->scalar_type(),
        " of shape ", skip->sizes());
    mask = skip->contiguous();
  }
  const Tensor s = scores.contiguous();
  Tensor out = at::empty({k}, at::kLong);
  const uint8_t* skipped = mask.defined() ? reinterpret_cast<const uint8_t*>(mask.data_ptr<bool>()) : nullptr;
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "select_k", [&] {
    select_k(s.data_ptr<scalar_t>(), n, k, largest, skipped, "scores", out.data_ptr<int64_t>());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(suptickets, CPU, m) { m.impl("select_k", &select_k_cpu); }

}  // namespace cpu
}  // namespace suptickets
