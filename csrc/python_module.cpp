// The Python module suptickets._C: importing it loads the operators into torch.ops.suptickets.
#include <Python.h>

#include "cpu/bsr_product_kernels.h"
#include "cpu/workspace.h"

namespace {

PyObject* simd_level(PyObject*, PyObject*) { return PyUnicode_FromString(suptickets::cpu::simd_level()); }

PyObject* workspace_bytes(PyObject*, PyObject*) { return PyLong_FromLongLong(suptickets::cpu::workspace_bytes()); }

PyObject* release_workspace(PyObject*, PyObject*) {
  suptickets::cpu::release_workspace();
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {{"simd_level", simd_level, METH_NOARGS,
                          "Instruction set of the float32 CPU kernels: 'avx512', 'avx2' or 'generic'."},
                         {"workspace_bytes", workspace_bytes, METH_NOARGS,
                          "Bytes the CPU operators keep for reuse: this thread's packing buffers and freed outputs."},
                         {"release_workspace", release_workspace, METH_NOARGS,
                          "Frees this thread's packing buffers and the cached outputs (allocated again when needed)."},
                         {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "suptickets C++ operators", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }
