// Loops of the block-sparse convolution kernels: which tiles, in which order, on
// which thread. The arithmetic is in the tile kernels (tile.h).
#include "bsr_product_kernels.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "stream_copy.h"
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
// Pixels of the dvalues reduction kept hot in L1 between row tiles (their grad-out
// and input rows: 2 x 128 x 32 floats for 32x32 blocks).
constexpr int64_t kReductionChunk = 128;
// Work units the dvalues reduction aims for (block-row runs x pixel ranges).
constexpr int64_t kMinReductionUnits = 16;

// Rows per tile when n rows are cut into tiles of at most `tile` rows, as evenly as
// possible: 16 pixels with 14-row tiles become 8 + 8, not 14 + 2.
int64_t even_tile(int64_t n, int64_t tile) {
  const int64_t tiles = (n + tile - 1) / tile;
  return tiles > 0 ? (n + tiles - 1) / tiles : tile;
}

struct Tap {
  int64_t ki, kj, cblk;
};

// Copies n contiguous elements; float runs to a 16-byte aligned destination can
// bypass the caches (a packed buffer larger than the last-level cache).
template <class T>
void copy_run(T* dst, const T* src, int64_t n, bool stream) {
  copy_bytes(dst, src, n * int64_t(sizeof(T)), stream && std::is_same_v<T, float>);
}

Tap tap_of(const ConvGeometry& g, int64_t col) {
  const int64_t ncb = g.in_blocks();
  const int64_t tap = col / ncb;
  return {tap / g.KW, tap % g.KW, col % ncb};
}

// Offset of a block's tap into the input, from the element that output pixel
// (0, 0, 0) reads at tap (0, 0) of a grid padded by at least (PH, PW).
int64_t input_offset(const ConvGeometry& g, const Tap& tp, const Grid& xgrid) {
  return tp.cblk * xgrid.stripe +
         ((tp.ki * g.DH + xgrid.top - g.PH) * xgrid.cols + tp.kj * g.DW + xgrid.left - g.PW) * xgrid.pixel;
}

}  // namespace

template <class T>
void pack_stripes(const T* in, int64_t B, int64_t C, int64_t H, int64_t W, int64_t sb, int64_t sc, int64_t sh,
                  int64_t sw, int64_t bs, int64_t PH, int64_t PW, T* out, T* channel_sums) {
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
  if (stream) store_fence();  // the parallel region's barrier follows
  if (channel_sums) {
    std::fill(channel_sums, channel_sums + C, T(0));
    for (int64_t u = 0; u < units; ++u)
      for (int64_t j = 0; j < bs; ++j) channel_sums[(u % ncb) * bs + j] += partial[u * bs + j];
  }
}

