// Run-time choice of the CPU kernels' instruction-set level, as ATen's CPU capability dispatch.
//
// setup.py compiles cpu/activations_cpu.cpp and cpu/softmax_cpu.cpp once per level (glo/isa.h): "default" (the
// compiler's baseline: x86-64 with SSE2, or whatever the target is on other machines), and on x86-64 also "avx2"
// (-march=x86-64-v3: AVX2, FMA, F16C, BMI2) and "avx512" (-march=x86-64-v4: AVX-512 F/BW/CD/DQ/VL). Each level's
// file fills a table of its operator functions (Ops<K>::NAME of glo/op_impls.h, SoftmaxOps<K>::NAME of
// glo/softmax_impls.h). The default level's file registers, for every operator, a trampoline with the operator's
// signature that calls the entry of the current level's table: one relaxed atomic load and one indirect call.
//
// The current level starts as the best one built whose instructions this CPU has and the OS enables (cpuid, via
// __builtin_cpu_supports); glo_kernels_debug::set_cpu_capability changes it (GLO_KERNELS_CPU_CAPABILITY at import,
// glo_kernels.use_cpu_capability in Python: tests run every level the CPU has). A level's code is never entered, not
// even to fill its table, unless the CPU supports it.
#pragma once

#include <atomic>
#include <utility>

#include "glo/isa.h"
#include "glo/op_list.h"

