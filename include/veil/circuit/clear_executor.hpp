// The clear executor: runs a circuit on clear integers with the exact semantics of
// circuit.hpp. It is the reference the FHE executor is tested against, the engine of
// calibration, and what a developer uses to simulate a model ("what FHE will return").
//
// Thread safety: pure functions; concurrent calls are safe.
#pragma once

#include <random>
#include <vector>

#include "veil/circuit/circuit.hpp"

namespace veil::circuit {

// One tensor per input (circuit.inputs() order), each of the input's shape with values in
// its declared range; returns one tensor per output. Throws std::invalid_argument naming
// the input on a count, shape or range mismatch.
std::vector<Tensor> run_clear(const Circuit& circuit, const std::vector<Tensor>& inputs);
// The value of every node (index = node id), for calibration and debugging.
std::vector<Tensor> run_clear_all_nodes(const Circuit& circuit, const std::vector<Tensor>& inputs);

// run_clear, except that every approximate round_bits node with std_dev[node] > 0 rounds
// x + e to the nearest multiple, e ~ N(0, std_dev[node]^2) drawn from `rng` per element, and
// every lookup with neighbour reads and std_dev[node] > 0 reads its input moved by round(e)
// steps (clamped to the input's range): what the FHE executor's reads do near a tie
// (analysis.hpp, approximate_read_std_dev). A simulation of FHE's accuracy in the clear, not
// a reproduction of one encrypted run.
std::vector<Tensor> run_clear_noisy(const Circuit& circuit, const std::vector<Tensor>& inputs,
                                    const std::vector<double>& std_dev, std::mt19937_64& rng);

// Lookup semantics of one table entry: the table's value at v. REQUIRES: v in the domain.
std::int64_t table_value(const Table& table, std::int64_t v);

}  // namespace veil::circuit
