// Loops of the element-sparse products (element_kernels.h): which runs, in which order, on
// which thread. The vector arithmetic is in element_simd.inc (float32) and below (portable).
#include "element_kernels.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "tile.h"

namespace suptickets {
namespace cpu {
namespace {

// Channels one packing work unit moves together (reads of channel-innermost inputs
// and writes of channel-innermost outputs are runs of this many elements).
constexpr int64_t kPackChannels = 16;
// Pixel positions (pixel x batch) one packing work unit of a channel-innermost tensor moves.
constexpr int64_t kPackRun = 64;
// Work units the product loops aim for (enough for dynamic scheduling to balance).
constexpr int64_t kTargetUnits = 32;
// Pixel-range parts of the dvalues reduction, summed afterwards in a fixed order.
constexpr int64_t kMaxReductionParts = 4;

// A stretch of one output (or dX) row: elements [e0, e0 + len) of row `oh`; `x` is the
// input offset its tap-(0, 0) items read from (forward and dvalues only).
struct Run {
  int64_t oh, e0, len, x;
};

// The runs of rows of `width` pixels: one run per row span for stride 1 along W (pixel
// = B), one per pixel otherwise, each cut at kElementRun.
std::vector<Run> row_runs(int64_t rows, int64_t width, int64_t pixel, bool unit_w, int64_t max_len) {
  std::vector<Run> runs;
  const int64_t span = unit_w ? round_up(width * pixel, kElementAlign) : pixel;
  for (int64_t h = 0; h < rows; ++h)
    for (int64_t w = 0; w < (unit_w ? 1 : width); ++w)
      for (int64_t e = 0; e < span; e += max_len) runs.push_back({h, w * pixel + e, std::min(max_len, span - e), 0});
  return runs;
}

std::vector<Run> output_runs(const ConvGeometry& g, const ElementLayouts& el) {
  std::vector<Run> runs = row_runs(g.Ho, g.Wo, el.pixel, g.SW == 1, kElementRun);
  for (Run& r : runs) {
    const int64_t ow = r.e0 / el.pixel, b0 = r.e0 % el.pixel;
    r.x = r.oh * g.SH * el.x.row + ow * g.SW * el.pixel + b0;
  }
  return runs;
}

// This thread's buffer of at least n elements, kept between calls: a buffer freed and
// taken again on every work unit would cost a page fault (and the zeroing of a huge page)
// each time the allocator returns its memory to the system.
template <class T, int kSlot>
T* thread_buffer(int64_t n) {
  static thread_local std::vector<T> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(n);
  return buffer.data();
}

// `n` items cut into `parts` contiguous ranges of about equal size.
int64_t cut(int64_t n, int64_t parts, int64_t p) { return p * n / parts; }

// Runs the work units of a product in parallel: blocks of runs (their activations stay in
// cache across the channels) times ranges of channel blocks, more ranges when there are few
// runs. fn(r0, r1, c0, c1) computes runs [r0, r1) of channel blocks [c0, c1).
template <class F>
void for_each_unit(int64_t n_runs, int64_t n_blocks, const F& fn) {
  const int64_t run_blocks = std::max<int64_t>(1, std::min(n_runs, kTargetUnits));
  const int64_t parts = std::min(n_blocks, std::max<int64_t>(1, kTargetUnits / run_blocks));
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t u = 0; u < run_blocks * parts; ++u) {
    const int64_t part = u % parts, kb = u / parts;
    fn(cut(n_runs, run_blocks, kb), cut(n_runs, run_blocks, kb + 1), cut(n_blocks, parts, part),
       cut(n_blocks, parts, part + 1));
  }
}

// Channels whose runs are computed into a tile before they are stored to the output tensor
// together (runs of about kPackChannels contiguous elements of a channel-innermost output).
constexpr int64_t kStoreChannels = kPackChannels;

// The transpose of an N x N block of 16-byte rows (N = 4 floats or 8 bf16) through vector
// registers: out row k = column k of the rows read (portable vector extensions: SSE on x86,
// NEON on ARM).
typedef float v4f __attribute__((vector_size(16)));
typedef uint16_t v8h __attribute__((vector_size(16)));
typedef uint32_t v4u __attribute__((vector_size(16)));
typedef uint64_t v2u __attribute__((vector_size(16)));

inline void transpose_block(const v4f* r, v4f* c) {
  const v4f t0 = __builtin_shufflevector(r[0], r[1], 0, 4, 1, 5), t1 = __builtin_shufflevector(r[0], r[1], 2, 6, 3, 7);
  const v4f t2 = __builtin_shufflevector(r[2], r[3], 0, 4, 1, 5), t3 = __builtin_shufflevector(r[2], r[3], 2, 6, 3, 7);
  c[0] = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
  c[1] = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
  c[2] = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
  c[3] = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
}

inline void transpose_block(const v8h* r, v8h* c) {
  v4u u[8];  // 16-bit pairs interleaved, then 32-bit pairs, then the 64-bit halves picked
  for (int k = 0; k < 4; ++k) {
    const v4u lo = (v4u)__builtin_shufflevector(r[2 * k], r[2 * k + 1], 0, 8, 1, 9, 2, 10, 3, 11);
    const v4u hi = (v4u)__builtin_shufflevector(r[2 * k], r[2 * k + 1], 4, 12, 5, 13, 6, 14, 7, 15);
    u[k] = lo;
    u[k + 4] = hi;
  }
  for (int h = 0; h < 2; ++h) {  // h: columns 0-3 (lo) or 4-7 (hi)
    const v4u* t = u + 4 * h;
    const v2u a0 = (v2u)__builtin_shufflevector(t[0], t[1], 0, 4, 1, 5),
              a1 = (v2u)__builtin_shufflevector(t[0], t[1], 2, 6, 3, 7);
    const v2u b0 = (v2u)__builtin_shufflevector(t[2], t[3], 0, 4, 1, 5),
              b1 = (v2u)__builtin_shufflevector(t[2], t[3], 2, 6, 3, 7);
    c[4 * h + 0] = (v8h)__builtin_shufflevector(a0, b0, 0, 2);
    c[4 * h + 1] = (v8h)__builtin_shufflevector(a0, b0, 1, 3);
    c[4 * h + 2] = (v8h)__builtin_shufflevector(a1, b1, 0, 2);
    c[4 * h + 3] = (v8h)__builtin_shufflevector(a1, b1, 1, 3);
  }
}

// out[i * out_stride + j] = in[j * in_stride + i] for i < ni, j < nj: a transpose between a
// channel-innermost tensor and channel rows (packing reads one, the stores write one). float32
// and bf16 move whole blocks through transpose_block; the strips left over, and the other types,
// go element by element (converted from In to Out).
template <class Out, class In>
void transpose(const In* in, int64_t in_stride, Out* out, int64_t out_stride, int64_t ni, int64_t nj) {
  int64_t i0 = 0, j0 = 0;
  constexpr bool kFloat = std::is_same_v<In, float> && std::is_same_v<Out, float>;
  constexpr bool kBf16 = std::is_same_v<In, bf16> && std::is_same_v<Out, bf16>;
  if constexpr (kFloat || kBf16) {
    using V = std::conditional_t<kFloat, v4f, v8h>;
    constexpr int64_t N = sizeof(V) / sizeof(In);
    i0 = ni / N * N;
    j0 = nj / N * N;
    for (int64_t j = 0; j < j0; j += N)
      for (int64_t i = 0; i < i0; i += N) {
        V r[N], c[N];
        for (int64_t k = 0; k < N; ++k) std::memcpy(&r[k], in + (j + k) * in_stride + i, sizeof(V));
        transpose_block(r, c);
        for (int64_t k = 0; k < N; ++k) std::memcpy(out + (i + k) * out_stride + j, &c[k], sizeof(V));
      }
  }
  // the strips the blocks left: columns j >= j0 of rows i < i0, and every column of the other rows
  for (int64_t i = 0; i < ni; ++i)
    for (int64_t j = (i < i0 ? j0 : 0); j < nj; ++j) out[i * out_stride + j] = Out(in[j * in_stride + i]);
}

// Stores the runs of channels [c0, c0 + n) of `run` (tile[c - c0][e]) into the tensor,
// dropping the elements that are padding (w >= width or b >= B).
template <class T, class C>
void store_tile(const C* tile, int64_t c0, int64_t n, const Run& run, int64_t pixel, const ElementOutput<T>& out) {
  T* const base = out.data + c0 * out.sc + run.oh * out.sh;
  if (out.sc == 1 && (out.B > 1 || pixel == 1)) {
    // stretches of elements whose destinations are evenly spaced: one pixel's samples, or (a
    // batch of one, unit stride along W) consecutive pixels
    for (int64_t e = 0; e < run.len;) {
      const int64_t w = (run.e0 + e) / pixel, b = (run.e0 + e) % pixel;
      if (w >= out.W) break;
      if (out.B > 1) {
        const int64_t m = std::min(run.len - e, pixel - b);
        if (b < out.B)
          transpose(tile + e, kElementRun, base + b * out.sb + w * out.sw, out.sb, std::min(m, out.B - b), n);
        e += m;
      } else {
        const int64_t m = std::min(run.len - e, out.W - w);
        transpose(tile + e, kElementRun, base + w * out.sw, out.sw, m, n);
        e += m;
      }
    }
    return;
  }
  for (int64_t e = 0; e < run.len; ++e) {
    const int64_t w = (run.e0 + e) / pixel, b = (run.e0 + e) % pixel;
    if (w >= out.W || b >= out.B) continue;
    T* dst = base + b * out.sb + w * out.sw;
    for (int64_t c = 0; c < n; ++c) dst[c * out.sc] = T(tile[c * kElementRun + e]);
  }
}

template <class T, class C = compute_t<T>>
void generic_gather(const T* src, const ElementSegment* segs, int64_t n_segs, const int32_t* off, const C* value,
                    int64_t value_stride, int64_t rows, const C* init, C* out, int64_t out_stride, int64_t len) {
  for (int64_t r = 0; r < rows; ++r) {
    C acc[kElementRun];
    std::fill(acc, acc + len, init ? init[r] : C(0));
    for (int64_t g = 0; g < n_segs; ++g)
      for (int64_t i = segs[g].begin; i < segs[g].end; ++i) {
        const T* p = src + segs[g].base + off[i];
        const C w = value[i * value_stride + r];
        for (int64_t e = 0; e < len; ++e) acc[e] += w * C(p[e]);
      }
    std::copy(acc, acc + len, out + r * out_stride);
  }
}

template <class T, class C = compute_t<T>>
void generic_dot(const T* a, int64_t a_stride, int64_t rows, const T* src, int64_t base, const int32_t* off, int64_t n,
                 C* acc, int64_t acc_stride, int64_t len) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const T* p = src + base + off[i];
      const T* ar = a + r * a_stride;
      C s = 0;
      for (int64_t e = 0; e < len; ++e) s += C(ar[e]) * C(p[e]);
      acc[r * acc_stride + i] += s;
    }
}

