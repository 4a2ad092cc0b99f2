// Circuit frames (serialization.hpp; docs/formats/circuit.md).
#include "veil/circuit/serialization.hpp"

#include <algorithm>
#include <string>

#include "veil/tfhe/coding.hpp"
#include "veil/tfhe/serialization.hpp"

namespace veil::circuit {
namespace {

constexpr tfhe::FrameLayout kLayout{{'V', 'E', 'I', 'L', 'C', 'I', 'R', 'C'}, 8};
constexpr std::size_t kHeaderBytes = tfhe::kFrameHeaderBytes;
constexpr std::uint16_t kTypeCircuit = 1;
constexpr std::uint16_t kTypeCompiled = 2;

[[noreturn]] void fail(const std::string& what) { throw CircuitFormatError("circuit file: " + what); }

// The payload's composite fields; the scalars are ByteWriter's.
class Writer : public tfhe::ByteWriter {
 public:
  // Counted with a u64, as every sequence in the format.
  void bytes(std::span<const std::uint8_t> b) {
    u64(b.size());
    raw(b);
  }
  void string(const std::string& s) {
    u32(static_cast<std::uint32_t>(s.size()));
    raw({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
  }
  void i64s(const std::vector<std::int64_t>& v) {
    u64(v.size());
    for (std::int64_t x : v) i64(x);
  }
};

struct CircuitFail {
  [[noreturn]] void operator()(const std::string& what) const { fail(what); }
};
class Reader : public tfhe::ByteReader<CircuitFail> {
 public:
  explicit Reader(std::span<const std::uint8_t> b) : ByteReader(b, CircuitFail{}) {}
  // A count of items of at least `item_bytes` each: refused before allocation when the
  // bytes left cannot hold them.
  std::uint64_t count(const char* f, std::uint64_t item_bytes, std::uint64_t limit) {
    const std::uint64_t n = u64(f);
    if (n > limit) fail(std::string(f) + " is " + std::to_string(n) + ", more than the limit " + std::to_string(limit));
    if (item_bytes > 0 && n > remaining() / item_bytes)
      fail(std::string(f) + " claims " + std::to_string(n) + " items but only " + std::to_string(remaining()) +
           " bytes remain");
    return n;
  }
  std::vector<std::int64_t> i64s(const char* f, std::uint64_t limit) {
    const std::uint64_t n = count(f, 8, limit);
    std::vector<std::int64_t> v(n);
    for (auto& x : v) x = i64(f);
    return v;
  }
  std::string string(const char* f) {
    const std::uint32_t n = u32(f);
    if (n > kMaxNameBytes)
      fail(std::string(f) + " is " + std::to_string(n) + " bytes long, at most " + std::to_string(kMaxNameBytes) +
           " are allowed");
    return std::string(reinterpret_cast<const char*>(take(n, f)), n);
  }
  std::span<const std::uint8_t> bytes(const char* f) {
    const std::uint64_t n = count(f, 1, std::uint64_t{1} << 32);
    return {take(static_cast<std::size_t>(n), f), static_cast<std::size_t>(n)};
  }
};

[[noreturn]] void refuse(const std::string& label, const std::string& what) {
  throw std::invalid_argument(label + ": " + what);
}

void expect_count(std::span<const std::int64_t> values, std::size_t want, const std::string& label) {
  if (values.size() != want)
    refuse(label, "expects " + std::to_string(want) + " attributes, got " + std::to_string(values.size()));
}

void write_tensor(Writer& w, const Tensor& t) {
  w.i64s(t.shape);
  w.i64s(t.data);
}

Tensor read_tensor(Reader& r) {
  Shape shape = r.i64s("constant rank", kMaxRank);
  std::vector<std::int64_t> data = r.i64s("constant element count", static_cast<std::uint64_t>(kMaxTensorElements));
  try {
    return Tensor(std::move(shape), std::move(data));
  } catch (const std::invalid_argument& e) {
    fail(std::string("constant: ") + e.what());
  }
}

void write_circuit(Writer& w, const Circuit& c) {
  w.u64(c.nodes.size());
  for (const Node& n : c.nodes) {
    w.u16(static_cast<std::uint16_t>(n.kind));
    w.u64(n.operands.size());
    for (std::uint32_t op : n.operands) w.u32(op);
    w.i64s(n.shape);
    w.i64s(encode_attributes(n.attributes));
    write_tensor(w, n.constant);
    w.u64(n.tables.size());
    for (const Table& t : n.tables) {
      w.i64(t.domain_min);
      w.u32(t.domain_shift);
      w.i64s(t.values);
    }
    w.u64(n.table_index.size());
    for (std::uint32_t t : n.table_index) w.u32(t);
    w.u8(n.range_hint ? 1 : 0);
    if (n.range_hint) {
      w.i64(n.range_hint->lo);
      w.i64(n.range_hint->hi);
      w.u32(n.range_hint->trailing_zeros);
    }
    w.string(n.name);
  }
  w.u64(c.outputs.size());
  for (std::size_t i = 0; i < c.outputs.size(); ++i) {
    w.u32(c.outputs[i]);
    w.string(i < c.output_names.size() ? c.output_names[i] : std::string{});
  }
}

Circuit read_circuit(Reader& r) {
  Circuit c;
  // The smallest node is ~60 bytes; 8 is a safe lower bound for the pre-allocation check.
  const std::uint64_t node_count = r.count("node count", 8, std::uint64_t{1} << 24);
  // A node takes at least ~60 bytes on the wire: reserve no more than the payload can hold.
  c.nodes.reserve(std::min<std::uint64_t>(node_count, r.remaining() / 60));
  for (std::uint64_t i = 0; i < node_count; ++i) {
    Node n;
    const std::uint16_t kind = r.u16("kind");
    if (kind < 1 || kind > kMaxOpKind) fail("node " + std::to_string(i) + " has unknown kind " + std::to_string(kind));
    n.kind = static_cast<OpKind>(kind);
    const std::uint64_t ops = r.count("operand count", 4, kMaxOperands);
    for (std::uint64_t k = 0; k < ops; ++k) n.operands.push_back(r.u32("operand"));
    n.shape = r.i64s("rank", kMaxRank);
    const std::vector<std::int64_t> attributes = r.i64s("attribute count", 1 << 16);
    n.constant = read_tensor(r);
    const std::uint64_t tables = r.count("table count", 20, static_cast<std::uint64_t>(kMaxTensorElements));
    for (std::uint64_t k = 0; k < tables; ++k) {
      Table t;
      t.domain_min = r.i64("table domain min");
      t.domain_shift = r.u32("table domain shift");
      t.values = r.i64s("table entry count", kMaxTableEntries);
      n.tables.push_back(std::move(t));
    }
    const std::uint64_t index = r.count("table index count", 4, static_cast<std::uint64_t>(kMaxTensorElements));
    n.table_index.reserve(index);
    for (std::uint64_t k = 0; k < index; ++k) n.table_index.push_back(r.u32("table index"));
    const std::uint8_t has_hint = r.u8("range hint flag");
    if (has_hint > 1) fail("node " + std::to_string(i) + ": range hint flag is " + std::to_string(has_hint));
    if (has_hint) {
      ValueRange h;
      h.lo = r.i64("range hint lo");
      h.hi = r.i64("range hint hi");
      h.trailing_zeros = r.u32("range hint trailing zeros");
      n.range_hint = h;
    }
    n.name = r.string("node name");
    c.nodes.push_back(std::move(n));
    Node& added = c.nodes.back();
    try {
      added.attributes = decode_attributes(added.kind, attributes, c.describe_node(static_cast<std::uint32_t>(i)));
    } catch (const std::invalid_argument& e) {
      fail(std::string("invalid circuit: ") + e.what());
    }
  }
  const std::uint64_t outputs = r.count("output count", 8, std::uint64_t{1} << 24);
  for (std::uint64_t k = 0; k < outputs; ++k) {
    c.outputs.push_back(r.u32("output node"));
    c.output_names.push_back(r.string("output name"));
  }
  try {
    validate_circuit(c);
  } catch (const std::invalid_argument& e) {
    fail(std::string("invalid circuit: ") + e.what());
  }
  return c;
}

// A writer whose first kHeaderBytes are the frame header's place.
Writer frame_writer() {
  Writer w;
  w.zeros(kHeaderBytes);
  return w;
}

std::vector<std::uint8_t> seal(Writer w, std::uint16_t type, std::uint64_t parameter_id) {
  tfhe::FrameHeader h;
  h.major = kCircuitFormatMajor;
  h.minor = kCircuitFormatMinor;
  h.type = type;
  h.set_id_u64(parameter_id);
  tfhe::seal_frame(kLayout, h, w.written());
  return std::move(w).finish();
}

struct Opened {
  std::uint64_t parameter_id = 0;
  std::span<const std::uint8_t> payload;
};

Opened open(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes, std::uint16_t expected_type) {
  if (bytes.size() > max_bytes)
    fail(std::to_string(bytes.size()) + " bytes, more than the limit of " + std::to_string(max_bytes));
  if (bytes.size() < kHeaderBytes) fail("truncated: " + std::to_string(bytes.size()) + " bytes, the header alone is 64");
  const tfhe::FrameHeader h = tfhe::decode_frame_header(kLayout, bytes);
  if (h.magic != kLayout.magic) fail("not a Veil circuit (bad magic)");
  if (h.major != kCircuitFormatMajor || h.minor > kCircuitFormatMinor)
    fail("format version " + std::to_string(h.major) + "." + std::to_string(h.minor) + " cannot be read by this Veil (reads " +
         std::to_string(kCircuitFormatMajor) + ".0 to " + std::to_string(kCircuitFormatMajor) + "." +
         std::to_string(kCircuitFormatMinor) + ")");
  if (h.reserved != 0) fail("reserved header field at offset 14 is not zero");
  if (h.nonzero_reserved_offset != 0)
    fail("reserved header byte at offset " + std::to_string(h.nonzero_reserved_offset) + " is not zero");
  if (h.type != expected_type)
    fail("holds object type " + std::to_string(h.type) + ", expected " + std::to_string(expected_type) +
         (expected_type == kTypeCircuit ? " (circuit)" : " (compiled circuit)"));
  if (h.payload_bytes != bytes.size() - kHeaderBytes)
    fail("header announces a payload of " + std::to_string(h.payload_bytes) + " bytes, " +
         std::to_string(bytes.size() - kHeaderBytes) + " are present");
  const std::span<const std::uint8_t> payload = bytes.subspan(kHeaderBytes);
  if (tfhe::frame_checksum(payload) != h.checksum) fail("checksum mismatch: the file is corrupted");
  return {h.id_u64(), payload};
}

}  // namespace

std::vector<std::int64_t> encode_attributes(const NodeAttributes& attributes) {
  struct Encode {
    std::vector<std::int64_t> operator()(const NoAttributes&) const { return {}; }
    std::vector<std::int64_t> operator()(const InputAttributes& a) const {
      return {a.bit_width, a.is_signed ? 1 : 0, a.lo, a.hi};
    }
    std::vector<std::int64_t> operator()(const Conv2dOptions& o) const {
      return {o.stride_h, o.stride_w, o.pad_top, o.pad_left, o.pad_bottom, o.pad_right, o.dilation_h, o.dilation_w, o.groups};
    }
    std::vector<std::int64_t> operator()(const SumAttributes& a) const {
      std::vector<std::int64_t> v{a.keepdims ? 1 : 0};
      v.insert(v.end(), a.axes.begin(), a.axes.end());
      return v;
    }
    std::vector<std::int64_t> operator()(const TransposeAttributes& a) const { return a.perm; }
    std::vector<std::int64_t> operator()(const SliceAttributes& a) const {
      std::vector<std::int64_t> v = a.starts;
      v.insert(v.end(), a.ends.begin(), a.ends.end());
      v.insert(v.end(), a.steps.begin(), a.steps.end());
      return v;
    }
    std::vector<std::int64_t> operator()(const ConcatAttributes& a) const { return {a.axis}; }
    std::vector<std::int64_t> operator()(const LookupAttributes& a) const {
      // The shortest form: older readers know exactly these three.
      if (a.neighbour_log2 != 0) return {a.shared ? 1 : 0, static_cast<std::int64_t>(a.neighbour_log2)};
      if (a.shared) return {1};
      return {};
    }
    std::vector<std::int64_t> operator()(const RoundBitsAttributes& a) const {
      return {a.bits, static_cast<std::int64_t>(a.mode)};
    }
  };
  return std::visit(Encode{}, attributes);
}

NodeAttributes decode_attributes(OpKind kind, std::span<const std::int64_t> v, const std::string& label) {
  switch (kind) {
    case OpKind::kInput:
      expect_count(v, 4, label);
      if (v[1] != 0 && v[1] != 1) refuse(label, "is_signed must be 0 or 1, got " + std::to_string(v[1]));
      return InputAttributes{v[0], v[1] == 1, v[2], v[3]};
    case OpKind::kConv2d:
      expect_count(v, 9, label);
      return Conv2dOptions{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]};
    case OpKind::kSum:
      if (v.size() < 2) refuse(label, "needs keepdims and at least one axis");
      if (v[0] != 0 && v[0] != 1) refuse(label, "keepdims must be 0 or 1");
      return SumAttributes{v[0] == 1, {v.begin() + 1, v.end()}};
    case OpKind::kTranspose:
      return TransposeAttributes{{v.begin(), v.end()}};
    case OpKind::kSlice: {
      // One third per field; a length that is no multiple of 3 is kept whole in `starts`,
      // for the builder to refuse against the operand's rank.
      if (v.size() % 3 != 0) return SliceAttributes{{v.begin(), v.end()}, {}, {}};
      const std::size_t r = v.size() / 3;
      return SliceAttributes{{v.begin(), v.begin() + r}, {v.begin() + r, v.begin() + 2 * r}, {v.begin() + 2 * r, v.end()}};
    }
    case OpKind::kConcat:
      expect_count(v, 1, label);
      return ConcatAttributes{v[0]};
    case OpKind::kLookup: {
      if (v.size() > 2)
        refuse(label, "expects at most 2 attributes (shared rotations, neighbour reads), got " + std::to_string(v.size()));
      if (!v.empty() && v[0] != 0 && v[0] != 1) refuse(label, "shared rotations must be 0 or 1, got " + std::to_string(v[0]));
      if (v.size() == 2 && (v[1] < 0 || v[1] > static_cast<std::int64_t>(kMaxNeighbourLog2)))
        refuse(label, "neighbour reads must be 0 (exact) or n in [1, " + std::to_string(kMaxNeighbourLog2) +
                          "] (probability 2^-n), got " + std::to_string(v[1]));
      return LookupAttributes{!v.empty() && v[0] == 1, v.size() == 2 ? static_cast<unsigned>(v[1]) : 0u};
    }
    case OpKind::kRoundBits:
      expect_count(v, 2, label);
      if (v[1] < 0 || v[1] > 2)
        refuse(label, "mode must be 0 (floor), 1 (nearest) or 2 (approximate), got " + std::to_string(v[1]));
      return RoundBitsAttributes{v[0], static_cast<RoundingMode>(v[1])};
    default:
      expect_count(v, 0, label);
      return NoAttributes{};
  }
}

std::vector<std::uint8_t> serialize_circuit(const Circuit& circuit) {
  validate_circuit(circuit);
  Writer w = frame_writer();
  write_circuit(w, circuit);
  return seal(std::move(w), kTypeCircuit, 0);
}

Circuit deserialize_circuit(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes) {
  const Opened o = open(bytes, max_bytes, kTypeCircuit);
  if (o.parameter_id != 0) fail("a circuit (not compiled) must carry parameter id 0, found " + std::to_string(o.parameter_id));
  Reader r(o.payload);
  Circuit c = read_circuit(r);
  r.expect_end();
  return c;
}

std::vector<std::uint8_t> serialize_compiled_circuit(const CompiledCircuit& compiled) {
  Writer w = frame_writer();
  write_circuit(w, compiled.circuit);
  w.bytes(tfhe::serialize(compiled.params));
  w.u32(compiled.analysis.encoding_width);
  return seal(std::move(w), kTypeCompiled, compiled.params.id());
}

CompiledCircuit deserialize_compiled_circuit(std::span<const std::uint8_t> bytes, std::uint64_t max_bytes) {
  const Opened o = open(bytes, max_bytes, kTypeCompiled);
  Reader r(o.payload);
  Circuit c = read_circuit(r);
  tfhe::ParameterSet params;
  try {
    params = tfhe::deserialize_parameter_set(r.bytes("parameter set"));
  } catch (const tfhe::FormatError& e) {
    fail(std::string("parameter set: ") + e.what());
  }
  if (params.id() != o.parameter_id)
    fail("header names parameter set " + std::to_string(o.parameter_id) + ", the payload holds " +
         std::to_string(params.id()));
  const std::uint32_t width = r.u32("encoding width");
  r.expect_end();
  CompiledCircuit cc;
  try {
    cc = compile_with_parameters(std::move(c), params);
  } catch (const std::invalid_argument& e) {
    fail(std::string("does not compile with its parameter set: ") + e.what());
  }
  if (cc.analysis.encoding_width != width)
    fail("the circuit analyses to encoding width " + std::to_string(cc.analysis.encoding_width) +
         " but was compiled with " + std::to_string(width) + " (written by an incompatible Veil)");
  return cc;
}

}  // namespace veil::circuit
