// The instruction set the engine's kernels run on.
//
// One binary runs on every x86-64 CPU: the hot kernels (transforms, multiply-adds, keyswitch)
// are compiled for baseline x86-64, for AVX2 with FMA and for AVX-512 (F, BW, DQ, VL, VBMI),
// and the engine's first use picks the best set the CPU and its OS support. The environment
// variable VEIL_ISA=portable|avx2|avx512 asks for a lower set instead (to test or compare
// them on one machine; unset or empty: the best); results agree across sets within the FFT
// rounding the noise model counts. Other architectures have the portable set only.
#pragma once

#include <string_view>

namespace veil::tfhe {

// "portable", "avx2" or "avx512": the kernel set this process runs, chosen on first use.
// Throws std::runtime_error, as every engine operation then does, when VEIL_ISA names an
// unknown set or one this CPU lacks (the message names the variable, the value and the
// sets the CPU runs).
std::string_view active_isa();

}  // namespace veil::tfhe
