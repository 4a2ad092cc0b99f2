// The circuit IR: a DAG of tensor operations over encrypted integers with clear constants,
// and the builder that constructs it with shape and type checks.
//
// Semantics (one semantics, two executors: clear_executor.hpp and fhe_executor.hpp). Every
// value in a circuit is an encrypted tensor of integers; constants (weights, biases, tables)
// are clear. Nodes are stored in topological order: a node's operands have smaller ids.
//   input         a tensor supplied by the client, declared with a bit width and signedness
//                 (its range), optionally a narrower declared range [lo, hi]
//   add, sub      element-wise on two encrypted tensors of one shape
//   add_constant, mul_constant
//                 element-wise with a clear tensor broadcast to the operand (numpy rules,
//                 the constant's shape broadcasts to the operand's, never the reverse)
//   matmul        x[..., K] @ W[K, M] -> [..., M], W clear (dot is matmul with M = 1, reshaped)
//   conv2d        x[B, C, H, W] (NCHW) with clear weights [O, C / groups, kh, kw]; strides,
//                 zero padding (top, left, bottom, right), dilations, groups
//   sum           over a set of axes, optionally keeping them as size-1 dimensions
//   reshape, transpose, slice (positive steps), concat, broadcast (numpy rules)
//                 data movement only: no cryptographic cost beyond copies
//   lookup        y = T(x) element-wise; T is one table, or one table per element (a table
//                 index per element; per-channel tables are expanded to that). Its
//                 LookupAttributes: `shared` evaluates the same values by multi-value
//                 bootstrapping (lookup_per_element_shared); neighbour_log2 = n >= 1
//                 makes the reads *approximate*: each may return the entry of a neighbouring
//                 input value (one step of the input's known zero bits away, clamped to the
//                 input's range) with probability up to 2^-n, which lets the parameter set
//                 be chosen for a narrower read (a comparison on a 6-bit feature that may
//                 flip only next to its threshold). A shared rotation read past an end
//                 returns the end entry; a plain PBS gets a box of margin at either end of
//                 its table (which may cost it one bit of precision). The clear executor
//                 returns the exact entry; run_clear_noisy draws the neighbours.
//   round_bits    clears the low `bits` bits of x: floor(x / 2^b) * 2^b, or to nearest,
//                 floor((x + 2^(b-1)) / 2^b) * 2^b. The value keeps its scale (as Concrete's
//                 round_bit_pattern): a lookup after it sees multiples of 2^b and reads only
//                 the high bits, which is what lets a wide accumulator feed a narrow table.
//                 Floor and nearest are exact: one PBS per dropped bit, each reading its bit
//                 at the circuit's full encoding width (costly: the noise of the whole
//                 accumulator must stay below its lowest bit).
//                 Approximate (Concrete ML's default for rounding thresholds): the result is
//                 floor_b(x) or floor_b(x) + 2^b -- the nearest multiple except within the
//                 noise of a tie, where it may be the other one. It costs nothing: the
//                 lookup that reads it takes the high bits and the low ones only move the
//                 phase inside a box. Its value may therefore only be read by lookups
//                 (directly or through data movement) and by the client as an output,
//                 whose decryption rounds the phase to a multiple of 2^b; the builder
//                 refuses levelled reads. The clear executor returns the nearest multiple.
// Arithmetic is exact integer arithmetic; the range analysis (analysis.hpp) bounds every
// value, and the builder refuses a circuit whose ranges leave +-2^62.
//
// A Table maps the integer values domain_min + i * 2^domain_shift (i < values.size()) to
// values[i]; a lookup's reachable inputs must lie in its tables' domains (checked by the
// builder against the range it infers, and again by the analysis).
//
// Thread safety: Circuit is an immutable value once built; CircuitBuilder is single-threaded.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "veil/circuit/tensor.hpp"

