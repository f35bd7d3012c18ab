// The geometry of a block-sparse product (CPU, no torch headers): a convolution's shapes and
// blocks (ConvGeometry), the layout of a channel-blocked activation on a pixel grid (Grid), and
// torch.nn.Conv2d's output size. A linear layer is the 1x1 convolution of a 1 x N image.
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

}  // namespace cpu
}  // namespace suptickets
