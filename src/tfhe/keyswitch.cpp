// Keyswitch: the exact key (reference) and the evaluation form (TruncatedKeyswitchKey).
//
// The evaluation form is the one KS-PBS uses, and the keyswitch is memory-bound: it streams
// the whole key (25 MB in 24-bit words for the 4-bit sets) once per ciphertext, or once per
// group in a batch. So the key is stored in 24- or 32-bit words and in tiles (entities.hpp):
// a tile is kChunkInputs input words' rows of one block of kBlockWords output words, and a
// lone ciphertext keeps the block's 64 sums in eight AVX2 registers across the tile's rows
// (l * kChunkInputs of them), so the only memory traffic per key word is its own bytes. Each
// 8-word group of a row costs one load (a 24-bit group: two 12-byte halves and one byte
// shuffle that puts each word's 3 bytes above a zero byte, i.e. the word's top 32 bits), one
// multiplication by the row's digit and one subtraction; with AVX-512 a lone ciphertext's
// 24-bit rows go 16 words at a time (one 64-byte load, one byte permutation). A group of
// ciphertexts loads each row once and keeps its sums in L1. Sums are wrapping 32-bit words:
// the key words are the top 32 (or 24) bits of torus words, so the sum's top 32 bits are
// exact modulo 2^32, and only the digits' value modulo 2^32 matters. The tile kernels are
// kernels/keyswitch_tiles.inc, one per instruction set (kernels/kernel_set.hpp); this file
// decomposes the inputs and walks the tiles.
#include "keyswitch_kernel.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/kernel_set.hpp"
#include "veil/tfhe/decomposition.hpp"

