#include "workspace.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>

namespace suptickets {
namespace cpu {
namespace {

constexpr size_t kHugePage = size_t(1) << 21;
// Outputs from this size on come from the cache.
constexpr size_t kCachedMin = size_t(1) << 20;
// Freed outputs kept at most (bytes); the largest go first beyond it.
constexpr size_t kCacheCap = size_t(1) << 30;

thread_local at::Tensor scratch_buffers[kSlots];

void advise_huge_pages(void* data, size_t bytes) {
#ifdef MADV_HUGEPAGE
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t last = (begin + bytes) & ~(kHugePage - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

// Freed output buffers by size. A request takes the smallest cached block that is
// at least as large and at most a quarter larger.
class OutputCache {
 public:
  void* acquire(size_t bytes, size_t* capacity) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.lower_bound(bytes);
      if (it != free_.end() && it->first <= bytes + bytes / 4) {
        *capacity = it->first;
        void* data = it->second;
        cached_ -= it->first;
        free_.erase(it);
        return data;
      }
    }
    const size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* data = std::aligned_alloc(kHugePage, size);
    if (data == nullptr) return nullptr;
    advise_huge_pages(data, size);
    *capacity = size;
    return data;
  }

  void release(void* data, size_t capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.emplace(capacity, data);
    cached_ += capacity;
    while (cached_ > kCacheCap && !free_.empty()) {
      auto largest = std::prev(free_.end());
      cached_ -= largest->first;
      std::free(largest->second);
      free_.erase(largest);
    }
  }

  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, data] : free_) std::free(data);
    free_.clear();
    cached_ = 0;
  }

 private:
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  size_t cached_ = 0;
};

// Never destroyed: tensors may return memory to it during interpreter shutdown.
OutputCache& output_cache() {
  static OutputCache* cache = new OutputCache();
  return *cache;
}

}  // namespace

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& opts, at::MemoryFormat memory_format) {
  const size_t bytes = c10::multiply_integers(sizes) * opts.dtype().itemsize();
  if (bytes < kCachedMin) return at::empty(sizes, opts.memory_format(memory_format));
  TORCH_CHECK(memory_format == at::MemoryFormat::Contiguous || memory_format == at::MemoryFormat::ChannelsLast,
              "suptickets: unsupported memory format");
  std::vector<int64_t> strides;  // everything that may throw comes before the memory is taken
  if (memory_format == at::MemoryFormat::ChannelsLast) {
    strides = c10::get_channels_last_strides_2d(sizes);
  } else {
    const auto contiguous = c10::contiguous_strides(sizes);
    strides.assign(contiguous.begin(), contiguous.end());
  }
  size_t capacity = 0;
  void* data = output_cache().acquire(bytes, &capacity);
  TORCH_CHECK(data != nullptr, "suptickets: out of memory allocating ", bytes, " bytes");
  return at::from_blob(
      data, sizes, strides, [capacity](void* p) { output_cache().release(p, capacity); },
      opts.memory_format(std::nullopt));
}

at::Tensor scratch(ScratchSlot slot, int64_t numel, const at::TensorOptions& opts) {
  at::Tensor& buf = scratch_buffers[slot];
  const auto dtype = opts.dtype().toScalarType();
  if (!buf.defined() || buf.scalar_type() != dtype || buf.numel() < numel) {
    buf = at::Tensor();  // free the old buffer before taking a larger one
    buf = at::empty({std::max<int64_t>(numel, 1)}, opts.memory_format(std::nullopt));
    advise_huge_pages(buf.data_ptr(), buf.nbytes());
  }
  return buf.narrow(0, 0, numel);
}

int64_t workspace_bytes() {
  int64_t total = static_cast<int64_t>(output_cache().cached_bytes());
  for (const auto& b : scratch_buffers)
    if (b.defined()) total += b.nbytes();
  return total;
}

void release_workspace() {
  for (auto& b : scratch_buffers) b = at::Tensor();
  output_cache().clear();
}

}  // namespace cpu
}  // namespace suptickets