// The values a call's items hold, in the compute type (converted when the storage differs).
template <class T>
const compute_t<T>* in_compute_type(const T* v, int64_t n, std::vector<compute_t<T>>* buffer) {
  if constexpr (std::is_same_v<T, compute_t<T>>) {
    return v;
  } else {
    if (v == nullptr) return nullptr;
    buffer->assign(v, v + n);
    return buffer->data();
  }
}

}  // namespace

template <>
ElementMath<double> element_math<double>() {
  return {generic_gather<double>, generic_dot<double>};
}

// float32 and bf16 activations: the SIMD arithmetic of the CPU's instruction set (the overloads
// of the storage type), else the portable loops.
template <class T>
ElementMath<T> simd_element_math() {
  switch (cpu_isa()) {
#if SUPTICKETS_X86
    case Isa::kAvx512:
      return {avx512::element_gather, avx512::element_dot};
    case Isa::kAvx2:
      return {avx2::element_gather, avx2::element_dot};
#endif
    default:
      return {generic_gather<T>, generic_dot<T>};
  }
}

template <>
ElementMath<float> element_math<float>() {
  return simd_element_math<float>();
}

template <>
ElementMath<bf16> element_math<bf16>() {
  return simd_element_math<bf16>();
}

bool element_layouts_fit(const ElementLayouts& el) {
  const int64_t limit = int64_t(1) << 31;
  return el.x_numel + kElementAlign < limit && el.dy_numel + kElementAlign < limit;
}

