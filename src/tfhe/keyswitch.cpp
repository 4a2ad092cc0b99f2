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
// exact modulo 2^32, and only the digits' value modulo 2^32 matters.
#include "keyswitch_kernel.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

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

using Block = std::array<std::uint32_t*, kMaxKeyswitchGroup>;
using Digits = std::array<const std::int32_t*, kMaxKeyswitchGroup>;

#if defined(__AVX2__)
// Eight consecutive words of a row as their top 32 bits.
template <std::size_t Bytes>
inline __m256i load_words(const std::uint8_t* p) {
  if constexpr (Bytes == 4) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  } else {
    // Words 0-3 are bytes 0-11, words 4-7 bytes 12-23: one 16-byte load per half (the
    // second reads 4 bytes past the group, hence the key's tail), then each lane puts word
    // t's bytes 3t..3t+2 above a zero byte.
    const __m256i spread = _mm256_setr_epi8(-1, 0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11,  //
                                            -1, 0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11);
    const __m256i halves = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(p + 12),
                                                reinterpret_cast<const __m128i*>(p));
    return _mm256_shuffle_epi8(halves, spread);
  }
}

// One ciphertext, one tile of R * 8 words per row: sums[0 .. 8R) -= sum_r digits[r] * row_r.
template <std::size_t Bytes, int R>
void tile_one(const std::uint8_t* tile, const std::int32_t* digits, std::size_t rows, std::uint32_t* sums) {
  __m256i acc[R];
  for (int i = 0; i < R; ++i) acc[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sums + 8 * i));
  for (std::size_t r = 0; r < rows; ++r, tile += R * 8 * Bytes) {
    const __m256i d = _mm256_set1_epi32(digits[r]);
    for (int i = 0; i < R; ++i)
      acc[i] = _mm256_sub_epi32(acc[i], _mm256_mullo_epi32(d, load_words<Bytes>(tile + i * 8 * Bytes)));
  }
  for (int i = 0; i < R; ++i) _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + 8 * i), acc[i]);
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VBMI__)
#define VEIL_KEYSWITCH_AVX512 1
// Sixteen consecutive 24-bit words of a row as their top 32 bits: the 48-byte group in one
// 64-byte load (16 bytes past the group, hence the key's tail) and one byte permutation that
// puts word t's bytes 3t..3t+2 above a zero byte (the mask clears byte 4t).
inline __m512i load_words16_24(const std::uint8_t* p) {
  const __m512i spread = _mm512_set_epi32(0x2F2E2D00, 0x2C2B2A00, 0x29282700, 0x26252400,  //
                                          0x23222100, 0x201F1E00, 0x1D1C1B00, 0x1A191800,  //
                                          0x17161500, 0x14131200, 0x11100F00, 0x0E0D0C00,  //
                                          0x0B0A0900, 0x08070600, 0x05040300, 0x02010000);
  return _mm512_maskz_permutexvar_epi8(0xEEEEEEEEEEEEEEEEull, spread, _mm512_loadu_si512(p));
}

// tile_one for 24-bit words in sixteen-word registers (and, for odd R, one eight-word
// register): one load and one permutation per 16 words instead of two loads and a shuffle
// per 8. For 32-bit words the eight-word kernel measured faster (docs/BENCHMARKS.md).
template <int R>
void tile_one_24x16(const std::uint8_t* tile, const std::int32_t* digits, std::size_t rows, std::uint32_t* sums) {
  constexpr int Z = R / 2;
  __m512i acc[Z > 0 ? Z : 1];
  __m256i rest = _mm256_setzero_si256();
  for (int i = 0; i < Z; ++i) acc[i] = _mm512_loadu_si512(sums + 16 * i);
  if constexpr (R % 2 == 1) rest = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sums + 16 * Z));
  for (std::size_t r = 0; r < rows; ++r, tile += R * 8 * 3) {
    const __m512i d = _mm512_set1_epi32(digits[r]);
    for (int i = 0; i < Z; ++i)
      acc[i] = _mm512_sub_epi32(acc[i], _mm512_mullo_epi32(d, load_words16_24(tile + i * 16 * 3)));
    if constexpr (R % 2 == 1)
      rest = _mm256_sub_epi32(rest, _mm256_mullo_epi32(_mm256_set1_epi32(digits[r]), load_words<3>(tile + Z * 16 * 3)));
  }
  for (int i = 0; i < Z; ++i) _mm512_storeu_si512(sums + 16 * i, acc[i]);
  if constexpr (R % 2 == 1) _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + 16 * Z), rest);
}
#endif

