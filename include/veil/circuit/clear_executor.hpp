// The clear executor: runs a circuit on clear integers with the exact semantics of
// circuit.hpp. It is the reference the FHE executor is tested against, the engine of
// calibration, and what a developer uses to simulate a model ("what FHE will return").
//
// Thread safety: pure functions; concurrent calls are safe.
#pragma once

#include <vector>

#include "veil/circuit/circuit.hpp"

namespace veil::circuit {

// One tensor per input (circuit.inputs() order), each of the input's shape with values in
// its declared range; returns one tensor per output. Throws std::invalid_argument naming
// the input on a count, shape or range mismatch.
std::vector<Tensor> run_clear(const Circuit& circuit, const std::vector<Tensor>& inputs);
// The value of every node (index = node id), for calibration and debugging.
std::vector<Tensor> run_clear_all_nodes(const Circuit& circuit, const std::vector<Tensor>& inputs);

// Lookup semantics of one table entry: the table's value at v. REQUIRES: v in the domain.
std::int64_t table_value(const Table& table, std::int64_t v);

}  // namespace veil::circuit
