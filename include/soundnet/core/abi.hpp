// The instruction-set tag of the code a translation unit compiles.
//
// Everything in soundnet that does arithmetic (the CPU backend, the model, the optimiser, the
// streaming and file code) lives in an inline namespace named after the instruction sets the
// translation unit is compiled for (soundnet::isa_base, soundnet::isa_avx2_fma,
// soundnet::isa_avx512, ...). User code names soundnet::model and so on as usual; but two
// translation units built with different -m flags get differently named instantiations, so the
// linker can never pick a copy compiled for AVX-512 to run in a part of the program built for a
// plain x86-64 (the ODR hazard of header-only code). The hot kernels choose their instruction
// set at run time anyway (backend/cpu/kernels.hpp), so a plain build is fast too.
// Types without code (layer specs, exceptions, audio constants) are not tagged: they are the
// same in every translation unit.
#pragma once

#if defined(__AVX512F__)
#define SOUNDNET_ISA_NAMESPACE isa_avx512
#elif defined(__AVX2__) && defined(__FMA__)
#define SOUNDNET_ISA_NAMESPACE isa_avx2_fma
#elif defined(__AVX2__)
#define SOUNDNET_ISA_NAMESPACE isa_avx2
#elif defined(__AVX__) && defined(__FMA__)
#define SOUNDNET_ISA_NAMESPACE isa_avx_fma
#elif defined(__AVX__)
#define SOUNDNET_ISA_NAMESPACE isa_avx
#elif defined(__FMA__)
#define SOUNDNET_ISA_NAMESPACE isa_fma
#else
#define SOUNDNET_ISA_NAMESPACE isa_base
#endif

#define SOUNDNET_ABI_BEGIN inline namespace SOUNDNET_ISA_NAMESPACE {
#define SOUNDNET_ABI_END }

#define SOUNDNET_STRINGIFY_DETAIL(x) #x
#define SOUNDNET_STRINGIFY(x) SOUNDNET_STRINGIFY_DETAIL(x)

namespace soundnet {
SOUNDNET_ABI_BEGIN
/// The instruction-set tag of this translation unit ("isa_base", "isa_avx2_fma", "isa_avx512", ...).
inline constexpr const char* translation_unit_isa = SOUNDNET_STRINGIFY(SOUNDNET_ISA_NAMESPACE);
SOUNDNET_ABI_END
}  // namespace soundnet
