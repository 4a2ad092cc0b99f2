// The engine's hot kernels, compiled once per instruction set and chosen at run time.
//
// Why. The transforms, multiply-adds and keyswitch below are nearly all of a PBS, and they
// need the CPU's vector units; but a binary compiled for one CPU's extensions
// (-march=native) dies on a CPU without them. So the library is compiled for baseline
// x86-64, and only these kernels for each extension: kernel_set.inc is compiled three times
// (portable.cpp, avx2.cpp, avx512.cpp, each with its own flags in src/tfhe/CMakeLists.txt),
// each time into a namespace of its own, and the first engine use picks one table
// (active_kernels) for the whole process.
//
// The rule that keeps this safe. A kernel set's translation unit defines nothing with
// external linkage outside its namespace and calls no inline function or template from
// elsewhere (no standard algorithms or containers, no member functions of the public
// types), unless a type of its own is a template argument (the instantiation is then its
// own too): such a function, if emitted out of line there (as a debug build does), would be
// compiled for the extension, and the linker may keep that copy for every caller. The test
// tfhe.kernel_symbols (tests/tfhe/check_kernel_symbols.cmake) checks the object files.
//
// Off x86-64 (and for WebAssembly) only the portable set is compiled.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/isa.hpp"
#include "veil/tfhe/dimensions.hpp"
#include "veil/tfhe/radix8_fft.hpp"

namespace veil::tfhe::kernels {

// The most GGSWs of a multi-bit group (2^d - 1 for a grouping factor d <= 3).
inline constexpr std::size_t kMaxMultiBitGroup = 7;
// The most ciphertexts multi_bit_fourier_dot_group takes at once.
inline constexpr std::size_t kMaxMultiBitGroupBatch = 8;

struct KernelSet {
  Isa isa;

  // fourier_dot_outputs (fft.hpp), same arguments and result.
  void (*fourier_dot_outputs)(double* out, std::size_t out_stride, std::size_t outputs, const double* a,
                              std::size_t a_stride, std::size_t rows, const double* b, std::size_t b_row_stride,
                              std::size_t b_out_stride, std::size_t fourier_size, const double* next);
  // multi_bit_fourier_dot (fft.hpp) for N = n, with `table` the transform's
  // monomial_minus_one_table(). REQUIRES: per_group <= kMaxMultiBitGroup.
  void (*multi_bit_fourier_dot)(std::size_t n, const double* table, double* out, std::size_t out_stride,
                                std::size_t parts, const double* a, std::size_t a_stride, std::size_t rows,
                                const double* block, std::size_t per_group, const std::size_t* exponents);
  // The same for count ciphertexts against one block (out[g], a[g], exponents[g]), each
  // result what multi_bit_fourier_dot gives it; the block is read chunk by chunk for all of
  // them (batch KS-PBS, pbs.cpp). REQUIRES: count <= kMaxMultiBitGroupBatch.
  void (*multi_bit_fourier_dot_group)(std::size_t n, const double* table, double* const* out, std::size_t out_stride,
                                      std::size_t parts, const double* const* a, std::size_t a_stride,
                                      std::size_t rows, const double* block, std::size_t per_group,
                                      const std::size_t* const* exponents, std::size_t count);

