// Schemas of the suptickets operators (one TORCH_LIBRARY for every backend) and
// the Python module that loads them.
#include <Python.h>
#include <torch/library.h>

#include "cpu/bsr_conv_kernels.h"

TORCH_LIBRARY(suptickets, m) {
  m.def(
      "bsr_linear(Tensor x, Tensor values, Tensor rows, Tensor cols, Tensor row_ptr, "
      "Tensor col_ptr, Tensor col_perm, Tensor? bias, int out_features) -> Tensor");
  m.def(
      "bsr_linear_backward(Tensor grad_out, Tensor x, Tensor values, Tensor rows, Tensor cols, "
      "Tensor row_ptr, Tensor col_ptr, Tensor col_perm, bool need_input, bool need_values) "
      "-> (Tensor, Tensor)");
  m.def(
      "bsr_conv2d(Tensor x, Tensor values, Tensor rows, Tensor cols, Tensor row_ptr, "
      "Tensor col_ptr, Tensor col_perm, Tensor? bias, int out_channels, int[2] kernel_size, "
      "int[2] stride, int[2] padding, int[2] dilation) -> Tensor");
  m.def(
      "bsr_conv2d_backward(Tensor grad_out, Tensor x, Tensor values, Tensor rows, Tensor cols, "
      "Tensor row_ptr, Tensor col_ptr, Tensor col_perm, int[2] kernel_size, int[2] stride, "
      "int[2] padding, int[2] dilation, bool need_input, bool need_values) -> (Tensor, Tensor)");
}

namespace {

PyObject* simd_level(PyObject*, PyObject*) {
  return PyUnicode_FromString(suptickets::cpu::simd_level());
}

PyMethodDef methods[] = {
    {"simd_level", simd_level, METH_NOARGS,
     "Instruction set of the float32 CPU kernels: 'avx512', 'avx2' or 'generic'."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "suptickets C++ operators", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }
