// CPU implementations of the index arithmetic of BlockLayout (python/suptickets/sparse/layout.py
// holds the contract): the CSR/CSC pointers and column permutation of a layout by counting
// sort, and the merge of kept and grown blocks of a topology update. Both are O(nnz + grid side).
#include <ATen/ATen.h>
#include <torch/library.h>

namespace suptickets {
namespace cpu {
namespace {

using at::Tensor;

void check_int_vector(const Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == dtype && t.dim() == 1, "suptickets: ", name,
              " must be a 1-D ", dtype, " CPU tensor, got ", t.scalar_type(), " of shape ", t.sizes(), " on ",
              t.device());
}

// row_ptr[grid_rows + 1], col_ptr[grid_cols + 1], col_perm[nnz] (int32) of row-major slots.
std::tuple<Tensor, Tensor, Tensor> layout_index(const Tensor& rows_in, const Tensor& cols_in, int64_t grid_rows,
                                                int64_t grid_cols) {
  check_int_vector(rows_in, "rows", at::kInt);
  check_int_vector(cols_in, "cols", at::kInt);
  const Tensor rows = rows_in.contiguous(), cols = cols_in.contiguous();
  const int64_t nnz = rows.numel();
  TORCH_CHECK(cols.numel() == nnz, "suptickets::layout_index: rows and cols differ in length");
  TORCH_CHECK(nnz <= std::numeric_limits<int32_t>::max(), "suptickets::layout_index: too many blocks for int32");
  Tensor row_ptr = at::zeros({grid_rows + 1}, at::kInt);
  Tensor col_ptr = at::zeros({grid_cols + 1}, at::kInt);
  Tensor col_perm = at::empty({nnz}, at::kInt);
  const int32_t* r = rows.data_ptr<int32_t>();
  const int32_t* c = cols.data_ptr<int32_t>();
  int32_t* rp = row_ptr.data_ptr<int32_t>();
  int32_t* cp = col_ptr.data_ptr<int32_t>();
  int32_t* perm = col_perm.data_ptr<int32_t>();
  for (int64_t s = 0; s < nnz; ++s) {
    TORCH_CHECK(r[s] >= 0 && r[s] < grid_rows && c[s] >= 0 && c[s] < grid_cols, "suptickets::layout_index: block (",
                r[s], ", ", c[s], ") lies outside the ", grid_rows, " x ", grid_cols, " grid");
    ++rp[r[s] + 1];
    ++cp[c[s] + 1];
  }
  for (int64_t i = 0; i < grid_rows; ++i) rp[i + 1] += rp[i];
  for (int64_t j = 0; j < grid_cols; ++j) cp[j + 1] += cp[j];
  std::vector<int32_t> next(cp, cp + grid_cols);
  for (int64_t s = 0; s < nnz; ++s) perm[next[c[s]]++] = int32_t(s);  // stable: row order within a column
  return {row_ptr, col_ptr, col_perm};
}

// The slots of a layout without the slots `drop` and with the blocks `grow` (flat ids r * grid_cols + c),
// in row-major order: new rows, cols (int32) and src (int64: the old slot, or -1 for a grown block).
std::tuple<Tensor, Tensor, Tensor> merge_blocks(const Tensor& rows_in, const Tensor& cols_in, const Tensor& drop_in,
                                                const Tensor& grow_in, int64_t grid_cols) {
  check_int_vector(rows_in, "rows", at::kInt);
  check_int_vector(cols_in, "cols", at::kInt);
  check_int_vector(drop_in, "drop", at::kLong);
  check_int_vector(grow_in, "grow", at::kLong);
  const Tensor rows = rows_in.contiguous(), cols = cols_in.contiguous();
  const Tensor drop = drop_in.contiguous(), grow = grow_in.contiguous();
  const int64_t nnz = rows.numel(), nd = drop.numel(), ng = grow.numel();
  const int32_t* r = rows.data_ptr<int32_t>();
  const int32_t* c = cols.data_ptr<int32_t>();
  const int64_t* d = drop.data_ptr<int64_t>();
  const int64_t* g = grow.data_ptr<int64_t>();
  for (int64_t i = 0; i < nd; ++i) {
    TORCH_CHECK(d[i] >= 0 && d[i] < nnz, "suptickets: drop slots must lie in [0, ", nnz, "), got ", d[i]);
    TORCH_CHECK(i == 0 || d[i] > d[i - 1], "suptickets: drop slots must be ascending and must not repeat");
  }
  for (int64_t i = 1; i < ng; ++i)
    TORCH_CHECK(g[i] > g[i - 1], "suptickets: grow blocks must be ascending without repeats");
  const int64_t n_new = nnz - nd + ng;
  Tensor new_rows = at::empty({n_new}, at::kInt), new_cols = at::empty({n_new}, at::kInt);
  Tensor src = at::empty({n_new}, at::kLong);
  int32_t* nr = new_rows.data_ptr<int32_t>();
  int32_t* nc = new_cols.data_ptr<int32_t>();
  int64_t* ns = src.data_ptr<int64_t>();
  int64_t s = 0, di = 0, gi = 0, out = 0;
  auto next_kept = [&]() {  // skip dropped slots
    while (s < nnz && di < nd && d[di] == s) ++s, ++di;
  };
  next_kept();
  while (s < nnz || gi < ng) {
    const int64_t kept_id = s < nnz ? int64_t(r[s]) * grid_cols + c[s] : std::numeric_limits<int64_t>::max();
    if (gi < ng && g[gi] <= kept_id) {
      TORCH_CHECK(g[gi] != kept_id, "suptickets: a grow block is already active (block ", g[gi], ")");
      nr[out] = int32_t(g[gi] / grid_cols);
      nc[out] = int32_t(g[gi] % grid_cols);
      ns[out++] = -1;
      ++gi;
    } else {
      nr[out] = r[s];
      nc[out] = c[s];
      ns[out++] = s;
      ++s;
      next_kept();
    }
  }
  return {new_rows, new_cols, src};
}

}  // namespace

TORCH_LIBRARY_IMPL(suptickets, CPU, m) {
  m.impl("layout_index", &layout_index);
  m.impl("merge_blocks", &merge_blocks);
}

}  // namespace cpu
}  // namespace suptickets
