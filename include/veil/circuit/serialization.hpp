// The binary format of a circuit and of a compiled circuit (what server.zip holds); the
// reference is docs/formats/circuit.md.
//
// One frame, like the engine's objects (serialization.hpp in tfhe/):
//   header (64 bytes, little-endian)
//     0  magic "VEILCIRC" (8 bytes)
//     8  format major (u16), format minor (u16)
//    12  type (u16): 1 circuit, 2 compiled circuit; reserved (u16) = 0
//    16  parameter id (u64): ParameterSet::id() of a compiled circuit, 0 for a circuit
//    24  payload length in bytes (u64)
//    32  SHA-256 of the payload, first 16 bytes
//    48  reserved (16 bytes) = 0
//   payload: the nodes, then the outputs (and for a compiled circuit the parameter set and
//   the encoding width the analysis gave when it was compiled).
// Loading checks the length against the caller's limit, the magic, the version (same major;
// a newer minor reads an older one), the type, the checksum, every count against the bytes
// left before allocating, and finally replays the nodes through the builder
// (validate_circuit): a loaded circuit is well-formed or the load throws FormatError naming
// the field or node. A compiled circuit is re-analysed on load (deterministic) and its
// encoding width compared with the stored one.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "veil/error.hpp"
#include "veil/circuit/analysis.hpp"
#include "veil/circuit/circuit.hpp"

namespace veil::circuit {

class CircuitFormatError : public veil::InputError {
 public:
  using veil::InputError::InputError;
};

inline constexpr std::uint16_t kCircuitFormatMajor = 1;
inline constexpr std::uint16_t kCircuitFormatMinor = 2;
// Default ceiling on one loaded circuit: 1 GiB.
inline constexpr std::uint64_t kDefaultMaxCircuitBytes = std::uint64_t{1} << 30;

// A node's attributes as the format stores them, a list of integers by kind:
//   input       {bit_width, is_signed, lo, hi}
//   conv2d      {stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, dilation_h,
//                dilation_w, groups}
//   sum         {keepdims, axes...}
//   transpose   perm
//   slice       {starts..., ends..., steps...} (one of each per axis)
//   concat      {axis}
//   lookup      {} exact, {1} shared, {shared, neighbour_log2} with neighbour reads
//   round_bits  {bits, mode}
//   the others  {}
std::vector<std::int64_t> encode_attributes(const NodeAttributes& attributes);
// The attributes of a node of `kind` from their stored list. Throws std::invalid_argument,
// its message prefixed by `label` (how the node is named), when the list has the wrong
// length for the kind or a flag other than 0 or 1; the values themselves are the
// builder's to check.
NodeAttributes decode_attributes(OpKind kind, std::span<const std::int64_t> values, const std::string& label);

std::vector<std::uint8_t> serialize_circuit(const Circuit& circuit);
Circuit deserialize_circuit(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes = kDefaultMaxCircuitBytes);

std::vector<std::uint8_t> serialize_compiled_circuit(const CompiledCircuit& compiled);
CompiledCircuit deserialize_compiled_circuit(std::span<const std::uint8_t> bytes,
                                             std::uint64_t max_bytes = kDefaultMaxCircuitBytes);

}  // namespace veil::circuit
