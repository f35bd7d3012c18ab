// Schemas of the suptickets operators: one TORCH_LIBRARY for every backend, whose
// implementations register themselves per dispatch key (csrc/cpu/*.cpp).
#include <torch/library.h>

// (The merge rule of the superposition ops is named `rule`: an argument named `mode` collides with
// torch.compile's dispatch internals.)
TORCH_LIBRARY(suptickets, m) {
  m.def(
      "bsr_linear(Tensor x, Tensor values, Tensor rows, Tensor cols, Tensor row_ptr, "
      "Tensor col_ptr, Tensor col_perm, Tensor? bias, int out_features) -> Tensor");
  m.def(
      "bsr_linear_backward(Tensor grad_out, Tensor x, Tensor values, Tensor rows, Tensor cols, "
      "Tensor row_ptr, Tensor col_ptr, Tensor col_perm, bool need_input, bool need_values, "
      "bool need_bias) -> (Tensor, Tensor, Tensor)");
  m.def(
      "bsr_conv2d(Tensor x, Tensor values, Tensor rows, Tensor cols, Tensor row_ptr, "
      "Tensor col_ptr, Tensor col_perm, Tensor? bias, int out_channels, int[2] kernel_size, "
      "int[2] stride, int[2] padding, int[2] dilation) -> Tensor");
  m.def(
      "bsr_conv2d_backward(Tensor grad_out, Tensor x, Tensor values, Tensor rows, Tensor cols, "
      "Tensor row_ptr, Tensor col_ptr, Tensor col_perm, int[2] kernel_size, int[2] stride, "
      "int[2] padding, int[2] dilation, bool need_input, bool need_values, bool need_bias) "
      "-> (Tensor, Tensor, Tensor)");
  // Topology maintenance (csrc/cpu/block_scores.cpp, csrc/cpu/prune_grow.cpp, csrc/cpu/select_k.cpp).
  m.def("block_scores(Tensor values, str kind) -> Tensor");
  m.def(
      "grad_scores(Tensor x, Tensor grad_out, int[2] block_size, int[2] kernel_size, int[2] stride, "
      "int[2] padding, int[2] dilation, str kind) -> Tensor");
  m.def(
      "prune_grow(Tensor drop_scores, Tensor grow_scores, Tensor rows, Tensor cols, int k_drop, "
      "int k_grow) -> (Tensor, Tensor)");
  m.def("select_k(Tensor scores, int k, bool largest, Tensor? skip) -> Tensor");
  // BlockLayout's index arithmetic (csrc/cpu/layout_index.cpp).
  m.def("layout_index(Tensor rows, Tensor cols, int grid_rows, int grid_cols) -> (Tensor, Tensor, Tensor)");
  m.def("merge_blocks(Tensor rows, Tensor cols, Tensor drop, Tensor grow, int grid_cols) -> (Tensor, Tensor, Tensor)");
  m.def("gather_slots(Tensor t, Tensor src) -> Tensor");
  // Sup-tickets superposition (csrc/cpu/superpose.cpp).
  m.def(
      "superpose_union(Tensor acc_values, Tensor acc_rows, Tensor acc_cols, Tensor acc_counts, Tensor values, "
      "Tensor rows, Tensor cols, int t, str rule, float beta, str kind) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "superpose_(Tensor(a!) acc_values, Tensor acc_rows, Tensor acc_cols, Tensor acc_counts, Tensor values, "
      "Tensor rows, Tensor cols, int t, str rule, float beta, str kind) -> (Tensor, Tensor, Tensor)");
}