ElementLayouts element_layouts(const ConvGeometry& g) {
  ElementLayouts el{};
  const bool unit_w = g.SW == 1;
  const int64_t A = kElementAlign;
  const int64_t p = unit_w ? g.B : round_up(g.B, A);
  el.pixel = p;
  // input: zero padded, and each row ends in at least A zeros (runs reach past the row)
  el.x = {0, round_up(g.Wp() * p, A) + A, p, g.PH, g.PW};
  el.x.plane = g.Hp() * el.x.row;
  // dY: padded along W so that a stride-1 dX row span reads zeros where a tap falls outside
  const int64_t left = unit_w ? std::max<int64_t>(0, (g.KW - 1) * g.DW - g.PW) : 0;
  const int64_t right = unit_w ? std::max<int64_t>(0, g.W + g.PW - g.Wo) : 0;
  el.dy = {0, round_up((left + g.Wo + right) * p, A) + A, p, 0, left};
  el.dy.plane = g.Ho * el.dy.row;
  el.x_numel = g.Cin * el.x.plane;
  el.dy_numel = g.Cout * el.dy.plane;
  return el;
}

template <class T>
void element_weights(const ConvGeometry& g, const ElementLayouts& el, const T* values, const int32_t* rows,
                     const int32_t* cols, const int32_t* row_ptr, const int32_t* col_ptr, const int32_t* col_perm,
                     bool forward_items, bool column_items, ElementWeights<compute_t<T>>* w) {
  const int64_t br = g.br, bc = g.bc, nrb = g.out_blocks(), ncb = g.in_blocks(), taps = g.KH * g.KW;
  if (forward_items) {
    // block-row rb holds one item per column of each of its blocks
    w->row_ptr.assign(nrb + 1, 0);
    w->slot0.assign(row_ptr, row_ptr + nrb);
    for (int64_t rb = 0; rb < nrb; ++rb) w->row_ptr[rb + 1] = w->row_ptr[rb] + (row_ptr[rb + 1] - row_ptr[rb]) * bc;
    const int64_t n = w->row_ptr[nrb];
    w->x_off.resize(n);
    w->value.resize(n * br);
#pragma omp parallel for schedule(static)
    for (int64_t rb = 0; rb < nrb; ++rb) {
      int64_t k = w->row_ptr[rb];
      for (int64_t s = row_ptr[rb]; s < row_ptr[rb + 1]; ++s) {
        const int64_t tap = cols[s] / ncb, cb = cols[s] % ncb;
        const int64_t shift = (tap / g.KW) * g.DH * el.x.row + (tap % g.KW) * g.DW * el.pixel;
        for (int64_t j = 0; j < bc; ++j, ++k) {
          w->x_off[k] = static_cast<int32_t>((cb * bc + j) * el.x.plane + shift);
          for (int64_t i = 0; i < br; ++i) w->value[k * br + i] = compute_t<T>(values[(s * br + i) * bc + j]);
        }
      }
    }
  }
  if (column_items) {
    // block-column cb at tap t holds one item per row of each of its blocks
    w->col_ptr.assign(ncb * taps + 1, 0);
    for (int64_t cb = 0; cb < ncb; ++cb)
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t col = t * ncb + cb, u = cb * taps + t;
        w->col_ptr[u + 1] = w->col_ptr[u] + (col_ptr[col + 1] - col_ptr[col]) * br;
      }
    const int64_t n = w->col_ptr[ncb * taps];
    w->dy_off.resize(n);
    w->col_value.resize(n * bc);
#pragma omp parallel for schedule(static)
    for (int64_t cb = 0; cb < ncb; ++cb)
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t col = t * ncb + cb;
        int64_t k = w->col_ptr[cb * taps + t];
        for (int64_t q = col_ptr[col]; q < col_ptr[col + 1]; ++q) {
          const int64_t s = col_perm[q];
          for (int64_t i = 0; i < br; ++i, ++k) {
            w->dy_off[k] = static_cast<int32_t>((rows[s] * br + i) * el.dy.plane);
            std::copy(values + (s * br + i) * bc, values + (s * br + i + 1) * bc, w->col_value.data() + k * bc);
          }
        }
      }
  }
}