namespace veil::circuit {

enum class OpKind : std::uint16_t {
  kInput = 1,
  kAdd = 2,
  kSub = 3,
  kAddConstant = 4,
  kMulConstant = 5,
  kMatmul = 6,
  kConv2d = 7,
  kSum = 8,
  kReshape = 9,
  kTranspose = 10,
  kSlice = 11,
  kConcat = 12,
  kBroadcast = 13,
  kLookup = 14,
  kRoundBits = 15,
};
inline constexpr std::uint16_t kMaxOpKind = 15;
const char* op_name(OpKind kind);

enum class RoundingMode : std::uint8_t { kFloor = 0, kNearest = 1, kApproximate = 2 };

struct Table {
  std::int64_t domain_min = 0;
  unsigned domain_shift = 0;  // the domain's step is 2^domain_shift
  std::vector<std::int64_t> values;
  friend bool operator==(const Table&, const Table&) = default;
};

// Limits the builder enforces (and the circuit format relies on).
inline constexpr std::size_t kMaxNameBytes = 4096;   // node and output names
inline constexpr std::size_t kMaxOperands = 65536;   // operands of one node (concat)
// Approximate lookups: the rarest neighbour read a lookup may ask for is 2^-60 (a rarer one
// is an exact read in all but name).
inline constexpr unsigned kMaxNeighbourLog2 = 60;

// Maximum number of entries of one table (a lookup reads at most 8 bits, but a table may be
// given over a wider domain than it is ever read on).
inline constexpr std::size_t kMaxTableEntries = std::size_t{1} << 16;

// An inclusive integer interval and the number of low bits known to be zero.
struct ValueRange {
  std::int64_t lo = 0;
  std::int64_t hi = 0;
  unsigned trailing_zeros = 0;
  friend bool operator==(const ValueRange&, const ValueRange&) = default;
};

struct Conv2dOptions {
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  std::int64_t dilation_h = 1, dilation_w = 1;
  std::int64_t groups = 1;
  friend bool operator==(const Conv2dOptions&, const Conv2dOptions&) = default;
};

// The attributes of a node, one struct per kind that has any (the builder checks their
// values; the circuit format stores them as a list of integers, serialization.hpp):
//   kInput                      InputAttributes
//   kConv2d                     Conv2dOptions; the weights [O, C/g, kh, kw] are the constant
//   kSum                        SumAttributes
//   kTranspose                  TransposeAttributes
//   kSlice                      SliceAttributes
//   kConcat                     ConcatAttributes
//   kLookup                     LookupAttributes; tables, and table_index empty (one table)
//                               or one index per element
//   kRoundBits                  RoundBitsAttributes
//   the others                  NoAttributes: add_constant and mul_constant carry a constant
//                               (broadcastable to the shape), matmul W [K, M]; reshape and
//                               broadcast are said by the shape
struct NoAttributes {
  friend bool operator==(const NoAttributes&, const NoAttributes&) = default;
};
struct InputAttributes {
  std::int64_t bit_width = 0;  // 1..62
  bool is_signed = false;
  std::int64_t lo = 0, hi = 0;  // the declared range, inside the width's
  friend bool operator==(const InputAttributes&, const InputAttributes&) = default;
};
struct SumAttributes {
  bool keepdims = false;
  std::vector<std::int64_t> axes;  // ascending, at least one
  friend bool operator==(const SumAttributes&, const SumAttributes&) = default;
};
struct TransposeAttributes {
  std::vector<std::int64_t> perm;
  friend bool operator==(const TransposeAttributes&, const TransposeAttributes&) = default;
};
// Normalised: 0 <= start < end <= dimension, step >= 1; one entry per axis.
struct SliceAttributes {
  std::vector<std::int64_t> starts, ends, steps;
  friend bool operator==(const SliceAttributes&, const SliceAttributes&) = default;
};
struct ConcatAttributes {
  std::int64_t axis = 0;
  friend bool operator==(const ConcatAttributes&, const ConcatAttributes&) = default;
};
struct LookupAttributes {
  bool shared = false;             // multi-value bootstrapping (lookup_per_element_shared)
  unsigned neighbour_log2 = 0;     // 0: exact reads; n: a neighbour with probability <= 2^-n
  friend bool operator==(const LookupAttributes&, const LookupAttributes&) = default;
};
struct RoundBitsAttributes {
  std::int64_t bits = 0;  // 1..61
  RoundingMode mode = RoundingMode::kFloor;
  friend bool operator==(const RoundBitsAttributes&, const RoundBitsAttributes&) = default;
};
using NodeAttributes = std::variant<NoAttributes, InputAttributes, Conv2dOptions, SumAttributes, TransposeAttributes,
                                    SliceAttributes, ConcatAttributes, LookupAttributes, RoundBitsAttributes>;

// range_hint: when set, a range the analysis intersects with the inferred one (calibration
// writes these; see analysis.hpp).
struct Node {
  OpKind kind = OpKind::kInput;
  std::vector<std::uint32_t> operands;
  Shape shape;
  NodeAttributes attributes;  // the alternative of `kind` (above)
  Tensor constant;
  std::vector<Table> tables;
  std::vector<std::uint32_t> table_index;
  std::optional<ValueRange> range_hint;
  std::string name;
  friend bool operator==(const Node&, const Node&) = default;
};

struct Circuit {
  std::vector<Node> nodes;            // topological order
  std::vector<std::uint32_t> outputs;  // node ids, in output order
  std::vector<std::string> output_names;

