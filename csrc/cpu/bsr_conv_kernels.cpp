// Loops of the block-sparse convolution kernels: which tiles, in which order, on
// which thread. The arithmetic is in the tile kernels (tile.h).
#include "bsr_conv_kernels.h"

#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "tile.h"

namespace suptickets {
namespace cpu {
namespace {

// Output pixels handled by one work unit of the forward and dX loops.
int64_t pixels_per_unit(int64_t tile) { return std::max<int64_t>(tile, (96 / tile) * tile); }
// Block-rows a forward work unit walks per pixel tile (measured best on 32x32 blocks).
constexpr int64_t kRowGroup = 8;
// Pixels of one row that a packing work unit copies.
constexpr int64_t kPackRun = 64;
// Outputs at least this large (about a last-level cache) bypass the caches with
// non-temporal stores; smaller ones stay cached for the layer that reads them next.
constexpr int64_t kStreamBytes = int64_t(32) << 20;
// Pixels of the dvalues reduction kept hot in cache between row tiles.
constexpr int64_t kReductionChunk = 256;

struct Tap {
  int64_t ki, kj, cblk;
};

// Copies n contiguous elements; float runs to a 16-byte aligned destination can
// bypass the caches (a packed buffer larger than the last-level cache).
template <class T>
void copy_run(T* dst, const T* src, int64_t n, bool stream) {
  if constexpr (std::is_same_v<T, float>) {
    if (stream) {
      for (int64_t j = 0; j < n; j += 4) _mm_stream_ps(dst + j, _mm_loadu_ps(src + j));
      return;
    }
  }
  std::memcpy(dst, src, n * sizeof(T));
}

Tap tap_of(const ConvGeometry& g, int64_t col) {
  const int64_t ncb = g.in_blocks();
  const int64_t tap = col / ncb;
  return {tap / g.KW, tap % g.KW, col % ncb};
}

// Offset of a block's tap into the packed input stripes.
int64_t input_offset(const ConvGeometry& g, const Tap& tp) {
  return tp.cblk * g.in_stripe() + (tp.ki * g.DH * g.Wp() + tp.kj * g.DW) * g.bc;
}

}  // namespace

template <class T>
void pack_stripes(const T* in, int64_t B, int64_t C, int64_t H, int64_t W, int64_t sb,
                  int64_t sc, int64_t sh, int64_t sw, int64_t bs, int64_t PH, int64_t PW,
                  T* out, T* channel_sums) {
  const int64_t ncb = C / bs, Hp = H + 2 * PH, Wp = W + 2 * PW;
  const int64_t runs = (Wp + kPackRun - 1) / kPackRun;
  // Channel block innermost: consecutive units read the same input rows.
  const int64_t units = B * Hp * runs * ncb;
  std::vector<T> partial(channel_sums ? units * bs : 0, T(0));
  const bool stream = ncb * B * Hp * Wp * bs * int64_t(sizeof(T)) >= kStreamBytes && bs % 4 == 0 &&
                      reinterpret_cast<uintptr_t>(out) % 16 == 0;
#pragma omp parallel for schedule(static)
  for (int64_t u = 0; u < units; ++u) {
    const int64_t cb = u % ncb, r = u / ncb;
    const int64_t wp0 = (r % runs) * kPackRun, wp1 = std::min(Wp, wp0 + kPackRun);
    const int64_t hp = (r / runs) % Hp, b = r / (runs * Hp);
    T* row = out + ((cb * B + b) * Hp + hp) * Wp * bs;
    if (hp < PH || hp >= PH + H) {
      std::fill(row + wp0 * bs, row + wp1 * bs, T(0));
      continue;
    }
    // [w0, w1): the unpadded columns of this run
    const int64_t w0 = std::max(wp0, PW) - PW, w1 = std::min(wp1, PW + W) - PW;
    std::fill(row + wp0 * bs, row + std::max(wp0, std::min(wp1, PW)) * bs, T(0));
    std::fill(row + std::max(wp0, std::min(wp1, PW + W)) * bs, row + wp1 * bs, T(0));
    if (w1 <= w0) continue;
    const T* src = in + b * sb + cb * bs * sc + (hp - PH) * sh;
    T* dst = row + PW * bs;
    if (sc == 1) {
      for (int64_t w = w0; w < w1; ++w) copy_run(dst + w * bs, src + w * sw, bs, stream);
    } else {
      for (int64_t j = 0; j < bs; ++j)
        for (int64_t w = w0; w < w1; ++w) dst[w * bs + j] = src[j * sc + w * sw];
    }
    if (channel_sums) {
      T* part = partial.data() + u * bs;
      for (int64_t w = w0; w < w1; ++w)
        for (int64_t j = 0; j < bs; ++j) part[j] += src[j * sc + w * sw];
    }
  }
  if (stream) _mm_sfence();  // the parallel region's barrier follows
  if (channel_sums) {
    std::fill(channel_sums, channel_sums + C, T(0));
    for (int64_t u = 0; u < units; ++u)
      for (int64_t j = 0; j < bs; ++j) channel_sums[(u % ncb) * bs + j] += partial[u * bs + j];
  }
}

template <class T>
void unpack_stripes(const T* in, int64_t B, int64_t C, int64_t H, int64_t W, int64_t bs,
                    int64_t PH, int64_t PW, T* out) {
  const int64_t ncb = C / bs, Hp = H + 2 * PH, Wp = W + 2 * PW;
#pragma omp parallel for schedule(static)
  for (int64_t u = 0; u < B * H; ++u) {
    const int64_t h = u % H, b = u / H;
    for (int64_t cb = 0; cb < ncb; ++cb) {
      const T* i = in + ((cb * B + b) * Hp + h + PH) * Wp * bs + PW * bs;
      T* o = out + u * W * C + cb * bs;
      for (int64_t w = 0; w < W; ++w) std::memcpy(o + w * C, i + w * bs, bs * sizeof(T));
    }
  }
}

template <class T>
void conv_forward(const ConvGeometry& g, const T* xp, const T* vt, const int32_t* row_ptr,
                  const int32_t* cols, const T* bias, T* y) {
  const int64_t nrb = g.out_blocks(), nnz = row_ptr[nrb];
  std::vector<TileItem> items(nnz);
  for (int64_t s = 0; s < nnz; ++s)
    items[s] = {input_offset(g, tap_of(g, cols[s])), s * g.bc * g.br, g.bc};
  const int64_t tile = tile_rows<T>(g.br);
  const int64_t chunk = pixels_per_unit(tile);
  const int64_t nchunks = (g.Wo + chunk - 1) / chunk;
  const int64_t Wp = g.Wp(), Hp = g.Hp();
  const bool stream = g.B * g.Ho * g.Wo * g.Cout * int64_t(sizeof(T)) >= kStreamBytes;
  // A unit is a run of pixels times a group of block-rows; inside it each pixel tile
  // walks the group's block-rows, so output rows are written in long contiguous runs
  // while the group's blocks stay in cache.
  const int64_t group = std::min(nrb, kRowGroup);
  const int64_t ngroups = (nrb + group - 1) / group;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t u = 0; u < g.B * g.Ho * nchunks * ngroups; ++u) {
    const int64_t rb0 = (u % ngroups) * group, rb1 = std::min(nrb, rb0 + group), r = u / ngroups;
    const int64_t ow0 = (r % nchunks) * chunk, bo = r / nchunks;
    const int64_t b = bo / g.Ho, oh = bo % g.Ho;
    const int64_t ow1 = std::min(g.Wo, ow0 + chunk);
    TileArgs<T> t;
    t.a_m = g.SW * g.bc;
    t.a_k = 1;
    t.B = vt;
    t.b_k = g.br;
    t.c_m = g.Cout;
    t.accumulate = false;
    t.stream = stream;
    for (int64_t ow = ow0; ow < ow1; ow += tile) {
      t.A = xp + ((b * Hp + oh * g.SH) * Wp + ow * g.SW) * g.bc;
      for (int64_t rb = rb0; rb < rb1; ++rb) {
        t.items = items.data() + row_ptr[rb];
        t.n_items = row_ptr[rb + 1] - row_ptr[rb];
        t.init = bias ? bias + rb * g.br : nullptr;
        t.C = y + (bo * g.Wo + ow) * g.Cout + rb * g.br;
        run_tile(t, std::min(tile, ow1 - ow), g.br);
      }
    }
    if (stream) store_fence();
  }
}

template <class T>
void conv_grad_input(const ConvGeometry& g, const T* gp, const Stripes& gs, const T* values, const int32_t* rows,
                     const int32_t* col_ptr, const int32_t* col_perm, T* dst,
                     const GradInputTarget& target, bool accumulate) {
  const int64_t ncb = g.in_blocks(), ncols = g.KH * g.KW * ncb, nnz = col_ptr[ncols];
  std::vector<TileItem> items(nnz);
  for (int64_t q = 0; q < nnz; ++q) {
    const int64_t s = col_perm[q];
    items[q] = {rows[s] * gs.stripe, s * g.br * g.bc, g.br};
  }
  const int64_t tile = tile_rows<T>(g.bc);
  // Taps of one kernel write overlapping pixels, so a unit owns a whole image of
  // one channel block; a 1x1 kernel writes each pixel once and splits finer.
  const bool single_tap = g.KH * g.KW == 1;
  const int64_t chunk = single_tap ? pixels_per_unit(tile) : g.Wo;
  const int64_t nchunks = (g.Wo + chunk - 1) / chunk;
  const int64_t rows_per_unit = single_tap ? 1 : g.Ho;
  const int64_t units = ncb * g.B * (g.Ho / rows_per_unit) * nchunks;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t u = 0; u < units; ++u) {
    const int64_t ow0 = (u % nchunks) * chunk, r = u / nchunks;
    const int64_t ow1 = std::min(g.Wo, ow0 + chunk);
    const int64_t oh0 = (r % (g.Ho / rows_per_unit)) * rows_per_unit;
    const int64_t b = (r / (g.Ho / rows_per_unit)) % g.B;
    const int64_t cblk = r / ((g.Ho / rows_per_unit) * g.B);
    TileArgs<T> t;
    t.a_m = gs.pixel;
    t.a_k = 1;
    t.B = values;
    t.b_k = g.bc;
    t.c_m = g.SW * target.pixel;
    t.init = nullptr;
    t.accumulate = accumulate;
    t.stream = false;
    for (int64_t tap = 0; tap < g.KH * g.KW; ++tap) {
      const int64_t col = tap * ncb + cblk, ki = tap / g.KW, kj = tap % g.KW;
      t.items = items.data() + col_ptr[col];
      t.n_items = col_ptr[col + 1] - col_ptr[col];
      if (t.n_items == 0 && accumulate) continue;
      for (int64_t oh = oh0; oh < oh0 + rows_per_unit; ++oh) {
        const int64_t h = oh * g.SH + ki * g.DH;
        for (int64_t ow = ow0; ow < ow1; ow += tile) {
          t.A = gp + ((b * g.Ho + oh) * g.Wo + ow) * gs.pixel;
          t.C = dst + cblk * target.stripe +
                ((b * target.rows + h) * target.cols + ow * g.SW + kj * g.DW) * target.pixel;
          run_tile(t, std::min(tile, ow1 - ow), g.bc);
        }
      }
    }
  }
}

