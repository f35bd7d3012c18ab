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

namespace suptickets {
namespace cpu {

// Output size of a convolution along one axis (the formula of torch.nn.Conv2d).
inline int64_t conv_output_size(int64_t size, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation) {
  return (size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1;
}

struct ConvGeometry {
  int64_t B, Cin, H, W;  // input
  int64_t Cout, Ho, Wo;  // output
  int64_t KH, KW, SH, SW, PH, PW, DH, DW;
  int64_t br, bc;  // block rows (output channels), block cols (input channels)
  int64_t Hp() const { return H + 2 * PH; }
  int64_t Wp() const { return W + 2 * PW; }
  int64_t in_stripe() const { return B * Hp() * Wp() * bc; }  // elements per input stripe
  int64_t out_stripe() const { return B * Ho * Wo * br; }     // elements per grad-out stripe
  int64_t in_blocks() const { return Cin / bc; }              // channel blocks of the input
  int64_t out_blocks() const { return Cout / br; }
};

// A channel-blocked activation on a (possibly zero-padded) pixel grid: element j of
// channel block cb at image b, row h, column w (unpadded coordinates, h >= -top,
// w >= -left) lives at cb * stripe + ((b * rows + h + top) * cols + w + left) * pixel + j.
// Packed stripes of pack_stripes use (B*rows*cols*bs, bs, H + 2 PH, W + 2 PW, PH, PW);
// an unpadded NHWC tensor with C channels uses (bs, C, H, W, 0, 0).
struct Grid {
  int64_t stripe, pixel, rows, cols, top, left;
  int64_t offset(int64_t b, int64_t h, int64_t w) const { return ((b * rows + h + top) * cols + w + left) * pixel; }
};

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

// y = conv(x, W) + bias over active blocks. `xs` describes x: packed stripes, or an
// unpadded NHWC tensor when PH = PW = 0 (the grid must be padded by at least the
// convolution's padding). vt: values transposed per block [nnz][bc][br];
// row_ptr: [Cout/br + 1]; cols: [nnz]; bias: [Cout] or null.
template <class T>
void conv_forward(const ConvGeometry& g, const T* xp, const Grid& xs, const T* vt, const int32_t* row_ptr,
                  const int32_t* cols, const T* bias, T* y);

// Whether dX is computed by gathering (stride 1, padding at most the dilated
// kernel's reach: each dX pixel sums its taps in registers and is written once)
// rather than by scattering into a zeroed dX. Gathering reads dY padded by
// grad_out_padding() on each side.
bool grad_input_gathers(const ConvGeometry& g);
void grad_out_padding(const ConvGeometry& g, int64_t* top, int64_t* left);

// dX = dY * W over active blocks into `dst` (described by `ds`, top = left = 0).
// Gathering writes every element of dst; scattering adds into dst, which must be
// zeroed first. `gs` describes the packed dY (padded as grad_out_padding() says).
template <class T>
void conv_grad_input(const ConvGeometry& g, const T* gp, const Grid& gs, const T* values, const int32_t* rows,
                     const int32_t* col_ptr, const int32_t* col_perm, T* dst, const Grid& ds);

// dvalues[s] = dY[:, block row]^T * X[:, block col] for every active slot (SDDMM).
template <class T>
void conv_grad_values(const ConvGeometry& g, const T* gp, const Grid& gs, const T* xp, const Grid& xs,
                      const int32_t* rows, const int32_t* cols, int64_t nnz, T* dvalues);

// Which instruction set the float32 tile kernels use: "avx512", "avx2" or "generic".
const char* simd_level();

}  // namespace cpu
}  // namespace suptickets