template <class T>
void unpack_stripes(const T* in, int64_t B, int64_t C, int64_t H, int64_t W, int64_t bs, int64_t PH, int64_t PW,
                    T* out) {
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

namespace {

// Output tiles that gather their sums in registers and are written once: the
// forward, and dX for stride 1. Output pixel (b, oh, ow) of a B x Ho x Wo grid
// reads the input at in + ((b * in_rows + oh * SH) * in_cols + ow * SW) * in_pixel
// plus each item's offset (its channel stripe and tap shift); output channel
// block o (of `width`) sums items[ptr[o] .. ptr[o + 1]].
template <class T>
struct GatherPlan {
  int64_t B, Ho, Wo, out_blocks, width;
  T* out;
  int64_t out_pixel;
  const T* bias;
  const T* in;
  int64_t in_rows, in_cols, in_pixel, SH, SW;
  const T* weights;
  int64_t weight_k;
  std::vector<int64_t> ptr;
  std::vector<TileItem> items;
};

template <class T>
void gather_tiles(const GatherPlan<T>& p) {
  const int64_t tile = tile_rows<T>(p.width);
  const int64_t chunk = pixels_per_unit(tile);
  const int64_t nchunks = (p.Wo + chunk - 1) / chunk;
  const bool stream = p.B * p.Ho * p.Wo * p.out_pixel * int64_t(sizeof(T)) >= kStreamBytes;
  // A unit is a run of pixels times a group of output blocks; inside it each pixel
  // tile walks the group, so output rows are written in long contiguous runs while
  // the group's weight blocks stay in cache.
  const int64_t group = std::min(p.out_blocks, kRowGroup);
  const int64_t ngroups = (p.out_blocks + group - 1) / group;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t u = 0; u < p.B * p.Ho * nchunks * ngroups; ++u) {
    const int64_t o0 = (u % ngroups) * group, o1 = std::min(p.out_blocks, o0 + group), r = u / ngroups;
    const int64_t ow0 = (r % nchunks) * chunk, bo = r / nchunks;
    const int64_t b = bo / p.Ho, oh = bo % p.Ho;
    const int64_t ow1 = std::min(p.Wo, ow0 + chunk);
    TileArgs<T> t;
    t.a_m = p.SW * p.in_pixel;
    t.a_k = 1;
    t.B = p.weights;
    t.b_k = p.weight_k;
    t.c_m = p.out_pixel;
    t.accumulate = false;
    t.stream = stream;
    const int64_t step = even_tile(ow1 - ow0, tile);
    for (int64_t ow = ow0; ow < ow1; ow += step) {
      t.A = p.in + ((b * p.in_rows + oh * p.SH) * p.in_cols + ow * p.SW) * p.in_pixel;
      for (int64_t o = o0; o < o1; ++o) {
        t.items = p.items.data() + p.ptr[o];
        t.n_items = p.ptr[o + 1] - p.ptr[o];
        t.init = p.bias ? p.bias + o * p.width : nullptr;
        t.C = p.out + (bo * p.Wo + ow) * p.out_pixel + o * p.width;
        run_tile(t, std::min(step, ow1 - ow), p.width);
      }
    }
    if (stream) store_fence();
  }
}

// dX by scattering: each active block adds dY * block into the dX pixels its tap
// reaches. Taps of one kernel hit overlapping pixels, so a unit owns a whole image
// of one channel block.
template <class T>
void scatter_grad_input(const ConvGeometry& g, const T* gp, const Grid& ggrid, const T* values, const int32_t* rows,
                        const int32_t* col_ptr, const int32_t* col_perm, T* dst, const Grid& dgrid) {
  const int64_t ncb = g.in_blocks(), ncols = g.KH * g.KW * ncb, nnz = col_ptr[ncols];
  std::vector<TileItem> items(nnz);
  for (int64_t q = 0; q < nnz; ++q) {
    const int64_t s = col_perm[q];
    items[q] = {rows[s] * ggrid.stripe, s * g.br * g.bc, g.br};
  }
  const int64_t step = even_tile(g.Wo, tile_rows<T>(g.bc));
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t u = 0; u < ncb * g.B; ++u) {
    const int64_t b = u % g.B, cblk = u / g.B;
    TileArgs<T> t;
    t.a_m = ggrid.pixel;
    t.a_k = 1;
    t.B = values;
    t.b_k = g.bc;
    t.c_m = g.SW * dgrid.pixel;
    t.init = nullptr;
    t.accumulate = true;
    t.stream = false;
    for (int64_t tap = 0; tap < g.KH * g.KW; ++tap) {
      const int64_t col = tap * ncb + cblk, ki = tap / g.KW, kj = tap % g.KW;
      t.items = items.data() + col_ptr[col];
      t.n_items = col_ptr[col + 1] - col_ptr[col];
      if (t.n_items == 0) continue;
      for (int64_t oh = 0; oh < g.Ho; ++oh) {
        const int64_t h = oh * g.SH + ki * g.DH - g.PH;
        for (int64_t ow = 0; ow < g.Wo; ow += step) {
          t.A = gp + ggrid.offset(b, oh, ow);
          t.C = dst + cblk * dgrid.stripe + dgrid.offset(b, h, ow * g.SW + kj * g.DW - g.PW);
          run_tile(t, std::min(step, g.Wo - ow), g.bc);
        }
      }
    }
  }
}

}  // namespace

bool grad_input_gathers(const ConvGeometry& g) {
  return g.SH == 1 && g.SW == 1 && g.PH <= (g.KH - 1) * g.DH && g.PW <= (g.KW - 1) * g.DW;
}

void grad_out_padding(const ConvGeometry& g, int64_t* top, int64_t* left) {
  const bool gathers = grad_input_gathers(g);
  *top = gathers ? (g.KH - 1) * g.DH - g.PH : 0;
  *left = gathers ? (g.KW - 1) * g.DW - g.PW : 0;
}

