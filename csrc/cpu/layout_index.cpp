// CPU implementations of the index arithmetic of BlockLayout (python/suptickets/sparse/layout.py
// holds the contract): the CSR/CSC pointers and column permutation of a layout by counting
// sort, the merge of kept and grown blocks of a topology update, and the gather that moves
// values and optimizer state to their new slots. All are O(nnz + grid side).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <vector>

#include "checks.h"
#include "stream_copy.h"

namespace suptickets {
namespace cpu {
namespace {

using at::Tensor;

// row_ptr[grid_rows + 1], col_ptr[grid_cols + 1], col_perm[nnz] (int32) of row-major slots.
std::tuple<Tensor, Tensor, Tensor> layout_index(const Tensor& rows_in, const Tensor& cols_in, int64_t grid_rows,
                                                int64_t grid_cols) {
  check_index(rows_in, "rows", "layout_index", at::kInt);
  check_index(cols_in, "cols", "layout_index", at::kInt);
  const Tensor rows = rows_in.contiguous(), cols = cols_in.contiguous();
  const int64_t nnz = rows.numel();
  TORCH_CHECK_VALUE(cols.numel() == nnz, "suptickets::layout_index: rows and cols differ in length");
  TORCH_CHECK_VALUE(nnz <= std::numeric_limits<int32_t>::max(), "suptickets::layout_index: too many blocks for int32");
  Tensor row_ptr = at::zeros({grid_rows + 1}, at::kInt);
  Tensor col_ptr = at::zeros({grid_cols + 1}, at::kInt);
  Tensor col_perm = at::empty({nnz}, at::kInt);
  const int32_t* r = rows.data_ptr<int32_t>();
  const int32_t* c = cols.data_ptr<int32_t>();
  int32_t* rp = row_ptr.data_ptr<int32_t>();
  int32_t* cp = col_ptr.data_ptr<int32_t>();
  int32_t* perm = col_perm.data_ptr<int32_t>();
  // Counting sort by column in parts of the slot range: counts per part, then each part
  // scatters its slots after those of earlier parts (stable: row order within a column).
  const int64_t parts = std::clamp<int64_t>(nnz / 65536, 1, 4 * at::get_num_threads());
  std::vector<int32_t> counts(parts * (grid_cols + 1), 0);
  std::vector<int32_t> row_counts(parts * (grid_rows + 1), 0);
  std::atomic<bool> bad{false};
  at::parallel_for(0, parts, 1, [&](int64_t pb, int64_t pe) {
    for (int64_t p = pb; p < pe; ++p) {
      int32_t* const cc = counts.data() + p * (grid_cols + 1);
      int32_t* const rc = row_counts.data() + p * (grid_rows + 1);
      const int32_t* const r_ = r;
      const int32_t* const c_ = c;
      const int64_t gr_ = grid_rows, gc_ = grid_cols;
      bool ok = true;
      for (int64_t s = p * nnz / parts, e = (p + 1) * nnz / parts; s < e; ++s) {
        const bool inside = r_[s] >= 0 && r_[s] < gr_ && c_[s] >= 0 && c_[s] < gc_;
        ok &= inside;
        if (inside) ++cc[c_[s]], ++rc[r_[s]];
      }
      if (!ok) bad = true;
    }
  });
  TORCH_CHECK_VALUE(!bad, "suptickets::layout_index: a block lies outside the ", grid_rows, " x ", grid_cols, " grid");
  for (int64_t i = 0; i < grid_rows; ++i) {
    int32_t n = 0;
    for (int64_t p = 0; p < parts; ++p) n += row_counts[p * (grid_rows + 1) + i];
    rp[i + 1] = rp[i] + n;
  }
  int32_t total = 0;  // counts become each part's first position per column
  for (int64_t j = 0; j < grid_cols; ++j) {
    cp[j] = total;
    for (int64_t p = 0; p < parts; ++p) {
      int32_t& n = counts[p * (grid_cols + 1) + j];
      const int32_t here = n;
      n = total;
      total += here;
    }
  }
  cp[grid_cols] = total;
  at::parallel_for(0, parts, 1, [&](int64_t pb, int64_t pe) {
    for (int64_t p = pb; p < pe; ++p) {
      int32_t* const next = counts.data() + p * (grid_cols + 1);
      const int32_t* const c_ = c;
      int32_t* const perm_ = perm;
      for (int64_t s = p * nnz / parts, e = (p + 1) * nnz / parts; s < e; ++s) perm_[next[c_[s]]++] = int32_t(s);
    }
  });
  return {row_ptr, col_ptr, col_perm};
}

// The slots of a layout without the slots `drop` and with the blocks `grow` (flat ids r * grid_cols + c),
// in row-major order: new rows, cols (int32) and src (int64: the old slot, or -1 for a grown block).
std::tuple<Tensor, Tensor, Tensor> merge_blocks(const Tensor& rows_in, const Tensor& cols_in, const Tensor& drop_in,
                                                const Tensor& grow_in, int64_t grid_cols) {
  check_index(rows_in, "rows", "merge_blocks", at::kInt);
  check_index(cols_in, "cols", "merge_blocks", at::kInt);
  check_index(drop_in, "drop", "merge_blocks", at::kLong);
  check_index(grow_in, "grow", "merge_blocks", at::kLong);
  const Tensor rows = rows_in.contiguous(), cols = cols_in.contiguous();
  const Tensor drop = drop_in.contiguous(), grow = grow_in.contiguous();
  const int64_t nnz = rows.numel(), nd = drop.numel(), ng = grow.numel();
  const int32_t* r = rows.data_ptr<int32_t>();
  const int32_t* c = cols.data_ptr<int32_t>();
  const int64_t* d = drop.data_ptr<int64_t>();
  const int64_t* g = grow.data_ptr<int64_t>();
  for (int64_t i = 0; i < nd; ++i) {
    TORCH_CHECK_VALUE(d[i] >= 0 && d[i] < nnz, "suptickets: drop slots must lie in [0, ", nnz, "), got ", d[i]);
    TORCH_CHECK_VALUE(i == 0 || d[i] > d[i - 1], "suptickets: drop slots must be ascending and must not repeat");
  }
  for (int64_t i = 0; i < ng; ++i)
    TORCH_CHECK_VALUE(g[i] >= 0 && (i == 0 || g[i] > g[i - 1]),
                      "suptickets: grow blocks must be ascending without repeats and >= 0");
  const int64_t n_new = nnz - nd + ng;
  std::vector<uint8_t> keep(nnz, 1);
  for (int64_t i = 0; i < nd; ++i) keep[d[i]] = 0;
  // Rows and columns of the grown blocks (a double-precision quotient, corrected: no integer division).
  std::vector<int32_t> grown_row(ng), grown_col(ng);
  const double inv = 1.0 / double(grid_cols);
  for (int64_t i = 0; i < ng; ++i) {
    int64_t q = int64_t(double(g[i]) * inv);
    q -= q * grid_cols > g[i];
    q += (q + 1) * grid_cols <= g[i];
    grown_row[i] = int32_t(q);
    grown_col[i] = int32_t(g[i] - q * grid_cols);
  }
  // One extra entry: a dropped last slot writes its (overwritten or unused) entry there.
  Tensor new_rows = at::empty({n_new + 1}, at::kInt), new_cols = at::empty({n_new + 1}, at::kInt);
  Tensor src = at::empty({n_new + 1}, at::kLong);
  int32_t* nr = new_rows.data_ptr<int32_t>();
  int32_t* nc = new_cols.data_ptr<int32_t>();
  int64_t* ns = src.data_ptr<int64_t>();
  // Merge in parts of the old slot range, in parallel. Every old slot, kept or dropped, is
  // written at the next output position, which only a kept slot then claims: a dropped
  // slot's entry is overwritten by whatever comes next (no branch on the drop pattern).
  // Grown blocks go before the first old slot of a larger id; a grow id equal to a kept
  // slot's is an error.
  const int64_t parts = std::clamp<int64_t>(nnz / 65536, 1, 4 * at::get_num_threads());
  std::vector<int64_t> slot0(parts + 1), grow0(parts + 1), out0(parts + 1);
  for (int64_t p = 0; p <= parts; ++p) {
    slot0[p] = p * nnz / parts;
    const int64_t id =
        slot0[p] < nnz ? int64_t(r[slot0[p]]) * grid_cols + c[slot0[p]] : std::numeric_limits<int64_t>::max();
    grow0[p] = p == 0 ? 0 : p == parts ? ng : std::lower_bound(g, g + ng, id) - g;
    const int64_t dropped_before = std::lower_bound(d, d + nd, slot0[p]) - d;
    out0[p] = slot0[p] - dropped_before + grow0[p];
  }
  std::atomic<int64_t> collisions{0};
  at::parallel_for(0, parts, 1, [&](int64_t pb, int64_t pe) {
    // Locals, not captured references: the compiler keeps them in registers in the loop.
    const int32_t* const r_ = r;
    const int32_t* const c_ = c;
    const uint8_t* const keep_ = keep.data();
    const int64_t* const g_ = g;
    const int32_t* const grown_row_ = grown_row.data();
    const int32_t* const grown_col_ = grown_col.data();
    int32_t* const nr_ = nr;
    int32_t* const nc_ = nc;
    int64_t* const ns_ = ns;
    const int64_t gcols = grid_cols;
    for (int64_t p = pb; p < pe; ++p) {
      int64_t out = out0[p], gi = grow0[p], found = 0;
      const int64_t g_end = grow0[p + 1];
      for (int64_t s = slot0[p], s_end = slot0[p + 1]; s < s_end; ++s) {
        const int64_t id = int64_t(r_[s]) * gcols + c_[s];
        for (; gi < g_end && g_[gi] < id; ++gi, ++out) {
          nr_[out] = grown_row_[gi];
          nc_[out] = grown_col_[gi];
          ns_[out] = -1;
        }
        const uint8_t k = keep_[s];
        found += k & uint8_t(gi < g_end && g_[gi] == id);
        nr_[out] = r_[s];
        nc_[out] = c_[s];
        ns_[out] = s;
        out += k;
      }
      for (; gi < g_end; ++gi, ++out) {
        nr_[out] = grown_row_[gi];
        nc_[out] = grown_col_[gi];
        ns_[out] = -1;
      }
      collisions += found;
    }
  });
  TORCH_CHECK_VALUE(collisions == 0, "suptickets: a grow block is already active (", collisions.load(), " of them)");
  return {new_rows.narrow(0, 0, n_new), new_cols.narrow(0, 0, n_new), src.narrow(0, 0, n_new)};
}

// Gathered outputs at least this large are written with non-temporal stores.
constexpr int64_t kStreamBytes = int64_t(8) << 20;

// out[s] = t[src[s]] (rows of a [nnz, ...] tensor), zeros where src[s] == -1: values and
// optimizer state follow a topology change (sparse/repack.py).
Tensor gather_slots(const Tensor& t_in, const Tensor& src_in) {
  check_index(src_in, "src", "gather_slots", at::kLong);
  TORCH_CHECK_VALUE(t_in.device().is_cpu() && t_in.dim() >= 1,
                    "suptickets::gather_slots: t must be a CPU tensor [nnz, ...]");
  const Tensor t = t_in.contiguous(), src = src_in.contiguous();
  const int64_t rows = t.size(0), n = src.numel();
  const int64_t row_bytes = rows ? t.nbytes() / rows : 0;
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  shape[0] = n;
  Tensor out = at::empty(shape, t.options());
  const int64_t* sp = src.data_ptr<int64_t>();
  std::atomic<bool> bad{false};
  auto copy_rows = [&](auto word) {  // rows of one 4- or 8-byte word: no memcpy call per row
    using W = decltype(word);
    const W* from = static_cast<const W*>(t.data_ptr());
    W* to = static_cast<W*>(out.data_ptr());
    at::parallel_for(0, n, 16384, [&](int64_t b, int64_t e) {
      const int64_t* const sp_ = sp;
      const W* const from_ = from;
      W* const to_ = to;
      const int64_t rows_ = rows;
      bool ok = true;
      for (int64_t i = b; i < e; ++i) {
        const int64_t j = sp_[i];
        ok &= j >= -1 && j < rows_;
        to_[i] = (j >= 0 && j < rows_) ? from_[j] : W(0);
      }
      if (!ok) bad = true;
    });
  };
  if (row_bytes == 4) {
    copy_rows(uint32_t{});
  } else if (row_bytes == 8) {
    copy_rows(uint64_t{});
  } else {
    const char* from = static_cast<const char*>(t.data_ptr());
    char* to = static_cast<char*>(out.data_ptr());
    // Outputs larger than the caches are written around them (values and optimizer state
    // of a whole layer, read again only by the next step).
    const bool stream = n * row_bytes >= kStreamBytes && row_bytes % 16 == 0;
    at::parallel_for(0, n, 64, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t j = sp[i];
        if (j < -1 || j >= rows) bad = true;
        if (j >= 0 && j < rows)
          copy_bytes(to + i * row_bytes, from + j * row_bytes, row_bytes, stream);
        else
          std::memset(to + i * row_bytes, 0, row_bytes);
      }
      if (stream) store_fence();
    });
  }
  TORCH_CHECK_VALUE(!bad, "suptickets: src entries must be -1 or an old slot in [0, ", rows, ")");
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
