// CPU implementations of the index arithmetic of BlockLayout (python/suptickets/sparse/layout.py
// holds the contract): the CSR/CSC pointers and column permutation of a layout by counting
// sort, the merge of kept and grown blocks of a topology update, and the gather that moves
// values and optimizer state to their new slots. All are O(nnz + grid side).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <limits>
#include <vector>

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
  for (int64_t i = 0; i < ng; ++i)
    TORCH_CHECK(g[i] >= 0 && (i == 0 || g[i] > g[i - 1]),
                "suptickets: grow blocks must be ascending without repeats and >= 0");
  const int64_t n_new = nnz - nd + ng;
  // Kept slots and their block ids, compacted without branches.
  std::vector<uint8_t> keep(nnz, 1);
  for (int64_t i = 0; i < nd; ++i) keep[d[i]] = 0;
  std::vector<int64_t> kept_id(nnz - nd + 1), kept_src(nnz - nd + 1);
  std::vector<int32_t> kept_row(nnz - nd + 1), kept_col(nnz - nd + 1);
  int64_t w = 0;
  for (int64_t s = 0; s < nnz; ++s) {
    kept_id[w] = int64_t(r[s]) * grid_cols + c[s];
    kept_src[w] = s;
    kept_row[w] = r[s];
    kept_col[w] = c[s];
    w += keep[s];
  }
  const int64_t nk = nnz - nd;
  kept_id[nk] = std::numeric_limits<int64_t>::max();  // sentinels
  kept_src[nk] = kept_row[nk] = kept_col[nk] = 0;
  std::vector<int64_t> grown(g, g + ng);
  grown.push_back(std::numeric_limits<int64_t>::max());
  // Rows and columns of the grown blocks (a double-precision quotient, corrected: no integer division).
  std::vector<int32_t> grown_row(ng + 1, 0), grown_col(ng + 1, 0);
  const double inv = 1.0 / double(grid_cols);
  for (int64_t i = 0; i < ng; ++i) {
    int64_t q = int64_t(double(g[i]) * inv);
    q -= q * grid_cols > g[i];
    q += (q + 1) * grid_cols <= g[i];
    grown_row[i] = int32_t(q);
    grown_col[i] = int32_t(g[i] - q * grid_cols);
  }
  Tensor new_rows = at::empty({n_new}, at::kInt), new_cols = at::empty({n_new}, at::kInt);
  Tensor src = at::empty({n_new}, at::kLong);
  int32_t* nr = new_rows.data_ptr<int32_t>();
  int32_t* nc = new_cols.data_ptr<int32_t>();
  int64_t* ns = src.data_ptr<int64_t>();
  // Branch-free merge of two ascending lists; a grow id equal to a kept one is an error.
  int64_t ki = 0, gi = 0, collisions = 0;
  for (int64_t out = 0; out < n_new; ++out) {
    const int64_t a = kept_id[ki], b = grown[gi];
    const bool take_grow = b <= a;
    collisions += b == a;
    nr[out] = take_grow ? grown_row[gi] : kept_row[ki];
    nc[out] = take_grow ? grown_col[gi] : kept_col[ki];
    ns[out] = take_grow ? -1 : kept_src[ki];
    gi += take_grow;
    ki += !take_grow;
  }
  TORCH_CHECK(collisions == 0, "suptickets: a grow block is already active (", collisions, " of them)");
  return {new_rows, new_cols, src};
}

// out[s] = t[src[s]] (rows of a [nnz, ...] tensor), zeros where src[s] == -1: values and
// optimizer state follow a topology change (sparse/repack.py).
Tensor gather_slots(const Tensor& t_in, const Tensor& src_in) {
  check_int_vector(src_in, "src", at::kLong);
  TORCH_CHECK(t_in.device().is_cpu() && t_in.dim() >= 1, "suptickets::gather_slots: t must be a CPU tensor [nnz, ...]");
  const Tensor t = t_in.contiguous(), src = src_in.contiguous();
  const int64_t rows = t.size(0), n = src.numel();
  const int64_t row_bytes = rows ? t.nbytes() / rows : 0;
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  shape[0] = n;
  Tensor out = at::empty(shape, t.options());
  const int64_t* sp = src.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    TORCH_CHECK(sp[i] >= -1 && sp[i] < rows, "suptickets: src entries must be -1 or an old slot in [0, ", rows,
                "), got ", sp[i]);
  const char* from = static_cast<const char*>(t.data_ptr());
  char* to = static_cast<char*>(out.data_ptr());
  at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if (sp[i] < 0)
        std::memset(to + i * row_bytes, 0, row_bytes);
      else
        std::memcpy(to + i * row_bytes, from + sp[i] * row_bytes, row_bytes);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(suptickets, CPU, m) {
  m.impl("layout_index", &layout_index);
  m.impl("merge_blocks", &merge_blocks);
  m.impl("gather_slots", &gather_slots);
}

}  // namespace cpu
}  // namespace suptickets
