// The instruction sets the engine's kernels are compiled for, which of them the CPU runs, and
// which one a process uses (the environment variable VEIL_ISA may ask for a lower one).
// Internal to veil_tfhe; the public face is veil/tfhe/isa.hpp.
#pragma once

#include <string_view>

namespace veil::tfhe::kernels {

// Ordered: a CPU that runs a set runs every set before it.
//   kPortable  no intrinsics; baseline x86-64 (SSE2) or any other architecture.
//   kAvx2      AVX2 and FMA (Haswell, Zen 1 and later).
//   kAvx512    AVX-512 F, BW, DQ, VL and VBMI (Ice Lake, Sapphire Rapids, Zen 4 and later).
//              VBMI is the keyswitch's byte permutation; a CPU with AVX-512 but without it
//              (Skylake-SP, Cascade Lake) runs kAvx2, which is what its -march=native build
//              ran for the keyswitch too.
enum class Isa { kPortable, kAvx2, kAvx512 };
inline constexpr Isa kIsas[] = {Isa::kPortable, Isa::kAvx2, Isa::kAvx512};

// "portable", "avx2", "avx512": VEIL_ISA's values.
std::string_view isa_name(Isa isa);

// The best set this CPU runs: its cpuid feature bits, and XCR0 for the operating system's
// saving of the vector registers (a CPU with AVX-512 under an OS that does not save the
// ZMM state must not use it). kPortable off x86-64.
Isa host_isa();

// The set a process runs: `requested` (VEIL_ISA's value; null or empty means unset, and
// gives `host`) if `host` runs it. Throws std::runtime_error naming VEIL_ISA, the value and
// what the CPU has, for an unknown name or a set above `host`.
Isa select_isa(const char* requested, Isa host);

}  // namespace veil::tfhe::kernels