namespace glo {
namespace cpu_dispatch {

using AnyFn = void (*)();

enum Level : int { kDefault = 0, kAvx2 = 1, kAvx512 = 2, kNumLevels = 3 };

// The level every trampoline calls now. Defined (and chosen) by the default level of cpu/activations_cpu.cpp.
extern std::atomic<int> g_level;

// Whether the library holds a level's code (setup.py defines GLO_CPU_BUILT_AVX2 / _AVX512 in every file when it
// compiles those levels) and whether this CPU can run it.
bool level_built(int level);
bool level_supported(int level);

// Every operator's name, once: GLO_Y_(name) for each, in one fixed order (the slots of the tables).
#define GLO_NAMES_ELEM_(NAME, SCHEMA) GLO_Y_(NAME)
#define GLO_NAMES_UNARY_(NAME, FUNCTOR, SAVED) GLO_Y_(NAME) GLO_Y_(NAME##_) GLO_Y_(NAME##_backward)
#define GLO_NAMES_GATED_(NAME, FUNCTOR, ACT) \
  GLO_Y_(NAME) GLO_Y_(NAME##_backward) GLO_Y_(NAME##_pair) GLO_Y_(NAME##_pair_backward)
#define GLO_NAMES_BIAS_(NAME, FUNCTOR, ACT) GLO_Y_(NAME) GLO_Y_(NAME##_backward)
#define GLO_ACTIVATION_OP_NAMES                                                                     \
  GLO_ELEMENTWISE_OPS(GLO_NAMES_ELEM_) GLO_UNARY_OPS(GLO_NAMES_UNARY_) GLO_GATED_OPS(GLO_NAMES_GATED_) \
  GLO_BIAS_OPS(GLO_NAMES_BIAS_)
#define GLO_SOFTMAX_OP_NAMES GLO_SOFTMAX_OPS(GLO_NAMES_ELEM_)

// A family of operators (those of one kernel file): its slots, and each level's table (nullptr where the level is not
// built or not supported).
#define GLO_Y_(NAME) slot_##NAME,
struct ActivationFamily {
  enum : int { GLO_ACTIVATION_OP_NAMES kSlots };
  static const AnyFn* tables[kNumLevels];
};
struct SoftmaxFamily {
  enum : int { GLO_SOFTMAX_OP_NAMES kSlots };
  static const AnyFn* tables[kNumLevels];
};
#undef GLO_Y_

// Each level's tables, defined in that level's kernel files (names from glo/isa.h's namespace names).
#define GLO_DECLARE_LEVEL_(ISA)            \
  const AnyFn* activation_table_##ISA();   \
  const AnyFn* softmax_table_##ISA();
GLO_DECLARE_LEVEL_(isa_default)
GLO_DECLARE_LEVEL_(isa_avx2)
GLO_DECLARE_LEVEL_(isa_avx512)
#undef GLO_DECLARE_LEVEL_
#define GLO_LEVEL_TABLE_NAME2_(PREFIX, ISA) PREFIX##ISA
#define GLO_LEVEL_TABLE_NAME_(PREFIX, ISA) GLO_LEVEL_TABLE_NAME2_(PREFIX, ISA)
// The table function of the level being compiled: GLO_THIS_LEVEL_TABLE(activation_table_) -> activation_table_isa_avx2.
#define GLO_THIS_LEVEL_TABLE(PREFIX) GLO_LEVEL_TABLE_NAME_(PREFIX, GLO_ISA_NS)

// The tables of a family for the levels this CPU runs: {default, avx2 or nullptr, avx512 or nullptr}.
template <class Family>
void fill_tables(const AnyFn* (*default_table)(), const AnyFn* (*avx2_table)(), const AnyFn* (*avx512_table)()) {
  Family::tables[kDefault] = default_table();
  Family::tables[kAvx2] = avx2_table != nullptr && level_supported(kAvx2) ? avx2_table() : nullptr;
  Family::tables[kAvx512] = avx512_table != nullptr && level_supported(kAvx512) ? avx512_table() : nullptr;
}

// The operator registered for slot Slot of Family: calls the current level's function, whose type is Fn.
template <class Family, int Slot, class Fn>
struct Trampoline;
template <class Family, int Slot, class R, class... A>
struct Trampoline<Family, Slot, R (*)(A...)> {
  static R call(A... args) {
    const AnyFn fn = Family::tables[g_level.load(std::memory_order_relaxed)][Slot];
    return reinterpret_cast<R (*)(A...)>(fn)(std::forward<A>(args)...);
  }
};

}  // namespace cpu_dispatch
}  // namespace glo

// In each level's kernel file, after `#define GLO_Y_ GLO_TABLE_ENTRY_`: the function returning FAMILY's table at the
// level being compiled (TABLE: its name prefix; OPS: the file's Ops / SoftmaxOps class; then the family's name list).
#define GLO_TABLE_ENTRY_(NAME) reinterpret_cast<::glo::cpu_dispatch::AnyFn>(&GloOps_::NAME),
#define GLO_DEFINE_LEVEL_TABLE(TABLE, FAMILY, OPS, ...)                                      \
  const ::glo::cpu_dispatch::AnyFn* glo::cpu_dispatch::GLO_THIS_LEVEL_TABLE(TABLE)() {       \
    using GloOps_ = OPS;                                                                    \
    static const AnyFn table[] = {__VA_ARGS__};                                             \
    static_assert(sizeof(table) / sizeof(table[0]) == FAMILY::kSlots, "one entry per slot"); \
    return table;                                                                           \
  }
// In the default level's file, inside TORCH_LIBRARY_IMPL(glo_kernels, CPU, m), after
// `#define GLO_Y_ GLO_TRAMPOLINE_IMPL_`: fills FAMILY's tables for the levels this CPU runs and registers its
// trampolines, OPS giving each operator's signature.
#define GLO_TRAMPOLINE_IMPL_(NAME) \
  m.impl(#NAME, &::glo::cpu_dispatch::Trampoline<GloFamily_, GloFamily_::slot_##NAME, decltype(&GloOps_::NAME)>::call);
#define GLO_REGISTER_TRAMPOLINES(TABLE, FAMILY, OPS, ...)                                                           \
  ::glo::cpu_dispatch::fill_tables<::glo::cpu_dispatch::FAMILY>(&::glo::cpu_dispatch::TABLE##isa_default,           \
                                                                GLO_AVX2_TABLE_(TABLE), GLO_AVX512_TABLE_(TABLE)); \
  using GloFamily_ = ::glo::cpu_dispatch::FAMILY;                                                                   \
  using GloOps_ = OPS;                                                                                              \
  __VA_ARGS__

// The levels compiled into this library, as table functions (nullptr: not built).
#if defined(GLO_CPU_BUILT_AVX2)
#define GLO_AVX2_TABLE_(PREFIX) &::glo::cpu_dispatch::PREFIX##isa_avx2
#else
#define GLO_AVX2_TABLE_(PREFIX) nullptr
#endif
#if defined(GLO_CPU_BUILT_AVX512)
#define GLO_AVX512_TABLE_(PREFIX) &::glo::cpu_dispatch::PREFIX##isa_avx512
#else
#define GLO_AVX512_TABLE_(PREFIX) nullptr
#endif