template <class T>
void conv_forward(const ConvGeometry& g, const T* xp, const Grid& xgrid, const T* vt, const int32_t* row_ptr,
                  const int32_t* cols, const T* bias, T* y) {
  const int64_t nrb = g.out_blocks(), nnz = row_ptr[nrb];
  GatherPlan<T> p{g.B,        g.Ho,       g.Wo,        nrb,  g.br, y,  g.Cout, bias, xp,
                  xgrid.rows, xgrid.cols, xgrid.pixel, g.SH, g.SW, vt, g.br,   {},   {}};
  p.ptr.assign(row_ptr, row_ptr + nrb + 1);
  p.items.resize(nnz);
  for (int64_t s = 0; s < nnz; ++s) p.items[s] = {input_offset(g, tap_of(g, cols[s]), xgrid), s * g.bc * g.br, g.bc};
  gather_tiles(p);
}

template <class T>
void conv_grad_input(const ConvGeometry& g, const T* gp, const Grid& ggrid, const T* values, const int32_t* rows,
                     const int32_t* col_ptr, const int32_t* col_perm, T* dst, const Grid& dgrid) {
  if (!grad_input_gathers(g)) return scatter_grad_input(g, gp, ggrid, values, rows, col_ptr, col_perm, dst, dgrid);
  // dX[b, h, w] = sum over taps (ki, kj) and the blocks of column (tap, cblk) of
  // dY[b, h + PH - ki*DH, w + PW - kj*DW] * block: a gather over the padded dY.
  const int64_t ncb = g.in_blocks();
  GatherPlan<T> p{g.B,        g.H,        g.W,         ncb, g.bc, dst,    dgrid.pixel, nullptr, gp,
                  ggrid.rows, ggrid.cols, ggrid.pixel, 1,   1,    values, g.bc,        {0},     {}};
  for (int64_t cblk = 0; cblk < ncb; ++cblk) {
    for (int64_t tap = 0; tap < g.KH * g.KW; ++tap) {
      const int64_t col = tap * ncb + cblk, ki = tap / g.KW, kj = tap % g.KW;
      const int64_t shift = ((g.PH - ki * g.DH + ggrid.top) * ggrid.cols + g.PW - kj * g.DW + ggrid.left) * ggrid.pixel;
      for (int64_t q = col_ptr[col]; q < col_ptr[col + 1]; ++q) {
        const int64_t s = col_perm[q];
        p.items.push_back({rows[s] * ggrid.stripe + shift, s * g.br * g.bc, g.br});
      }
    }
    p.ptr.push_back(static_cast<int64_t>(p.items.size()));
  }
  gather_tiles(p);
}

