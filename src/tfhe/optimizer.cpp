// Parameter optimizer: the cheapest secure KS-PBS set for a precision, a norm and an error
// target, by exhaustive search over k, N, n and both decompositions.
//
// Why the search is fast. The noise at the blind-rotation input is
//   nu^2 * n * EP(k, N, l_pbs, beta_pbs) + KS(kN, n, l_ks, beta_ks) + MS(n, N)
// and the cost is n * C(k, N, l_pbs) + kN * l_ks * (n + 1). The cost does not depend on
// either base log, so for each level count only the base log with the least noise matters:
//  - the best beta_pbs for (k, N, l_pbs) does not depend on n (EP has no n in it);
//  - the best beta_ks for (kN, n, l_ks) is tabulated once per distinct kN (k = 2, N = 512
//    and k = 1, N = 1024 share a table).
// What remains is a loop over (k, N, l_pbs, n) that picks the smallest l_ks whose best
// keyswitch noise fits what the other terms leave: about a million cheap steps.
//
// Thread safety: pure function of its options.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "veil/tfhe/parameters.hpp"

namespace veil::tfhe {
namespace {

constexpr unsigned kMaxPbsLevel = 10;
constexpr unsigned kMaxPbsBaseLog = 30;
constexpr unsigned kMaxKsLevel = 30;
constexpr unsigned kDecompositionBits = 64;  // base_log * level_count <= 64

// Least keyswitch noise, and the base log achieving it, for each (n, l_ks) at one kN.
struct KeyswitchTable {
  std::size_t min_n = 0;
  std::vector<double> variance;        // [(n - min_n) * kMaxKsLevel + (l - 1)]
  std::vector<unsigned> base_log;      // same layout
  double at(std::size_t n, unsigned l) const { return variance[(n - min_n) * kMaxKsLevel + l - 1]; }
  unsigned beta(std::size_t n, unsigned l) const { return base_log[(n - min_n) * kMaxKsLevel + l - 1]; }
};

KeyswitchTable build_keyswitch_table(std::size_t big_lwe_dimension,
                                     const std::vector<double>& lwe_std_dev,
                                     std::size_t min_n) {
  KeyswitchTable table;
  table.min_n = min_n;
  table.variance.assign(lwe_std_dev.size() * kMaxKsLevel, std::numeric_limits<double>::infinity());
  table.base_log.assign(lwe_std_dev.size() * kMaxKsLevel, 0);
  for (std::size_t i = 0; i < lwe_std_dev.size(); ++i) {
    if (!std::isfinite(lwe_std_dev[i])) continue;  // dimension below the curve: insecure
    for (unsigned l = 1; l <= kMaxKsLevel; ++l) {
      double best = std::numeric_limits<double>::infinity();
      unsigned best_beta = 0;
      for (unsigned beta = 1; beta * l <= kDecompositionBits; ++beta) {
        // With the output dimension: the evaluation form's word rounding is counted, as
        // noise_breakdown counts it.
        const double v = keyswitch_variance(LweDimension(big_lwe_dimension), lwe_std_dev[i],
                                            DecompositionBaseLog(beta), DecompositionLevelCount(l),
                                            LweDimension(min_n + i));
        // Noise is convex in beta (key noise grows as B^2, dropped bits shrink as B^-2l):
        // past the minimum it only grows.
        if (!(v < best)) break;
        best = v;
        best_beta = beta;
      }
      table.variance[i * kMaxKsLevel + l - 1] = best;
      table.base_log[i * kMaxKsLevel + l - 1] = best_beta;
    }
  }
  return table;
}

void validate_options(const OptimizerOptions& o) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("optimize_parameters: " + what);
  };
  if (o.message_bits < 1 || o.message_bits > 8)
    fail("message_bits must be in [1, 8], got " + std::to_string(o.message_bits));
  if (!(o.sq_norm2 >= 0.0) || !std::isfinite(o.sq_norm2))
    fail("sq_norm2 must be finite and >= 0, got " + std::to_string(o.sq_norm2));
  if (!(o.p_error > 0.0 && o.p_error < 1.0))
    fail("p_error must be in (0, 1), got " + std::to_string(o.p_error));
  for (std::size_t i = 0; i < o.constraints.size(); ++i) {
    const NoiseConstraint& c = o.constraints[i];
    if (c.message_bits < 1 || c.message_bits > 8)
      fail("constraints[" + std::to_string(i) + "].message_bits must be in [1, 8], got " +
           std::to_string(c.message_bits));
    if (!(c.sq_norm2 >= 0.0) || !std::isfinite(c.sq_norm2))
      fail("constraints[" + std::to_string(i) + "].sq_norm2 must be finite and >= 0, got " +
           std::to_string(c.sq_norm2));
    if (!(c.p_error == 0.0 || (c.p_error > 0.0 && c.p_error < 1.0)))
      fail("constraints[" + std::to_string(i) + "].p_error must be 0 or in (0, 1), got " +
           std::to_string(c.p_error));
  }
  if (o.grouping.value > 2)
    fail("grouping must be 0 (either), 1 (classical blind rotation) or 2 (multi-bit), got " +
         std::to_string(o.grouping.value));
  if (o.security_bits != 128 && o.security_bits != 132)
    fail("security_bits must be 128 or 132, got " + std::to_string(o.security_bits));
  if (o.min_glwe_dimension < 1 || o.min_glwe_dimension > o.max_glwe_dimension)
    fail("glwe dimension range must satisfy 1 <= min <= max, got [" +
         std::to_string(o.min_glwe_dimension) + ", " + std::to_string(o.max_glwe_dimension) + "]");
  if (o.min_log2_polynomial_size < 8 || o.max_log2_polynomial_size > 16 ||
      o.min_log2_polynomial_size > o.max_log2_polynomial_size)
    fail("log2 polynomial size range must lie in [8, 16] with min <= max, got [" +
         std::to_string(o.min_log2_polynomial_size) + ", " +
         std::to_string(o.max_log2_polynomial_size) + "]");
  if (o.min_lwe_dimension < 1 || o.min_lwe_dimension > o.max_lwe_dimension)
    fail("lwe dimension range must satisfy 1 <= min <= max, got [" +
         std::to_string(o.min_lwe_dimension) + ", " + std::to_string(o.max_lwe_dimension) + "]");
}

