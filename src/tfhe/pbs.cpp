#include "veil/tfhe/pbs.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <stdexcept>
#include <string>

#include "keyswitch_kernel.hpp"
#include "veil/tfhe/decomposition.hpp"
#include "veil/tfhe/fft.hpp"
#include "veil/tfhe/lwe.hpp"
#include "veil/tfhe/parallel.hpp"
#include "veil/tfhe/polynomial.hpp"

namespace veil::tfhe {

LookupTable::LookupTable(PolynomialSize n, unsigned input_bits, std::span<const Torus> outputs)
    : input_bits_(input_bits), polynomial_(n.value) {
  const std::size_t nn = n.value;
  if (input_bits < 1 || input_bits > 16 || (std::size_t{1} << input_bits) > nn)
    throw std::invalid_argument("a " + std::to_string(input_bits) + "-bit table does not fit a polynomial of " +
                                std::to_string(nn) + " coefficients");
  if (outputs.size() != (std::size_t{1} << input_bits))
    throw std::invalid_argument("a " + std::to_string(input_bits) + "-bit table needs " +
                                std::to_string(std::size_t{1} << input_bits) + " outputs, got " +
                                std::to_string(outputs.size()));
  const std::size_t box = nn >> input_bits;
  AlignedVector<Torus> boxes(nn);
  for (std::size_t j = 0; j < nn; ++j) boxes[j] = outputs[j / box];
  // Rotate by half a box towards lower indices: v = X^(-box/2) * boxes.
  const std::size_t half_box = box / 2;
  multiply_by_monomial(boxes, (2 * nn - half_box) % (2 * nn), polynomial_);
}

LookupTable LookupTable::from_function(PolynomialSize n, unsigned input_bits, unsigned output_bits,
                                       const std::function<std::uint64_t(std::uint64_t)>& f) {
  std::vector<Torus> outputs(std::size_t{1} << input_bits);
  for (std::size_t m = 0; m < outputs.size(); ++m) outputs[m] = encode_message(f(m), output_bits);
  return LookupTable(n, input_bits, outputs);
}

PbsScratch::PbsScratch(const ParameterSet& p)
    : small(lwe_size(p.lwe_dimension)),
      accumulator(glwe_size(p.glwe_dimension) * p.polynomial_size.value),
      switched_mask(p.lwe_dimension.value),
      keyswitch{std::vector<std::int64_t>(p.ks_level_count.value),
                std::vector<std::int32_t>(TruncatedKeyswitchKey::kChunkInputs * p.ks_level_count.value),
                std::vector<std::uint32_t>(TruncatedKeyswitchKey::padded_width_for(p.lwe_dimension))},
      external_product(GgswShape{p.glwe_dimension, p.polynomial_size, p.pbs_base_log, p.pbs_level_count}) {}

std::size_t PbsScratch::bytes() const {
  return (small.size() + accumulator.size()) * sizeof(Torus) +
         keyswitch.digits.size() * sizeof(std::int64_t) +
         keyswitch.chunk_digits.size() * sizeof(std::int32_t) + keyswitch.sums.size() * sizeof(std::uint32_t) + switched_mask.size() * sizeof(std::size_t) + external_product.fft.size() * sizeof(double) +
         external_product.state.size() * sizeof(Torus) +
         (external_product.digit_spectra.size() + external_product.accumulator.size()) * sizeof(double);
}

std::size_t centered_modulus_switch(std::span<const Torus> in, std::size_t log2_2n, std::span<std::size_t> mask) {
  const std::size_t n = in.size() - 1;
  if (mask.size() != n)
    throw std::invalid_argument("modulus switch: " + std::to_string(mask.size()) + " outputs for a ciphertext of dimension " +
                                std::to_string(n));
  // The rounding errors e_i = a~_i - a_i * 2N / q are public, and
  // sum e_i s_i = sum e_i (s_i - 1/2) + (1/2) sum e_i; folding (1/2) sum e_i into the body
  // before rounding it leaves only the first sum, of half the variance (parameters.cpp).
  // The correction is added to a torus value, so a wrapping sum of the halves is exact enough
  // (each halving drops at most 2^-64).
  Torus half_error_sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    mask[i] = modulus_switch(in[i], log2_2n);
    const Torus back = static_cast<Torus>(mask[i]) << (64 - log2_2n);
    half_error_sum += static_cast<Torus>(static_cast<std::int64_t>(back - in[i]) >> 1);
  }
  return modulus_switch(in[n] + half_error_sum, log2_2n);
}

