// Deterministic k-selection by radix: the k smallest (or largest) of n floating-point
// scores, ties broken by the lower index, in O(n) (three passes over the scores, then
// passes over the few candidates that share the threshold's leading bits).
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

// Indices (ascending) of the k smallest scores, or the k largest with `largest`, among
// the entries whose skip byte is 0 (all entries when `skip` is null). Among equal scores
// the lower index is taken first. `what` names the scores in errors; every score, skipped
// or not, must be finite.
template <typename T>
std::vector<int64_t> select_k(const T* s, int64_t n, int64_t k, bool largest, const uint8_t* skip,
                              const char* what) {
  using U = OrderKey<T>;
  constexpr int kBits = 11, kBins = 1 << kBits, kKeyBits = 8 * sizeof(U);
  auto key = [&](int64_t i) -> U { return largest ? U(~order_key(s[i])) : order_key(s[i]); };
  const int64_t chunks = std::clamp<int64_t>(n / 32768, 1, 256);
  auto lo = [&](int64_t c) { return c * n / chunks; };

  // Pass 1: histogram of the leading bits, per chunk; finiteness check.
  int shift = kKeyBits - kBits;
  std::vector<int64_t> hist(chunks * kBins, 0);
  std::vector<uint8_t> bad(chunks, 0);
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      int64_t* h = hist.data() + c * kBins;
      for (int64_t i = lo(c); i < lo(c + 1); ++i) {
        if (!std::isfinite(s[i])) {
          bad[c] = 1;
          continue;
        }
        if (!skip || !skip[i]) ++h[key(i) >> shift];
      }
    }
  });
  TORCH_CHECK(std::none_of(bad.begin(), bad.end(), [](uint8_t b) { return b; }), "suptickets: ", what,
              " contain NaN or inf");
  std::vector<int64_t> total(kBins, 0);
  for (int64_t c = 0; c < chunks; ++c)
    for (int b = 0; b < kBins; ++b) total[b] += hist[c * kBins + b];
  int64_t candidates = 0;
  for (int64_t t : total) candidates += t;
  TORCH_CHECK(k >= 0 && k <= candidates, "suptickets: cannot select ", k, " of ", candidates, " candidate ", what);
  if (k == 0) return {};

  // The threshold key T: exactly `need` entries equal to T are taken after all entries below it.
  int64_t need = k;
  auto pick_bin = [&](const std::vector<int64_t>& counts) {
    int b = 0;
    while (need > counts[b]) need -= counts[b++];
    return b;
  };
  const int first = pick_bin(total);
  U threshold = U(first) << shift;

  // Pass 2: the keys of the chosen leading-bits bin, gathered in parallel at known offsets.
  std::vector<int64_t> offset(chunks + 1, 0);
  for (int64_t c = 0; c < chunks; ++c) offset[c + 1] = offset[c] + hist[c * kBins + first];
  std::vector<U> cand(offset[chunks]);
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      U* out = cand.data() + offset[c];
      for (int64_t i = lo(c); i < lo(c + 1); ++i)
        if ((!skip || !skip[i]) && (key(i) >> shift) == U(first)) *out++ = key(i);
    }
  });
  // The remaining digits, over the candidates only.
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
    for (int64_t c = cb; c < ce; ++c)
      for (int64_t i = lo(c); i < lo(c + 1); ++i) {
        if (skip && skip[i]) continue;
        const U u = key(i);
        if (u < threshold) taken[c].push_back(i);
        else if (u == threshold) {
          taken[c].push_back(i);
          ++ties[c];
        }
      }
  });
  std::vector<int64_t> out;
  out.reserve(k);
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t quota = std::min(ties[c], need);
    need -= quota;
    int64_t used = 0;
    for (int64_t i : taken[c]) {
      if (key(i) < threshold) out.push_back(i);
      else if (used < quota) {
        out.push_back(i);
        ++used;
      }
    }
  }
  TORCH_CHECK(int64_t(out.size()) == k, "suptickets: selection of ", what, " found ", out.size(), " of ", k);
  return out;
}

}  // namespace cpu
}  // namespace suptickets
