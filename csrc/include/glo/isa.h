// The CPU instruction-set level a translation unit is compiled for.
//
// setup.py compiles the CPU kernels (cpu/activations_cpu.cpp, cpu/softmax_cpu.cpp) once per level it builds, each with
// its -march and -DGLO_CPU_ISA_<LEVEL>, and links them all into one library; cpu/cpu_dispatch.h picks a level at run
// time. Everything in glo's headers and kernel files lives in an inline namespace named after the level
// (glo::isa_avx512::SiLU<float>, ...): the level copies of an inline function or template are then distinct symbols,
// so the linker can never keep an AVX-512 copy of one for a caller compiled for a lower level (the one-definition
// hazard of compiling a file several times with different flags). tests/test_cpu_dispatch.py checks the library for
// vector instructions outside the level namespaces.
//
// This header includes nothing.
#pragma once

#if defined(GLO_CPU_ISA_AVX512)
#define GLO_ISA_NS isa_avx512
#elif defined(GLO_CPU_ISA_AVX2)
#define GLO_ISA_NS isa_avx2
#else
#define GLO_ISA_NS isa_default
#endif

#define GLO_ISA_BEGIN inline namespace GLO_ISA_NS {
#define GLO_ISA_END }
