#include "veil/tfhe/pbs.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <stdexcept>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <unistd.h>

#include "keyswitch_kernel.hpp"
#include "kernels/kernel_set.hpp"
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

// The most ciphertexts a batch worker carries through one pass over the keys. Each GGSW (or
// multi-bit block) of the bootstrap key (73 KB classical, 221 KB multi-bit for the 4-bit sets)
// and each keyswitch-key tile stays in cache while it serves the whole group, so the
// bootstrap key (60 MB classical, 90 MB multi-bit at 4 bits) and the 25 MB keyswitch key are
// streamed from memory once per group instead of once per ciphertext.
constexpr std::size_t kBatchGroup = 8;
static_assert(kBatchGroup <= kMaxKeyswitchGroup);

// Multi-bit step j of one ciphertext: exponents[b - 1] = sum over the set bits t of b of
// a[t] (its switched mask's d words for the step), mod 2N, for b = 1..per_group. False when
// every exponent is 0 (each factor X^0 - 1 vanishes: the step leaves the accumulator as is).
bool multi_bit_exponents(const std::size_t* a, std::size_t d, std::size_t per_group, std::size_t two_n,
                         std::size_t* exponents) {
  bool any = false;
  for (std::size_t b = 1; b <= per_group; ++b) {
    std::size_t e = 0;
    for (std::size_t t = 0; t < d; ++t)
      if ((b >> t) & 1) e += a[t];
    exponents[b - 1] = e % two_n;
    any = any || exponents[b - 1] != 0;
  }
  return any;
}

// The group size for a bootstrap key: as many ciphertexts (up to kBatchGroup) as keep a
// step's key block, their accumulators and the shared transform scratch in three quarters of
// L2, and at least 4 (the former fixed size, measured on machine B) where less fits: a block
// larger than L2 is then shared through L3. The 4-bit sets take 8: 221 KB multi-bit block and
// eight 24 KB accumulators; machine D, one thread, CPU time per KS-PBS 4.5 ms against 5.0 with
// groups of 4 (docs/perf-log.md, "Batches that share the key by 8").
std::size_t batch_group_size(const BootstrapKeyShape& shape) {
  static const std::size_t l2 = [] {
#ifdef _SC_LEVEL2_CACHE_SIZE  // glibc; not in WebAssembly (nor every libc): 1 MiB assumed there
    const long bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
#else
    const long bytes = 0;
#endif
    return bytes > 0 ? static_cast<std::size_t>(bytes) : std::size_t{1} << 20;
  }();
  const GgswShape& g = shape.ggsw;
  const std::size_t nn = g.polynomial_size.value;
  const std::size_t parts = glwe_size(g.glwe_dimension);
  const std::size_t block = shape.ggsws_per_group() * g.words() * sizeof(double);
  const std::size_t accumulator = parts * nn * sizeof(Torus);
  // ExternalProductScratch: transform buffers, decomposition state, digit spectra, output spectra.
  const std::size_t shared = (3 * nn + nn + g.row_count() * nn + parts * nn) * sizeof(double);
  const std::size_t budget = l2 / 4 * 3;
  const std::size_t fit = block + shared < budget ? (budget - block - shared) / accumulator : 0;
  return std::clamp<std::size_t>(fit, 4, kBatchGroup);
}

// Ciphertexts of a group whose multi-bit multiply-adds run together (kernel
// multi_bit_fourier_dot_group): their digit and output spectra (48 KB each at N = 1024,
// k = 2) are held at once, beside the block and every accumulator of the group.
constexpr std::size_t kDotGroup = 4;
static_assert(kDotGroup <= kernels::kMaxMultiBitGroupBatch);

