"""Builds glo_kernels._C: CPU kernels always, CUDA kernels whenever nvcc and a CUDA build of torch are present.

Whether a GPU is visible plays no part (CI compiles the CUDA sources on machines without one). Switches:
  GLO_KERNELS_CUDA=1   require the CUDA kernels (fail if nvcc or a CUDA torch is missing)
  GLO_KERNELS_CUDA=0   build the CPU kernels only
  TORCH_CUDA_ARCH_LIST defaults to "8.0;9.0+PTX" when unset (torch's builder needs it when no GPU is visible)
  MAX_JOBS             parallel compile jobs (torch's builder; defaults to the number of cores)
The CPU kernels are compiled once per instruction-set level (x86-64: default, avx2, avx512) and one is chosen at run
time (csrc/cpu/cpu_dispatch.h), so a build runs on any CPU of its architecture, whatever machine built it.

Object files live in build/temp (kept between builds: ninja recompiles only what changed), for the editable install
(`make build`) and the wheel (`make wheel`) alike, so that a wheel after a build only links and packs.
"""
import glob
import os
import platform
import shutil
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"


def _find_cuda_home():
    """Set CUDA_HOME to the toolkit's real folder when unset (torch guesses it from nvcc's folder on PATH, which is
    wrong when nvcc is a wrapper script, e.g. /usr/local/bin/nvcc: the link then misses libcudart)."""
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for home in candidates:
        has_nvcc = os.path.exists(os.path.join(home, "bin", "nvcc"))
        has_rt = any(glob.glob(os.path.join(home, lib, "libcudart.so*")) for lib in ("lib64", "lib"))
        if has_nvcc and has_rt:
            os.environ["CUDA_HOME"] = home
            return


_find_cuda_home()


def _cuda_wanted():
    import torch
    from torch.utils import cpp_extension

    switch = os.environ.get("GLO_KERNELS_CUDA", "auto").strip().lower()
    if switch in ("0", "off", "false", "no"):
        return False, "disabled by GLO_KERNELS_CUDA=0"
    have_nvcc = cpp_extension.CUDA_HOME is not None and (
        shutil.which("nvcc") is not None or os.path.exists(os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc"))
    )
    have_torch_cuda = torch.version.cuda is not None
    if switch in ("1", "on", "true", "yes"):
        if not (have_nvcc and have_torch_cuda):
            sys.exit(
                "glo_kernels: GLO_KERNELS_CUDA=1 but "
                + ("nvcc was not found (set CUDA_HOME)" if not have_nvcc else "torch is a CPU-only build")
            )
        return True, "forced by GLO_KERNELS_CUDA=1"
    if not have_nvcc:
        return False, "nvcc not found"
    if not have_torch_cuda:
        return False, "torch is a CPU-only build"
    return True, "nvcc and a CUDA build of torch found"


# The CPU kernel files, compiled once per instruction-set level (csrc/cpu/cpu_dispatch.h picks one at run time).
CPU_KERNEL_SOURCES = ["csrc/cpu/activations_cpu.cpp", "csrc/cpu/softmax_cpu.cpp"]
# The levels above the default one (which is the compiler's baseline, as every other file): name, flags. x86-64 only;
# other machines (aarch64, ...) build the default level alone.
CPU_LEVELS = [
    ("avx2", ["-march=x86-64-v3", "-DGLO_CPU_ISA_AVX2"]),
    ("avx512", ["-march=x86-64-v4", "-mprefer-vector-width=512", "-DGLO_CPU_ISA_AVX512"]),  # 16 float lanes
]


def _cpu_levels():
    """The levels to compile besides the default one: all of CPU_LEVELS on x86-64, none elsewhere."""
    machine = platform.machine().lower()
    return CPU_LEVELS if machine in ("x86_64", "amd64") else []


def _extensions():
    from torch.utils import cpp_extension

    use_cuda, why = _cuda_wanted()
    print(f"glo_kernels: CUDA kernels {'ON' if use_cuda else 'OFF'} ({why})", flush=True)
    sources = ["csrc/registration.cpp", "csrc/autograd.cpp", "csrc/triton_ops.cpp"] + CPU_KERNEL_SOURCES
    include_dirs = [os.path.join(ROOT, "csrc", "include")]
    # -fopenmp: at::parallel_for is an inline OpenMP loop in torch's headers; without it our loops run on one thread.
    # The library then needs libgomp.so.1, which torch has already loaded.
    # -fno-trapping-math lets GCC turn selects between computed values into vector blends (results are unchanged).
    # -ffp-contract=off: every a * b + c rounds twice unless written as an FMA (detail::fma_f): with GCC's default
    # (fast) a loop's vector body and its scalar tail could contract differently, so one element's result depended on
    # where it fell in a chunk (a GeGLU gradient differed by an ulp between the one- and two-tensor forms).
    # No -march: every file is compiled for the compiler's baseline; BuildExt adds the CPU kernel files again at each
    # level of _cpu_levels(), with that level's -march.
    cxx_flags = ["-O3", "-DNDEBUG", "-fvisibility=hidden", "-fopenmp", "-fno-trapping-math", "-ffp-contract=off"]
    link_flags = ["-fopenmp"]
    levels = _cpu_levels()
    macros = [(f"GLO_CPU_BUILT_{name.upper()}", "1") for name, _ in levels]
    print(f"glo_kernels: C++ flags {' '.join(cxx_flags)}; CPU levels: default"
          + "".join(f", {name} ({' '.join(flags)})" for name, flags in levels), flush=True)
    if use_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCH_LIST)
        print(f"glo_kernels: TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}", flush=True)
        sources += ["csrc/cuda/activations.cu", "csrc/cuda/softmax.cu"]
        nvcc_flags = ["-O3", "-DNDEBUG", "--expt-relaxed-constexpr", "-lineinfo"]
        return [
            cpp_extension.CUDAExtension(
                "glo_kernels._C",
                sources,
                include_dirs=include_dirs,
                extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
                extra_link_args=link_flags,
                define_macros=[("GLO_WITH_CUDA", "1")] + macros,
            )
        ]
    return [
        cpp_extension.CppExtension(
            "glo_kernels._C",
            sources,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
            define_macros=macros,
        )
    ]


