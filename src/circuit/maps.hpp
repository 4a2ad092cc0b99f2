// Index maps shared by the executors (private to src/circuit).
//
// A GatherMap says where every element of a data-movement node comes from; a LinearMap
// writes a levelled node as out[r] = sum_j w_j * operand_(o_j)[e_j] + constant[r], the form
// the FHE executor evaluates on ciphertexts (row by row, ciphertext multiply-adds).
#pragma once

#include <cstdint>
#include <vector>

#include "veil/circuit/circuit.hpp"

namespace veil::circuit::detail {

struct GatherMap {
  std::vector<std::uint32_t> operand;  // index into node.operands, per output element
  std::vector<std::int64_t> element;   // element of that operand
};

struct LinearMap {
  std::vector<std::size_t> row_begin;  // rows + 1 offsets into the term arrays
  std::vector<std::uint32_t> operand;
  std::vector<std::int64_t> element;
  std::vector<std::int64_t> weight;
  std::vector<std::int64_t> constant;  // per row, in value units
  std::size_t rows() const { return row_begin.empty() ? 0 : row_begin.size() - 1; }
};

bool is_gather(OpKind kind);
bool is_linear(OpKind kind);

// Element of `from` (broadcast to `to`, numpy rules) that output element `e` of `to` reads.
std::int64_t broadcast_source(const Shape& from, const Shape& to, std::int64_t e);

GatherMap gather_map(const Circuit& circuit, std::uint32_t id);
LinearMap linear_map(const Circuit& circuit, std::uint32_t id);

}  // namespace veil::circuit::detail