template <class T>
void conv_grad_values(const ConvGeometry& g, const T* gp, const Grid& ggrid, const T* xp, const Grid& xgrid,
                      const int32_t* rows, const int32_t* cols, int64_t nnz, T* dvalues) {
  // Runs of consecutive output pixels of one output row, cut at kReductionChunk,
  // grouped into chunks of about kReductionChunk pixels.
  std::vector<TileItem> runs;
  std::vector<int64_t> chunk_start{0};
  int64_t in_chunk = 0;
  for (int64_t bo = 0; bo < g.B * g.Ho; ++bo) {
    const int64_t b = bo / g.Ho, oh = bo % g.Ho;
    for (int64_t ow = 0; ow < g.Wo; ow += kReductionChunk) {
      const int64_t len = std::min(kReductionChunk, g.Wo - ow);
      runs.push_back(
          {ggrid.offset(b, oh, ow), ((b * xgrid.rows + oh * g.SH) * xgrid.cols + ow * g.SW) * xgrid.pixel, len});
      in_chunk += len;
      if (in_chunk >= kReductionChunk) {
        chunk_start.push_back(static_cast<int64_t>(runs.size()));
        in_chunk = 0;
      }
    }
  }
  if (chunk_start.back() != static_cast<int64_t>(runs.size())) chunk_start.push_back(static_cast<int64_t>(runs.size()));
  const int64_t nchunks = static_cast<int64_t>(chunk_start.size()) - 1;
  const int64_t block = g.br * g.bc;
  if (nchunks == 0) {
    std::fill(dvalues, dvalues + nnz * block, T(0));
    return;
  }
  const int64_t step = tile_rows<T>(g.bc);  // full tiles first: 14 + 14 + 4 beat 11 + 11 + 10
  // A unit is a run of slots [s0, s1) sharing a block-row, so each chunk of its
  // grad-out stripe is read from cache by all of them, over the pixel chunks
  // [c0, c1). When there are few block-rows, the pixel chunks are split into
  // `parts` ranges summed into separate buffers and added up afterwards in a fixed
  // order: the split depends on the shapes only, so results do not depend on the
  // thread count.
  struct Unit {
    int64_t s0, s1, c0, c1, part;
  };
  std::vector<std::pair<int64_t, int64_t>> row_runs;
  for (int64_t s0 = 0, s1; s0 < nnz; s0 = s1) {
    for (s1 = s0 + 1; s1 < nnz && rows[s1] == rows[s0];) ++s1;
    row_runs.push_back({s0, s1});
  }
  const int64_t nruns = static_cast<int64_t>(row_runs.size());
  const int64_t parts =
      std::max<int64_t>(1, std::min(nchunks, (kMinReductionUnits + nruns - 1) / std::max<int64_t>(nruns, 1)));
  std::vector<Unit> units;
  for (int64_t p = 0; p < parts; ++p)
    for (const auto& [s0, s1] : row_runs) units.push_back({s0, s1, p * nchunks / parts, (p + 1) * nchunks / parts, p});
  std::vector<T> partial(parts > 1 ? parts * nnz * block : 0);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t u = 0; u < static_cast<int64_t>(units.size()); ++u) {
    const Unit unit = units[u];
    T* base = parts > 1 ? partial.data() + unit.part * nnz * block : dvalues;
    if (unit.c0 == unit.c1) {
      std::fill(base + unit.s0 * block, base + unit.s1 * block, T(0));
      continue;
    }
    TileArgs<T> t;
    t.a_m = 1;
    t.a_k = ggrid.pixel;
    t.b_k = g.SW * xgrid.pixel;
    t.c_m = g.bc;
    t.init = nullptr;
    t.stream = false;
    const T* a = gp + rows[unit.s0] * ggrid.stripe;
    for (int64_t c = unit.c0; c < unit.c1; ++c) {
      t.items = runs.data() + chunk_start[c];
      t.n_items = chunk_start[c + 1] - chunk_start[c];
      t.accumulate = c > unit.c0;
      for (int64_t s = unit.s0; s < unit.s1; ++s) {
        t.B = xp + input_offset(g, tap_of(g, cols[s]), xgrid);
        T* out = base + s * block;
        for (int64_t i = 0; i < g.br; i += step) {
          t.A = a + i;
          t.C = out + i * g.bc;
          run_tile(t, std::min(step, g.br - i), g.bc);
        }
      }
    }
  }
  if (parts > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t s = 0; s < nnz; ++s) {
      T* out = dvalues + s * block;
      std::copy(partial.data() + s * block, partial.data() + (s + 1) * block, out);
      for (int64_t p = 1; p < parts; ++p) {
        const T* src = partial.data() + (p * nnz + s) * block;
        for (int64_t e = 0; e < block; ++e) out[e] += src[e];
      }
    }
  }
}

#define SUPTICKETS_INSTANTIATE(T)                                                                                      \
  template void pack_stripes<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,      \
                                int64_t, int64_t, int64_t, T*, T*);                                                    \
  template void unpack_stripes<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, T*);        \
  template void conv_forward<T>(const ConvGeometry&, const T*, const Grid&, const T*, const int32_t*, const int32_t*,  \
                                const T*, T*);                                                                         \
  template void conv_grad_input<T>(const ConvGeometry&, const T*, const Grid&, const T*, const int32_t*,               \
                                   const int32_t*, const int32_t*, T*, const Grid&);                                   \
  template void conv_grad_values<T>(const ConvGeometry&, const T*, const Grid&, const T*, const Grid&, const int32_t*, \
                                    const int32_t*, int64_t, T*);
SUPTICKETS_INSTANTIATE(float)
SUPTICKETS_INSTANTIATE(double)
#undef SUPTICKETS_INSTANTIATE

}  // namespace cpu
}  // namespace suptickets
