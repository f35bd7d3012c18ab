// The torch side of the element-sparse products (element_kernels.h): packing the
// activations with the batch innermost, building the element items, and calling the kernels, which write the
// results in place. bsr_product.cpp calls these for the block shapes element_kernels_run() names.
#pragma once

#include "bsr_product.h"

namespace suptickets {
namespace cpu {

// Whether blocks of (br, bc) run on the element kernels rather than the tile kernels:
// the block shapes where they measured faster (benchmarks/bench_layers.py).
bool element_kernels_run(int64_t br, int64_t bc);

// As product_forward / product_backward (bsr_product.h), for a layout already checked.
// `ys` / `gs` / `ds` describe y, grad_out and dX.
void element_product_forward(const ConvGeometry& g, const Tensor& x, const Strides& xs, const Tensor& values,
                             const Layout& L, const Tensor& bias, Tensor& y, const Strides& ys);
void element_product_backward(const ConvGeometry& g, const Tensor& grad, const Strides& gs, const Tensor& x,
                              const Strides& xs, const Tensor& values, const Layout& L, Grads& out, const Strides& ds);

}  // namespace cpu
}  // namespace suptickets
