// CPU implementation of suptickets::prune_grow: the k_drop weakest active slots and the
// k_grow strongest blocks that are inactive once those are dropped (csrc/cpu/select.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <atomic>
#include <cstring>

#include "checks.h"
#include "select.h"

namespace suptickets {
namespace cpu {
namespace {

using at::Tensor;

std::tuple<Tensor, Tensor> prune_grow(const Tensor& drop_scores, const Tensor& grow_scores, const Tensor& rows,
                                      const Tensor& cols, int64_t k_drop, int64_t k_grow) {
  check_float_cpu(drop_scores, "drop_scores", "prune_grow");
  TORCH_CHECK_VALUE(drop_scores.dim() == 1, "suptickets::prune_grow: drop_scores must be 1-D [nnz], got shape ",
                    drop_scores.sizes());
  const int64_t nnz = drop_scores.numel();
  TORCH_CHECK_VALUE(k_drop >= 0 && k_drop <= nnz, "suptickets::prune_grow: k_drop must be in [0, ", nnz, "], got ",
                    k_drop);
  TORCH_CHECK_VALUE(k_grow >= 0, "suptickets::prune_grow: k_grow must be >= 0, got ", k_grow);
  const Tensor ds = drop_scores.contiguous();
  Tensor drop = at::empty({k_drop}, at::kLong);
  AT_DISPATCH_FLOATING_TYPES(ds.scalar_type(), "prune_grow", [&] {
    select_k(ds.data_ptr<scalar_t>(), nnz, k_drop, false, nullptr, "drop scores", drop.data_ptr<int64_t>());
  });
  if (k_grow == 0) return {drop, at::empty({0}, at::kLong)};

  check_float_cpu(grow_scores, "grow_scores", "prune_grow");
  TORCH_CHECK_VALUE(grow_scores.dim() == 2,
                    "suptickets::prune_grow: grow_scores must be the 2-D block grid, got shape ", grow_scores.sizes());
  check_index(rows, "rows", "prune_grow", at::kInt, nnz);
  check_index(cols, "cols", "prune_grow", at::kInt, nnz);
  const int64_t gr = grow_scores.size(0), gc = grow_scores.size(1);
  // Active-block bytes of the grid, reused from call to call on this thread (no page faults).
  thread_local std::vector<uint8_t> active_bytes;
  std::vector<uint8_t>& active = active_bytes;
  const int64_t n = gr * gc;
  if (int64_t(active.size()) < n) active.resize(n);
  uint8_t* const act = active.data();
  at::parallel_for(0, n, 1 << 20, [&](int64_t b, int64_t e) { std::memset(act + b, 0, e - b); });
  const Tensor rc = rows.contiguous(), cc = cols.contiguous();
  const int32_t* r = rc.data_ptr<int32_t>();
  const int32_t* c = cc.data_ptr<int32_t>();
  std::atomic<bool> outside{false};
  at::parallel_for(0, nnz, 1 << 16, [&](int64_t b, int64_t e) {
    const int32_t* const r_ = r;
    const int32_t* const c_ = c;
    bool ok = true;
    for (int64_t s = b; s < e; ++s) {
      const bool inside = r_[s] >= 0 && r_[s] < gr && c_[s] >= 0 && c_[s] < gc;
      ok &= inside;
      if (inside) act[int64_t(r_[s]) * gc + c_[s]] = 1;
    }
    if (!ok) outside = true;
  });
  TORCH_CHECK_VALUE(!outside, "suptickets::prune_grow: a block of rows/cols lies outside the ", gr, " x ", gc,
                    " grid of grow_scores");
  const int64_t* dropped = drop.data_ptr<int64_t>();
  at::parallel_for(0, k_drop, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) act[int64_t(r[dropped[i]]) * gc + c[dropped[i]]] = 0;
  });
  const Tensor gs = grow_scores.contiguous();
  Tensor grow = at::empty({k_grow}, at::kLong);
  AT_DISPATCH_FLOATING_TYPES(gs.scalar_type(), "prune_grow", [&] {
    select_k(gs.data_ptr<scalar_t>(), n, k_grow, true, act, "grow scores", grow.data_ptr<int64_t>());
  });
  return {drop, grow};
}

}  // namespace

TORCH_LIBRARY_IMPL(suptickets, CPU, m) { m.impl("prune_grow", &prune_grow); }

}  // namespace cpu
}  // namespace suptickets