namespace veil::tfhe {
namespace {

// Both key forms: `in` and `out` must be the key's input and output ciphertext sizes.
void check_keyswitch_sizes(const KeyswitchKeyShape& shape, std::size_t in, std::size_t out) {
  const std::size_t n_in = shape.input_lwe_dimension.value;
  const std::size_t w = lwe_size(shape.output_lwe_dimension);
  if (in != n_in + 1 || out != w)
    throw std::invalid_argument("keyswitch: input of " + std::to_string(in) + " words, output of " + std::to_string(out) +
                                ", key maps " + std::to_string(n_in + 1) + " to " + std::to_string(w));
}

// The exact key, row by row in torus words: the reference the evaluation form is tested
// against.
void keyswitch_exact(const LweKeyswitchKey& ksk, std::span<const Torus> in, std::span<Torus> out,
                     KeyswitchScratch& scratch) {
  const KeyswitchKeyShape& shape = ksk.shape();
  const std::size_t n_in = shape.input_lwe_dimension.value;
  const std::size_t w = lwe_size(shape.output_lwe_dimension);
  const std::size_t l = shape.level_count.value;
  const Decomposer decomposer(shape.base_log, shape.level_count);
  scratch.digits.resize(l);
  std::fill(out.begin(), out.end(), Torus{0});
  for (std::size_t i = 0; i < n_in; ++i) {
    decomposer.decompose(in[i], scratch.digits.data());
    for (std::size_t j = 0; j < l; ++j) {
      const Torus d = static_cast<Torus>(scratch.digits[j]);
      const std::span<const Torus> row = ksk.ciphertext(i, j);
      for (std::size_t t = 0; t < w; ++t) out[t] -= d * row[t];
    }
  }
  out[w - 1] += in[n_in];
}

}  // namespace

void keyswitch_group(const TruncatedKeyswitchKey& ksk, std::size_t count, const std::span<const Torus>* in,
                     const std::span<Torus>* out, KeyswitchScratch* const* scratch) {
  if (count == 0 || count > kMaxKeyswitchGroup)
    throw std::invalid_argument("keyswitch of a group of " + std::to_string(count) + " ciphertexts (1 to " +
                                std::to_string(kMaxKeyswitchGroup) + ")");
  const KeyswitchKeyShape& shape = ksk.shape();
  const std::size_t n_in = shape.input_lwe_dimension.value;
  const std::size_t w = lwe_size(shape.output_lwe_dimension);
  const std::size_t l = shape.level_count.value;
  const Decomposer decomposer(shape.base_log, shape.level_count);
  const kernels::KernelSet& kernel_set = kernels::active_kernels();
  const auto tile = kernel_set.keyswitch_tile;
  // The AVX-512 set keeps a lone ciphertext's sums of a 24-bit tile in registers, 16 words a
  // vector, while its group kernel adds each row into every ciphertext's sums in L1: there a
  // group runs the tile once per ciphertext, from L2 after the first (a tile is 61 KB for the
  // 4-bit sets). Machine D, one thread, batch KS-PBS of 8 in one group: 4.3 against 4.5 ms per
  // PBS. The AVX2 set's group kernel is as fast as its lone one (5.5 ms either way).
  const bool one_by_one = count > 1 && kernel_set.isa == kernels::Isa::kAvx512 && ksk.word_bytes() == 3;
  std::array<std::uint32_t*, kMaxKeyswitchGroup> sums{};
  std::array<const std::int32_t*, kMaxKeyswitchGroup> digits{};
  for (std::size_t g = 0; g < count; ++g) {
    KeyswitchScratch& s = *scratch[g];
    s.digits.resize(l);
    s.chunk_digits.resize(TruncatedKeyswitchKey::kChunkInputs * l);
    s.sums.assign(ksk.padded_width(), 0);
    sums[g] = s.sums.data();
    digits[g] = s.chunk_digits.data();
  }
  for (std::size_t c = 0; c < ksk.chunk_count(); ++c) {
    const std::size_t rows = ksk.chunk_rows(c);
    const std::size_t first = c * TruncatedKeyswitchKey::kChunkInputs;
    for (std::size_t g = 0; g < count; ++g) {
      KeyswitchScratch& s = *scratch[g];
      for (std::size_t i = 0; i < rows / l; ++i) {
        decomposer.decompose(in[g][first + i], s.digits.data());
        // Only a digit's value modulo 2^32 enters the wrapping 32-bit sums.
        for (std::size_t j = 0; j < l; ++j)
          s.chunk_digits[i * l + j] = static_cast<std::int32_t>(static_cast<std::uint32_t>(s.digits[j]));
      }
    }
    for (std::size_t b = 0; b < ksk.block_count(); ++b) {
      std::array<std::uint32_t*, kMaxKeyswitchGroup> block_sums{};
      for (std::size_t g = 0; g < count; ++g) block_sums[g] = sums[g] + b * TruncatedKeyswitchKey::kBlockWords;
      if (one_by_one)
        for (std::size_t g = 0; g < count; ++g)
          tile(ksk.word_bytes(), ksk.tile(c, b), ksk.block_width(b), digits.data() + g, rows, block_sums.data() + g, 1);
      else
        tile(ksk.word_bytes(), ksk.tile(c, b), ksk.block_width(b), digits.data(), rows, block_sums.data(), count);
    }
  }
  for (std::size_t g = 0; g < count; ++g) {
    Torus* o = out[g].data();
    for (std::size_t t = 0; t < w; ++t) o[t] = static_cast<Torus>(sums[g][t]) << 32;
    o[w - 1] += in[g][n_in];
  }
}

void keyswitch(const LweKeyswitchKey& ksk, std::span<const Torus> in, std::span<Torus> out,
               KeyswitchScratch& scratch) {
  check_keyswitch_sizes(ksk.shape(), in.size(), out.size());
  keyswitch_exact(ksk, in, out, scratch);
}

void keyswitch(const TruncatedKeyswitchKey& ksk, std::span<const Torus> in, std::span<Torus> out,
               KeyswitchScratch& scratch) {
  check_keyswitch_sizes(ksk.shape(), in.size(), out.size());
  KeyswitchScratch* s = &scratch;
  keyswitch_group(ksk, 1, &in, &out, &s);
}

}  // namespace veil::tfhe