// Copies every element of a tensor with element strides (sb, sc, sh, sw) into the planes `p`. A channel-innermost
// tensor (sc == 1: [N, C] or channels_last) is moved in units of kPackRun pixel positions times all channels, 16
// channels at a time, so both sides are read and written in runs (transpose()); any other layout in units
// of one channel row, read along W.
template <class T>
void copy_to_planes(T* planes, const Planes& p, const T* t, int64_t B, int64_t C, int64_t H, int64_t W, int64_t sb,
                    int64_t sc, int64_t sh, int64_t sw) {
  const int64_t positions = W * B;
  if (sc == 1) {
    const int64_t runs = (positions + kPackRun - 1) / kPackRun;
#pragma omp parallel for schedule(static)
    for (int64_t u = 0; u < H * runs; ++u) {
      const int64_t h = u / runs, q0 = (u % runs) * kPackRun, q1 = std::min(positions, q0 + kPackRun);
      T* prow = planes + (h + p.top) * p.row + p.left * p.pixel;
      // stretches of positions whose places in a plane are consecutive: one pixel's samples,
      // or (a batch of one, unit pixel) consecutive pixels; else one position at a time
      for (int64_t q = q0; q < q1;) {
        const int64_t w = q / B, b = q % B;
        int64_t m = 1, step = 0;
        if (B > 1) {
          m = std::min(q1 - q, B - b);
          step = sb;
        } else if (p.pixel == 1) {
          m = q1 - q;
          step = sw;
        }
        for (int64_t c0 = 0; c0 < C; c0 += kPackChannels)
          transpose(t + b * sb + c0 + h * sh + w * sw, step, prow + c0 * p.plane + w * p.pixel + b, p.plane,
                    std::min(kPackChannels, C - c0), m);
        q += m;
      }
    }
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t u = 0; u < C * H; ++u) {
      const int64_t c = u / H, h = u % H;
      T* prow = planes + c * p.plane + (h + p.top) * p.row + p.left * p.pixel;
      if (sw == 1) {  // a [B][W] slice into the plane's row, [W][pixel]
        transpose(t + c * sc + h * sh, sb, prow, p.pixel, W, B);
        continue;
      }
      for (int64_t b = 0; b < B; ++b) {
        const T* src = t + b * sb + c * sc + h * sh;
        for (int64_t w = 0; w < W; ++w) prow[w * p.pixel + b] = src[w * sw];
      }
    }
  }
}

