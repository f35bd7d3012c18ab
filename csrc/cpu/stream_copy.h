// Byte copies that can bypass the caches: non-temporal 16-byte stores for outputs larger than
// the caches, which nothing reads soon enough to profit from having them cached. The caller
// issues store_fence() (tile.h) once its streamed writes are done.
#pragma once

#include <cstdint>
#include <cstring>

#include "tile.h"

#if SUPTICKETS_X86
#include <emmintrin.h>
#endif

namespace suptickets {
namespace cpu {

// Copies `bytes` from src to dst; with `stream`, dst must be 16-byte aligned and `bytes` a
// multiple of 16 (checked: otherwise a plain copy).
inline void copy_bytes(void* dst, const void* src, int64_t bytes, bool stream) {
#if SUPTICKETS_X86
  if (stream && bytes % 16 == 0 && reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
    auto* d = static_cast<__m128i*>(dst);
    const auto* s = static_cast<const __m128i*>(src);
    for (int64_t j = 0; j < bytes / 16; ++j) _mm_stream_si128(d + j, _mm_loadu_si128(s + j));
    return;
  }
#else
  (void)stream;
#endif
  std::memcpy(dst, src, bytes);
}

}  // namespace cpu
}  // namespace suptickets