  // Node ids of the inputs, in order of creation.
  std::vector<std::uint32_t> inputs() const;
  // "op 'name' (node 12)" or "add (node 12)": how error messages name a node.
  std::string describe_node(std::uint32_t id) const;
  friend bool operator==(const Circuit&, const Circuit&) = default;
};

// A handle to a value under construction.
struct Value {
  std::uint32_t id = 0;
};

using TableFunction = std::function<std::int64_t(std::int64_t)>;

// Builds a Circuit op by op. Every method checks its arguments and throws
// std::invalid_argument naming the operation (and the node's name when given) on a shape,
// type or range error; the builder stays usable after a throw (nothing was added).
// Ranges are inferred as the circuit grows (range()), so that tables can be given as
// functions and evaluated over exactly the values their input can take.
class CircuitBuilder {
 public:
  // An input of `bit_width` bits (1..62): [0, 2^b - 1], or [-2^(b-1), 2^(b-1) - 1] signed.
  Value input(const Shape& shape, unsigned bit_width, bool is_signed, std::string name = {});
  // An input with a declared range inside the one its width allows.
  Value input_range(const Shape& shape, std::int64_t lo, std::int64_t hi, std::string name = {});

  Value add(Value a, Value b, std::string name = {});
  Value sub(Value a, Value b, std::string name = {});
  Value neg(Value a, std::string name = {});
  Value add(Value a, const Tensor& constant, std::string name = {});
  Value add(Value a, std::int64_t constant, std::string name = {});
  Value mul(Value a, const Tensor& constant, std::string name = {});
  Value mul(Value a, std::int64_t constant, std::string name = {});
  // x[..., K] @ weights[K, M] -> [..., M].
  Value matmul(Value x, const Tensor& weights, std::string name = {});
  // x[K] . w[K] -> a scalar.
  Value dot(Value x, const std::vector<std::int64_t>& weights, std::string name = {});
  Value conv2d(Value x, const Tensor& weights, const Conv2dOptions& options = {}, std::string name = {});
  Value sum(Value a, std::vector<std::int64_t> axes, bool keepdims = false, std::string name = {});
  Value sum_all(Value a, std::string name = {});