namespace {

// Ciphertexts a batch worker carries through one pass over the keys. Each GGSW of the
// bootstrap key (73 KB for the 4-bit set) and each keyswitch-key row of a tile stays in cache
// while it serves the whole group, so the bootstrap key (60 MB classical, 90 MB multi-bit at
// 4 bits) and the 25 MB keyswitch key are streamed from memory once per group instead of once
// per ciphertext.
constexpr std::size_t kBatchGroup = 4;
static_assert(kBatchGroup <= kMaxKeyswitchGroup);

// Blind rotation of in[g] through tables[g] into scratch[g].accumulator for g < count
// (<= kBatchGroup), one pass over the bootstrap key: each GGSW serves every ciphertext of the
// group while it is in cache. Per ciphertext, the arithmetic and its order are those of a
// one-ciphertext rotation: grouping changes no result.
void blind_rotate_each(const FourierBootstrapKey& bsk, std::size_t count, const std::span<const Torus>* in,
                       const LookupTable* const* tables, PbsScratch* const* scratch) {
  const BootstrapKeyShape& shape = bsk.shape();
  const std::size_t n = shape.input_lwe_dimension.value;
  const std::size_t nn = shape.ggsw.polynomial_size.value;
  const std::size_t k = shape.ggsw.glwe_dimension.value;
  const std::size_t log2_2n = static_cast<std::size_t>(std::countr_zero(nn)) + 1;
  const std::size_t two_n = 2 * nn;
  for (std::size_t g = 0; g < count; ++g) {
    if (in[g].size() != n + 1)
      throw std::invalid_argument("blind_rotate: ciphertext of " + std::to_string(in[g].size()) +
                                  " words, the bootstrap key expects " + std::to_string(n + 1));
    if (tables[g]->polynomial().size() != nn)
      throw std::invalid_argument("blind_rotate: table of " + std::to_string(tables[g]->polynomial().size()) +
                                  " coefficients for N = " + std::to_string(nn));
    Torus* acc = scratch[g]->accumulator.data();
    std::fill(acc, acc + k * nn, Torus{0});
    const std::size_t b = centered_modulus_switch(in[g], log2_2n, scratch[g]->switched_mask);
    multiply_by_monomial(tables[g]->polynomial(), (two_n - b) % two_n, std::span<Torus>(acc + k * nn, nn));
  }
  ExternalProductScratch& ep = scratch[0]->external_product;
  // A lone ciphertext has its transforms carry the next step's key prefetch (FftScratch).
  // A group keeps the multiply-add's own prefetch: the
  // group reads each block from cache for all but its first ciphertext, and with the
  // transforms' prefetch batch KS-PBS ran slower (medians over three alternations, machine
  // B: 2-bit 243 against 307 /s, 4-bit 153 against 199 /s).
  const bool overlap = count == 1;
  if (shape.grouping.value != 1) {
    // Multi-bit: group j's GGSWs encrypt [s_dj..s_dj+d-1 = b]; the exponent of b is
    // sum over its set bits t of a~_(dj+t), so X^(<a~, s>) = prod_j (1 + sum_b [.] (X^(e_b) - 1)).
    const std::size_t d = shape.grouping.value;
    const std::size_t per_group = shape.ggsws_per_group();
    std::array<std::size_t, 7> exponents{};
    const std::size_t group_bytes = per_group * shape.ggsw.words() * sizeof(double);
    for (std::size_t j = 0; j < shape.group_count(); ++j) {
      const double* block = bsk.group(j);
      // The next group's block streams into L2 during this step's transforms, so that its
      // multiply-add reads it from cache instead of waiting on memory.
      if (overlap && j + 1 < shape.group_count()) ep.fft.prefetch_during_transforms(bsk.group(j + 1), group_bytes);
      for (std::size_t g = 0; g < count; ++g) {
        const std::size_t* a = scratch[g]->switched_mask.data() + j * d;
        bool any = false;
        for (std::size_t b = 1; b <= per_group; ++b) {
          std::size_t e = 0;
          for (std::size_t t = 0; t < d; ++t)
            if ((b >> t) & 1) e += a[t];
          exponents[b - 1] = e % two_n;
          any = any || exponents[b - 1] != 0;
        }
        if (!any) continue;  // every factor X^0 - 1 is 0
        multi_bit_blind_rotation_step(shape.ggsw, block, per_group, exponents.data(), scratch[g]->accumulator, ep);
      }
    }
    ep.fft.key_stream_prefetch().clear();
    return;
  }
  const std::size_t ggsw_bytes = shape.ggsw.words() * sizeof(double);
  for (std::size_t i = 0; i < n; ++i) {
    const double* ggsw = bsk.spectrum(i, 0, 0);
    const double* next = i + 1 < n ? bsk.spectrum(i + 1, 0, 0) : nullptr;
    if (overlap && next != nullptr) ep.fft.prefetch_during_transforms(next, ggsw_bytes);
    // Without that, the first product of the group pulls the next GGSW into the cache. With
    // it, the multiply-add's own prefetch measured slower: 4-bit PBS medians 9.12 against
    // 8.24 ms without it (machine B).
    bool prefetched = overlap;
    for (std::size_t g = 0; g < count; ++g) {
      const std::size_t a = scratch[g]->switched_mask[i];
      if (a == 0) continue;  // X^0 * ACC - ACC = 0: nothing to add
      blind_rotation_step(shape.ggsw, ggsw, a, scratch[g]->accumulator, ep, prefetched ? nullptr : next);
      prefetched = true;
    }
  }
  ep.fft.key_stream_prefetch().clear();
}

}  // namespace