template <class T>
void conv_grad_values(const ConvGeometry& g, const T* gp, const Stripes& gs, const T* xp, const int32_t* rows,
                      const int32_t* cols, int64_t nnz, T* dvalues) {
  // Runs of consecutive output pixels of one output row, cut at kReductionChunk,
  // grouped into chunks of about kReductionChunk pixels.
  std::vector<TileItem> runs;
  std::vector<int64_t> chunk_start{0};
  int64_t in_chunk = 0;
  for (int64_t bo = 0; bo < g.B * g.Ho; ++bo) {
    const int64_t b = bo / g.Ho, oh = bo % g.Ho;
    for (int64_t ow = 0; ow < g.Wo; ow += kReductionChunk) {
      const int64_t len = std::min(kReductionChunk, g.Wo - ow);
      runs.push_back({(bo * g.Wo + ow) * gs.pixel, ((b * g.Hp() + oh * g.SH) * g.Wp() + ow * g.SW) * g.bc,
                      len});
      in_chunk += len;
      if (in_chunk >= kReductionChunk) {
        chunk_start.push_back(static_cast<int64_t>(runs.size()));
        in_chunk = 0;
      }
    }
  }
  if (chunk_start.back() != static_cast<int64_t>(runs.size()))
    chunk_start.push_back(static_cast<int64_t>(runs.size()));
  const int64_t nchunks = static_cast<int64_t>(chunk_start.size()) - 1;
  const int64_t tile = tile_rows<T>(g.bc);
  const int64_t row_tiles = (g.br + tile - 1) / tile;
  // A unit is a run of slots [s0, s1) sharing a block-row, so each chunk of its
  // grad-out stripe is read from cache by all of them, and a range of block rows
  // [i0, i1). With few blocks, units are single slots' row tiles instead.
  struct Unit {
    int64_t s0, s1, i0, i1;
  };
  std::vector<Unit> units;
  if (nnz < 4 * omp_get_max_threads()) {
    for (int64_t s = 0; s < nnz; ++s)
      for (int64_t i = 0; i < g.br; i += tile) units.push_back({s, s + 1, i, std::min(g.br, i + tile)});
  } else {
    for (int64_t s0 = 0, s1; s0 < nnz; s0 = s1) {
      for (s1 = s0 + 1; s1 < nnz && rows[s1] == rows[s0];) ++s1;
      units.push_back({s0, s1, 0, g.br});
    }
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t u = 0; u < static_cast<int64_t>(units.size()); ++u) {
    const Unit unit = units[u];
    if (nchunks == 0) {
      for (int64_t s = unit.s0; s < unit.s1; ++s)
        std::fill(dvalues + (s * g.br + unit.i0) * g.bc, dvalues + (s * g.br + unit.i1) * g.bc, T(0));
      continue;
    }
    TileArgs<T> t;
    t.a_m = 1;
    t.a_k = gs.pixel;
    t.b_k = g.SW * g.bc;
    t.c_m = g.bc;
    t.init = nullptr;
    t.stream = false;
    const T* a = gp + rows[unit.s0] * gs.stripe;
    for (int64_t c = 0; c < nchunks; ++c) {
      t.items = runs.data() + chunk_start[c];
      t.n_items = chunk_start[c + 1] - chunk_start[c];
      t.accumulate = c > 0;
      for (int64_t s = unit.s0; s < unit.s1; ++s) {
        t.B = xp + input_offset(g, tap_of(g, cols[s]));
        T* out = dvalues + s * g.br * g.bc;
        for (int64_t i = unit.i0; i < unit.i1; i += tile) {
          t.A = a + i;
          t.C = out + i * g.bc;
          run_tile(t, std::min(tile, unit.i1 - i), g.bc);
        }
      }
    }
  }
}

#define SUPTICKETS_INSTANTIATE(T)                                                              \
  template void pack_stripes<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                int64_t, int64_t, int64_t, int64_t, int64_t, T*, T*);          \
  template void unpack_stripes<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t,       \
                                  int64_t, int64_t, T*);                                       \
  template void conv_forward<T>(const ConvGeometry&, const T*, const T*, const int32_t*,       \
                                const int32_t*, const T*, T*);                                 \
  template void conv_grad_input<T>(const ConvGeometry&, const T*, const Stripes&, const T*,     \
                                   const int32_t*,                                             \
                                   const int32_t*, const int32_t*, T*, const GradInputTarget&, \
                                   bool);                                                      \
  template void conv_grad_values<T>(const ConvGeometry&, const T*, const Stripes&, const T*,   \
                                    const int32_t*,                                            \
                                    const int32_t*, int64_t, T*);
SUPTICKETS_INSTANTIATE(float)
SUPTICKETS_INSTANTIATE(double)
#undef SUPTICKETS_INSTANTIATE

}  // namespace cpu
}  // namespace suptickets
