// Benchmarks of the TFHE engine: tfhe/<p>bit/<operation> on the optimizer's set for
// p_error 2^-40 per lookup (Veil's default), tfhe/<p>bit_mb2/<operation> on the optimizer's
// multi-bit set (grouping 2) for the same target, and tfhe/<p>bit_ref128/<operation> on the
// TFHE-rs reference sets (p_fail ~ 2^-128) for comparison with published figures.
// Keys are generated once per set and shared by the benchmarks of that set.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "veil/tfhe/isa.hpp"
#include "veil/tfhe/keys.hpp"
#include "veil/tfhe/lwe.hpp"
#include "veil/tfhe/parallel.hpp"
#include "veil/tfhe/parameters.hpp"
#include "veil/tfhe/pbs.hpp"
#include "veil/tfhe/radix8_fft.hpp"
#include "veil/tfhe/serialization.hpp"

using namespace veil::tfhe;

namespace {

struct KeySet {
  ParameterSet params;
  SecretKeys secret;
  EvaluationKeys eval;
  std::size_t seeded_bytes;
};

enum class SetKind { kOptimized, kMultiBit, kReference };

ParameterSet params_for(unsigned bits, SetKind kind) {
  if (kind == SetKind::kReference) return reference_parameter_set(bits);
  OptimizerOptions options;
  options.message_bits = bits;
  if (kind == SetKind::kMultiBit) options.grouping = GroupingFactor(2);
  auto p = optimize_parameters(options);
  if (!p) throw std::runtime_error("optimizer found no set");
  return *p;
}

const KeySet& keys_for(unsigned bits, SetKind kind) {
  static std::map<std::pair<unsigned, SetKind>, std::unique_ptr<KeySet>> cache;
  static std::mutex m;
  std::lock_guard lock(m);
  auto& slot = cache[{bits, kind}];
  if (!slot) {
    ParameterSet p = params_for(bits, kind);
    SecretKeys secret = generate_secret_keys(p);
    SeededEvaluationKeys seeded = generate_seeded_evaluation_keys(secret);
    std::size_t seeded_bytes = serialize(seeded).size();
    EvaluationKeys eval = expand_evaluation_keys(seeded);
    slot.reset(new KeySet{p, std::move(secret), std::move(eval), seeded_bytes});
  }
  return *slot;
}

void label(benchmark::State& state, const ParameterSet& p) { state.SetLabel(p.describe()); }

void bm_ks(benchmark::State& state, unsigned bits, SetKind kind) {
  const KeySet& ks = keys_for(bits, kind);
  auto ct = encrypt_message(ks.secret, 1, bits);
  AlignedVector<Torus> out(lwe_size(ks.params.lwe_dimension));
  KeyswitchScratch ks_scratch;
  for (auto _ : state) {
    keyswitch(ks.eval.ksk, ct.data(), out, ks_scratch);
    benchmark::DoNotOptimize(out.data());
  }
  label(state, ks.params);
}

void bm_pbs(benchmark::State& state, unsigned bits, SetKind kind) {
  const KeySet& ks = keys_for(bits, kind);
  auto ct = encrypt_message(ks.secret, 1, bits);
  PbsScratch scratch(ks.params);
  keyswitch(ks.eval.ksk, ct.data(), scratch.small, scratch.keyswitch);
  AlignedVector<Torus> small(scratch.small.begin(), scratch.small.end());
  auto table = LookupTable::from_function(ks.params.polynomial_size, bits, bits, [](std::uint64_t m) { return m; });
  AlignedVector<Torus> out(lwe_size(ks.params.big_lwe_dimension()));
  for (auto _ : state) {
    programmable_bootstrap(ks.eval.bsk, small, table, out, scratch);
    benchmark::DoNotOptimize(out.data());
  }
  label(state, ks.params);
}

void bm_ks_pbs(benchmark::State& state, unsigned bits, SetKind kind) {
  const KeySet& ks = keys_for(bits, kind);
  auto ct = encrypt_message(ks.secret, 1, bits);
  PbsScratch scratch(ks.params);
  auto table = LookupTable::from_function(ks.params.polynomial_size, bits, bits, [](std::uint64_t m) { return m; });
  AlignedVector<Torus> out(lwe_size(ks.params.big_lwe_dimension()));
  for (auto _ : state) {
    keyswitch_programmable_bootstrap(ks.eval, ct.data(), table, out, scratch);
    benchmark::DoNotOptimize(out.data());
  }
  if (decrypt_message(ks.secret, out, bits) != 1) state.SkipWithError("KS-PBS decrypted wrong");
  label(state, ks.params);
}

// threads_asked: 0 for every hardware thread (ks_pbs_batch), 1 for one (ks_pbs_batch_1thread:
// the key-sharing groups alone, without the second core).
void bm_ks_pbs_batch(benchmark::State& state, unsigned bits, SetKind kind, unsigned threads_asked) {
  const KeySet& ks = keys_for(bits, kind);
  const unsigned threads = resolve_thread_count(threads_asked);
  const std::size_t count = 8 * threads;
  LweCiphertextList in(ks.params.big_lwe_dimension(), count), out(ks.params.big_lwe_dimension(), count);
  for (std::size_t c = 0; c < count; ++c) {
    auto ct = encrypt_message(ks.secret, c % 2, bits);
    std::copy(ct.data().begin(), ct.data().end(), in[c].begin());
  }
  auto table = LookupTable::from_function(ks.params.polynomial_size, bits, bits, [](std::uint64_t m) { return m; });
  const LookupTable* tables[] = {&table};
  for (auto _ : state) {
    keyswitch_programmable_bootstrap_batch(ks.eval, in, tables, out, BatchOptions{threads});
    benchmark::DoNotOptimize(out.data().data());
  }
  state.counters["pbs_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * count), benchmark::Counter::kIsRate);
  state.counters["threads"] = threads;
  label(state, ks.params);
}

void bm_keygen(benchmark::State& state, unsigned bits, SetKind kind) {
  ParameterSet p = params_for(bits, kind);
  std::size_t seeded = 0;
  for (auto _ : state) {
    SecretKeys secret = generate_secret_keys(p);
    SeededEvaluationKeys keys = generate_seeded_evaluation_keys(secret);
    seeded = serialize(keys).size();
    benchmark::DoNotOptimize(keys.bsk.bodies.data());
  }
  state.counters["seeded_eval_key_bytes"] = static_cast<double>(seeded);
  state.counters["bsk_bytes"] = static_cast<double>(bootstrap_key_shape(p).words() * 8);
  state.counters["ksk_bytes"] = static_cast<double>(keyswitch_key_shape(p).words() * 8);
  state.counters["fourier_bsk_bytes"] = static_cast<double>(bootstrap_key_shape(p).words() * 8);
  label(state, p);
}

void bm_expand(benchmark::State& state, unsigned bits, SetKind kind) {
  ParameterSet p = params_for(bits, kind);
  SecretKeys secret = generate_secret_keys(p);
  SeededEvaluationKeys keys = generate_seeded_evaluation_keys(secret);
  std::size_t ksk_bytes = 0;
  for (auto _ : state) {
    EvaluationKeys eval = expand_evaluation_keys(keys);
    benchmark::DoNotOptimize(eval.ksk.data());
    ksk_bytes = eval.ksk.bytes();
  }
  // The keyswitch key as the server holds it (24- or 32-bit words, keyswitch_key_word_bits).
  state.counters["eval_ksk_bytes"] = static_cast<double>(ksk_bytes);
  state.counters["ksk_word_bits"] = keyswitch_key_word_bits(p.lwe_dimension, p.lwe_std_dev);
  label(state, p);
}

// The parameter search itself: tfhe/<p>bit/optimize and tfhe/<p>bit_mb2/optimize search one
// grouping, tfhe/<p>bit/optimize_auto both in one pass (kAutoGrouping, the compiler's default).
void bm_optimize(benchmark::State& state, unsigned bits, GroupingFactor grouping) {
  OptimizerOptions options;
  options.message_bits = bits;
  options.grouping = grouping;
  std::optional<ParameterSet> p;
  for (auto _ : state) {
    p = optimize_parameters(options);
    benchmark::DoNotOptimize(p);
  }
  if (!p) throw std::runtime_error("optimizer found no set");
  label(state, *p);
}

// One forward transform of `points` complex values (N = 2 * points): tfhe/fft<points>/forward,
// Radix8Fft alone, without the twist passes around it.
void bm_fft(benchmark::State& state, std::size_t points) {
  const Radix8Fft fft(points, -1);
  AlignedVector<double> in(2 * points), out(2 * points), spare(2 * points);
  for (std::size_t j = 0; j < in.size(); ++j) in[j] = static_cast<double>(j % 17) - 8.0;
  KeyStreamPrefetch none;
  for (auto _ : state) {
    fft.run(in.data(), out.data(), spare.data(), none);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["points"] = static_cast<double>(points);
}

int register_all() {
  // The kernel set the figures are for: the CPU's best, or the one VEIL_ISA asks for.
  benchmark::AddCustomContext("veil_isa", std::string(active_isa()));
  for (std::size_t points = 256; points <= 8192; points *= 2)
    benchmark::RegisterBenchmark(("tfhe/fft" + std::to_string(points) + "/forward").c_str(), bm_fft, points)
        ->Unit(benchmark::kMicrosecond);
  for (SetKind kind : {SetKind::kOptimized, SetKind::kMultiBit, SetKind::kReference}) {
    for (unsigned bits : {2u, 4u, 6u, 8u}) {
      const char* suffix = kind == SetKind::kReference ? "_ref128" : kind == SetKind::kMultiBit ? "_mb2" : "";
      const std::string prefix = "tfhe/" + std::to_string(bits) + "bit" + suffix + "/";
      const bool heavy = bits == 8;
      auto unit = bits >= 6 ? benchmark::kMillisecond : benchmark::kMicrosecond;
      if (kind != SetKind::kReference)
        benchmark::RegisterBenchmark((prefix + "optimize").c_str(), bm_optimize, bits,
                                     GroupingFactor(kind == SetKind::kMultiBit ? 2 : 1))
            ->Unit(benchmark::kMillisecond);
      if (kind == SetKind::kOptimized)
        benchmark::RegisterBenchmark((prefix + "optimize_auto").c_str(), bm_optimize, bits, kAutoGrouping)
            ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark((prefix + "ks").c_str(), bm_ks, bits, kind)->Unit(unit);
      benchmark::RegisterBenchmark((prefix + "pbs").c_str(), bm_pbs, bits, kind)->Unit(unit);
      benchmark::RegisterBenchmark((prefix + "ks_pbs").c_str(), bm_ks_pbs, bits, kind)->Unit(unit);
      benchmark::RegisterBenchmark((prefix + "ks_pbs_batch").c_str(), bm_ks_pbs_batch, bits, kind, 0u)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
      benchmark::RegisterBenchmark((prefix + "ks_pbs_batch_1thread").c_str(), bm_ks_pbs_batch, bits, kind, 1u)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
      auto* kg = benchmark::RegisterBenchmark((prefix + "keygen").c_str(), bm_keygen, bits, kind)
                     ->Unit(benchmark::kMillisecond)
                     ->UseRealTime();
      auto* ex = benchmark::RegisterBenchmark((prefix + "expand_keys").c_str(), bm_expand, bits, kind)
                     ->Unit(benchmark::kMillisecond)
                     ->UseRealTime();
      if (heavy) {
        kg->Iterations(1);
        ex->Iterations(1);
      }
    }
  }
  return 0;
}

const int registered = register_all();

}  // namespace