BUILD_TEMP = os.path.join(ROOT, "build", "temp")


def _torch_requirement():
    """The torch release this build compiles against: a C++ extension calls torch's C++ API, whose ABI changes from
    release to release, so a wheel runs only with the torch it was built with (torch==X.Y.Z; any local label such
    as +cu130 or +cpu matches)."""
    import torch

    return f"torch=={torch.__version__.split('+')[0]}"


def _build_ext_cls():
    from torch.utils.cpp_extension import BuildExtension

    base = BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None or _has_ninja_module())

    class BuildExt(base):
        """torch's BuildExtension with its object files in build/temp, also under pip's editable install (which
        would otherwise compile everything again in a fresh temporary folder each time)."""

        def finalize_options(self):
            super().finalize_options()
            self.build_temp = BUILD_TEMP

        def build_extension(self, ext):
            """The CPU kernel files again at each level above the default, each with its flags, in its own folder of
            build/temp (its own ninja file: incremental too); linked after every default-level object, so that where
            two files hold the same inline function of torch or the standard library the linker keeps the
            default-level copy (the first one), which any CPU runs (tests/test_cpu_dispatch.py checks the library)."""
            args = ext.extra_compile_args  # by now with torch's own additions (extension name, API macro)
            cxx = list(args["cxx"] if isinstance(args, dict) else args)
            level_objects = []
            for name, flags in _cpu_levels():
                level_objects += self.compiler.compile(
                    CPU_KERNEL_SOURCES,
                    output_dir=os.path.join(self.build_temp, f"cpu_{name}"),
                    macros=list(ext.define_macros),
                    include_dirs=ext.include_dirs,
                    debug=self.debug,
                    extra_postargs={"cxx": cxx + flags} if isinstance(args, dict) else cxx + flags,
                    depends=ext.depends,
                )
            ext.extra_objects = list(ext.extra_objects) + level_objects
            super().build_extension(ext)

    return BuildExt


def _has_ninja_module():
    try:
        import ninja  # noqa: F401

        return True
    except ImportError:
        return False


setup(
    name="glo_kernels",
    version="0.1.0",
    description="Fused activation kernels for PyTorch (CUDA, Triton, CPU) with a plain-torch reference",
    packages=find_packages(include=["glo_kernels", "glo_kernels.*"]),
    python_requires=">=3.10",
    install_requires=[_torch_requirement()],
    ext_modules=_extensions(),
    cmdclass={"build_ext": _build_ext_cls()},
    zip_safe=False,
)
