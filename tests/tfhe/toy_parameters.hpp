// INSECURE toy parameter sets, for tests only.
//
// Every set here has a small LWE dimension and/or too little noise to be secure by any
// measure: they exist so that correctness tests run the real algorithms on the real
// polynomial sizes in milliseconds. generate_secret_keys() refuses them unless asked with
// allow_insecure = true, and nothing outside tests/ may include this header.
#pragma once

#include <cmath>

#include "veil/tfhe/parameters.hpp"

namespace veil::tfhe::toy {

// Nearly noise-free set for p-bit lookups: N just large enough for comfortable boxes, a
// tiny n so that a PBS costs n external products only.
inline ParameterSet exact_set(unsigned message_bits, std::size_t lwe_dimension = 32) {
  ParameterSet p;
  p.name = "toy_insecure_exact_" + std::to_string(message_bits) + "bit";
  p.message_bits = message_bits;
  p.lwe_dimension = LweDimension(lwe_dimension);
  p.glwe_dimension = GlweDimension(1);
  // 2^(p+4) coefficients: boxes of 16, far wider than the toy noise.
  p.polynomial_size = PolynomialSize(std::max<std::size_t>(256, std::size_t{1} << (message_bits + 4)));
  p.lwe_std_dev = std::ldexp(1.0, -50);
  p.glwe_std_dev = std::ldexp(1.0, -55);
  p.pbs_base_log = DecompositionBaseLog(15);
  p.pbs_level_count = DecompositionLevelCount(2);
  p.ks_base_log = DecompositionBaseLog(4);
  p.ks_level_count = DecompositionLevelCount(8);
  return p;
}

// A chosen keyswitch-key noise, large enough that lookups fail at a rate one can measure, for
// the failure-rate test. N = 2048 makes the boxes wide (2048 / 2^p coefficients), so that the
// modulus switch's discreteness (the model treats the half-box bound as continuous) shifts
// the failure rate by well under 1%.
inline ParameterSet noisy_set(unsigned message_bits, double lwe_std_dev, std::size_t lwe_dimension = 64) {
  ParameterSet p = exact_set(message_bits, lwe_dimension);
  p.name = "toy_insecure_noisy_" + std::to_string(message_bits) + "bit";
  p.polynomial_size = PolynomialSize(2048);
  p.lwe_std_dev = lwe_std_dev;
  return p;
}

}  // namespace veil::tfhe::toy