  // One dimension may be -1 (inferred).
  Value reshape(Value a, Shape shape, std::string name = {});
  // ONNX Flatten: [prod(dims[:axis]), prod(dims[axis:])]; axis = 0 gives [1, n].
  Value flatten(Value a, std::int64_t axis = 1, std::string name = {});
  Value transpose(Value a, std::vector<std::int64_t> perm, std::string name = {});
  // numpy-like a[starts:ends:steps] per axis; negative indices count from the end and
  // out-of-range ends are clamped. steps default to 1; they must be >= 1.
  Value slice(Value a, std::vector<std::int64_t> starts, std::vector<std::int64_t> ends,
              std::vector<std::int64_t> steps = {}, std::string name = {});
  Value concat(const std::vector<Value>& values, std::int64_t axis, std::string name = {});
  Value broadcast(Value a, Shape shape, std::string name = {});

  Value lookup(Value a, Table table, std::string name = {});
  // The table of f over every value a can take (per the inferred range).
  Value lookup(Value a, const TableFunction& f, std::string name = {});
  // tables[table_index[e]] for element e (row-major). neighbour_log2 > 0: approximate reads
  // (below), the table laid out with one box of margin at either end.
  Value lookup_per_element(Value a, std::vector<Table> tables, std::vector<std::uint32_t> table_index,
                           std::string name = {}, unsigned neighbour_log2 = 0);
  // The same values, evaluated by multi-value bootstrapping: elements whose inputs are the
  // same ciphertext (copies of one input element through a matmul by one-hot 0/1 columns)
  // share one blind rotation, and each output is read from it by its table's jumps
  // (analysis.hpp, multi_value_norm2): one PBS per distinct input instead of one per
  // element, at the sum of the squared jumps times a PBS output's noise (1 for a step
  // table: comparisons).
  // neighbour_log2 > 0: approximate reads, a neighbouring entry with probability up to
  // 2^-neighbour_log2 (see the lookup's semantics above); in [0, kMaxNeighbourLog2].
  Value lookup_per_element_shared(Value a, std::vector<Table> tables, std::vector<std::uint32_t> table_index,
                                  std::string name = {}, unsigned neighbour_log2 = 0);
  // tables[c] for every element whose index along `axis` is c.
  Value lookup_per_channel(Value a, std::int64_t axis, std::vector<Table> tables, std::string name = {});
  Value lookup_per_channel(Value a, std::int64_t axis, const std::vector<TableFunction>& fs, std::string name = {});

  Value round_bits(Value a, unsigned bits, RoundingMode mode = RoundingMode::kFloor, std::string name = {});

  void output(Value v, std::string name = {});

  const Shape& shape(Value v) const;
  ValueRange range(Value v) const;
  // The table of f over the values v can take, as `lookup(v, f)` would build it.
  Table table_for(Value v, const TableFunction& f) const;

  // Adds a fully specified node (used by deserialization): checks it exactly as the typed
  // methods do, including that `node.shape` is the shape they would infer.
  Value add_node(Node node);

  // REQUIRES: at least one output. Throws std::logic_error otherwise.
  Circuit build() &&;
  const Circuit& peek() const { return circuit_; }

 private:
  Value push(Node node);
  void check_value(Value v, const char* op) const;
  // add_constant, mul_constant and matmul: one operand and a constant tensor.
  Value with_constant(OpKind kind, Value a, const Tensor& constant, std::string name);

  Circuit circuit_;
  std::vector<ValueRange> ranges_;
};

// Infers the range of `node` from its operands' ranges (interval arithmetic; the same
// function the builder and the analysis use). Throws std::invalid_argument naming the node
// when a bound leaves +-2^62 or a lookup's input is not in its tables' domain.
ValueRange infer_range(const Circuit& circuit, std::uint32_t id, const std::vector<ValueRange>& ranges);

// True when node `id` carries an approximate round_bits result (itself or through data
// movement): only lookups and outputs may read it.
bool is_approximate(const Circuit& circuit, std::uint32_t id);

// Validates the whole circuit (ids, topological order, shapes, attributes, tables) by
// replaying it through a builder. Throws std::invalid_argument naming the first bad node.
void validate_circuit(const Circuit& circuit);

}  // namespace veil::circuit