// One multi-bit step j (block) for scratch[0..count): each ciphertext's accumulator is
// decomposed and transformed as multi_bit_blind_rotation_step does (glwe.cpp: the rounding
// fused into the first level's digit pass), the
// multiply-adds of up to kDotGroup ciphertexts then read the block once, chunk by chunk,
// and each output is transformed back and added. Per ciphertext, the same operations in the
// same order as multi_bit_blind_rotation_step: grouping changes no result.
void multi_bit_step_group(const BootstrapKeyShape& shape, const double* block, std::size_t j, std::size_t count,
                          PbsScratch* const* scratch) {
  const GgswShape& ggsw = shape.ggsw;
  const std::size_t nn = ggsw.polynomial_size.value;
  const std::size_t two_n = 2 * nn;
  const std::size_t parts = glwe_size(ggsw.glwe_dimension);
  const std::size_t l = ggsw.level_count.value;
  const std::size_t rows = ggsw.row_count();
  const std::size_t d = shape.grouping.value;
  const std::size_t per_group = shape.ggsws_per_group();
  const std::size_t kept = ggsw.base_log.value * l;
  const Fft& fft = Fft::get(ggsw.polynomial_size);
  const kernels::KernelSet& kernel_set = kernels::active_kernels();
  // The transforms share the first ciphertext's buffers; spectra are each ciphertext's own.
  FftScratch& fs = scratch[0]->external_product.fft;
  Torus* state = l > 1 ? scratch[0]->external_product.state.data() : nullptr;
  std::array<std::array<std::size_t, kernels::kMaxMultiBitGroup>, kDotGroup> exponents{};
  std::array<const std::size_t*, kDotGroup> exponent_ptrs{};
  std::array<const double*, kDotGroup> spectra{};
  std::array<double*, kDotGroup> outputs{};
  std::array<PbsScratch*, kDotGroup> members{};
  for (std::size_t g0 = 0; g0 < count;) {
    std::size_t m = 0;
    for (; g0 < count && m < kDotGroup; ++g0) {
      if (!multi_bit_exponents(scratch[g0]->switched_mask.data() + j * d, d, per_group, two_n, exponents[m].data()))
        continue;  // every factor X^0 - 1 is 0
      members[m++] = scratch[g0];
    }
    for (std::size_t g = 0; g < m; ++g) {
      ExternalProductScratch& ep = members[g]->external_product;
      const Torus* acc = members[g]->accumulator.data();
      double* digit_spectra = ep.digit_spectra.data();
      for (std::size_t i = 0; i < parts; ++i) {
        // Least significant level first: the carries run upward.
        fft.forward_first_digits_interleaved(acc + i * nn, 0, false, kept, ggsw.base_log.value, state, fs,
                                             digit_spectra + (i * l + (l - 1)) * nn);
        for (std::size_t lv = l - 1; lv >= 1; --lv)
          fft.forward_next_digits_interleaved(state, ggsw.base_log.value, fs, digit_spectra + (i * l + (lv - 1)) * nn);
      }
      exponent_ptrs[g] = exponents[g].data();
      spectra[g] = digit_spectra;
      outputs[g] = ep.accumulator.data();
    }
    if (m == 0) continue;
    kernel_set.multi_bit_fourier_dot_group(nn, fft.monomial_minus_one_table(), outputs.data(), nn, parts, spectra.data(),
                                           nn, rows, block, per_group, exponent_ptrs.data(), m);
    for (std::size_t g = 0; g < m; ++g)
      for (std::size_t o = 0; o < parts; ++o)
        fft.backward_add_torus_interleaved(outputs[g] + o * nn, members[g]->accumulator.data() + o * nn, fs);
  }
}

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
      if (count > 1) {
        multi_bit_step_group(shape, block, j, count, scratch);
        continue;
      }
      // The next group's block streams into L2 during this step's transforms, so that its
      // multiply-add reads it from cache instead of waiting on memory.
      if (overlap && j + 1 < shape.group_count()) ep.fft.prefetch_during_transforms(bsk.group(j + 1), group_bytes);
      for (std::size_t g = 0; g < count; ++g) {
        if (!multi_bit_exponents(scratch[g]->switched_mask.data() + j * d, d, per_group, two_n, exponents.data()))
          continue;  // every factor X^0 - 1 is 0
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

// Scratch that finished batches leave for the next ones with the same parameters: a group's
// scratch is about 100 KB a ciphertext at N = 1024, and allocating it at every call, with the
// page faults of its first touch, was 2-4 % of a batch's time (the kernel's clear_page in the
// profile). Up to kPoolBytes are kept.
class ScratchPool {
 public:
  using Scratch = std::unique_ptr<PbsScratch>;

  std::vector<Scratch> take(const ParameterSet& params, std::size_t count) {
    const std::uint64_t id = params.id();
    std::vector<Scratch> out;
    out.reserve(count);
    {
      std::lock_guard lock(mutex_);
      for (std::size_t i = free_.size(); i-- > 0 && out.size() < count;) {
        if (free_[i].id != id) continue;
        bytes_ -= free_[i].scratch->bytes();
        out.push_back(std::move(free_[i].scratch));
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    while (out.size() < count) out.push_back(std::make_unique<PbsScratch>(params));
    return out;
  }

  void give_back(const ParameterSet& params, std::vector<Scratch>& scratch) {
    const std::uint64_t id = params.id();
    std::lock_guard lock(mutex_);
    for (Scratch& s : scratch) {
      s->external_product.fft.key_stream_prefetch().clear();  // a batch cut short by an exception
      const std::size_t b = s->bytes();
      if (bytes_ + b > kPoolBytes) break;
      bytes_ += b;
      free_.push_back({id, std::move(s)});
    }
    scratch.clear();
  }

 private:
  static constexpr std::size_t kPoolBytes = std::size_t{32} << 20;
  struct Entry {
    std::uint64_t id;
    Scratch scratch;
  };
  std::mutex mutex_;
  std::vector<Entry> free_;
  std::size_t bytes_ = 0;
};

ScratchPool& scratch_pool() {
  static ScratchPool* pool = new ScratchPool;  // never destroyed: batches may run at exit
  return *pool;
}

// Scratch taken from the pool for one batch call and returned when it ends (exceptions too).
class PooledScratch {
 public:
  PooledScratch(const ParameterSet& params, std::size_t count)
      : params_(params), scratch_(scratch_pool().take(params, count)) {}
  ~PooledScratch() { scratch_pool().give_back(params_, scratch_); }
  PooledScratch(const PooledScratch&) = delete;
  PooledScratch& operator=(const PooledScratch&) = delete;
  PbsScratch& operator[](std::size_t i) { return *scratch_[i]; }

 private:
  const ParameterSet& params_;
  std::vector<ScratchPool::Scratch> scratch_;
};

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
  if (count == 0) return;
  const unsigned threads = resolve_thread_count(options.threads);
  // As few passes over the keys per thread as groups of max_group allow, then groups as
  // even as possible: 12 ciphertexts on 2 threads in groups of at most 4 run as 4 groups of
  // 3 (2 passes each), not as 3 groups of 4 (one thread doing two passes of 4 while the other
  // idles after one).
  const std::size_t max_group = batch_group_size(keys.bsk.shape());
  const std::size_t lanes = std::max<std::size_t>(threads, 1);
  const std::size_t passes = (count + lanes * max_group - 1) / (lanes * max_group);
  const std::size_t group =
      std::clamp<std::size_t>((count + lanes * passes - 1) / std::max<std::size_t>(lanes * passes, 1), 1, max_group);
  const unsigned workers = static_cast<unsigned>(std::min<std::size_t>(threads, (count + group - 1) / group));
  PooledScratch scratch(keys.params, workers * group);
  parallel_for(count, workers, group, [&](std::size_t begin, std::size_t end, unsigned worker) {
    const std::size_t n = end - begin;
    std::array<std::span<const Torus>, kBatchGroup> big_in{}, small_in{};
    std::array<std::span<Torus>, kBatchGroup> small_out{};
    std::array<KeyswitchScratch*, kBatchGroup> ks_scratch{};
    std::array<const LookupTable*, kBatchGroup> group_tables{};
    std::array<PbsScratch*, kBatchGroup> group_scratch{};
    for (std::size_t g = 0; g < n; ++g) {
      PbsScratch& sc = scratch[worker * group + g];
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
    for (std::size_t g = 0; g < n; ++g) finish(begin + g, std::span<const Torus>(scratch[worker * group + g].accumulator));
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
