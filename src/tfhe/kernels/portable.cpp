// The portable kernel set: plain C++, compiled with the library's own flags (baseline x86-64,
// or any architecture).
#define VEIL_KERNEL_SET portable
#define VEIL_KERNEL_ISA Isa::kPortable
#define VEIL_KERNEL_AVX2 0
#define VEIL_KERNEL_AVX512 0
#include "kernels/kernel_set.inc"
