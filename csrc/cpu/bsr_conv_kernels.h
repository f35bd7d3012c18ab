// Block-sparse convolution kernels on packed activations (CPU, no torch headers).
//
// A block-sparse linear layer is the 1x1 convolution of a 1 x N image, so one
// set of kernels serves both SparseLinear and SparseConv2d.
//
// Data layouts (all row-major, element strides):
//   weight 2-D view  W[Cout, KH*KW*Cin], column = tap * Cin + channel, tiled into
//                    (br, bc) blocks; slot s holds block (rows[s], cols[s]).
//   values           [nnz][br][bc]  (forward uses its per-block transpose [nnz][bc][br])
//   input stripes    xp[Cin/bc][B][Hp][Wp][bc], Hp = H + 2 PH, Wp = W + 2 PW, zero padded
//   grad-out         gp, channel blocks of br as described by a Stripes (packed
//                    stripes [Cout/br][B][Ho][Wo][br], or the NHWC tensor itself)
//   output           y[B][Ho][Wo][Cout]  (NHWC: a channels_last tensor, or [N, Cout])
// Every kernel reads only active blocks; index arrays are int32.
#pragma once
#include <cstdint>

namespace suptickets {
namespace cpu {

struct ConvGeometry {
  int64_t B, Cin, H, W;      // input
  int64_t Cout, Ho, Wo;      // output
  int64_t KH, KW, SH, SW, PH, PW, DH, DW;
  int64_t br, bc;            // block rows (output channels), block cols (input channels)
  int64_t Hp() const { return H + 2 * PH; }
  int64_t Wp() const { return W + 2 * PW; }
  int64_t in_stripe() const { return B * Hp() * Wp() * bc; }   // elements per input stripe
  int64_t out_stripe() const { return B * Ho * Wo * br; }      // elements per grad-out stripe
  int64_t in_blocks() const { return Cin / bc; }               // channel blocks of the input
  int64_t out_blocks() const { return Cout / br; }
};

// A channel-blocked activation: element j of channel block cb at pixel p (p runs
// over b, h, w of its grid) lives at cb * stripe + p * pixel + j. Packed stripes
// use (pixels * bs, bs); an NHWC tensor with C channels uses (bs, C).
struct Stripes {
  int64_t stripe, pixel;
};

// Where the kernels write dX: element (channel block cb, image b, row h, col w, j)
// lives at cb * stripe + ((b * rows + h) * cols + w) * pixel + j. Packed stripes
// use (B*Hp*Wp*bc, bc, Hp, Wp); an unpadded NHWC tensor uses (bc, Cin, H, W).
struct GradInputTarget {
  int64_t stripe, pixel, rows, cols;
};

// out[cb][b][h + PH][w + PW][j] = in[b][cb*bs + j][h][w] for any element strides
// (sb, sc, sh, sw) of `in`; the padding ring is zeroed. With `channel_sums` (C
// entries) also writes the sum of every channel over all pixels (a bias gradient),
// in a fixed order. Parallel.
template <class T>
void pack_stripes(const T* in, int64_t B, int64_t C, int64_t H, int64_t W,
                  int64_t sb, int64_t sc, int64_t sh, int64_t sw, int64_t bs,
                  int64_t PH, int64_t PW, T* out, T* channel_sums = nullptr);

// out[b][h][w][cb*bs + j] = in[cb][b][h + PH][w + PW][j]  (NHWC output). Parallel.
template <class T>
void unpack_stripes(const T* in, int64_t B, int64_t C, int64_t H, int64_t W,
                    int64_t bs, int64_t PH, int64_t PW, T* out);

// y = conv(x, W) + bias over active blocks. vt: values transposed per block
// [nnz][bc][br]; row_ptr: [Cout/br + 1]; cols: [nnz]; bias: [Cout] or null.
template <class T>
void conv_forward(const ConvGeometry& g, const T* xp, const T* vt,
                  const int32_t* row_ptr, const int32_t* cols, const T* bias, T* y);

// dX += dY * W over active blocks, written into `dst` as described by `target`.
// `accumulate` false is allowed only for 1x1 kernels with stride 1 (every
// element is then written exactly once); otherwise dst must be zeroed first.
template <class T>
void conv_grad_input(const ConvGeometry& g, const T* gp, const Stripes& gs, const T* values,
                     const int32_t* rows, const int32_t* col_ptr, const int32_t* col_perm,
                     T* dst, const GradInputTarget& target, bool accumulate);

// dvalues[s] = dY[:, block row]^T * X[:, block col] for every active slot (SDDMM).
template <class T>
void conv_grad_values(const ConvGeometry& g, const T* gp, const Stripes& gs, const T* xp,
                      const int32_t* rows, const int32_t* cols, int64_t nnz, T* dvalues);

// Which instruction set the float32 tile kernels use: "avx512", "avx2" or "generic".
const char* simd_level();

}  // namespace cpu
}  // namespace suptickets
