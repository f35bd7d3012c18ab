// CPU implementations of suptickets::block_scores (per-block magnitude of the active
// values) and suptickets::grad_scores (per-block norm of the dense weight gradient
// dW = dY^T * im2col(X), for every block of the grid, never holding dW whole).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "block_norm.h"
#include "geometry.h"

namespace suptickets {
namespace cpu {
namespace {

using at::IntArrayRef;
using at::Tensor;

Tensor block_scores(const Tensor& values, c10::string_view kind) {
  check_float_cpu(values, "values", "block_scores");
  TORCH_CHECK_VALUE(values.dim() == 3, "suptickets::block_scores: values must be [nnz, br, bc], got shape ",
                    values.sizes());
  const Norm norm = parse_kind(kind, "block_scores");
  const Tensor v = values.contiguous();
  const int64_t nnz = v.size(0), br = v.size(1), bc = v.size(2);
  Tensor out = at::empty({nnz}, v.options());
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "block_scores", [&] {
    const scalar_t* src = v.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, nnz, br * bc == 1 ? 16384 : 64, [&](int64_t begin, int64_t end) {
      if (br * bc == 1) {
        for (int64_t s = begin; s < end; ++s) dst[s] = std::abs(src[s]);
      } else {
        for (int64_t s = begin; s < end; ++s) dst[s] = block_norm(src + s * br * bc, br, bc, bc, norm);
      }
    });
  });
  return out;
}

// Rows of X seen by kernel tap (i, j): tap[b, ho, wo, :] = x[b, ho*s - p + i*d, wo*s - p + j*d, :]
// (zero outside the image), as a [B*Ho*Wo, Cin] matrix in `buf`.
template <typename T>
void gather_tap(const T* x, T* buf, int64_t B, int64_t H, int64_t W, int64_t Cin, int64_t Ho, int64_t Wo, int64_t i,
                int64_t j, IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation) {
  const int64_t off_h = i * dilation[0] - padding[0], off_w = j * dilation[1] - padding[1];
  at::parallel_for(0, B * Ho, 16, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / Ho, ho = bh % Ho, h = ho * stride[0] + off_h;
      T* out = buf + bh * Wo * Cin;
      if (h < 0 || h >= H) {
        std::memset(out, 0, sizeof(T) * Wo * Cin);
        continue;
      }
      const T* row = x + (b * H + h) * W * Cin;
      for (int64_t wo = 0; wo < Wo; ++wo) {
        const int64_t w = wo * stride[1] + off_w;
        if (w < 0 || w >= W)
          std::memset(out + wo * Cin, 0, sizeof(T) * Cin);
        else
          std::memcpy(out + wo * Cin, row + w * Cin, sizeof(T) * Cin);
      }
    }
  });
}

// Most bytes of one slab of dW (whole block-rows x one tap's columns) computed at a time.
constexpr int64_t kSlabBytes = 4 << 20;

Tensor grad_scores(const Tensor& x, const Tensor& grad_out, IntArrayRef block_size, IntArrayRef kernel_size,
                   IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, c10::string_view kind) {
  const char* op = "grad_scores";
  check_float_cpu(x, "x", op);
  check_float_cpu(grad_out, "grad_out", op);
  check_same_dtype(x, "x", grad_out, "grad_out", op);
  TORCH_CHECK_VALUE(x.dim() == 4 && grad_out.dim() == 4,
                    "suptickets::grad_scores: x must be [B, H, W, Cin] and grad_out [B, Ho, Wo, R], got shapes ",
                    x.sizes(), " and ", grad_out.sizes());
  TORCH_CHECK_VALUE(block_size.size() == 2, "suptickets::grad_scores: block_size must be a pair");
  check_conv_args(kernel_size, stride, padding, dilation, op);
  const Norm norm = parse_kind(kind, op);
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), Cin = x.size(3);
  const int64_t Ho = grad_out.size(1), Wo = grad_out.size(2), R = grad_out.size(3);
  const int64_t KH = kernel_size[0], KW = kernel_size[1], br = block_size[0], bc = block_size[1];
  TORCH_CHECK_VALUE(grad_out.size(0) == B, "suptickets::grad_scores: x and grad_out must have the same batch size");
  TORCH_CHECK_VALUE(br >= 1 && bc >= 1 && R % br == 0 && Cin % bc == 0, "suptickets::grad_scores: block_size ",
                    block_size, " must divide (out=", R, ", in=", Cin, ")");
  TORCH_CHECK_VALUE(Ho == conv_output_size(H, KH, stride[0], padding[0], dilation[0]) &&
                        Wo == conv_output_size(W, KW, stride[1], padding[1], dilation[1]),
                    "suptickets::grad_scores: grad_out's spatial size ", Ho, "x", Wo,
                    " does not match the convolution of a ", H, "x", W, " input");
  const int64_t P = B * Ho * Wo, gc_tap = Cin / bc;
  Tensor scores = at::empty({R / br, KH * KW * gc_tap}, x.options());
  const Tensor xc = x.contiguous();
  const Tensor dy = grad_out.contiguous().view({P, R});
  const bool identity = KH * KW == 1 && stride[0] == 1 && stride[1] == 1 && padding[0] == 0 && padding[1] == 0;
  Tensor tap = identity ? xc.view({P, Cin}) : at::empty({P, Cin}, x.options());
  // At most half of the block-rows per slab, so that even a small layer never holds all of dW.
  const int64_t nbr_all = R / br;
  const int64_t slab_rows =
      br * std::max<int64_t>(1, std::min<int64_t>((nbr_all + 1) / 2, kSlabBytes / (x.element_size() * br * Cin)));
  Tensor slab = at::empty({slab_rows, Cin}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "grad_scores", [&] {
    for (int64_t i = 0; i < KH; ++i)
      for (int64_t j = 0; j < KW; ++j) {
        if (!identity)
          gather_tap(xc.data_ptr<scalar_t>(), tap.data_ptr<scalar_t>(), B, H, W, Cin, Ho, Wo, i, j, stride, padding,
                     dilation);
        const int64_t col0 = (i * KW + j) * gc_tap;
        for (int64_t r0 = 0; r0 < R; r0 += slab_rows) {
          const int64_t rows = std::min(slab_rows, R - r0);
          Tensor part = slab.narrow(0, 0, rows);
          at::mm_out(part, dy.narrow(1, r0, rows).t(), tap);  // [rows, Cin] of dW, this tap
          const scalar_t* src = part.data_ptr<scalar_t>();
          scalar_t* dst = scores.data_ptr<scalar_t>();
          const int64_t nbr = rows / br, ncols = scores.size(1);
          at::parallel_for(0, nbr, 1, [&](int64_t begin, int64_t end) {
            for (int64_t a = begin; a < end; ++a) {
              scalar_t* out = dst + (r0 / br + a) * ncols + col0;
              const scalar_t* block_row = src + a * br * Cin;
              if (br == 1 && bc == 1) {  // unstructured: the norm of one entry is its magnitude
                for (int64_t c = 0; c < gc_tap; ++c) out[c] = std::abs(block_row[c]);
              } else {
                for (int64_t c = 0; c < gc_tap; ++c) out[c] = block_norm(block_row + c * bc, br, bc, Cin, norm);
              }
            }
          });
        }
      }
  });
  return scores;
}

}  // namespace

TORCH_LIBRARY_IMPL(suptickets, CPU, m) {
  m.impl("block_scores", &block_scores);
  m.impl("grad_scores", &grad_scores);
}

}  // namespace cpu
}  // namespace suptickets
