// The circuit format (serialization.hpp, docs/formats/circuit.md): round trips, the exact
// byte layout (checked against an encoder written here from the format document), and
// loading of hostile input: truncation, random corruption, forged payloads whose checksum
// was recomputed, huge count fields, and every header check.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <new>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "../common/allocation_watch.hpp"
#include "../common/error_message.hpp"
#include "../tfhe/toy_parameters.hpp"
#include "veil/circuit/clear_executor.hpp"
#include "veil/circuit/serialization.hpp"
#include "veil/tfhe/serialization.hpp"

namespace veil::circuit {
namespace {

using veil::test_support::has;

using Bytes = std::vector<std::uint8_t>;

constexpr std::size_t kHeader = 64;
constexpr std::size_t kOffMajor = 8, kOffMinor = 10, kOffType = 12, kOffReserved16 = 14, kOffParamId = 16,
                      kOffLength = 24, kOffChecksum = 32, kOffReserved = 48;

std::uint64_t get_le(const Bytes& b, std::size_t off, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t{b[off + static_cast<std::size_t>(i)]} << (8 * i);
  return v;
}
void set_le(Bytes& b, std::size_t off, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b[off + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
}

std::vector<std::uint8_t> sha256(const std::uint8_t* data, std::size_t size) {
  std::vector<std::uint8_t> digest(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  if (EVP_Digest(data, size, digest.data(), &len, EVP_sha256(), nullptr) != 1) std::abort();
  digest.resize(len);
  return digest;
}

// Recomputes the header's payload length and checksum, as a forger can: the checksum is not
// a signature, so a sealed payload must survive on its own validation.
void reseal(Bytes& frame) {
  set_le(frame, kOffLength, frame.size() - kHeader, 8);
  const auto digest = sha256(frame.data() + kHeader, frame.size() - kHeader);
  std::copy(digest.begin(), digest.begin() + 16, frame.begin() + kOffChecksum);
}

// A frame around `payload`, written from the format document.
Bytes seal(std::uint16_t type, std::uint64_t parameter_id, const Bytes& payload) {
  Bytes f(kHeader, 0);
  const char magic[] = "VEILCIRC";
  std::copy(magic, magic + 8, f.begin());
  set_le(f, kOffMajor, kCircuitFormatMajor, 2);
  set_le(f, kOffMinor, kCircuitFormatMinor, 2);
  set_le(f, kOffType, type, 2);
  set_le(f, kOffParamId, parameter_id, 8);
  f.resize(kHeader + payload.size());
  std::copy(payload.begin(), payload.end(), f.begin() + kHeader);
  reseal(f);
  return f;
}

// ---------------------------------------------------------------- an encoder from the document

// Writes a payload field by field as docs/formats/circuit.md describes it, remembering
// where each named field first occurs (to forge counts there).
class Encoder {
 public:
  void u8(std::uint8_t v) { put(v, 1); }
  void u16(std::uint16_t v) { put(v, 2); }
  void u32(std::uint32_t v) { put(v, 4); }
  void u64(std::uint64_t v) { put(v, 8); }
  void i64(std::int64_t v) { put(static_cast<std::uint64_t>(v), 8); }
  void mark(const std::string& field) { offsets.emplace(field, out.size()); }
  void i64s(const std::string& count_field, const std::vector<std::int64_t>& v) {
    mark(count_field);
    u64(v.size());
    for (std::int64_t x : v) i64(x);
  }
  void text(const std::string& length_field, const std::string& s) {
    mark(length_field);
    u32(static_cast<std::uint32_t>(s.size()));
    out.insert(out.end(), s.begin(), s.end());
  }

  Bytes out;
  std::map<std::string, std::size_t> offsets;

 private:
  void put(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
};

void encode_circuit(Encoder& e, const Circuit& c) {
  e.mark("node count");
  e.u64(c.nodes.size());
  for (const Node& n : c.nodes) {
    e.mark("kind");
    e.u16(static_cast<std::uint16_t>(n.kind));
    e.mark("operand count");
    e.u64(n.operands.size());
    for (std::uint32_t op : n.operands) e.u32(op);
    e.i64s("rank", n.shape);
    e.i64s("attribute count", encode_attributes(n.attributes));
    e.i64s("constant rank", n.constant.shape);
    e.i64s("constant element count", n.constant.data);
    e.mark("table count");
    e.u64(n.tables.size());
    for (const Table& t : n.tables) {
      e.mark("table domain min");
      e.i64(t.domain_min);
      e.mark("table domain shift");
      e.u32(t.domain_shift);
      e.i64s("table entry count", t.values);
    }
    e.mark("table index count");
    e.u64(n.table_index.size());
    for (std::uint32_t t : n.table_index) e.u32(t);
    e.mark("range hint flag");
    e.u8(n.range_hint ? 1 : 0);
    if (n.range_hint) {
      e.i64(n.range_hint->lo);
      e.i64(n.range_hint->hi);
      e.u32(n.range_hint->trailing_zeros);
    }
    e.text("node name length", n.name);
  }
  e.mark("output count");
  e.u64(c.outputs.size());
  for (std::size_t i = 0; i < c.outputs.size(); ++i) {
    e.u32(c.outputs[i]);
    e.text("output name length", c.output_names[i]);
  }
}

void encode_compiled_tail(Encoder& e, const CompiledCircuit& cc) {
  const Bytes params = tfhe::serialize(cc.params);
  e.mark("parameter set length");
  e.u64(params.size());
  e.out.insert(e.out.end(), params.begin(), params.end());
  e.mark("encoding width");
  e.u32(cc.encoding_width());
}

// ---------------------------------------------------------------- circuits

// One node of every kind (per-element and single-table lookups, all three roundings),
// names on most nodes, one unnamed output.
Circuit every_op_circuit() {
  CircuitBuilder b;
  const Value x = b.input({1, 2, 4, 4}, 2, false, "x");  // [0, 3]
  const Value y = b.input_range({2, 4}, -4, 3, "y");
  Conv2dOptions o;
  o.stride_h = 2;
  o.pad_top = 1;
  o.pad_right = 1;
  o.groups = 2;
  const Value cv = b.conv2d(x, Tensor({2, 1, 2, 2}, {1, -1, 1, 0, 0, 1, 1, 1}), o, "conv");  // [1, 2, 2, 4]
  const Value f = b.flatten(cv, 2, "flat");                                                  // [2, 8]
  const Value mm = b.matmul(f, Tensor({8, 4}, {0, 1, -1, 0, 1, 0, 0, -1, 1, 1, 0, 0, 0, 0, 1, 1,
                                               -1, 0, 1, 0, 0, -1, 0, 1, 1, 0, 0, 0, 0, 1, 0, -1}),
                            "fc");  // [2, 4]
  const Value ad = b.add(mm, y, "add");
  const Value sb = b.sub(ad, y, "sub");
  const Value ac = b.add(sb, Tensor::vector({1, -2, 3, 0}), "bias");
  const Value mc = b.mul(ac, Tensor({2, 1}, {2, -1}), "scale");
  const Value sm = b.sum(mc, {1}, true, "sum");                  // [2, 1]
  const Value tr = b.transpose(mc, {1, 0}, "tr");                // [4, 2]
  const Value sl = b.slice(tr, {1, 0}, {4, 2}, {2, 1}, "slice");  // [2, 2]
  const Value bc = b.broadcast(sm, {2, 2}, "bcast");
  const Value cc = b.concat({sl, bc}, 1, "cat");  // [2, 4]
  const Value rb = b.round_bits(cc, 4, RoundingMode::kNearest, "round");
  std::vector<TableFunction> fs;
  for (std::int64_t k = 0; k < 4; ++k) fs.push_back([k](std::int64_t v) { return (v >> 4) * (k - 1) + k; });
  const Value lk = b.lookup_per_channel(rb, 1, fs, "act");
  const Value fl = b.round_bits(cc, 2, RoundingMode::kFloor, "floor");
  const Value ra = b.round_bits(fl, 5, RoundingMode::kApproximate, "approx");
  const Value la = b.lookup(ra, [](std::int64_t v) { return v > 0 ? 1 : 0; }, "sign");
  b.output(lk, "lk");
  b.output(la, "la");
  b.output(sm);
  return std::move(b).build();
}

// A few nodes only: for exhaustive truncation and bit flips.
Circuit small_circuit() {
  CircuitBuilder b;
  const Value x = b.input({2}, 3, false, "x");
  const Value s = b.dot(x, {2, -1}, "d");
  b.output(b.lookup(s, [](std::int64_t v) { return v * v; }, "sq"), "y");
  return std::move(b).build();
}

CompiledCircuit compiled_toy(const Circuit& c) {
  return compile_with_parameters(c, tfhe::toy::exact_set(std::max(analyze(c).statistics.max_lookup_precision, 1u)));
}

// Runs a load, classifying the outcome: nullopt-like (false) for CircuitFormatError, true
// when it loaded; any other exception is a failure.
template <class F>
bool loads(F&& load, const char* context) {
  try {
    load();
    return true;
  } catch (const CircuitFormatError&) {
    return false;
  } catch (const std::exception& e) {
    ADD_FAILURE() << context << ": a load threw something other than CircuitFormatError: " << e.what();
    return false;
  }
}

std::string format_error(const std::function<void()>& f) { return veil::test_support::error_of<CircuitFormatError>(f); }

// ---------------------------------------------------------------- round trips and layout

TEST(CircuitSerialization, EveryOpKindRoundTrips) {
  const Circuit c = every_op_circuit();
  std::set<OpKind> kinds;
  for (const Node& n : c.nodes) kinds.insert(n.kind);
  EXPECT_EQ(kinds.size(), static_cast<std::size_t>(kMaxOpKind));
  const Bytes bytes = serialize_circuit(c);
  const Circuit back = deserialize_circuit(bytes);
  EXPECT_EQ(back, c);
  EXPECT_EQ(serialize_circuit(back), bytes);
  // And the calibrated circuit, with range hints on most nodes.
  std::vector<Tensor> sample = {Tensor::filled({1, 2, 4, 4}, 1), Tensor::filled({2, 4}, -1)};
  const Circuit cal = calibrate(c, {sample});
  EXPECT_EQ(deserialize_circuit(serialize_circuit(cal)), cal);
  EXPECT_EQ(run_clear(back, sample), run_clear(c, sample));
}

TEST(CircuitSerialization, HeaderFields) {
  const Circuit c = small_circuit();
  const Bytes f = serialize_circuit(c);
  ASSERT_GE(f.size(), kHeader);
  EXPECT_EQ(std::string(f.begin(), f.begin() + 8), "VEILCIRC");
  EXPECT_EQ(get_le(f, kOffMajor, 2), kCircuitFormatMajor);
  EXPECT_EQ(get_le(f, kOffMinor, 2), kCircuitFormatMinor);
  EXPECT_EQ(kCircuitFormatMajor, 1);
  EXPECT_EQ(kCircuitFormatMinor, 2);
  EXPECT_EQ(get_le(f, kOffType, 2), 1u);
  EXPECT_EQ(get_le(f, kOffReserved16, 2), 0u);
  EXPECT_EQ(get_le(f, kOffParamId, 8), 0u);
  EXPECT_EQ(get_le(f, kOffLength, 8), f.size() - kHeader);
  const auto digest = sha256(f.data() + kHeader, f.size() - kHeader);
  EXPECT_TRUE(std::equal(digest.begin(), digest.begin() + 16, f.begin() + kOffChecksum));
  EXPECT_TRUE(std::all_of(f.begin() + kOffReserved, f.begin() + kHeader, [](std::uint8_t v) { return v == 0; }));

  const CompiledCircuit cc = compiled_toy(c);
  const Bytes g = serialize_compiled_circuit(cc);
  EXPECT_EQ(std::string(g.begin(), g.begin() + 8), "VEILCIRC");
  EXPECT_EQ(get_le(g, kOffType, 2), 2u);
  EXPECT_EQ(get_le(g, kOffParamId, 8), cc.params.id());
  EXPECT_EQ(get_le(g, kOffLength, 8), g.size() - kHeader);
}

TEST(CircuitSerialization, PayloadIsTheDocumentedLayout) {
  for (const Circuit& c : {small_circuit(), every_op_circuit(),
                           calibrate(every_op_circuit(), {{Tensor::filled({1, 2, 4, 4}, 3), Tensor::filled({2, 4}, 2)}})}) {
    Encoder e;
    encode_circuit(e, c);
    const Bytes f = serialize_circuit(c);
    ASSERT_EQ(f.size(), kHeader + e.out.size());
    EXPECT_TRUE(std::equal(e.out.begin(), e.out.end(), f.begin() + kHeader));
    EXPECT_EQ(seal(1, 0, e.out), f);
  }
  const CompiledCircuit cc = compiled_toy(every_op_circuit());
  Encoder e;
  encode_circuit(e, cc.circuit);
  encode_compiled_tail(e, cc);
  EXPECT_EQ(seal(2, cc.params.id(), e.out), serialize_compiled_circuit(cc));
}

// The worked example of docs/formats/circuit.md, byte for byte.
TEST(CircuitSerialization, TheDocumentedExample) {
  CircuitBuilder b;
  b.output(b.input({2}, 3, false, "x"), "y");
  const Bytes want = {
      0x56, 0x45, 0x49, 0x4c, 0x43, 0x49, 0x52, 0x43, 0x01, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00,  //
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x89, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //
      0x72, 0x95, 0xa4, 0x35, 0xb1, 0x44, 0x4b, 0x23, 0x2a, 0xbf, 0x2b, 0xdf, 0xb2, 0x5b, 0x14, 0xcf,  //
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //
      1, 0, 0, 0, 0, 0, 0, 0,                                                                          // 1 node
      1, 0,                                                                                            // input
      0, 0, 0, 0, 0, 0, 0, 0,                                                                          // 0 operands
      1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,                                                  // shape [2]
      4, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                          // {3, 0,
      0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0,                                                  //  0, 7}
      0, 0, 0, 0, 0, 0, 0, 0,                                                                          // constant []
      1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                                                  // {0}
      0, 0, 0, 0, 0, 0, 0, 0,                                                                          // 0 tables
      0, 0, 0, 0, 0, 0, 0, 0,                                                                          // no index
      0,                                                                                               // no hint
      1, 0, 0, 0, 'x',                                                                                 // name
      1, 0, 0, 0, 0, 0, 0, 0,                                                                          // 1 output
      0, 0, 0, 0, 1, 0, 0, 0, 'y'};                                                                    // node 0, "y"
  EXPECT_EQ(serialize_circuit(std::move(b).build()), want);
}

TEST(CircuitSerialization, CompiledCircuitsRoundTrip) {
  // With lookups (a toy set: nothing here generates keys) ...
  const CompiledCircuit toy = compiled_toy(every_op_circuit());
  const CompiledCircuit back = deserialize_compiled_circuit(serialize_compiled_circuit(toy));
  EXPECT_EQ(back.circuit, toy.circuit);
  EXPECT_EQ(back.params, toy.params);
  EXPECT_EQ(back.params.id(), toy.params.id());
  EXPECT_EQ(back.encoding_width(), toy.encoding_width());
  EXPECT_TRUE(back.uses_bootstrapping);
  EXPECT_EQ(back.analysis.statistics.total_pbs, toy.analysis.statistics.total_pbs);
  // ... and a levelled circuit with the set compile() chose for it.
  CircuitBuilder b;
  const Value x = b.input({3}, 10, true, "x");
  b.output(b.add(b.matmul(x, Tensor({3, 2}, {7, -3, 100, 1, -50, 2})), Tensor::vector({1000, -1})), "y");
  const CompiledCircuit lin = compile(std::move(b).build());
  ASSERT_FALSE(lin.uses_bootstrapping);
  const CompiledCircuit lin_back = deserialize_compiled_circuit(serialize_compiled_circuit(lin));
  EXPECT_EQ(lin_back.circuit, lin.circuit);
  EXPECT_EQ(lin_back.params.id(), lin.params.id());
  EXPECT_EQ(lin_back.params, lin.params);
  EXPECT_EQ(lin_back.encoding_width(), lin.encoding_width());
  EXPECT_FALSE(lin_back.uses_bootstrapping);
}

TEST(CircuitSerialization, SerializeRefusesAnInvalidCircuit) {
  Circuit c = small_circuit();
  c.nodes[1].operands[0] = 9;
  EXPECT_THROW(serialize_circuit(c), std::invalid_argument);
}

// ---------------------------------------------------------------- truncation and corruption

TEST(CircuitSerialization, TruncationAtEveryLengthIsRefused) {
  const Bytes f = serialize_circuit(small_circuit());
  for (std::size_t len = 0; len < f.size(); ++len) {
    const Bytes cut(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_FALSE(loads([&] { deserialize_circuit(cut); }, "truncated circuit")) << "length " << len;
    // A forger who also fixes the header: the payload itself is incomplete.
    if (len >= kHeader) {
      Bytes sealed = cut;
      reseal(sealed);
      EXPECT_FALSE(loads([&] { deserialize_circuit(sealed); }, "resealed truncated circuit")) << "length " << len;
    }
  }
  const Bytes g = serialize_compiled_circuit(compiled_toy(small_circuit()));
  for (std::size_t len = 0; len < g.size(); ++len) {
    Bytes cut(g.begin(), g.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_FALSE(loads([&] { deserialize_compiled_circuit(cut); }, "truncated compiled")) << "length " << len;
    if (len >= kHeader) {
      reseal(cut);
      EXPECT_FALSE(loads([&] { deserialize_compiled_circuit(cut); }, "resealed truncated compiled")) << "length " << len;
    }
  }
}

TEST(CircuitSerialization, EveryPayloadBitFlipIsCaught) {
  const Bytes f = serialize_circuit(small_circuit());
  for (std::size_t i = kHeader; i < f.size(); ++i)
    for (int bit = 0; bit < 8; ++bit) {
      Bytes g = f;
      g[i] ^= static_cast<std::uint8_t>(1u << bit);
      ASSERT_FALSE(loads([&] { deserialize_circuit(g); }, "bit flip")) << "byte " << i << " bit " << bit;
    }
}

// Header bytes a reader of this version does not interpret: the two reserved fields and, in
// a circuit frame, the parameter id.
bool is_uninterpreted_header_byte(std::size_t i, bool compiled) {
  return i == kOffReserved16 || i == kOffReserved16 + 1 || (i >= kOffReserved && i < kHeader) ||
         (!compiled && i >= kOffParamId && i < kOffParamId + 8);
}

TEST(CircuitSerialization, RandomCorruptionsAreRefused) {
  std::mt19937_64 rng(0xC1C0FFEE);
  const Circuit c = every_op_circuit();
  const CompiledCircuit cc = compiled_toy(small_circuit());
  const Bytes frames[2] = {serialize_circuit(c), serialize_compiled_circuit(cc)};
  for (int which = 0; which < 2; ++which) {
    const bool compiled = which == 1;
    const Bytes& f = frames[which];
    int accepted = 0;
    for (int trial = 0; trial < 3000; ++trial) {
      Bytes g = f;
      const int flips = 1 + static_cast<int>(rng() % 4);
      std::vector<std::size_t> where;
      for (int k = 0; k < flips; ++k) {
        // Half the flips in the header, where each field has its own check.
        const std::size_t i = (rng() & 1) ? rng() % kHeader : rng() % g.size();
        g[i] ^= static_cast<std::uint8_t>(1 + rng() % 255);
        where.push_back(i);
      }
      if (g == f) continue;
      bool ok = false;
      if (compiled) {
        ok = loads(
            [&] {
              const CompiledCircuit back = deserialize_compiled_circuit(g);
              ASSERT_EQ(back.circuit, cc.circuit);
              ASSERT_EQ(back.params, cc.params);
            },
            "corrupted compiled");
      } else {
        ok = loads([&] { ASSERT_EQ(deserialize_circuit(g), c); }, "corrupted circuit");
      }
      if (ok) {
        // Only bytes no check reads may differ in an accepted frame, and it must be the same object.
        ++accepted;
        for (std::size_t i = 0; i < g.size(); ++i)
          if (g[i] != f[i]) {
            EXPECT_TRUE(is_uninterpreted_header_byte(i, compiled)) << "accepted a change at byte " << i;
          }
      }
    }
    RecordProperty(compiled ? "accepted_compiled" : "accepted_circuit", accepted);
  }
}

// Payloads mutated and resealed: the loader must refuse them with CircuitFormatError or
// return a circuit that is well formed (validate_circuit) and re-serializes to exactly the
// bytes it was read from. Never a crash, never another exception.
TEST(CircuitSerialization, ForgedPayloadsAreValidatedOnTheirOwn) {
  std::mt19937_64 rng(0xF0F0A11);
  const Bytes f = serialize_circuit(every_op_circuit());
  const std::uint64_t interesting[] = {0, 1, 2, 3, 7, 8, 255, 4096, 4097, 65536, std::uint64_t{1} << 24,
                                       (std::uint64_t{1} << 24) + 1, std::uint64_t{1} << 32, std::uint64_t{1} << 62,
                                       std::uint64_t{1} << 63, ~std::uint64_t{0}, ~std::uint64_t{0} - 1};
  int accepted = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    Bytes g = f;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < edits && g.size() > kHeader; ++k) {
      const std::size_t i = kHeader + rng() % (g.size() - kHeader);
      switch (rng() % 4) {
        case 0:  // a random byte
          g[i] = static_cast<std::uint8_t>(rng());
          break;
        case 1:  // one bit
          g[i] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
          break;
        case 2:  // an interesting 64-bit value at an arbitrary offset (often a count field)
          if (i + 8 <= g.size()) set_le(g, i, interesting[rng() % std::size(interesting)], 8);
          break;
        default:  // cut or grow the payload
          if (rng() & 1)
            g.resize(i);
          else
            g.insert(g.begin() + static_cast<std::ptrdiff_t>(i), static_cast<std::uint8_t>(rng()));
          break;
      }
    }
    reseal(g);
    g_largest_allocation = 0;
    g_watch_allocations = true;
    Circuit back;
    const bool ok = loads([&] { back = deserialize_circuit(g); }, "forged payload");
    g_watch_allocations = false;
    EXPECT_LT(g_largest_allocation, std::size_t{64} << 20) << "trial " << trial;
    if (ok) {
      ++accepted;
      EXPECT_NO_THROW(validate_circuit(back)) << "trial " << trial;
      EXPECT_EQ(serialize_circuit(back), g) << "trial " << trial;
    }
  }
  RecordProperty("accepted", accepted);
}

TEST(CircuitSerialization, ForgedCompiledPayloadsAreValidatedOnTheirOwn) {
  std::mt19937_64 rng(0xC0411ED);
  const CompiledCircuit cc = compiled_toy(small_circuit());
  const Bytes f = serialize_compiled_circuit(cc);
  for (int trial = 0; trial < 1500; ++trial) {
    Bytes g = f;
    const std::size_t i = kHeader + rng() % (g.size() - kHeader);
    if (rng() % 3 == 0 && i + 8 <= g.size())
      set_le(g, i, std::uint64_t{1} << (rng() % 64), 8);
    else
      g[i] ^= static_cast<std::uint8_t>(1 + rng() % 255);
    reseal(g);
    loads([&] { deserialize_compiled_circuit(g); }, "forged compiled payload");
  }
}

// ---------------------------------------------------------------- header checks

TEST(CircuitSerialization, HeaderChecks) {
  const Bytes f = serialize_circuit(small_circuit());
  const Bytes g = serialize_compiled_circuit(compiled_toy(small_circuit()));
  ASSERT_NO_THROW(deserialize_circuit(f));
  ASSERT_NO_THROW(deserialize_compiled_circuit(g));
  {
    Bytes h = f;
    std::copy_n("VEILTFHE", 8, h.begin());
    EXPECT_TRUE(has(format_error([&] { deserialize_circuit(h); }), "magic"));
  }
  {
    Bytes h = f;
    set_le(h, kOffMinor, kCircuitFormatMinor + 1, 2);  // a newer minor version
    const std::string e = format_error([&] { deserialize_circuit(h); });
    EXPECT_TRUE(has(e, "1." + std::to_string(kCircuitFormatMinor + 1))) << e;
    Bytes k = g;
    set_le(k, kOffMinor, kCircuitFormatMinor + 1, 2);
    EXPECT_FALSE(loads([&] { deserialize_compiled_circuit(k); }, "newer minor"));
  }
  {
    Bytes h = f;
    for (std::uint64_t older = 0; older < kCircuitFormatMinor; ++older) {  // older minors read alike
      set_le(h, kOffMinor, older, 2);
      EXPECT_EQ(deserialize_circuit(h), deserialize_circuit(f)) << older;
    }
  }
  for (std::uint64_t major : {0u, 2u, 0xFFFFu}) {
    Bytes h = f;
    set_le(h, kOffMajor, major, 2);
    EXPECT_TRUE(has(format_error([&] { deserialize_circuit(h); }), "version")) << major;
  }
  // Circuit and compiled circuit are not interchangeable; unknown types are refused.
  EXPECT_TRUE(has(format_error([&] { deserialize_compiled_circuit(f); }), "type"));
  EXPECT_TRUE(has(format_error([&] { deserialize_circuit(g); }), "type"));
  for (std::uint64_t type : {0u, 3u, 13u, 0xFFFFu}) {
    Bytes h = f;
    set_le(h, kOffType, type, 2);
    EXPECT_FALSE(loads([&] { deserialize_circuit(h); }, "type")) << type;
    EXPECT_FALSE(loads([&] { deserialize_compiled_circuit(h); }, "type")) << type;
  }
  // Too short for a header.
  for (std::size_t len : {0u, 1u, 8u, 63u}) {
    const Bytes h(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_FALSE(loads([&] { deserialize_circuit(h); }, "short")) << len;
  }
  // Trailing bytes after the last field, with the header and checksum made consistent.
  {
    Bytes h = f;
    h.push_back(0);
    EXPECT_FALSE(loads([&] { deserialize_circuit(h); }, "trailing, stale header"));
    reseal(h);
    EXPECT_TRUE(has(format_error([&] { deserialize_circuit(h); }), "unexpected bytes"));
    Bytes k = g;
    k.push_back(0);
    reseal(k);
    EXPECT_FALSE(loads([&] { deserialize_compiled_circuit(k); }, "trailing compiled"));
  }
  // The checksum field itself.
  {
    Bytes h = f;
    h[kOffChecksum + 5] ^= 0x10;
    EXPECT_TRUE(has(format_error([&] { deserialize_circuit(h); }), "checksum"));
  }
}

TEST(CircuitSerialization, MaxBytesLimit) {
  const Bytes f = serialize_circuit(small_circuit());
  EXPECT_NO_THROW(deserialize_circuit(f, f.size()));
  EXPECT_TRUE(has(format_error([&] { deserialize_circuit(f, f.size() - 1); }), "limit"));
  EXPECT_FALSE(loads([&] { deserialize_circuit(f, 0); }, "max_bytes 0"));
  const Bytes g = serialize_compiled_circuit(compiled_toy(small_circuit()));
  EXPECT_NO_THROW(deserialize_compiled_circuit(g, g.size()));
  EXPECT_TRUE(has(format_error([&] { deserialize_compiled_circuit(g, g.size() - 1); }), "limit"));
  EXPECT_EQ(kDefaultMaxCircuitBytes, std::uint64_t{1} << 30);
}

TEST(CircuitSerialization, PayloadLengthMustMatchTheData) {
  const Bytes f = serialize_circuit(small_circuit());
  const std::uint64_t actual = f.size() - kHeader;
  for (std::uint64_t claimed : {actual + 1, actual - 1, std::uint64_t{0}, std::uint64_t{1} << 40,
                                std::uint64_t{1} << 63, ~std::uint64_t{0}}) {
    Bytes h = f;
    set_le(h, kOffLength, claimed, 8);
    g_largest_allocation = 0;
    g_watch_allocations = true;
    const std::string e = format_error([&] { deserialize_circuit(h); });
    g_watch_allocations = false;
    EXPECT_TRUE(has(e, "payload")) << e;
    EXPECT_LT(g_largest_allocation, std::size_t{1} << 16) << "claimed " << claimed;
  }
}

// A payload whose checksum is right but one count field claims far more items than the
// bytes left (or more than the field's limit): refused before anything of that size is
// allocated.
TEST(CircuitSerialization, HugeCountsAreRefusedWithoutAllocating) {
  const Circuit c = every_op_circuit();
  Encoder e;
  encode_circuit(e, c);
  ASSERT_EQ(seal(1, 0, e.out), serialize_circuit(c));
  const std::vector<std::string> u64_fields = {"node count", "operand count", "rank", "attribute count",
                                               "constant rank", "constant element count", "table count",
                                               "table entry count", "table index count", "output count"};
  // The field (of `bytes` bytes) claiming `claim`: refused, and nothing near it allocated.
  const auto expect_refused = [&](const std::string& field, std::uint64_t claim, int bytes) {
    Bytes payload = e.out;
    set_le(payload, e.offsets.at(field), claim, bytes);
    const Bytes frame = seal(1, 0, payload);
    g_largest_allocation = 0;
    g_watch_allocations = true;
    const bool ok = loads([&] { deserialize_circuit(frame); }, field.c_str());
    g_watch_allocations = false;
    EXPECT_FALSE(ok) << field << " = " << claim;
    EXPECT_LT(g_largest_allocation, std::size_t{1} << 20) << field << " = " << claim;
  };
  for (const std::string& field : u64_fields) {
    ASSERT_TRUE(e.offsets.count(field)) << field;
    for (std::uint64_t claim : {std::uint64_t{1} << 16, std::uint64_t{1} << 24, std::uint64_t{1} << 32,
                                std::uint64_t{1} << 48, std::uint64_t{1} << 63, ~std::uint64_t{0}})
      expect_refused(field, claim, 8);
  }
  for (const std::string& field : {std::string("node name length"), std::string("output name length")}) {
    ASSERT_TRUE(e.offsets.count(field)) << field;
    for (std::uint64_t claim : {std::uint64_t{4097}, std::uint64_t{1} << 20, std::uint64_t{0xFFFFFFFF}})
      expect_refused(field, claim, 4);
  }
  // The embedded parameter set of a compiled circuit.
  const CompiledCircuit cc = compiled_toy(c);
  Encoder ce;
  encode_circuit(ce, cc.circuit);
  encode_compiled_tail(ce, cc);
  ASSERT_EQ(seal(2, cc.params.id(), ce.out), serialize_compiled_circuit(cc));
  for (std::uint64_t claim : {std::uint64_t{1} << 32, (std::uint64_t{1} << 32) + 1, std::uint64_t{1} << 63}) {
    Bytes payload = ce.out;
    set_le(payload, ce.offsets.at("parameter set length"), claim, 8);
    const Bytes frame = seal(2, cc.params.id(), payload);
    g_largest_allocation = 0;
    g_watch_allocations = true;
    const bool ok = loads([&] { deserialize_compiled_circuit(frame); }, "parameter set length");
    g_watch_allocations = false;
    EXPECT_FALSE(ok) << claim;
    EXPECT_LT(g_largest_allocation, std::size_t{1} << 20) << claim;
  }
}

TEST(CircuitSerialization, PayloadFieldChecks) {
  const Circuit c = small_circuit();
  Encoder e;
  encode_circuit(e, c);
  const auto refused = [&](const std::function<void(Bytes&)>& edit, const char* expect) {
    Bytes payload = e.out;
    edit(payload);
    const std::string msg = format_error([&] { deserialize_circuit(seal(1, 0, payload)); });
    EXPECT_TRUE(has(msg, expect)) << msg;
  };
  refused([&](Bytes& p) { set_le(p, e.offsets.at("kind"), 0, 2); }, "kind");
  refused([&](Bytes& p) { set_le(p, e.offsets.at("kind"), kMaxOpKind + 1, 2); }, "kind");
  refused([&](Bytes& p) { p[e.offsets.at("range hint flag")] = 2; }, "range hint");
  // A well-formed encoding of an invalid circuit: the replay through the builder names the node.
  Circuit bad = c;
  bad.nodes[3].tables[0].values.pop_back();  // x, the dot's matmul and reshape, then the lookup
  Encoder be;
  encode_circuit(be, bad);
  const std::string msg = format_error([&] { deserialize_circuit(seal(1, 0, be.out)); });
  EXPECT_TRUE(has(msg, "lookup 'sq' (node 3)")) << msg;
}

TEST(CircuitSerialization, CompiledFrameChecks) {
  const CompiledCircuit cc = compiled_toy(every_op_circuit());
  const Bytes f = serialize_compiled_circuit(cc);
  {
    // The header's parameter id must be the embedded set's.
    Bytes g = f;
    set_le(g, kOffParamId, cc.params.id() ^ 1, 8);
    EXPECT_TRUE(has(format_error([&] { deserialize_compiled_circuit(g); }), "parameter set"));
  }
  Encoder e;
  encode_circuit(e, cc.circuit);
  encode_compiled_tail(e, cc);
  {
    // The stored encoding width must be what the analysis gives.
    Bytes p = e.out;
    set_le(p, e.offsets.at("encoding width"), cc.encoding_width() + 1, 4);
    EXPECT_TRUE(has(format_error([&] { deserialize_compiled_circuit(seal(2, cc.params.id(), p)); }), "encoding width"));
  }
  {
    // A corrupted embedded parameter set (its own checksum fails).
    Bytes p = e.out;
    p[e.offsets.at("parameter set length") + 8 + 64 + 3] ^= 1;
    EXPECT_TRUE(has(format_error([&] { deserialize_compiled_circuit(seal(2, cc.params.id(), p)); }), "parameter set"));
  }
  {
    // An invalid set, consistently framed (if the engine writes it at all): refused.
    tfhe::ParameterSet broken = cc.params;
    broken.polynomial_size = tfhe::PolynomialSize(100);
    CompiledCircuit other = cc;
    other.params = broken;
    Encoder o;
    encode_circuit(o, cc.circuit);
    bool written = true;
    try {
      encode_compiled_tail(o, other);
    } catch (const std::invalid_argument&) {
      written = false;
    }
    if (written) {
      EXPECT_FALSE(loads([&] { deserialize_compiled_circuit(seal(2, broken.id(), o.out)); }, "invalid parameter set"));
    }
  }
}

// The header layout reserves fields "= 0" and gives a circuit frame parameter id 0; the
// engine's frames refuse anything else there (docs/formats/tfhe.md, loading check 5), and
// so should these.
TEST(CircuitSerialization, ReservedHeaderFieldsAndCircuitParameterIdMustBeZero) {
  const Bytes f = serialize_circuit(small_circuit());
  for (std::size_t i : {kOffReserved16, kOffReserved16 + 1, kOffReserved, kOffReserved + 15, kOffParamId,
                        kOffParamId + 7}) {
    Bytes g = f;
    g[i] = 1;
    EXPECT_FALSE(loads([&] { deserialize_circuit(g); }, "reserved")) << "byte " << i;
  }
  const Bytes c = serialize_compiled_circuit(compiled_toy(small_circuit()));
  for (std::size_t i : {kOffReserved16, kOffReserved + 7}) {
    Bytes g = c;
    g[i] = 1;
    EXPECT_FALSE(loads([&] { deserialize_compiled_circuit(g); }, "reserved compiled")) << "byte " << i;
  }
}

// Whatever serialize_circuit accepts, deserialize_circuit must read back (or serialize must
// refuse it): a model saved by a server must load.
TEST(CircuitSerialization, LongOutputNamesRoundTripOrAreRefused) {
  CircuitBuilder b;
  const Value x = b.input({1}, 2, false, "x");
  bool refused = false;
  try {
    b.output(x, std::string(5000, 'o'));
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  if (refused) return;
  const Circuit c = std::move(b).build();
  Bytes f;
  try {
    f = serialize_circuit(c);
  } catch (const std::invalid_argument&) {
    return;  // refused at writing: fine
  }
  EXPECT_TRUE(loads([&] { EXPECT_EQ(deserialize_circuit(f), c); }, "long output name"))
      << "a 5000-byte output name is written but cannot be read back";
}

TEST(CircuitSerialization, WideConcatsRoundTripOrAreRefused) {
  CircuitBuilder b;
  const Value x = b.input({1}, 2, false, "x");
  std::vector<Value> parts(70000, x);
  Value cat{};
  try {
    cat = b.concat(parts, 0, "wide");
  } catch (const std::invalid_argument&) {
    return;  // refused at building: fine
  }
  b.output(cat, "y");
  const Circuit c = std::move(b).build();
  Bytes f;
  try {
    f = serialize_circuit(c);
  } catch (const std::invalid_argument&) {
    return;
  }
  EXPECT_TRUE(loads([&] { EXPECT_EQ(deserialize_circuit(f), c); }, "wide concat"))
      << "a concat of 70000 operands is written but cannot be read back";
}

}  // namespace
}  // namespace veil::circuit
