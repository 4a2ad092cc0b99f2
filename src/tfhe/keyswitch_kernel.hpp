// The evaluation-form keyswitch of a group of ciphertexts in one pass over the key, shared by
// keyswitch() and the batch KS-PBS (pbs.cpp). Internal to veil_tfhe.
#pragma once

#include <cstddef>
#include <span>

#include "veil/tfhe/entities.hpp"
#include "veil/tfhe/pbs.hpp"

namespace veil::tfhe {

// The most ciphertexts keyswitch_group takes at once.
inline constexpr std::size_t kMaxKeyswitchGroup = 8;

// out[g] = keyswitch of in[g] for g < count (1..kMaxKeyswitchGroup) through the evaluation
// form, every tile of the key read once for the whole group.
// REQUIRES: in[g] has ksk's input size (n_in + 1 words), out[g] its output size (n + 1).
void keyswitch_group(const TruncatedKeyswitchKey& ksk, std::size_t count, const std::span<const Torus>* in,
                     const std::span<Torus>* out, KeyswitchScratch* const* scratch);

}  // namespace veil::tfhe
