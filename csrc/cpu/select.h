// Deterministic k-selection: the k smallest (or largest) of n floating-point scores, ties
// broken by the lower index, in O(n). Scores map to integer keys of the same order. The main
// path brackets the k-th key with a sample and makes one pass; the exact fallback is a radix
// selection: one pass histograms the keys' leading 16 bits, one gathers the keys of the bin
// that holds the k-th (whose remaining digits are resolved on those few), one collects.
#pragma once

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
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

// select_key of s[0..len) into keys, branch-free; returns nonzero if a score is NaN or inf.
template <typename T, bool kLargest>
inline int tile_keys(const T* s, const uint8_t* skip, int64_t len, OrderKey<T>* keys) {
  using U = OrderKey<T>;
  using S = std::make_signed_t<U>;
  constexpr int kTop = 8 * sizeof(U) - 1;
  constexpr U kMagnitude = ~U(0) >> 1;
  constexpr U kExponent = sizeof(T) == 4 ? U(0x7f800000u) : U(0x7ff0000000000000ull);
  U non_finite = 0;
  for (int64_t j = 0; j < len; ++j) {
    U bits;
    std::memcpy(&bits, s + j, sizeof(U));
    non_finite |= U((bits & kExponent) == kExponent);
    bits &= U(0) - U((bits & kMagnitude) != 0);          // -0.0 -> +0.0
    const U flip = U(S(bits) >> kTop) | (U(1) << kTop);  // negative: all bits; else the sign bit
    U u = bits ^ flip;
    if (kLargest) u = ~u;
    if (skip) u |= U(0) - U(skip[j] != 0);  // skipped: all ones
    keys[j] = u;
  }
  return non_finite != 0;
}

// Exact radix selection: three passes over all n entries (see above).
template <typename T, bool kLargest>
std::vector<int64_t> radix_select(const T* s, int64_t n, int64_t k, const uint8_t* skip, const char* what) {
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
  TORCH_CHECK_VALUE(std::none_of(bad.begin(), bad.end(), [](uint8_t b) { return b; }), "suptickets: ", what,
                    " contain NaN or inf");
  std::vector<int64_t> total(kBins, 0);
  for (int64_t c = 0; c < chunks; ++c)
    for (int b = 0; b < kBins; ++b) total[b] += hist[c * kBins + b];
  const int64_t candidates = n - (skip ? total[kBins - 1] : 0);  // skipped keys are all ones
  TORCH_CHECK_VALUE(k >= 0 && k <= candidates, "suptickets: cannot select ", k, " of ", candidates, " candidate ",
                    what);
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
  TORCH_CHECK_VALUE(int64_t(out.size()) == k, "suptickets: selection of ", what, " found ", out.size(), " of ", k);
  return out;
}

}  // namespace detail

namespace detail {

// Selection on few entries: the k-th key by nth_element on a copy of the keys, then one scan
// in index order takes the keys below it and the first ties.
template <typename T, bool kLargest>
void small_select(const T* s, int64_t n, int64_t k, const uint8_t* skip, const char* what, int64_t* out) {
  using U = OrderKey<T>;
  std::vector<U> keys(n);
  const bool non_finite = tile_keys<T, kLargest>(s, skip, n, keys.data());
  TORCH_CHECK_VALUE(!non_finite, "suptickets: ", what, " contain NaN or inf");
  std::vector<U> sorted(keys);
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end());
  const U threshold = sorted[k - 1];
  int64_t ties = k - std::count_if(keys.begin(), keys.end(), [threshold](U u) { return u < threshold; });
  int64_t j = 0;
  for (int64_t i = 0; i < n && j < k; ++i) {
    const U u = keys[i];
    if (u < threshold || (u == threshold && ties-- > 0)) out[j++] = i;
  }
}

inline int64_t count_candidates(const uint8_t* skip, int64_t n) {
  if (!skip) return n;
  std::atomic<int64_t> skipped{0};
  at::parallel_for(0, n, 1 << 20, [&](int64_t b, int64_t e) {
    int64_t here = 0;
    for (int64_t i = b; i < e; ++i) here += skip[i] != 0;
    skipped += here;
  });
  return n - skipped;
}