std::string optimized_name(const OptimizerOptions& o) {
  char buf[96];
  const double log2_norm = o.sq_norm2 > 0.0 ? std::log2(o.sq_norm2) : -INFINITY;
  std::snprintf(buf, sizeof buf, "opt_p%u_n2^%.4g_perr2^%.4g", o.message_bits, log2_norm,
                std::log2(o.p_error));
  return o.grouping.value == 1 ? std::string(buf) : std::string(buf) + "_mb" + std::to_string(o.grouping.value);
}

// The constraints the search must meet: (sq_norm2, max variance) pairs, the single
// (message_bits, sq_norm2) of the options when no list is given. Only the largest sq_norm2
// per (precision, error probability) matters: the bound depends on those alone.
struct Requirement {
  unsigned message_bits;
  double sq_norm2;
  double max_variance;
};

std::vector<Requirement> requirements_of(const OptimizerOptions& o) {
  std::vector<Requirement> out;
  if (o.constraints.empty()) {
    out.push_back({o.message_bits, o.sq_norm2, max_variance_for_p_error(o.message_bits, o.p_error)});
    return out;
  }
  std::map<std::pair<unsigned, double>, double> worst;
  for (const NoiseConstraint& c : o.constraints) {
    auto [it, inserted] = worst.try_emplace({c.message_bits, c.p_error}, c.sq_norm2);
    if (!inserted) it->second = std::max(it->second, c.sq_norm2);
  }
  for (const auto& [key, sq] : worst) {
    const auto [bits, p_error] = key;
    out.push_back({bits, sq, max_variance_for_p_error(bits, p_error > 0.0 ? p_error : o.p_error)});
  }
  return out;
}

}  // namespace

