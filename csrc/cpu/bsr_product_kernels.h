// Block-sparse product kernels on packed activations (CPU, no torch headers): the
// arithmetic shared by bsr_linear.cpp and bsr_conv2d.cpp (through bsr_product.cpp).
//
// A block-sparse linear layer is the 1x1 convolution of a 1 x N image, so one
// set of kernels serves both SparseLinear and SparseConv2d.
//
// Data layouts (all row-major, element strides):
//   weight 2-D view  W[Cout, KH*KW*Cin], column = tap * Cin + channel, tiled into
//                    (br, bc) blocks; slot s holds block (rows[s], cols[s]).
//   values           [nnz][br][bc]  (forward uses its per-block transpose [nnz][bc][br])
//   input stripes    xp[Cin/bc][B][Hp][Wp][bc], Hp = H + 2 PH, Wp = W + 2 PW, zero padded
//   grad-out         gp, channel blocks of br on the Ho x Wo grid as a Grid says (packed
//                    stripes [Cout/br][B][Ho + 2 top][Wo + 2 left][br])
//   output           y[B][Ho][Wo][Cout]  (NHWC: a channels_last tensor, or [N, Cout])
// Every kernel reads only active blocks; index arrays are int32.
#pragma once
#include <cstdint>

#include "geometry.h"

namespace suptickets {
namespace cpu {

// out[cb][b][h + PH][w + PW][j] = in[b][cb*bs + j][h][w] for any element strides
// (sb, sc, sh, sw) of `in`; the padding ring is zeroed. With `channel_sums` (C
// entries) also writes the sum of every channel over all pixels (a bias gradient),
// in a fixed order. Parallel.
template <class T>
void pack_stripes(const T* in, int64_t B, int64_t C, int64_t H, int64_t W, int64_t sb, int64_t sc, int64_t sh,
                  int64_t sw, int64_t bs, int64_t PH, int64_t PW, T* out, T* channel_sums = nullptr);

// out[b][h][w][cb*bs + j] = in[cb][b][h + PH][w + PW][j]  (NHWC output). Parallel.
template <class T>
void unpack_stripes(const T* in, int64_t B, int64_t C, int64_t H, int64_t W, int64_t bs, int64_t PH, int64_t PW,
                    T* out);

// y = conv(x, W) + bias over active blocks. `xgrid` describes x: packed stripes, or an
// unpadded NHWC tensor when PH = PW = 0 (the grid must be padded by at least the
// convolution's padding). vt: values transposed per block [nnz][bc][br];
// row_ptr: [Cout/br + 1]; cols: [nnz]; bias: [Cout] or null.
template <class T>
void conv_forward(const ConvGeometry& g, const T* xp, const Grid& xgrid, const T* vt, const int32_t* row_ptr,
                  const int32_t* cols, const T* bias, T* y);

// Whether dX is computed by gathering (stride 1, padding at most the dilated
// kernel's reach: each dX pixel sums its taps in registers and is written once)
// rather than by scattering into a zeroed dX. Gathering reads dY padded by
// grad_out_padding() on each side.
bool grad_input_gathers(const ConvGeometry& g);
void grad_out_padding(const ConvGeometry& g, int64_t* top, int64_t* left);

// dX = dY * W over active blocks into `dst` (described by `dgrid`, top = left = 0).
// Gathering writes every element of dst; scattering adds into dst, which must be
// zeroed first. `ggrid` describes the packed dY (padded as grad_out_padding() says).
template <class T>
void conv_grad_input(const ConvGeometry& g, const T* gp, const Grid& ggrid, const T* values, const int32_t* rows,
                     const int32_t* col_ptr, const int32_t* col_perm, T* dst, const Grid& dgrid);

// dvalues[s] = dY[:, block row]^T * X[:, block col] for every active slot (SDDMM).
template <class T>
void conv_grad_values(const ConvGeometry& g, const T* gp, const Grid& ggrid, const T* xp, const Grid& xgrid,
                      const int32_t* rows, const int32_t* cols, int64_t nnz, T* dvalues);

// Which instruction set the float32 tile kernels use: "avx512", "avx2" or "generic".
const char* simd_level();

}  // namespace cpu
}  // namespace suptickets
