// Element-sparse product kernels (CPU, no torch headers): every active weight is its own
// item, so any block shape runs here, (1, 1) included. The arithmetic is vectorised over
// the batch, and for stride-1 rows over consecutive pixels too, on activations laid out
// with the batch innermost:
//
//   Planes     element (c, h, w, b) at c * plane + (h + top) * row + (w + left) * pixel + b,
//              pixel = B (stride-1 layers: a row of pixels is one contiguous run) or B
//              rounded up to kElementAlign (strided layers: one run per pixel); rows are
//              padded to a multiple of kElementAlign and the padding is zero.
//   weights    one list of items per output channel (forward, dvalues) and one per input
//              channel and tap (dX): an item is an offset into an activation plane and a value.
//
// A run is a stretch of consecutive elements of one output row (or of one dX row); every
// run is a multiple of kElementAlign elements and may reach into the row's zero padding,
// so the vector arithmetic needs no tails. Every output element is written by one thread
// in a fixed order: results do not depend on the thread count.
#pragma once
#include <cstdint>
#include <vector>

#include "bf16.h"
#include "geometry.h"

namespace suptickets {
namespace cpu {

constexpr int64_t kElementAlign = 16;  // elements; a multiple of every vector length used
constexpr int64_t kElementRun = 128;   // the longest run one kernel call computes

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

struct Planes {
  int64_t plane, row, pixel, top, left;
  int64_t at(int64_t c, int64_t h, int64_t w) const { return c * plane + (h + top) * row + (w + left) * pixel; }
};

// The activations of one call, laid out for the element kernels.
struct ElementLayouts {
  int64_t pixel;  // B, or B rounded up (strided along W)
  Planes x;       // input, zero padded by (PH, PW)
  Planes dy;      // grad-out, padded along W for the dX gather
  int64_t x_numel, dy_numel;
};
// The layouts of a call; the planes must hold fewer than 2^31 elements (item offsets are int32).
ElementLayouts element_layouts(const ConvGeometry& g);
// Whether element_layouts(g) fits int32 offsets.
bool element_layouts_fit(const ElementLayouts& el);

// A weight as items (built from the block layout once per call), its values in the compute type
// (float32 for bf16 activations). An item is one column of a
// block for the forward and dvalues (the block's br weights of one input channel and tap) and
// one row of a block for dX (its bc weights of one output channel): each input vector an item
// loads feeds br (or bc) multiply-adds.
template <class T>
struct ElementWeights {
  // forward / dvalues: items of block-row rb are [row_ptr[rb], row_ptr[rb + 1]), bc per block in
  // slot order; item k reads the input at x_off[k]; value[k * br + i] is its weight for output
  // channel rb * br + i. Offsets are int32: element_layouts() checks that the planes fit.
  std::vector<int64_t> row_ptr, slot0;  // slot0[rb]: the first slot of block-row rb
  std::vector<int32_t> x_off;
  std::vector<T> value;
  // dX: items of block-column cb at tap t are [col_ptr[cb * taps + t], ... + 1); item k reads the
  // plane of one output channel of dY at dy_off[k]; col_value[k * bc + j] is its weight for input
  // channel cb * bc + j
  std::vector<int64_t> col_ptr;
  std::vector<int32_t> dy_off;
  std::vector<T> col_value;
};

// values [nnz][br][bc] with block rows/cols/row_ptr/col_ptr/col_perm -> element items.
template <class T>
void element_weights(const ConvGeometry& g, const ElementLayouts& el, const T* values, const int32_t* rows,
                     const int32_t* cols, const int32_t* row_ptr, const int32_t* col_ptr, const int32_t* col_perm,
                     bool forward_items, bool column_items, ElementWeights<compute_t<T>>* w);

// dst (planes `p`, fully written, padding zeroed) from src[b][c][h][w] with element strides
// (sb, sc, sh, sw); with channel_sums (C entries), also the sum over b, h, w of every channel
// (in the compute type).
template <class T>
void pack_planes(const T* src, int64_t B, int64_t C, int64_t H, int64_t W, int64_t sb, int64_t sc, int64_t sh,
                 int64_t sw, const Planes& p, int64_t numel, T* dst, compute_t<T>* channel_sums = nullptr);

// A result tensor [B, C, H, W] with element strides, written by the kernels directly (each
// run's elements that are not padding): `W` and `B` bound the valid pixels.
template <class T>
struct ElementOutput {
  T* data;
  int64_t sb, sc, sh, sw, B, W;
};

// y = conv(x, W) + bias (xp: packed input), every element of y written.
template <class T>
void element_forward(const ConvGeometry& g, const ElementLayouts& el, const ElementWeights<compute_t<T>>& w,
                     const T* xp, const T* bias, const ElementOutput<T>& y);

// dX (every element written) from the packed dY.
template <class T>
void element_grad_input(const ConvGeometry& g, const ElementLayouts& el, const ElementWeights<compute_t<T>>& w,
                        const T* dyp, const ElementOutput<T>& dx);

// dvalues[slot] for every item (the SDDMM), from the packed dY and input, summed in the compute
// type; dvalues has nnz * br * bc entries, all written.
template <class T>
void element_grad_values(const ConvGeometry& g, const ElementLayouts& el, const ElementWeights<compute_t<T>>& w,
                         const T* dyp, const T* xp, int64_t n_values, T* dvalues);

// The vector arithmetic, one implementation per instruction set (float32 and bf16 activations,
// float32 arithmetic) and a portable one (any dtype). Activations (`src`, `a`) are of the
// storage type T, weights, initial values and results of the compute type C. `len` is a
// multiple of kElementAlign, at most kElementRun.
//   gather: out[r * out_stride + e] = (init ? init[r] : 0) + sum over segments s, items i in
//           [begin, end): value[i * value_stride + r] * src[s.base + off[i] + e], for r < rows
//   dot:    acc[r * acc_stride + i] += sum_e a[r * a_stride + e] * src[base + off[i] + e] for rows
//           r < rows and items i < n
struct ElementSegment {
  int64_t begin, end, base;
};
template <class T, class C = compute_t<T>>
struct ElementMath {
  void (*gather)(const T* src, const ElementSegment* segs, int64_t n_segs, const int32_t* off, const C* value,
                 int64_t value_stride, int64_t rows, const C* init, C* out, int64_t out_stride, int64_t len);
  void (*dot)(const T* a, int64_t a_stride, int64_t rows, const T* src, int64_t base, const int32_t* off, int64_t n,
              C* acc, int64_t acc_stride, int64_t len);
};
template <class T>
ElementMath<T> element_math();

#define SUPTICKETS_DECLARE_ELEMENT_SIMD(ns, S)                                                                 \
  namespace ns {                                                                                               \
  void element_gather(const S* src, const ElementSegment* segs, int64_t n_segs, const int32_t* off,            \
                      const float* value, int64_t value_stride, int64_t rows, const float* init, float* out,   \
                      int64_t out_stride, int64_t len);                                                        \
  void element_dot(const S* a, int64_t a_stride, int64_t rows, const S* src, int64_t base, const int32_t* off, \
                   int64_t n, float* acc, int64_t acc_stride, int64_t len);                                    \
  }
SUPTICKETS_DECLARE_ELEMENT_SIMD(avx2, float)
SUPTICKETS_DECLARE_ELEMENT_SIMD(avx512, float)
SUPTICKETS_DECLARE_ELEMENT_SIMD(avx2, bf16)
SUPTICKETS_DECLARE_ELEMENT_SIMD(avx512, bf16)
#undef SUPTICKETS_DECLARE_ELEMENT_SIMD

}  // namespace cpu
}  // namespace suptickets