std::optional<ParameterSet> optimize_parameters(const OptimizerOptions& options) {
  validate_options(options);
  // kAutoGrouping searches both rotations in one pass, sharing the curve and keyswitch
  // tables (the classical one first at each k and N).
  const std::vector<GroupingFactor> groupings =
      options.grouping == kAutoGrouping ? std::vector<GroupingFactor>{GroupingFactor(1), GroupingFactor(2)}
                                        : std::vector<GroupingFactor>{options.grouping};
  const std::vector<Requirement> requirements = requirements_of(options);
  // The set's precision: the widest table it serves, exactly or approximately.
  unsigned message_bits = 0;
  for (const Requirement& r : requirements) message_bits = std::max(message_bits, r.message_bits);
  // Same expression, same order, as variance_at_blind_rotation_input, per requirement.
  const auto fits_without_ks = [&](double br, double ms) {
    for (const Requirement& r : requirements)
      if (r.sq_norm2 * br + ms >= r.max_variance) return false;
    return true;
  };
  const auto fits = [&](double br, double ks, double ms) {
    for (const Requirement& r : requirements)
      if (!(r.sq_norm2 * br + ks + ms <= r.max_variance)) return false;
    return true;
  };

  // The small key's noise is fixed by the curve: the least noise that is secure.
  const std::size_t min_n = options.min_lwe_dimension;
  const std::size_t max_n = options.max_lwe_dimension;
  std::vector<double> lwe_std_dev(max_n - min_n + 1);
  for (std::size_t n = min_n; n <= max_n; ++n)
    lwe_std_dev[n - min_n] = std::exp2(min_secure_log2_std_dev(n, options.security_bits));

  std::map<std::size_t, KeyswitchTable> keyswitch_tables;  // by kN
  std::optional<ParameterSet> best;
  double best_cost = std::numeric_limits<double>::infinity();

  for (unsigned k = options.min_glwe_dimension; k <= options.max_glwe_dimension; ++k) {
    for (unsigned log_n = options.min_log2_polynomial_size;
         log_n <= options.max_log2_polynomial_size; ++log_n) {
      const GlweDimension glwe_dimension(k);
      const PolynomialSize polynomial_size(std::size_t{1} << log_n);
      const std::size_t big_lwe_dimension = k * polynomial_size.value;
      const double glwe_log2 = min_secure_log2_std_dev(big_lwe_dimension, options.security_bits);
      if (!std::isfinite(glwe_log2)) continue;  // no secure noise for this GLWE key
      const double glwe_std_dev = std::exp2(glwe_log2);

      auto [table_it, inserted] = keyswitch_tables.try_emplace(big_lwe_dimension);
      if (inserted)
        table_it->second = build_keyswitch_table(big_lwe_dimension, lwe_std_dev, min_n);
      const KeyswitchTable& ks_table = table_it->second;

      for (const GroupingFactor grouping : groupings) {
        // The key's bodies travel first with the fewest bits whose rounding adds at most 1/16 of
        // an external product's noise (bootstrap_key_body_bits_for_noise), then with the
        // format-1.4 rule's (less noise, more bytes). Equal cost keeps the first, so the
        // fewer bits win unless the extra noise would cost a larger or slower set. Where the
        // compact pass used the rule's bits at every base it tried, the rule's pass would
        // repeat it exactly, and is skipped.
        bool same_as_rule[kMaxPbsLevel + 1] = {};
        for (const bool compact : {true, false})
        for (unsigned l_pbs = 1; l_pbs <= kMaxPbsLevel; ++l_pbs) {
          if (!compact && same_as_rule[l_pbs]) continue;
          const DecompositionLevelCount pbs_level(l_pbs);
          // Best PBS base log for this level count: independent of n. The blind rotation's
          // variance per bit of the small key (blind_rotation_variance of dimension 1, which
          // times n is exactly the variance of dimension n).
          double ep_variance = std::numeric_limits<double>::infinity();
          unsigned pbs_beta = 0, body_bits = 64;
          const unsigned rule_bits = bootstrap_key_body_bits(glwe_std_dev);
          if (compact) same_as_rule[l_pbs] = true;
          for (unsigned beta = 1; beta <= kMaxPbsBaseLog && beta * l_pbs <= kDecompositionBits;
               ++beta) {
            const unsigned bits = compact ? bootstrap_key_body_bits_for_noise(glwe_dimension, polynomial_size,
                                                                              DecompositionBaseLog(beta), pbs_level,
                                                                              glwe_std_dev)
                                          : rule_bits;
            if (compact && bits != rule_bits) same_as_rule[l_pbs] = false;
            const double v = blind_rotation_variance(LweDimension(1), grouping, glwe_dimension,
                                                     polynomial_size, DecompositionBaseLog(beta), pbs_level,
                                                     glwe_std_dev, bits);
            if (!(v < ep_variance)) break;  // convex in beta, as for the keyswitch
            ep_variance = v;
            pbs_beta = beta;
            body_bits = bits;
          }
          if (pbs_beta == 0) continue;
          // Cost per step of d bits.
          const std::size_t d = grouping.value;
          // Bytes of the seeded bootstrap key per d bits of n: 2^d - 1 GGSWs of (k+1) l
          // bodies of N coefficients, each body_bits bits.
          const double bsk_bytes_per_step = static_cast<double>((std::size_t{1} << d) - 1) * (k + 1) * l_pbs *
                                            static_cast<double>(polynomial_size.value) * body_bits / 8.0;
          const double step_cost = blind_rotation_step_cost(grouping, glwe_dimension, polynomial_size, pbs_level);

          for (std::size_t n = (min_n + d - 1) / d * d; n <= max_n; n += d) {
            const double n_d = static_cast<double>(n);
            const double pbs = static_cast<double>(n / d) * step_cost;
            if (pbs >= best_cost) break;  // the PBS alone only grows with n
            const double bsk_bytes = static_cast<double>(n / d) * bsk_bytes_per_step;
            if (options.max_key_bytes != 0 && bsk_bytes > static_cast<double>(options.max_key_bytes)) break;  // so does the key
            if (!std::isfinite(lwe_std_dev[n - min_n])) continue;
            // Same expression, same order, as variance_at_blind_rotation_input.
            const double br = n_d * ep_variance;
            const double ms = modulus_switch_variance(LweDimension(n), polynomial_size);
            if (!fits_without_ks(br, ms)) continue;
            for (unsigned l_ks = 1; l_ks <= kMaxKsLevel; ++l_ks) {
              const double ks_cost = static_cast<double>(big_lwe_dimension) *
                                     static_cast<double>(l_ks) * static_cast<double>(n + 1);
              const double cost = pbs + ks_cost;
              if (cost >= best_cost) break;
              const double ks = ks_table.at(n, l_ks);
              if (!fits(br, ks, ms)) continue;
              const double ksk_bytes = static_cast<double>(big_lwe_dimension) * l_ks *
                                       keyswitch_key_word_bits(LweDimension(n), lwe_std_dev[n - min_n]) / 8.0;
              if (options.max_key_bytes != 0 && bsk_bytes + ksk_bytes > static_cast<double>(options.max_key_bytes))
                break;  // more levels only add bytes
              best_cost = cost;
              ParameterSet p;
              p.message_bits = message_bits;
              p.lwe_dimension = LweDimension(n);
              p.glwe_dimension = glwe_dimension;
              p.polynomial_size = polynomial_size;
              p.lwe_std_dev = lwe_std_dev[n - min_n];
              p.glwe_std_dev = glwe_std_dev;
              p.pbs_base_log = DecompositionBaseLog(pbs_beta);
              p.pbs_level_count = pbs_level;
              p.ks_base_log = DecompositionBaseLog(ks_table.beta(n, l_ks));
              p.ks_level_count = DecompositionLevelCount(l_ks);
              p.grouping = grouping;
              // The format-1.4 rule's own count is written 0 (ParameterSet::validate).
              p.bsk_body_bits = body_bits < rule_bits ? body_bits : 0;
              best = std::move(p);
              break;  // more keyswitch levels only cost more
            }
          }
        }
      }
    }
  }
  if (best) {
    OptimizerOptions named = options;
    named.message_bits = message_bits;
    named.grouping = best->grouping;
    named.sq_norm2 = 0.0;
    for (const Requirement& r : requirements) named.sq_norm2 = std::max(named.sq_norm2, r.sq_norm2);
    best->name = optimized_name(named);
    // The search evaluated the noise term by term; the public model must agree.
    for (const Requirement& r : requirements)
      if (!(variance_at_blind_rotation_input(*best, r.sq_norm2) <= r.max_variance))
        throw std::logic_error("optimize_parameters: chosen set " + best->describe() +
                               " misses its noise bound; search and noise model disagree");
  }
  return best;
}

}  // namespace veil::tfhe