  // The passes of Fft (fft.cpp) around its transforms, over `half` = N/2 points; `re`, `im`
  // are the twist factors zeta^j (forward) or zeta^-j / (N/2) (backward), 32-byte aligned
  // as `buf` is. Each advances `prefetch` at about the rate of the transforms' butterflies.
  //   twist_integers:     buf <- (a_j + i a_(j+half)) (re_j + i im_j), interleaved, for
  //                       |a| <= 2^51 (exact in f64).
  //   twist_next_digits:  the same for the next level's signed digits of `state`, which it
  //                       advances as Decomposer::next_level_digits does. 1 <= base_log <= 52.
  //   untwist_add_torus:  out[j] and out[j + half] += the torus values (fft.hpp) of the real
  //                       and imaginary parts of buf_j (re_j + i im_j).
  void (*twist_integers)(const std::int64_t* a, std::size_t half, const double* re, const double* im, double* buf,
                         KeyStreamPrefetch& prefetch);
  void (*twist_next_digits)(Torus* state, std::size_t base_log, std::size_t half, const double* re, const double* im,
                            double* buf, KeyStreamPrefetch& prefetch);
  //   twist_first_digits: the same for the first (least significant) level's digits of the
  //                       rounding to `kept` bits (Decomposer::round_to_top_bits) of in, or,
  //                       where `difference`, of (X^t - 1) * in (t < 2N: map_monomial_minus_one),
  //                       in = N = 2 half words; writes the next level's state where `state`
  //                       is not null (bit for bit: the rounding kernels below, then
  //                       twist_next_digits).
  void (*twist_first_digits)(const Torus* in, std::size_t half, std::size_t t, bool difference, std::size_t kept,
                             std::size_t base_log, Torus* state, const double* re, const double* im, double* buf,
                             KeyStreamPrefetch& prefetch);
  void (*untwist_add_torus)(const double* buf, std::size_t half, const double* re, const double* im, Torus* out,
                            KeyStreamPrefetch& prefetch);

  // Radix8Fft::run's transform through `count` stages (twiddles at twiddles +
  // stage.twiddle_offset), buffers as Radix8Fft::run requires. Every set has it (the
  // portable one in plain C++).
  void (*radix8_run)(const Radix8Fft::Stage* stages, std::size_t count, const double* twiddles, int sign,
                     const double* in, double* out, double* spare, KeyStreamPrefetch& prefetch);

  // One tile of a TruncatedKeyswitchKey (entities.hpp) of word_bytes (3 or 4) bytes a word
  // and width words a row (a multiple of 8, at most kBlockWords), for count ciphertexts:
  //   sums[g][t] -= digits[g][r] * (word t of row r), r < rows, t < width, g < count,
  // in wrapping 32-bit words, a word taken as its top 32 bits.
  void (*keyswitch_tile)(std::size_t word_bytes, const std::uint8_t* tile, std::size_t width,
                         const std::int32_t* const* digits, std::size_t rows, std::uint32_t* const* sums,
                         std::size_t count);

  // out[j] = Decomposer::round_to_top_bits(in[j]) for j < n, `kept` = base_log * level_count
  // bits (the decomposition's state: decomposition.hpp).
  void (*round_to_top_bits)(const Torus* in, std::size_t n, std::size_t kept, Torus* out);
  // out[j] = the same rounding of ((X^t - 1) * in)[j], t < 2N (map_monomial_minus_one,
  // polynomial.hpp): a blind-rotation step's difference, never stored unrounded.
  void (*round_monomial_minus_one)(const Torus* in, std::size_t n, std::size_t t, std::size_t kept, Torus* out);

  // The packing keyswitch's multiply-add (pack_answers, packing.cpp) for one key ciphertext P
  // and one row's digits:
  //   acc -= sum_(t < count) d_t X^t P,   d_t = digits[t * stride],
  // in wrapping 64-bit words, P and acc coefficient-major (`row` = k' + 1 words a coefficient,
  // np coefficients, X^np = -1). REQUIRES: count <= np.
  void (*packing_multiply_add)(const Torus* key, std::size_t np, std::size_t row, const std::int64_t* digits,
                               std::size_t stride, std::size_t count, Torus* acc);
};

namespace portable {
extern const KernelSet kernel_set;
}
#if defined(__x86_64__) || defined(_M_X64)
namespace avx2 {
extern const KernelSet kernel_set;
}
namespace avx512 {
extern const KernelSet kernel_set;
}
#endif

// The set compiled for `isa`, or null where this build has none (off x86-64). Whether the
// CPU runs it is host_isa()'s question.
const KernelSet* compiled_kernels(Isa isa);

// The set for select_isa(getenv("VEIL_ISA"), host_isa()); throws select_isa's errors.
const KernelSet& select_kernels();

// The process's set: select_kernels() on the first call, kept for every later one. While
// VEIL_ISA is invalid, every call throws (a static whose initialiser throws stays unset).
inline const KernelSet& active_kernels() {
  static const KernelSet& set = select_kernels();
  return set;
}

}  // namespace veil::tfhe::kernels
