// Portable tile kernel (any dtype, any width) and the run-time choice of SIMD tiles.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "tile.h"

namespace suptickets {
namespace cpu {
namespace {

constexpr int64_t kGenericRows = 4;
constexpr int64_t kGenericWidth = 64;

template <class T>
void generic_tile(const TileArgs<T>& t, int64_t mr, int64_t width) {
  T acc[kGenericRows * kGenericWidth];
  for (int64_t m = 0; m < mr; ++m)
    for (int64_t w = 0; w < width; ++w) {
      T a = t.init ? t.init[w] : T(0);
      if (t.accumulate) a += t.C[m * t.c_m + w];
      acc[m * width + w] = a;
    }
  for (int64_t it = 0; it < t.n_items; ++it) {
    const TileItem item = t.items[it];
    const T* a = t.A + item.a;
    const T* b = t.B + item.b;
    for (int64_t k = 0; k < item.k; ++k, a += t.a_k, b += t.b_k)
      for (int64_t m = 0; m < mr; ++m) {
        const T am = a[m * t.a_m];
        T* row = acc + m * width;
        for (int64_t w = 0; w < width; ++w) row[w] += am * b[w];
      }
  }
  for (int64_t m = 0; m < mr; ++m)
    for (int64_t w = 0; w < width; ++w) t.C[m * t.c_m + w] = acc[m * width + w];
}

// Splits any tile into pieces of at most kGenericRows x kGenericWidth.
template <class T>
void generic_run(const TileArgs<T>& t, int64_t mr, int64_t width) {
  for (int64_t m0 = 0; m0 < mr; m0 += kGenericRows)
    for (int64_t w0 = 0; w0 < width; w0 += kGenericWidth) {
      TileArgs<T> s = t;
      s.A = t.A + m0 * t.a_m;
      s.B = t.B + w0;
      s.C = t.C + m0 * t.c_m + w0;
      s.init = t.init ? t.init + w0 : nullptr;
      generic_tile(s, std::min(kGenericRows, mr - m0), std::min(kGenericWidth, width - w0));
    }
}

Isa detect_isa() {
  Isa best = Isa::kGeneric;
#if SUPTICKETS_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    best = Isa::kAvx512;
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    best = Isa::kAvx2;
  }
#endif
  const char* cap = std::getenv("SUPTICKETS_CPU_ISA");
  if (cap == nullptr) return best;
  const Isa want = std::strcmp(cap, "generic") == 0 ? Isa::kGeneric
                   : std::strcmp(cap, "avx2") == 0  ? Isa::kAvx2
                                                    : Isa::kAvx512;
  return std::min(best, want);
}

Isa isa() {
  static const Isa value = detect_isa();
  return value;
}

}  // namespace

Isa cpu_isa() { return isa(); }

const char* simd_level() {
  switch (isa()) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "generic";
  }
}

// The SIMD tile set that computes a float32 tile of this width, or kGeneric.
static Isa isa_for_width(int64_t width) {
  const Isa best = isa();
  if (best == Isa::kAvx512 && width % 16 == 0) return Isa::kAvx512;
  if (best != Isa::kGeneric && width % 8 == 0) return Isa::kAvx2;
  return Isa::kGeneric;
}

template <>
int tile_rows<double>(int64_t) {
  return static_cast<int>(kGenericRows);
}

template <>
int tile_rows<float>(int64_t width) {
  switch (isa_for_width(width)) {
#if SUPTICKETS_X86
    case Isa::kAvx512:
      return avx512::tile_rows(width);
    case Isa::kAvx2:
      return avx2::tile_rows(width);
#endif
    default:
      return static_cast<int>(kGenericRows);
  }
}

template <>
void run_tile<double>(const TileArgs<double>& t, int64_t mr, int64_t width) {
  generic_run(t, mr, width);
}

template <>
void run_tile<float>(const TileArgs<float>& t, int64_t mr, int64_t width) {
  switch (isa_for_width(width)) {
#if SUPTICKETS_X86
    case Isa::kAvx512:
      return avx512::run_tile(t, mr, width);
    case Isa::kAvx2:
      return avx2::run_tile(t, mr, width);
#endif
    default:
      return generic_run(t, mr, width);
  }
}

}  // namespace cpu
}  // namespace suptickets