template <class T>
void pack_planes(const T* src, int64_t B, int64_t C, int64_t H, int64_t W, int64_t sb, int64_t sc, int64_t sh,
                 int64_t sw, const Planes& p, int64_t numel, T* dst, compute_t<T>* channel_sums) {
  // zero the padding only: the rows above and below, each row's ends, the slack after the planes
  const int64_t rows = p.plane / p.row, lead = p.left * p.pixel, tail = (p.left + W) * p.pixel;
#pragma omp parallel for schedule(static)
  for (int64_t u = 0; u < C * rows; ++u) {
    T* r = dst + u * p.row;
    const int64_t h = u % rows - p.top;
    if (h < 0 || h >= H || p.pixel != B) {  // (a padded pixel holds zeros past the batch)
      std::fill(r, r + p.row, T(0));
    } else {
      std::fill(r, r + lead, T(0));
      std::fill(r + tail, r + p.row, T(0));
    }
  }
  std::fill(dst + C * p.plane, dst + numel, T(0));
  copy_to_planes<T>(dst, p, src, B, C, H, W, sb, sc, sh, sw);
  if (channel_sums) {
    // per channel, rows in order: a fixed summation order (padding adds zeros)
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      compute_t<T> s = 0;
      for (int64_t h = 0; h < H; ++h) {
        const T* r = dst + c * p.plane + (h + p.top) * p.row + p.left * p.pixel;
        for (int64_t e = 0; e < W * p.pixel; ++e) s += compute_t<T>(r[e]);
      }
      channel_sums[c] = s;
    }
  }
}

// Blocks of `bs` channels stored together: as many whole blocks as make about kStoreChannels.
int64_t store_blocks(int64_t bs) { return std::max<int64_t>(1, kStoreChannels / bs); }

