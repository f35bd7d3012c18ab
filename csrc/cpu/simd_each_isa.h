// Includes the SIMD body named by SUPTICKETS_SIMD_BODY (a quoted file name) once per x86
// instruction set, inside the current namespace, with
//   SUPTICKETS_ISA     namespace name (avx2, avx512)
//   SUPTICKETS_TARGET  the GCC target attribute string
//   SUPTICKETS_VBYTES  vector size in bytes
//   SUPTICKETS_STREAM  non-temporal store of one vector to an aligned address
//   SUPTICKETS_HSUM    the sum of the lanes of one vector
// The body is written with GCC vector extensions, so one text serves every vector width.
// Included by tile_simd.cpp and element_simd.cpp (no include guard: once per body), which
// include <immintrin.h> first, outside any namespace.

#ifndef SUPTICKETS_SIMD_HSUM_DEFINED
#define SUPTICKETS_SIMD_HSUM_DEFINED
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
#endif

#define SUPTICKETS_ISA avx2
#define SUPTICKETS_TARGET "avx2,fma"
#define SUPTICKETS_VBYTES 32
#define SUPTICKETS_STREAM(p, v) _mm256_stream_ps((p), (v))
#define SUPTICKETS_HSUM(v) hsum_avx2(reinterpret_cast<__m256>(v))
#include SUPTICKETS_SIMD_BODY
#undef SUPTICKETS_HSUM
#undef SUPTICKETS_STREAM
#undef SUPTICKETS_VBYTES
#undef SUPTICKETS_TARGET
#undef SUPTICKETS_ISA

#define SUPTICKETS_ISA avx512
#define SUPTICKETS_TARGET "avx512f,avx2,fma"
#define SUPTICKETS_VBYTES 64
#define SUPTICKETS_STREAM(p, v) _mm512_stream_ps((p), (v))
#define SUPTICKETS_HSUM(v) hsum_avx512(reinterpret_cast<__m512>(v))
#include SUPTICKETS_SIMD_BODY
#undef SUPTICKETS_HSUM
#undef SUPTICKETS_STREAM
#undef SUPTICKETS_VBYTES
#undef SUPTICKETS_TARGET
#undef SUPTICKETS_ISA
