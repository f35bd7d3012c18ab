// Deterministic k-selection by radix: the k smallest (or largest) of n floating-point
// scores, ties broken by the lower index, in O(n): scores map to integer keys of the same
// order; one pass histograms the keys' leading 16 bits, one gathers the keys of the bin
// that holds the k-th (whose remaining digits are resolved on those few), one collects.
#pragma once

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace suptickets {
namespace cpu {

template <typename T>
using OrderKey = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;

// Unsigned key with the order of the float (-0.0 and +0.0 map to the same key).
template <typename T>
inline OrderKey<T> order_key(T v) {
  using U = OrderKey<T>;
  if (v == T(0)) v = T(0);
  U u;
  std::memcpy(&u, &v, sizeof(U));
  constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  return (u & sign) ? U(~u) : U(u | sign);
}

namespace detail {

// Key of entry i for a selection of the smallest keys: the order key (complemented to take
// the largest scores first); a skipped entry gets the all-ones key, which no finite score has.
template <typename T, bool kLargest>
inline OrderKey<T> select_key(const T* s, const uint8_t* skip, int64_t i) {
  using U = OrderKey<T>;
  const U u = kLargest ? U(~order_key(s[i])) : order_key(s[i]);
  return (skip && skip[i]) ? ~U(0) : u;
}

template <typename T, bool kLargest>
std::vector<int64_t> select_k(const T* s, int64_t n, int64_t k, const uint8_t* skip, const char* what) {
  using U = OrderKey<T>;
  constexpr int kBits = 16, kBins = 1 << kBits, kKeyBits = 8 * sizeof(U);
  const int64_t chunks = std::clamp<int64_t>(n / 65536, 1, 4 * at::get_num_threads());
  auto lo = [n, chunks](int64_t c) { return c * n / chunks; };
  auto key = [s, skip](int64_t i) { return select_key<T, kLargest>(s, skip, i); };

  // Pass 1: histogram of the keys' leading 16 bits per chunk (it fits in L2), and finiteness.
  int shift = kKeyBits - kBits;
  std::vector<uint32_t> hist(chunks * kBins, 0);
  std::vector<uint8_t> bad(chunks, 0);
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      uint32_t* h = hist.data() + c * kBins;
      bool finite = true;
      for (int64_t i = lo(c), end = lo(c + 1); i < end; ++i) {
        finite &= std::isfinite(s[i]);
        ++h[key(i) >> shift];
      }
      bad[c] = !finite;
    }
  });
  TORCH_CHECK(std::none_of(bad.begin(), bad.end(), [](uint8_t b) { return b; }), "suptickets: ", what,
              " contain NaN or inf");
  std::vector<int64_t> total(kBins, 0);
  for (int64_t c = 0; c < chunks; ++c)
    for (int b = 0; b < kBins; ++b) total[b] += hist[c * kBins + b];
  const int64_t candidates = n - (skip ? total[kBins - 1] : 0);  // skipped keys are all ones
  TORCH_CHECK(k >= 0 && k <= candidates, "suptickets: cannot select ", k, " of ", candidates, " candidate ", what);
  if (k == 0) return {};

  // The threshold key T: after all candidates below it, `need` of those equal to it are taken.
  int64_t need = k;
  auto pick_bin = [&need](const std::vector<int64_t>& counts) {
    int b = 0;
    while (need > counts[b]) need -= counts[b++];
    return b;
  };
  const int first = pick_bin(total);
  U threshold = U(first) << shift;

  // Pass 2: the keys in the chosen bin, gathered in parallel at offsets the histogram gives.
  std::vector<int64_t> offset(chunks + 1, 0);
  for (int64_t c = 0; c < chunks; ++c) offset[c + 1] = offset[c] + hist[c * kBins + first];
  std::vector<U> cand(offset[chunks]);
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      U* out = cand.data() + offset[c];
      for (int64_t i = lo(c), end = lo(c + 1); i < end; ++i) {
        const U u = key(i);
        if ((u >> shift) == U(first)) *out++ = u;
      }
    }
  });
  // The remaining digits, over those candidates only.
  while (shift > 0) {
    const int bits = std::min(kBits, shift);
    shift -= bits;
    const U mask = (U(1) << bits) - 1;
    std::vector<int64_t> counts(size_t(1) << bits, 0);
    for (U u : cand) ++counts[(u >> shift) & mask];
    const int b = pick_bin(counts);
    threshold |= U(b) << shift;
    std::vector<U> next;
    next.reserve(counts[b]);
    for (U u : cand)
      if (((u >> shift) & mask) == U(b)) next.push_back(u);
    cand.swap(next);
  }

  // Pass 3: entries with key <= T per chunk, in index order; then the quota of ties in chunk order.
  std::vector<std::vector<int64_t>> taken(chunks);
  std::vector<int64_t> ties(chunks, 0);
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      std::vector<int64_t>& out = taken[c];
      int64_t eq = 0;
      for (int64_t i = lo(c), end = lo(c + 1); i < end; ++i) {
        const U u = key(i);
        if (u <= threshold) {
          out.push_back(i);
          eq += u == threshold;
        }
      }
      ties[c] = eq;
    }
  });
  std::vector<int64_t> out;
  out.reserve(k);
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t quota = std::min(ties[c], need);
    need -= quota;
    int64_t used = 0;
    for (int64_t i : taken[c]) {
      if (key(i) < threshold) {
        out.push_back(i);
      } else if (used < quota) {
        out.push_back(i);
        ++used;
      }
    }
  }
  TORCH_CHECK(int64_t(out.size()) == k, "suptickets: selection of ", what, " found ", out.size(), " of ", k);
  return out;
}

}  // namespace detail

// Indices (ascending) of the k smallest scores, or the k largest with `largest`, among
// the entries whose skip byte is 0 (all entries when `skip` is null). Among equal scores
// the lower index is taken first. `what` names the scores in errors; every score, skipped
// or not, must be finite.
template <typename T>
std::vector<int64_t> select_k(const T* s, int64_t n, int64_t k, bool largest, const uint8_t* skip,
                              const char* what) {
  return largest ? detail::select_k<T, true>(s, n, k, skip, what) : detail::select_k<T, false>(s, n, k, skip, what);
}

}  // namespace cpu
}  // namespace suptickets
