// The Python module suptickets._C: importing it loads the operators into torch.ops.suptickets.
#include <Python.h>

#include "cpu/bsr_conv_kernels.h"

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