void blind_rotate(const FourierBootstrapKey& bsk, std::span<const Torus> in, const LookupTable& table,
                  PbsScratch& scratch) {
  const LookupTable* t = &table;
  PbsScratch* sc = &scratch;
  blind_rotate_each(bsk, 1, &in, &t, &sc);
}

void programmable_bootstrap(const FourierBootstrapKey& bsk, std::span<const Torus> in, const LookupTable& table,
                            std::span<Torus> out, PbsScratch& scratch) {
  blind_rotate(bsk, in, table, scratch);
  sample_extract(scratch.accumulator, bsk.shape().ggsw.glwe_dimension, bsk.shape().ggsw.polynomial_size, out);
}

void keyswitch_programmable_bootstrap(const EvaluationKeys& keys, std::span<const Torus> in,
                                      const LookupTable& table, std::span<Torus> out, PbsScratch& scratch) {
  keyswitch(keys.ksk, in, scratch.small, scratch.keyswitch);
  programmable_bootstrap(keys.bsk, scratch.small, table, out, scratch);
}

namespace {

// KS then blind rotation of every in[c] through tables[c] (or tables[0]) on all workers, then
// finish(c, accumulator of c) on the worker that rotated it.
template <class Finish>
void keyswitch_blind_rotate_each(const EvaluationKeys& keys, const LweCiphertextList& in,
                                 std::span<const LookupTable* const> tables, const BatchOptions& options,
                                 const Finish& finish) {
  const LweDimension big = keys.params.big_lwe_dimension();
  if (in.dimension() != big)
    throw std::invalid_argument("batch KS-PBS: ciphertexts of dimension " + std::to_string(in.dimension().value) +
                                ", keys expect dimension " + std::to_string(big.value));
  if (tables.size() != 1 && tables.size() != in.count())
    throw std::invalid_argument("batch KS-PBS: " + std::to_string(tables.size()) + " tables for " +
                                std::to_string(in.count()) + " ciphertexts (give 1 or one each)");
  if (keys.ksk.shape().input_lwe_dimension != big)
    throw std::invalid_argument("batch KS-PBS: keyswitch key of input dimension " +
                                std::to_string(keys.ksk.shape().input_lwe_dimension.value) + " for ciphertexts of " +
                                std::to_string(big.value));
  const std::size_t count = in.count();
  const unsigned threads = resolve_thread_count(options.threads);
  // As few passes over the keys per thread as groups of kBatchGroup allow, then groups as
  // even as possible: 12 ciphertexts on 2 threads run as 4 groups of 3 (2 passes each), not
  // as 3 groups of 4 (one thread doing two passes of 4 while the other idles after one).
  const std::size_t lanes = std::max<std::size_t>(threads, 1);
  const std::size_t passes = (count + lanes * kBatchGroup - 1) / (lanes * kBatchGroup);
  const std::size_t group =
      std::clamp<std::size_t>((count + lanes * passes - 1) / std::max<std::size_t>(lanes * passes, 1), 1, kBatchGroup);
  std::vector<std::vector<PbsScratch>> scratch(threads);
  for (auto& s : scratch) {
    s.reserve(group);
    for (std::size_t g = 0; g < group; ++g) s.emplace_back(keys.params);
  }
  parallel_for(count, threads, group, [&](std::size_t begin, std::size_t end, unsigned worker) {
    const std::size_t n = end - begin;
    std::array<std::span<const Torus>, kBatchGroup> big_in{}, small_in{};
    std::array<std::span<Torus>, kBatchGroup> small_out{};
    std::array<KeyswitchScratch*, kBatchGroup> ks_scratch{};
    std::array<const LookupTable*, kBatchGroup> group_tables{};
    std::array<PbsScratch*, kBatchGroup> group_scratch{};
    for (std::size_t g = 0; g < n; ++g) {
      PbsScratch& sc = scratch[worker][g];
      big_in[g] = in[begin + g];
      small_out[g] = sc.small;
      small_in[g] = sc.small;
      ks_scratch[g] = &sc.keyswitch;
      group_tables[g] = tables[tables.size() == 1 ? 0 : begin + g];
      group_scratch[g] = &sc;
    }
    // `out` may be `in`: the group's inputs are all read (keyswitch) before any output is written.
    keyswitch_group(keys.ksk, n, big_in.data(), small_out.data(), ks_scratch.data());
    blind_rotate_each(keys.bsk, n, small_in.data(), group_tables.data(), group_scratch.data());
    for (std::size_t g = 0; g < n; ++g) finish(begin + g, std::span<const Torus>(scratch[worker][g].accumulator));
  });
}

}  // namespace

