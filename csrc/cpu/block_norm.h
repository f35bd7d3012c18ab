// Block norms shared by the kernels that score blocks (block_scores.cpp, superpose.cpp).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "checks.h"

namespace suptickets {
namespace cpu {

using at::Tensor;

enum class Norm { L1, L2 };

inline Norm parse_kind(c10::string_view kind, const char* op) {
  if (kind == "l1") return Norm::L1;
  if (kind == "l2") return Norm::L2;
  TORCH_CHECK_VALUE(false, "suptickets::", op, ": kind must be 'l1' or 'l2', got '", std::string(kind), "'");
}

// Norm of a br x bc block whose rows are `ld` apart. Sums run in 16 column lanes (rows
// first, then the lanes) so that the compiler vectorises them; the order is fixed.
template <typename T>
T block_norm(const T* p, int64_t br, int64_t bc, int64_t ld, Norm norm) {
  constexpr int64_t kLanes = 16;
  T total = 0;
  for (int64_t j0 = 0; j0 < bc; j0 += kLanes) {
    const int64_t width = std::min(kLanes, bc - j0);
    T lane[kLanes] = {};
    for (int64_t i = 0; i < br; ++i) {
      const T* row = p + i * ld + j0;
      if (norm == Norm::L1) {
        for (int64_t j = 0; j < width; ++j) lane[j] += std::abs(row[j]);
      } else {
        for (int64_t j = 0; j < width; ++j) lane[j] += row[j] * row[j];
      }
    }
    for (int64_t j = 0; j < width; ++j) total += lane[j];
  }
  return norm == Norm::L1 ? total : std::sqrt(total);
}

}  // namespace cpu
}  // namespace suptickets