// Selection in one pass over the entries: a strided sample of 16K keys brackets the k-th key
// in [lo, hi] (4 standard deviations of the sample rank either side); one pass keeps the
// indices below lo (all selected) and those in the band, per chunk and in index order; the
// k-th key among the band then settles the rest. Returns false (nothing written) in the rare
// case the bracket missed, and the caller falls back to the radix selection.
template <typename T, bool kLargest>
bool sample_select(const T* s, int64_t n, int64_t k, const uint8_t* skip, const char* what, int64_t* out) {
  using U = OrderKey<T>;
  constexpr U kSkipped = ~U(0);
  auto key = [s, skip](int64_t i) { return select_key<T, kLargest>(s, skip, i); };
  const int64_t m = std::min<int64_t>(n / 16, 16384);
  std::vector<U> sample(m);
  constexpr int64_t kAhead = 16;  // strided loads miss the caches: keep several in flight
  for (int64_t j = 0; j < m; ++j) {
    if (j + kAhead < m) __builtin_prefetch(s + (j + kAhead) * n / m);
    sample[j] = key(j * n / m);
  }
  const double q = double(k) / double(n);
  const double delta = 4.0 * std::sqrt(double(m) * q * (1.0 - q)) + 8.0;
  const int64_t rank_lo = int64_t(std::floor(q * m - delta)), rank_hi = int64_t(std::ceil(q * m + delta));
  U lo = 0, hi = kSkipped - 1;
  if (rank_hi < m) {
    std::nth_element(sample.begin(), sample.begin() + rank_hi, sample.end());
    hi = sample[rank_hi];
  }
  if (rank_lo > 0) {
    std::nth_element(sample.begin(), sample.begin() + rank_lo, sample.begin() + std::min(rank_hi + 1, m));
    lo = sample[rank_lo];
  }

  const int64_t chunks = std::clamp<int64_t>(n / 16384, 1, 4 * at::get_num_threads());
  auto begin = [n, chunks](int64_t c) { return c * n / chunks; };
  // Per-chunk lists, kept (with their capacity) from call to call on this thread: fresh
  // multi-MB buffers would cost a page fault per 4 KB each time.
  // (Worker threads reach them through these references: a thread_local named inside the
  // parallel lambda would be the worker's own.)
  thread_local std::vector<std::vector<int64_t>> low_lists, band_lists;
  thread_local std::vector<std::vector<U>> band_key_lists;
  std::vector<std::vector<int64_t>>& low = low_lists;
  std::vector<std::vector<int64_t>>& band = band_lists;
  std::vector<std::vector<U>>& band_keys = band_key_lists;
  for (auto* lists : {&low, &band}) {
    if (int64_t(lists->size()) < chunks) lists->resize(chunks);
    for (auto& list : *lists) list.clear();
  }
  if (int64_t(band_keys.size()) < chunks) band_keys.resize(chunks);
  for (auto& list : band_keys) list.clear();
  std::vector<uint8_t> bad(chunks, 0);
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    constexpr int64_t kTile = 512;
    U tile[kTile];
    const T* const scores = s;
    const uint8_t* const skips = skip;
    const U lo_ = lo, hi_ = hi;
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t b = begin(c), e = begin(c + 1);
      std::vector<int64_t>& lows = low[c];
      std::vector<int64_t>& bands = band[c];
      std::vector<U>& bkeys = band_keys[c];
      lows.reserve(int64_t(q * double(e - b) * 1.02) + 64);
      int non_finite = 0;
      for (int64_t t0 = b; t0 < e; t0 += kTile) {
        const int64_t len = std::min(kTile, e - t0);
        // Keys of a tile in a branch-free loop the compiler vectorises, then one scan.
        non_finite |= tile_keys<T, kLargest>(scores + t0, skips ? skips + t0 : nullptr, len, tile);
        for (int64_t j = 0; j < len; ++j) {
          const U u = tile[j];
          if (u <= hi_) {  // one test per entry; most entries of a growth selection fail it
            if (u < lo_) {
              lows.push_back(t0 + j);
            } else {
              bands.push_back(t0 + j);
              bkeys.push_back(u);
            }
          }
        }
      }
      bad[c] = non_finite != 0;
    }
  });
  TORCH_CHECK_VALUE(std::none_of(bad.begin(), bad.end(), [](uint8_t b) { return b; }), "suptickets: ", what,
                    " contain NaN or inf");
  int64_t below = 0, in_band = 0;
  for (int64_t c = 0; c < chunks; ++c) below += low[c].size(), in_band += band[c].size();
  if (!(below < k && k <= below + in_band)) return false;

  // The threshold T is the r-th smallest band key; `need` of the band keys equal to T are taken.
  const int64_t r = k - below;
  std::vector<U> keys;
  keys.reserve(in_band);
  for (int64_t c = 0; c < chunks; ++c) keys.insert(keys.end(), band_keys[c].begin(), band_keys[c].end());
  std::nth_element(keys.begin(), keys.begin() + (r - 1), keys.end());
  const U threshold = keys[r - 1];
  int64_t need = r - std::count_if(keys.begin(), keys.end(), [threshold](U u) { return u < threshold; });

  // Per chunk: its selected band entries (ties up to the quota, in chunk order), merged with
  // its low entries in index order at the chunk's offset of the output.
  std::vector<int64_t> quota(chunks), offset(chunks + 1, 0);
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t less = 0, eq = 0;
    for (U u : band_keys[c]) {
      less += u < threshold;
      eq += u == threshold;
    }
    quota[c] = std::min(eq, need);
    need -= quota[c];
    offset[c + 1] = offset[c] + int64_t(low[c].size()) + less + quota[c];
  }
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      int64_t* dst = out + offset[c];
      int64_t ties = quota[c];
      auto l = low[c].begin();
      for (size_t j = 0; j < band[c].size(); ++j) {
        const int64_t i = band[c][j];
        const U u = band_keys[c][j];
        if (u > threshold) continue;
        if (u == threshold) {
          if (ties == 0) continue;
          --ties;
        }
        for (; l != low[c].end() && *l < i; ++l) *dst++ = *l;
        *dst++ = i;
      }
      for (; l != low[c].end(); ++l) *dst++ = *l;
    }
  });
  return true;
}

}  // namespace detail

