// The AVX2 + FMA kernel set. src/tfhe/CMakeLists.txt compiles this file, alone, with those
// extensions enabled.
#if !defined(__AVX2__) || !defined(__FMA__)
#error "kernels/avx2.cpp needs -mavx2 -mfma (src/tfhe/CMakeLists.txt)"
#endif
#define VEIL_KERNEL_SET avx2
#define VEIL_KERNEL_ISA Isa::kAvx2
#define VEIL_KERNEL_AVX2 1
#define VEIL_KERNEL_AVX512 0
#include "kernels/kernel_set.inc"
