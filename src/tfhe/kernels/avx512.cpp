// The AVX-512 kernel set (F, BW, DQ, VL and VBMI, with AVX2 and FMA): the AVX2 code, which
// the compiler may now encode with 32 vector registers, and the 16-word 24-bit keyswitch.
// src/tfhe/CMakeLists.txt compiles this file, alone, with those extensions enabled.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512DQ__) || !defined(__AVX512VL__) || \
    !defined(__AVX512VBMI__) || !defined(__AVX2__) || !defined(__FMA__)
#error "kernels/avx512.cpp needs -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vbmi -mavx2 -mfma"
#endif
#define VEIL_KERNEL_SET avx512
#define VEIL_KERNEL_ISA Isa::kAvx512
#define VEIL_KERNEL_AVX2 1
#define VEIL_KERNEL_AVX512 1
#include "kernels/kernel_set.inc"
