// bfloat16 storage for the CPU kernels (no torch headers): the upper half of an IEEE float32,
// bit-compatible with c10::BFloat16. Arithmetic happens in float32: a bf16 value widens exactly,
// and a float32 result is rounded to the nearest bf16, ties to even (NaN stays NaN).
#pragma once
#include <cstdint>
#include <cstring>

namespace suptickets {
namespace cpu {

struct bf16 {
  uint16_t bits;
  bf16() = default;
  bf16(float f) : bits(round(f)) {}  // NOLINT: implicit, as float -> double
  operator float() const {           // NOLINT
    const uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, sizeof(f));
    return f;
  }
  static uint16_t round(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // a quiet NaN
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
};
static_assert(sizeof(bf16) == 2, "bf16 is two bytes");

// The type the kernels compute and accumulate in for storage type T: float32 for bf16.
template <class T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<bf16> {
  using type = float;
};
template <class T>
using compute_t = typename ComputeType<T>::type;

}  // namespace cpu
}  // namespace suptickets