// Writes to out[0..k) the indices (ascending) of the k smallest scores, or the k largest
// with `largest`, among the entries whose skip byte is 0 (all entries when `skip` is null).
// Among equal scores the lower index is taken first. `what` names the scores in errors;
// every score, skipped or not, must be finite. `candidates`, the number of entries not
// skipped, is counted when not given.
template <typename T>
void select_k(const T* s, int64_t n, int64_t k, bool largest, const uint8_t* skip, const char* what, int64_t* out,
              int64_t candidates = -1) {
  if (candidates < 0) candidates = detail::count_candidates(skip, n);
  TORCH_CHECK_VALUE(k >= 0 && k <= candidates, "suptickets: cannot select ", k, " of ", candidates, " candidate ",
                    what);
  auto fallback = [&](auto tag) {
    constexpr bool kLargest = decltype(tag)::value;
    const std::vector<int64_t> idx = detail::radix_select<T, kLargest>(s, n, k, skip, what);
    std::copy(idx.begin(), idx.end(), out);
  };
  if (k == 0) {  // nothing to select, but the scores are still checked
    for (int64_t i = 0; i < n; ++i) TORCH_CHECK_VALUE(std::isfinite(s[i]), "suptickets: ", what, " contain NaN or inf");
    return;
  }
  if (n < 4096) {  // small: one partition of the keys
    largest ? detail::small_select<T, true>(s, n, k, skip, what, out)
            : detail::small_select<T, false>(s, n, k, skip, what, out);
    return;
  }
  const bool done = largest ? detail::sample_select<T, true>(s, n, k, skip, what, out)
                            : detail::sample_select<T, false>(s, n, k, skip, what, out);
  if (!done) largest ? fallback(std::true_type{}) : fallback(std::false_type{});
}

}  // namespace cpu
}  // namespace suptickets