void keyswitch_programmable_bootstrap_batch(const EvaluationKeys& keys, const LweCiphertextList& in,
                                            std::span<const LookupTable* const> tables, LweCiphertextList& out,
                                            const BatchOptions& options) {
  const LweDimension big = keys.params.big_lwe_dimension();
  if (out.dimension() != big || in.count() != out.count())
    throw std::invalid_argument("batch KS-PBS: lists of dimension " + std::to_string(in.dimension().value) + " x " +
                                std::to_string(in.count()) + " -> " + std::to_string(out.dimension().value) + " x " +
                                std::to_string(out.count()) + ", keys expect dimension " + std::to_string(big.value));
  keyswitch_blind_rotate_each(keys, in, tables, options, [&](std::size_t c, std::span<const Torus> accumulator) {
    sample_extract(accumulator, keys.params.glwe_dimension, keys.params.polynomial_size, out[c]);
  });
}

void keyswitch_blind_rotate_batch(const EvaluationKeys& keys, const LweCiphertextList& in,
                                  std::span<const LookupTable* const> tables, std::span<Torus> accumulators,
                                  const BatchOptions& options) {
  const std::size_t size = glwe_size(keys.params.glwe_dimension) * keys.params.polynomial_size.value;
  if (accumulators.size() != in.count() * size)
    throw std::invalid_argument("batch blind rotation: " + std::to_string(accumulators.size()) + " words for " +
                                std::to_string(in.count()) + " accumulators of " + std::to_string(size));
  keyswitch_blind_rotate_each(keys, in, tables, options, [&](std::size_t c, std::span<const Torus> accumulator) {
    std::copy(accumulator.begin(), accumulator.end(), accumulators.begin() + static_cast<std::ptrdiff_t>(c * size));
  });
}

}  // namespace veil::tfhe
