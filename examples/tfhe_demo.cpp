// Veil's engine, end to end on one parameter set: choose parameters, generate keys, encrypt a
// few messages, evaluate a table by programmable bootstrapping, decrypt.
//
//   tfhe_demo [--bits P] [--p-error E] [--reference]
//
// --reference uses the TFHE-rs reference set (p_fail ~ 2^-128) instead of the optimizer's
// cheapest set for the requested error probability (default 2^-40 per lookup).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "veil/tfhe/keys.hpp"
#include "veil/tfhe/lwe.hpp"
#include "veil/tfhe/parallel.hpp"
#include "veil/tfhe/parameters.hpp"
#include "veil/tfhe/pbs.hpp"
#include "veil/tfhe/serialization.hpp"

using namespace veil::tfhe;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "tfhe_demo: %s\nusage: tfhe_demo [--bits 1..8] [--p-error E] [--reference]\n", why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) try {
  unsigned bits = 4;
  double p_error = 0x1.0p-40;
  bool reference = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--bits" && i + 1 < argc) {
      bits = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
      if (bits < 1 || bits > 8) usage("--bits must be in 1..8");
    } else if (arg == "--p-error" && i + 1 < argc) {
      p_error = std::strtod(argv[++i], nullptr);
      if (!(p_error > 0 && p_error < 1)) usage("--p-error must be in (0, 1)");
    } else if (arg == "--reference") {
      reference = true;
    } else {
      usage(("unknown argument " + arg).c_str());
    }
  }

  auto t = Clock::now();
  ParameterSet params;
  if (reference) {
    params = reference_parameter_set(bits);
  } else {
    auto chosen = optimize_parameters({.message_bits = bits, .sq_norm2 = 1.0, .p_error = p_error});
    if (!chosen) usage("no secure parameter set meets that precision and error probability");
    params = *chosen;
  }
  const double choose_ms = ms_since(t);
  auto security = check_security(params);
  std::printf("parameter set  %s\n", params.describe().c_str());
  std::printf("security       %s (128-bit curve)\n", security.detail.c_str());
  std::printf("p_error        2^%.1f per lookup (model), chosen in %.1f ms\n",
              log2_lookup_error_probability(params, 1.0), choose_ms);

  t = Clock::now();
  SecretKeys secret = generate_secret_keys(params);
  SeededEvaluationKeys seeded = generate_seeded_evaluation_keys(secret);
  const double keygen_ms = ms_since(t);
  t = Clock::now();
  EvaluationKeys eval = expand_evaluation_keys(seeded);
  const double expand_ms = ms_since(t);
  const double seeded_mb = static_cast<double>(serialize(seeded).size()) / 1e6;
  const double bsk_mb = static_cast<double>(bootstrap_key_shape(params).words()) * 8 / 1e6;
  const double ksk_mb = static_cast<double>(keyswitch_key_shape(params).words()) * 8 / 1e6;
  std::printf("keygen         %.0f ms; expansion on the server %.0f ms\n", keygen_ms, expand_ms);
  std::printf("key sizes      evaluation keys sent (seeded) %.1f MB; expanded BSK %.1f MB + KSK %.1f MB\n",
              seeded_mb, bsk_mb, ksk_mb);

  const std::uint64_t modulus = std::uint64_t{1} << bits;
  // A table worth computing blind: x -> (3x + 1) mod 2^p.
  auto table = LookupTable::from_function(params.polynomial_size, bits, bits,
                                          [&](std::uint64_t m) { return (3 * m + 1) % modulus; });
  PbsScratch scratch(params);
  std::vector<Torus> out(lwe_size(params.big_lwe_dimension()));
  std::printf("\n  message  f(m)=3m+1 mod 2^%u  decrypted  KS-PBS ms\n", bits);
  int wrong = 0;
  const std::uint64_t shown = std::min<std::uint64_t>(modulus, 8);
  for (std::uint64_t i = 0; i < shown; ++i) {
    std::uint64_t m = (i * 37 + 5) % modulus;
    LweCiphertext ct = encrypt_message(secret, m, bits);
    t = Clock::now();
    keyswitch_programmable_bootstrap(eval, ct.data(), table, out, scratch);
    double pbs_ms = ms_since(t);
    std::uint64_t got = decrypt_message(secret, out, bits);
    std::uint64_t want = (3 * m + 1) % modulus;
    wrong += got != want;
    std::printf("  %7llu  %18llu  %9llu  %9.2f%s\n", static_cast<unsigned long long>(m),
                static_cast<unsigned long long>(want), static_cast<unsigned long long>(got), pbs_ms,
                got == want ? "" : "  WRONG");
  }

  // Batch: the same table on 2 * cores ciphertexts through every core.
  const std::size_t batch = 2 * resolve_thread_count(0);
  LweCiphertextList in(params.big_lwe_dimension(), batch), res(params.big_lwe_dimension(), batch);
  for (std::size_t c = 0; c < batch; ++c) {
    auto ct = encrypt_message(secret, c % modulus, bits);
    std::copy(ct.data().begin(), ct.data().end(), in[c].begin());
  }
  const LookupTable* tables[] = {&table};
  t = Clock::now();
  keyswitch_programmable_bootstrap_batch(eval, in, tables, res);
  const double batch_ms = ms_since(t);
  for (std::size_t c = 0; c < batch; ++c) wrong += decrypt_message(secret, res[c], bits) != (3 * (c % modulus) + 1) % modulus;
  std::printf("\nbatch          %zu KS-PBS on %u threads in %.1f ms (%.2f ms each)\n", batch, resolve_thread_count(0),
              batch_ms, batch_ms / static_cast<double>(batch));
  std::printf("result         %s\n", wrong == 0 ? "all lookups decrypted correctly" : "SOME LOOKUPS WERE WRONG");
  return wrong == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "tfhe_demo: %s\n", e.what());
  return 1;
}
