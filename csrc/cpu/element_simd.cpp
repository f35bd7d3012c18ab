// float32 SIMD element kernels for AVX2+FMA and AVX-512, chosen at run time (no -march flags).
#include <algorithm>
#include <type_traits>
#include <utility>

#include "element_kernels.h"
#include "tile.h"

#if SUPTICKETS_X86
#include <immintrin.h>

namespace suptickets {
namespace cpu {

#define SUPTICKETS_SIMD_BODY "element_simd.inc"
#include "simd_each_isa.h"
#undef SUPTICKETS_SIMD_BODY

}  // namespace cpu
}  // namespace suptickets
#endif  // SUPTICKETS_X86