// A group: each row is loaded once and serves every ciphertext's sums, kept in L1.
template <std::size_t Bytes, int R>
void tile_group(const std::uint8_t* tile, const Digits& digits, std::size_t rows, const Block& sums,
                std::size_t count) {
  for (std::size_t r = 0; r < rows; ++r, tile += R * 8 * Bytes) {
    __m256i x[R];
    for (int i = 0; i < R; ++i) x[i] = load_words<Bytes>(tile + i * 8 * Bytes);
    for (std::size_t g = 0; g < count; ++g) {
      const __m256i d = _mm256_set1_epi32(digits[g][r]);
      for (int i = 0; i < R; ++i) {
        __m256i* s = reinterpret_cast<__m256i*>(sums[g] + 8 * i);
        _mm256_storeu_si256(s, _mm256_sub_epi32(_mm256_loadu_si256(s), _mm256_mullo_epi32(d, x[i])));
      }
    }
  }
}

template <std::size_t Bytes, int R>
void tile_sums(const std::uint8_t* tile, const Digits& digits, std::size_t rows, const Block& sums, std::size_t count) {
  if (count > 1) {
    tile_group<Bytes, R>(tile, digits, rows, sums, count);
#if defined(VEIL_KEYSWITCH_AVX512)
  } else if constexpr (Bytes == 3) {
    tile_one_24x16<R>(tile, digits[0], rows, sums[0]);
#endif
  } else {
    tile_one<Bytes, R>(tile, digits[0], rows, sums[0]);
  }
}

template <std::size_t Bytes>
void tile_sums(const std::uint8_t* tile, std::size_t width, const Digits& digits, std::size_t rows, const Block& sums,
               std::size_t count) {
  static_assert(TruncatedKeyswitchKey::kBlockWords == 64, "one case per 8-word group of a block");
  switch (width / 8) {
    case 1: return tile_sums<Bytes, 1>(tile, digits, rows, sums, count);
    case 2: return tile_sums<Bytes, 2>(tile, digits, rows, sums, count);
    case 3: return tile_sums<Bytes, 3>(tile, digits, rows, sums, count);
    case 4: return tile_sums<Bytes, 4>(tile, digits, rows, sums, count);
    case 5: return tile_sums<Bytes, 5>(tile, digits, rows, sums, count);
    case 6: return tile_sums<Bytes, 6>(tile, digits, rows, sums, count);
    case 7: return tile_sums<Bytes, 7>(tile, digits, rows, sums, count);
    default: return tile_sums<Bytes, 8>(tile, digits, rows, sums, count);
  }
}
#else
// Portable: the same tiles, word by word.
template <std::size_t Bytes>
void tile_sums(const std::uint8_t* tile, std::size_t width, const Digits& digits, std::size_t rows, const Block& sums,
               std::size_t count) {
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t t = 0; t < width; ++t, tile += Bytes) {
      std::uint32_t word = 0;
      for (std::size_t byte = 0; byte < Bytes; ++byte) word |= static_cast<std::uint32_t>(tile[byte]) << (8 * byte);
      word <<= 32 - 8 * Bytes;
      for (std::size_t g = 0; g < count; ++g) sums[g][t] -= static_cast<std::uint32_t>(digits[g][r]) * word;
    }
  }
}
#endif

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
  Block sums{};
  Digits digits{};
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
      Block block_sums{};
      for (std::size_t g = 0; g < count; ++g) block_sums[g] = sums[g] + b * TruncatedKeyswitchKey::kBlockWords;
      if (ksk.word_bytes() == 3)
        tile_sums<3>(ksk.tile(c, b), ksk.block_width(b), digits, rows, block_sums, count);
      else
        tile_sums<4>(ksk.tile(c, b), ksk.block_width(b), digits, rows, block_sums, count);
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
