// Memory the CPU operators keep between calls: per-thread scratch buffers (packed
// activations) and a cache of large output buffers. A fresh multi-MB buffer costs a
// page fault and the kernel's zeroing of every page on first touch, which on a
// 64 MB output takes as long as the sparse product that fills it; reusing the
// memory of outputs that were freed avoids both.
#pragma once
#include <ATen/ATen.h>

namespace suptickets {
namespace cpu {

enum ScratchSlot { kInput = 0, kGradOut = 1, kGradInput = 2, kWeights = 3, kSlots = 4 };

// A fresh tensor (any strides of `memory_format`). Large ones take their memory
// from the output cache, backed by 2 MB pages; the memory returns to the cache
// when the tensor is freed.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& opts,
                        at::MemoryFormat memory_format = at::MemoryFormat::Contiguous);

// `numel` elements of this thread's buffer for `slot`; valid until the next call
// for the same slot on this thread.
at::Tensor scratch(ScratchSlot slot, int64_t numel, const at::TensorOptions& opts);

// Bytes held for reuse: this thread's scratch buffers plus the cached outputs
// not in use. release_workspace() frees both (they are allocated again when needed).
int64_t workspace_bytes();
void release_workspace();

}  // namespace cpu
}  // namespace suptickets
