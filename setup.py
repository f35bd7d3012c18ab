"""Builds the suptickets C++ operators against the torch that is already installed.

Install torch first, then this package without build isolation:

    pip install torch==2.13.0
    pip install --no-build-isolation .

`pyproject.toml` deliberately does not list torch as a build requirement: an
isolated build would fetch a different (CUDA) torch and compile against it.
Set SUPTICKETS_NATIVE=1 to add -march=native (a local build, not for wheels).
"""
import glob
import os

from setuptools import find_packages, setup

try:
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except ImportError as exc:  # pragma: no cover - message for a mis-ordered install
    raise SystemExit(
        "suptickets builds against an installed torch: run `pip install torch==2.13.0` first, "
        "then `pip install --no-build-isolation .`"
    ) from exc

ROOT = os.path.dirname(os.path.abspath(__file__))


def cpu_extension():
    sources = ["csrc/python_module.cpp", "csrc/ops.cpp", "csrc/product_autograd.cpp"]
    sources += sorted(glob.glob("csrc/cpu/*.cpp", root_dir=ROOT))
    cflags = ["-O3", "-g0", "-std=c++17", "-fopenmp", "-ffp-contract=fast", "-Wall"]
    if os.environ.get("SUPTICKETS_NATIVE") == "1":
        cflags.append("-march=native")
    return CppExtension(
        name="suptickets._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={"cxx": cflags},
        extra_link_args=["-fopenmp"],
    )


setup(
    # python/suptickets (the library) and the top-level suptickets_kernels (Triton kernels)
    packages=find_packages("python") + ["suptickets_kernels"],
    package_dir={"": "python", "suptickets_kernels": "suptickets_kernels"},
    ext_modules=[cpu_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