template <class T>
void element_forward(const ConvGeometry& g, const ElementLayouts& el, const ElementWeights<compute_t<T>>& w,
                     const T* xp, const T* bias_t, const ElementOutput<T>& y) {
  using C = compute_t<T>;
  const ElementMath<T> math = element_math<T>();
  std::vector<C> bias_buffer;
  const C* bias = in_compute_type(bias_t, g.Cout, &bias_buffer);
  const std::vector<Run> runs = output_runs(g, el);
  const int64_t n_runs = static_cast<int64_t>(runs.size()), nrb = g.out_blocks(), br = g.br;
  const int64_t chunk = store_blocks(br);
  for_each_unit(n_runs, nrb, [&](int64_t r0, int64_t r1, int64_t rb0, int64_t rb1) {
    C* const tile = thread_buffer<C, 0>(chunk * br * kElementRun);
    for (int64_t r = r0; r < r1; ++r) {
      const Run run = runs[r];
      for (int64_t c0 = rb0; c0 < rb1; c0 += chunk) {
        const int64_t n = std::min(chunk, rb1 - c0);
        for (int64_t rb = c0; rb < c0 + n; ++rb) {
          const ElementSegment seg{w.row_ptr[rb], w.row_ptr[rb + 1], run.x};
          math.gather(xp, &seg, 1, w.x_off.data(), w.value.data(), br, br, bias ? bias + rb * br : nullptr,
                      tile + (rb - c0) * br * kElementRun, kElementRun, run.len);
        }
        store_tile(tile, c0 * br, n * br, run, el.pixel, y);
      }
    }
  });
}

template <class T>
void element_grad_input(const ConvGeometry& g, const ElementLayouts& el, const ElementWeights<compute_t<T>>& w,
                        const T* dyp, const ElementOutput<T>& dx) {
  using C = compute_t<T>;
  const ElementMath<T> math = element_math<T>();
  const bool unit_w = g.SW == 1;
  const std::vector<Run> runs = row_runs(g.H, g.W, el.pixel, unit_w, kElementRun);
  const int64_t n_runs = static_cast<int64_t>(runs.size()), taps = g.KH * g.KW, p = el.pixel;
  const int64_t ncb = g.in_blocks(), bc = g.bc;
  const int64_t chunk = store_blocks(bc);
  for_each_unit(n_runs, ncb, [&](int64_t r0, int64_t r1, int64_t cb0, int64_t cb1) {
    ElementSegment* const segs = thread_buffer<ElementSegment, 0>(taps);
    int64_t* const seg_tap = thread_buffer<int64_t, 0>(taps);
    C* const tile = thread_buffer<C, 0>(chunk * bc * kElementRun);
    for (int64_t r = r0; r < r1; ++r) {
      const Run run = runs[r];
      const int64_t iw = run.e0 / p, b0 = run.e0 % p;
      // the taps whose output pixel exists, and where their run starts in dY
      int64_t n = 0;
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t ki = t / g.KW, kj = t % g.KW;
        const int64_t ohn = run.oh + g.PH - ki * g.DH;
        if (ohn < 0 || ohn % g.SH != 0 || ohn / g.SH >= g.Ho) continue;
        int64_t base = (ohn / g.SH) * el.dy.row;
        if (unit_w) {
          base += (g.PW - kj * g.DW + el.dy.left) * p + run.e0;
        } else {
          const int64_t own = iw + g.PW - kj * g.DW;
          if (own < 0 || own % g.SW != 0 || own / g.SW >= g.Wo) continue;
          base += (own / g.SW) * p + b0;
        }
        segs[n] = {0, 0, base};
        seg_tap[n++] = t;
      }
      for (int64_t c0 = cb0; c0 < cb1; c0 += chunk) {
        const int64_t m = std::min(chunk, cb1 - c0);
        for (int64_t cb = c0; cb < c0 + m; ++cb) {
          for (int64_t k = 0; k < n; ++k) {
            segs[k].begin = w.col_ptr[cb * taps + seg_tap[k]];
            segs[k].end = w.col_ptr[cb * taps + seg_tap[k] + 1];
          }
          math.gather(dyp, segs, n, w.dy_off.data(), w.col_value.data(), bc, bc, nullptr,
                      tile + (cb - c0) * bc * kElementRun, kElementRun, run.len);
        }
        store_tile(tile, c0 * bc, m * bc, run, el.pixel, dx);
      }
    }
  });
}

