// What the seed generator (make_seeds.cpp) and the harnesses agree on: the parameter set of
// the TFHE frames and envelopes, and the model id of the envelopes. A frame or envelope
// stamped otherwise is refused at its header, so the seeds use exactly these.
#pragma once

#include "tfhe/toy_parameters.hpp"
#include "veil/deploy/envelope.hpp"

namespace veil::fuzz {

// INSECURE: small frames make fast fuzzing; nothing here is secret.
inline const tfhe::ParameterSet& fuzz_params() {
  static const tfhe::ParameterSet p = tfhe::toy::exact_set(2, 16);
  return p;
}

// The same set packing its answers (tag 15 frames and packing keys): N' = 8 of k*N = 256,
// under a shorter answer key (k' = 16: 128 coefficients) with its own noise (format 1.4),
// and bootstrap key bodies of 20 bits (format 1.5's bsk_body_bits).
inline const tfhe::ParameterSet& fuzz_packing_params() {
  static const tfhe::ParameterSet p = [] {
    tfhe::ParameterSet q = fuzz_params();
    q.answer_polynomial_size = tfhe::PolynomialSize(8);
    q.answer_base_log = tfhe::DecompositionBaseLog(8);
    q.answer_level_count = tfhe::DecompositionLevelCount(2);
    q.answer_key_dimension = tfhe::GlweDimension(16);
    q.answer_std_dev = 0x1p-30;
    q.bsk_body_bits = 20;
    q.validate();
    return q;
  }();
  return p;
}

inline const deploy::ModelId& fuzz_model_id() {
  static const deploy::ModelId id = {0x5e, 0xed, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
                                     0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d};
  return id;
}

}  // namespace veil::fuzz
