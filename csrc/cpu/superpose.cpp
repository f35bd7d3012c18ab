// CPU implementations of suptickets::superpose_union and suptickets::superpose_: the merge of
// a ticket's blocks into the superposed (accumulated) blocks on the union of their supports,
// with the running average of Sup-tickets (CIA, CAA, CIMA) and the norm of every merged
// block in the same pass, and (superpose_) the re-pruning of the union to the accumulator's
// size, written back into the accumulator in place. Nothing dense-sized is formed: the
// work is O(union size), the scratch at most the two supports together.
//
// Both supports are lists of slots in row-major order (rows/cols int32, as BlockLayout).
// The merge runs in parts of the union that start at the same block in both lists: a
// counting pass sizes each part, a writing pass fills it.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "block_norm.h"
#include "select.h"

namespace suptickets {
namespace cpu {
namespace {

enum class Mode { CIA, CAA, CIMA };

// How a merged block is formed: weights a (accumulator) and b (ticket) for CIA and CIMA;
// CAA weighs per block by the accumulator's count of tickets.
struct Rule {
  Mode mode;
  double a, b;
};

Rule parse_rule(c10::string_view mode, int64_t t, double beta, const char* op) {
  if (mode == "cia") {
    TORCH_CHECK_VALUE(t >= 2, "suptickets::", op, ": t (the number of the ticket being merged) must be >= 2, got ", t);
    return {Mode::CIA, double(t - 1) / double(t), 1.0 / double(t)};
  }
  if (mode == "caa") return {Mode::CAA, 0.0, 0.0};
  if (mode == "cima") {
    TORCH_CHECK_VALUE(beta >= 0.0 && beta < 1.0, "suptickets::", op, ": beta must be in [0, 1), got ", beta);
    return {Mode::CIMA, beta, 1.0 - beta};
  }
  TORCH_CHECK_VALUE(false, "suptickets::", op, ": mode must be 'cia', 'caa' or 'cima', got '", std::string(mode), "'");
}

// A block list: slot s is block (r[s], c[s]).
struct Slots {
  const int32_t* r;
  const int32_t* c;
  int64_t n;
  bool less(int64_t s, int32_t row, int32_t col) const { return r[s] < row || (r[s] == row && c[s] < col); }
  // First slot whose block is not before (row, col).
  int64_t lower(int32_t row, int32_t col) const {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (less(mid, row, col))
        lo = mid + 1;
      else
        hi = mid;
    }
    return lo;
  }
};

inline int cmp(const Slots& x, int64_t i, const Slots& y, int64_t j) {
  if (x.r[i] != y.r[j]) return x.r[i] < y.r[j] ? -1 : 1;
  if (x.c[i] != y.c[j]) return x.c[i] < y.c[j] ? -1 : 1;
  return 0;
}

void check_slots(const Tensor& rows, const Tensor& cols, int64_t n, const char* what, const char* op) {
  for (const Tensor* t : {&rows, &cols})
    TORCH_CHECK_VALUE(t->device().is_cpu() && t->scalar_type() == at::kInt && t->dim() == 1 && t->numel() == n,
                      "suptickets::", op, ": ", what,
                      " rows and cols must be 1-D int32 CPU tensors with one entry per "
                      "block (",
                      n, "), got ", t->scalar_type(), " of shape ", t->sizes());
}

// The union of the accumulator's and the ticket's blocks, merged. Outputs are sized by the
// caller from `parts`: part p covers acc slots [ab[p], ab[p+1]) and ticket slots
// [tb[p], tb[p+1]) and writes union slots [ub[p], ub[p+1]).
struct Merge {
  Slots acc, tic;
  std::vector<int64_t> ab, tb, ub;

  Merge(Slots acc_, Slots tic_) : acc(acc_), tic(tic_) {
    const int64_t total = acc.n + tic.n;
    const int64_t parts = std::clamp<int64_t>(total / 16384, 1, 4 * at::get_num_threads());
    ab.assign(parts + 1, 0);
    tb.assign(parts + 1, 0);
    ab[parts] = acc.n;
    tb[parts] = tic.n;
    // Split at blocks of the longer list; the other list is cut at the same block.
    const Slots& lead = acc.n >= tic.n ? acc : tic;
    for (int64_t p = 1; p < parts; ++p) {
      const int64_t s = p * lead.n / parts;
      const int32_t row = lead.r[s], col = lead.c[s];
      ab[p] = &lead == &acc ? s : acc.lower(row, col);
      tb[p] = &lead == &tic ? s : tic.lower(row, col);
    }
    for (int64_t p = 1; p <= parts; ++p) {  // splits of a list that is not sorted may go backwards
      ab[p] = std::max(ab[p], ab[p - 1]);
      tb[p] = std::max(tb[p], tb[p - 1]);
    }
    // Counting pass; also checks that both lists are strictly row-major.
    ub.assign(parts + 1, 0);
    std::atomic<bool> unsorted{false};
    at::parallel_for(0, parts, 1, [&](int64_t pb, int64_t pe) {
      for (int64_t p = pb; p < pe; ++p) {
        int64_t i = ab[p], j = tb[p], n = 0;
        const int64_t ie = ab[p + 1], je = tb[p + 1];
        bool ok = true;
        for (int64_t s = std::max<int64_t>(i, 1); s < ie; ++s) ok &= cmp(acc, s - 1, acc, s) < 0;
        for (int64_t s = std::max<int64_t>(j, 1); s < je; ++s) ok &= cmp(tic, s - 1, tic, s) < 0;
        while (i < ie && j < je) {
          const int d = cmp(acc, i, tic, j);
          i += d <= 0;
          j += d >= 0;
          ++n;
        }
        ub[p + 1] = n + (ie - i) + (je - j);
        if (!ok) unsorted = true;
      }
    });
    TORCH_CHECK_VALUE(!unsorted,
                      "suptickets::superpose: the blocks of the accumulator and of the ticket must be in "
                      "row-major order without repeats");
    for (int64_t p = 0; p < parts; ++p) ub[p + 1] += ub[p];
  }

