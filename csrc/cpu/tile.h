// The one micro-kernel every block-sparse product here is made of.
//
// A tile is mr x width outputs computed as a sum over a list of items:
//   C[m*c_m + w] (+)= init[w] + sum_items sum_{k < item.k} A[item.a + m*a_m + k*a_k] * B[item.b + k*b_k + w]
// Forward: items are the active blocks of a block-row (A = input pixels, B = transposed block).
// dX: items are the active blocks of a block-column (A = grad-out pixels, B = block).
// dvalues: items are runs of pixels (A = grad-out stripe, B = input stripe).
#pragma once
#include <cstdint>

// x86-64 builds carry AVX2 and AVX-512 tiles chosen at run time; other CPUs use the
// portable tile only.
#if defined(__x86_64__) || defined(_M_X64)
#define SUPTICKETS_X86 1
#else
#define SUPTICKETS_X86 0
#endif

namespace suptickets {
namespace cpu {

struct TileItem {
  int64_t a;  // offset into A
  int64_t b;  // offset into B
  int64_t k;  // reduction length
};

template <class T>
struct TileArgs {
  const T* A;
  int64_t a_m, a_k;
  const T* B;
  int64_t b_k;
  const TileItem* items;
  int64_t n_items;
  T* C;
  int64_t c_m;
  const T* init;    // width values added to every row, or null
  bool accumulate;  // add into C instead of overwriting it
  bool stream;      // write C with non-temporal stores where aligned (outputs larger
                    // than the caches); the caller issues store_fence() afterwards
};

// Orders this thread's non-temporal stores before anything it does next.
inline void store_fence() {
#if SUPTICKETS_X86
  __builtin_ia32_sfence();
#endif
}

// The instruction set the float32 kernels use: the best this CPU has, capped by
// SUPTICKETS_CPU_ISA ("avx512", "avx2" or "generic") if set, so every path is
// tested on one machine. Ordered: a higher value has every lower one.
enum class Isa { kGeneric, kAvx2, kAvx512 };
Isa cpu_isa();

// Rows per tile that keep the accumulators of a `width`-wide tile in registers.
template <class T>
int tile_rows(int64_t width);

// Computes one tile of mr rows (any mr >= 1) and `width` columns (any width >= 1).
template <class T>
void run_tile(const TileArgs<T>& t, int64_t mr, int64_t width);

// SIMD tiles for one instruction set (float32, width a multiple of the vector length).
#define SUPTICKETS_DECLARE_SIMD(ns)                                   \
  namespace ns {                                                      \
  int tile_rows(int64_t width);                                       \
  void run_tile(const TileArgs<float>& t, int64_t mr, int64_t width); \
  }
SUPTICKETS_DECLARE_SIMD(avx2)
SUPTICKETS_DECLARE_SIMD(avx512)
#undef SUPTICKETS_DECLARE_SIMD

}  // namespace cpu
}  // namespace suptickets
