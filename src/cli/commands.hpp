// The subcommands of `veil` (main.cpp wires them to CLI11). Each returns the process exit
// status; errors are thrown and reported by main as one line.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace veil::cli {

struct CompileArgs {
  std::string model, calibration, out;
  std::optional<unsigned> n_bits;         // all input/weight bit widths of the model family
  std::optional<unsigned> lookup_bits;    // networks: rounding threshold
  bool auto_tree_bits = false;            // trees: input bits chosen per model
  bool exact_tree_comparisons = false;    // trees: comparisons read exactly (no neighbour reads)
  bool exact_network_reads = false;       // networks: lookups read exactly (no neighbour reads)
  std::optional<double> p_error;          // per PBS
  std::optional<double> global_p_error;   // whole circuit
  std::optional<double> max_key_mb;       // evaluation keys' budget, MB (10^6 bytes)
  std::string answer_packing = "auto";    // auto | on | off (deploy::DevOptions::pack_answers)
  bool force = false;
};
int compile(const CompileArgs& a);

struct KeygenArgs {
  std::string client, keys;
  bool force = false;
};
int keygen(const KeygenArgs& a);

struct EncryptArgs {
  std::string client, keys, input, out;
};
int encrypt(const EncryptArgs& a);

struct RunArgs {
  std::string server, evaluation_keys, input, out;
};
int run(const RunArgs& a);

struct DecryptArgs {
  std::string client, keys, input, out;
};
int decrypt(const DecryptArgs& a);

// Quantized clear execution of the compiled circuit: what FHE will return, without keys.
struct SimulateArgs {
  std::string artifacts, input, out;
  bool fhe_noise = false;    // draw the approximate reads as FHE makes them
  std::uint64_t seed = 1;
};
int simulate(const SimulateArgs& a);

struct InspectArgs {
  std::string file;
  std::optional<std::string> artifacts;
};
int inspect(const InspectArgs& a);

// "1.50 MiB": a byte count for people.
std::string human_bytes(std::uint64_t bytes);
// Key-generation progress on stderr as "PREFIX: STEP (N%)", one line per step and tenth
// (the library reports every chunk).
std::function<void(const std::string& step, double fraction)> progress_printer(const std::string& prefix);

// Writes predictions as CSV: classifiers "label,<score per class>", regressors "value".
std::string predictions_csv(const std::vector<long long>& labels, const std::vector<double>& values,
                            const std::vector<std::vector<double>>& scores, const std::vector<long long>& classes,
                            bool classification);

}  // namespace veil::cli