  int64_t parts() const { return int64_t(ab.size()) - 1; }
  int64_t size() const { return ub.back(); }

  // Writes the merged blocks, their block ids, counts and norms.
  template <typename T>
  void write(const T* av, const int32_t* acount, const T* tv, int64_t area, int64_t br, int64_t bc, Rule rule,
             Norm norm, T* uv, int32_t* ur, int32_t* uc, int32_t* ucount, T* uscore) const {
    const T a = T(rule.a), b = T(rule.b);
    at::parallel_for(0, parts(), 1, [&](int64_t pb, int64_t pe) {
      for (int64_t p = pb; p < pe; ++p) {
        int64_t i = ab[p], j = tb[p], u = ub[p];
        const int64_t ie = ab[p + 1], je = tb[p + 1];
        for (; i < ie || j < je; ++u) {
          const int d = i == ie ? 1 : j == je ? -1 : cmp(acc, i, tic, j);
          const T* x = d <= 0 ? av + i * area : nullptr;  // accumulator block
          const T* y = d >= 0 ? tv + j * area : nullptr;  // ticket block
          T* out = uv + u * area;
          int32_t count = x ? acount[i] : 0;
          if (rule.mode == Mode::CAA) {  // (n * acc + theta) / (n + 1) where the ticket has the block
            if (y == nullptr) {
              std::memcpy(out, x, sizeof(T) * area);
            } else if (x == nullptr) {
              std::memcpy(out, y, sizeof(T) * area);
            } else {
              const T n = T(count), inv = T(1) / T(count + 1);
              for (int64_t e = 0; e < area; ++e) out[e] = (n * x[e] + y[e]) * inv;
            }
          } else if (x && y) {
            for (int64_t e = 0; e < area; ++e) out[e] = a * x[e] + b * y[e];
          } else if (x) {
            for (int64_t e = 0; e < area; ++e) out[e] = a * x[e];
          } else {
            for (int64_t e = 0; e < area; ++e) out[e] = b * y[e];
          }
          count += y != nullptr;
          ur[u] = x ? acc.r[i] : tic.r[j];
          uc[u] = x ? acc.c[i] : tic.c[j];
          ucount[u] = count;
          uscore[u] = area == 1 ? std::abs(out[0]) : block_norm(out, br, bc, bc, norm);
          i += d <= 0;
          j += d >= 0;
        }
      }
    });
  }
};

struct Operands {
  Tensor av, ar, ac, acount, tv, tr, tc;
};

Operands check_operands(const Tensor& acc_values, const Tensor& acc_rows, const Tensor& acc_cols,
                        const Tensor& acc_counts, const Tensor& values, const Tensor& rows, const Tensor& cols,
                        const char* op) {
  check_float_cpu(acc_values, "acc_values", op);
  check_float_cpu(values, "values", op);
  TORCH_CHECK_VALUE(acc_values.dim() == 3 && values.dim() == 3, "suptickets::", op,
                    ": acc_values and values must be [nnz, br, bc], got shapes ", acc_values.sizes(), " and ",
                    values.sizes());
  TORCH_CHECK_VALUE(acc_values.size(1) == values.size(1) && acc_values.size(2) == values.size(2), "suptickets::", op,
                    ": the accumulator's blocks ", acc_values.sizes().slice(1), " differ from the ticket's ",
                    values.sizes().slice(1));
  check_same_dtype(acc_values, "acc_values", values, "values", op);
  check_slots(acc_rows, acc_cols, acc_values.size(0), "accumulator", op);
  check_slots(rows, cols, values.size(0), "ticket", op);
  TORCH_CHECK_VALUE(acc_counts.device().is_cpu() && acc_counts.scalar_type() == at::kInt && acc_counts.dim() == 1 &&
                        acc_counts.numel() == acc_values.size(0),
                    "suptickets::", op,
                    ": acc_counts must be a 1-D int32 CPU tensor with one entry per accumulator block");
  return {acc_values.contiguous(), acc_rows.contiguous(), acc_cols.contiguous(), acc_counts.contiguous(),
          values.contiguous(),     rows.contiguous(),     cols.contiguous()};
}

struct Union {
  Tensor values, rows, cols, counts, scores;
};

Union merge_union(const Operands& o, int64_t t, c10::string_view mode, double beta, c10::string_view kind,
                  const char* op) {
  const Rule rule = parse_rule(mode, t, beta, op);
  const Norm norm = parse_kind(kind, op);
  const Merge merge({o.ar.data_ptr<int32_t>(), o.ac.data_ptr<int32_t>(), o.av.size(0)},
                    {o.tr.data_ptr<int32_t>(), o.tc.data_ptr<int32_t>(), o.tv.size(0)});
  const int64_t n = merge.size(), br = o.av.size(1), bc = o.av.size(2);
  Union u{at::empty({n, br, bc}, o.av.options()), at::empty({n}, at::kInt), at::empty({n}, at::kInt),
          at::empty({n}, at::kInt), at::empty({n}, o.av.options())};
  AT_DISPATCH_FLOATING_TYPES(o.av.scalar_type(), "superpose", [&] {
    merge.write<scalar_t>(o.av.data_ptr<scalar_t>(), o.acount.data_ptr<int32_t>(), o.tv.data_ptr<scalar_t>(), br * bc,
                          br, bc, rule, norm, u.values.data_ptr<scalar_t>(), u.rows.data_ptr<int32_t>(),
                          u.cols.data_ptr<int32_t>(), u.counts.data_ptr<int32_t>(), u.scores.data_ptr<scalar_t>());
  });
  return u;
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> superpose_union(const Tensor& acc_values, const Tensor& acc_rows,
                                                                   const Tensor& acc_cols, const Tensor& acc_counts,
                                                                   const Tensor& values, const Tensor& rows,
                                                                   const Tensor& cols, int64_t t, c10::string_view mode,
                                                                   double beta, c10::string_view kind) {
  const Operands o = check_operands(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, "superpose_union");
  Union u = merge_union(o, t, mode, beta, kind, "superpose_union");
  return {u.values, u.rows, u.cols, u.counts, u.scores};
}

// Merges, then keeps the acc_values.size(0) blocks of largest norm (ties: the earlier block)
// and writes them into acc_values. Returns the kept blocks' rows, cols and counts.
std::tuple<Tensor, Tensor, Tensor> superpose_(Tensor& acc_values, const Tensor& acc_rows, const Tensor& acc_cols,
                                              const Tensor& acc_counts, const Tensor& values, const Tensor& rows,
                                              const Tensor& cols, int64_t t, c10::string_view mode, double beta,
                                              c10::string_view kind) {
  const Operands o = check_operands(acc_values, acc_rows, acc_cols, acc_counts, values, rows, cols, "superpose_");
  TORCH_CHECK_VALUE(acc_values.is_contiguous(),
                    "suptickets::superpose_: acc_values must be contiguous (it is written in "
                    "place)");
  const Union u = merge_union(o, t, mode, beta, kind, "superpose_");
  const int64_t keep = acc_values.size(0), n = u.values.size(0), area = acc_values.size(1) * acc_values.size(2);
  std::vector<int64_t> kept(keep);
  AT_DISPATCH_FLOATING_TYPES(acc_values.scalar_type(), "superpose_", [&] {
    select_k(u.scores.data_ptr<scalar_t>(), n, keep, true, nullptr, "superposed block norms", kept.data());
  });
  Tensor out_rows = at::empty({keep}, at::kInt), out_cols = at::empty({keep}, at::kInt);
  Tensor out_counts = at::empty({keep}, at::kInt);
  const int64_t bytes = area * acc_values.element_size();
  const char* src = static_cast<const char*>(u.values.data_ptr());
  char* dst = static_cast<char*>(acc_values.data_ptr());
  const int32_t *ur = u.rows.data_ptr<int32_t>(), *uc = u.cols.data_ptr<int32_t>(), *un = u.counts.data_ptr<int32_t>();
  int32_t *r = out_rows.data_ptr<int32_t>(), *c = out_cols.data_ptr<int32_t>(), *cnt = out_counts.data_ptr<int32_t>();
  at::parallel_for(0, keep, std::max<int64_t>(1, 65536 / bytes), [&](int64_t b, int64_t e) {
    for (int64_t s = b; s < e; ++s) {
      const int64_t k = kept[s];
      std::memcpy(dst + s * bytes, src + k * bytes, bytes);
      r[s] = ur[k];
      c[s] = uc[k];
      cnt[s] = un[k];
    }
  });
  return {out_rows, out_cols, out_counts};
}

}  // namespace

TORCH_LIBRARY_IMPL(suptickets, CPU, m) {
  m.impl("superpose_union", &superpose_union);
  m.impl("superpose_", &superpose_);
}

}  // namespace cpu
}  // namespace suptickets
