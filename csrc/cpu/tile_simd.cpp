// float32 SIMD tiles for AVX2+FMA and AVX-512, chosen at run time (no -march flags).
#include "tile.h"

#if SUPTICKETS_X86
#include <immintrin.h>

namespace suptickets {
namespace cpu {

#define SUPTICKETS_ISA avx2
#define SUPTICKETS_TARGET "avx2,fma"
#define SUPTICKETS_VBYTES 32
#define SUPTICKETS_STREAM(p, v) _mm256_stream_ps((p), (v))
#include "tile_simd.inc"
#undef SUPTICKETS_STREAM
#undef SUPTICKETS_ISA
#undef SUPTICKETS_TARGET
#undef SUPTICKETS_VBYTES

#define SUPTICKETS_ISA avx512
#define SUPTICKETS_TARGET "avx512f,avx2,fma"
#define SUPTICKETS_VBYTES 64
#define SUPTICKETS_STREAM(p, v) _mm512_stream_ps((p), (v))
#include "tile_simd.inc"
#undef SUPTICKETS_STREAM
#undef SUPTICKETS_ISA
#undef SUPTICKETS_TARGET
#undef SUPTICKETS_VBYTES

}  // namespace cpu
}  // namespace suptickets
#endif  // SUPTICKETS_X86
