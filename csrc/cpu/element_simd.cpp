// float32 SIMD element kernels for AVX2+FMA and AVX-512, chosen at run time (no -march flags).
#include <algorithm>
#include <utility>

#include "element_kernels.h"
#include "tile.h"

#if SUPTICKETS_X86
#include <immintrin.h>

namespace suptickets {
namespace cpu {

__attribute__((target("avx2,fma"))) static inline float hsum_avx2(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

// (GCC 12's _mm512_reduce_add_ps warns of an uninitialised temporary.)
__attribute__((target("avx512f,avx2,fma"))) static inline float hsum_avx512(__m512 v) {
  __m256 lo, hi;
  __builtin_memcpy(&lo, &v, sizeof(lo));
  __builtin_memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof(lo), sizeof(hi));
  return hsum_avx2(_mm256_add_ps(lo, hi));
}

#define SUPTICKETS_ISA avx2
#define SUPTICKETS_TARGET "avx2,fma"
#define SUPTICKETS_VBYTES 32
#define SUPTICKETS_HSUM(v) hsum_avx2(reinterpret_cast<__m256>(v))
#include "element_simd.inc"
#undef SUPTICKETS_HSUM
#undef SUPTICKETS_ISA
#undef SUPTICKETS_TARGET
#undef SUPTICKETS_VBYTES

#define SUPTICKETS_ISA avx512
#define SUPTICKETS_TARGET "avx512f,avx2,fma"
#define SUPTICKETS_VBYTES 64
#define SUPTICKETS_HSUM(v) hsum_avx512(reinterpret_cast<__m512>(v))
#include "element_simd.inc"
#undef SUPTICKETS_HSUM
#undef SUPTICKETS_ISA
#undef SUPTICKETS_TARGET
#undef SUPTICKETS_VBYTES

}  // namespace cpu
}  // namespace suptickets
#endif  // SUPTICKETS_X86