template <class T>
void element_grad_values(const ConvGeometry& g, const ElementLayouts& el, const ElementWeights<compute_t<T>>& w,
                         const T* dyp, const T* xp, int64_t n_values, T* dvalues) {
  using C = compute_t<T>;
  const ElementMath<T> math = element_math<T>();
  const std::vector<Run> runs = output_runs(g, el);
  const int64_t n_runs = static_cast<int64_t>(runs.size()), nrb = g.out_blocks(), br = g.br;
  const int64_t n_items = w.row_ptr[nrb];
  // Units: ranges of block-rows times `parts` ranges of runs. Each part sums into its own
  // buffer, [part][row of the block][item], and the parts are added in order afterwards; the
  // cut depends on the shapes only, so results do not depend on the thread count.
  const int64_t parts = std::max<int64_t>(1, std::min(n_runs, kMaxReductionParts));
  const int64_t row_blocks = std::min(nrb, std::max<int64_t>(1, kTargetUnits / parts));
  C* const partial = thread_buffer<C, 1>(parts * br * n_items);
  std::fill(partial, partial + parts * br * n_items, C(0));
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t u = 0; u < parts * row_blocks; ++u) {
    const int64_t rp = u % row_blocks, part = u / row_blocks;
    const int64_t rb0 = cut(nrb, row_blocks, rp), rb1 = cut(nrb, row_blocks, rp + 1);
    C* acc = partial + part * br * n_items;
    for (int64_t r = cut(n_runs, parts, part); r < cut(n_runs, parts, part + 1); ++r) {
      const Run run = runs[r];
      const T* dy_run = dyp + run.oh * el.dy.row + el.dy.left * el.pixel + run.e0;
      for (int64_t rb = rb0; rb < rb1; ++rb) {
        const int64_t k0 = w.row_ptr[rb], n = w.row_ptr[rb + 1] - k0;
        math.dot(dy_run + rb * br * el.dy.plane, el.dy.plane, br, xp, run.x, w.x_off.data() + k0, n, acc + k0, n_items,
                 run.len);
      }
    }
  }
  // item k of block-row rb is column j of slot s: k = row_ptr[rb] + (s - slot0) * bc + j
  std::fill(dvalues, dvalues + n_values, T(0));
  const int64_t bc = g.bc;
#pragma omp parallel for schedule(static)
  for (int64_t rb = 0; rb < nrb; ++rb)
    for (int64_t k = w.row_ptr[rb]; k < w.row_ptr[rb + 1]; ++k) {
      const int64_t s = w.slot0[rb] + (k - w.row_ptr[rb]) / bc, j = (k - w.row_ptr[rb]) % bc;
      for (int64_t i = 0; i < br; ++i) {
        C sum = partial[i * n_items + k];
        for (int64_t part = 1; part < parts; ++part) sum += partial[(part * br + i) * n_items + k];
        dvalues[(s * br + i) * bc + j] = T(sum);
      }
    }
}

#define SUPTICKETS_INSTANTIATE(T)                                                                                      \
  template void element_weights<T>(const ConvGeometry&, const ElementLayouts&, const T*, const int32_t*,               \
                                   const int32_t*, const int32_t*, const int32_t*, const int32_t*, bool, bool,         \
                                   ElementWeights<compute_t<T>>*);                                                     \
  template void pack_planes<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,       \
                               const Planes&, int64_t, T*, compute_t<T>*);                                             \
  template void element_forward<T>(const ConvGeometry&, const ElementLayouts&, const ElementWeights<compute_t<T>>&,    \
                                   const T*, const T*, const ElementOutput<T>&);                                       \
  template void element_grad_input<T>(const ConvGeometry&, const ElementLayouts&, const ElementWeights<compute_t<T>>&, \
                                      const T*, const ElementOutput<T>&);                                              \
  template void element_grad_values<T>(const ConvGeometry&, const ElementLayouts&,                                     \
                                       const ElementWeights<compute_t<T>>&, const T*, const T*, int64_t, T*);
SUPTICKETS_INSTANTIATE(float)
SUPTICKETS_INSTANTIATE(double)
SUPTICKETS_INSTANTIATE(bf16)
#undef SUPTICKETS_INSTANTIATE

}  // namespace cpu
}  // namespace suptickets
