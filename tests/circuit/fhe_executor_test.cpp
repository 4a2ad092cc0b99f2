// FHE execution equals clear execution: random circuits and hand-written ones, under toy
// (insecure, nearly noise-free, fast) parameter sets. Equivalence under real compiled
// parameters is in fhe_compiled_test.cpp (label slow).
#include <gtest/gtest.h>

#include <bit>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "../tfhe/toy_parameters.hpp"
#include "veil/circuit/clear_executor.hpp"
#include "veil/circuit/fhe_executor.hpp"
#include "veil/circuit/serialization.hpp"

namespace veil::circuit {
namespace {

struct Keys {
  tfhe::SecretKeys secret;
  tfhe::EvaluationKeys evaluation;
};

// Toy keys for a lookup precision, generated once per test binary.
const Keys& toy_keys(unsigned precision) {
  static std::map<unsigned, std::unique_ptr<Keys>> cache;
  auto& slot = cache[precision];
  if (!slot) {
    const tfhe::ParameterSet params = tfhe::toy::exact_set(std::max(precision, 1u));
    auto secret = tfhe::generate_secret_keys(params, /*allow_insecure=*/true);
    auto evaluation = tfhe::expand_evaluation_keys(tfhe::generate_seeded_evaluation_keys(secret));
    slot = std::make_unique<Keys>(Keys{std::move(secret), std::move(evaluation)});
  }
  return *slot;
}

CompiledCircuit compile_toy(const Circuit& c) {
  const CircuitAnalysis a = analyze(c);
  return compile_with_parameters(c, tfhe::toy::exact_set(std::max(a.statistics.max_lookup_precision, 1u)));
}

std::mt19937_64& rng() {
  static std::mt19937_64 r(0x5eedc1c);
  return r;
}

std::int64_t uniform(std::int64_t lo, std::int64_t hi) {
  return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng());
}

std::vector<Tensor> random_inputs(const Circuit& c) {
  std::vector<Tensor> inputs;
  for (std::uint32_t id : c.inputs()) {
    const Node& n = c.nodes[id];
    Tensor t = Tensor::filled(n.shape, 0);
    const InputAttributes& a = std::get<InputAttributes>(n.attributes);
    for (auto& v : t.data) v = uniform(a.lo, a.hi);
    inputs.push_back(std::move(t));
  }
  return inputs;
}

// Runs `c` in the clear and under encryption on `samples` random inputs; every output element
// must be equal, run one sample at a time and all samples as one wave (run_rows).
void expect_fhe_equals_clear(const Circuit& c, int samples, const std::vector<Tensor>* fixed = nullptr) {
  const CompiledCircuit cc = compile_toy(c);
  const Keys& keys = toy_keys(std::max(cc.analysis.statistics.max_lookup_precision, 1u));
  const FheExecutor executor(cc, &keys.evaluation);
  const auto expect_equal = [](const std::vector<Tensor>& got, const std::vector<Tensor>& expected, int s) {
    ASSERT_EQ(got.size(), expected.size());
    for (std::size_t o = 0; o < got.size(); ++o) {
      ASSERT_EQ(got[o].shape, expected[o].shape);
      for (std::size_t e = 0; e < got[o].data.size(); ++e)
        ASSERT_EQ(got[o].data[e], expected[o].data[e]) << "output " << o << " element " << e << " sample " << s;
    }
  };
  std::vector<std::vector<Tensor>> expected;
  std::vector<std::vector<EncryptedTensor>> rows;
  for (int s = 0; s < samples; ++s) {
    const std::vector<Tensor> inputs = fixed ? *fixed : random_inputs(c);
    expected.push_back(run_clear(c, inputs));
    ExecutionStats stats;
    rows.push_back(expand_inputs(cc, encrypt_inputs(cc, keys.secret, inputs)));
    expect_equal(decrypt_outputs(cc, keys.secret, executor.run(rows.back(), &stats)), expected.back(), s);
    EXPECT_EQ(stats.pbs, cc.analysis.statistics.total_pbs);
  }
  // The wave: these rows and two random ones, so that it always holds distinct rows.
  for (int extra = 0; extra < 2; ++extra) {
    const std::vector<Tensor> inputs = random_inputs(c);
    expected.push_back(run_clear(c, inputs));
    rows.push_back(expand_inputs(cc, encrypt_inputs(cc, keys.secret, inputs)));
  }
  ExecutionStats stats;
  int steps = 0;
  const auto waves = executor.run_rows(rows, &keys.evaluation, &stats, [&] { ++steps; });
  ASSERT_EQ(waves.size(), rows.size());
  for (std::size_t s = 0; s < rows.size(); ++s)
    expect_equal(decrypt_outputs(cc, keys.secret, waves[s]), expected[s], static_cast<int>(s));
  EXPECT_EQ(stats.pbs, static_cast<std::int64_t>(rows.size()) * cc.analysis.statistics.total_pbs);
  EXPECT_EQ(static_cast<std::size_t>(steps), c.nodes.size() - c.inputs().size());
}

Table random_table(std::int64_t domain_min, unsigned shift, std::size_t entries, std::int64_t lo, std::int64_t hi) {
  Table t{domain_min, shift, {}};
  for (std::size_t i = 0; i < entries; ++i) t.values.push_back(uniform(lo, hi));
  return t;
}

// ---------------------------------------------------------------- hand-written circuits

TEST(FheExecutor, DotProduct) {
  CircuitBuilder b;
  const Value x = b.input({6}, 4, /*is_signed=*/true, "x");
  b.output(b.dot(x, {3, -2, 0, 7, -5, 1}), "y");
  expect_fhe_equals_clear(std::move(b).build(), 4);
}

TEST(FheExecutor, LevelledOnlyCircuitNeedsNoEvaluationKeys) {
  CircuitBuilder b;
  const Value x = b.input({4}, 8, false, "x");
  b.output(b.add(b.matmul(x, Tensor({4, 2}, {100, -3, 7, 250, -128, 0, 1, 1})), Tensor::vector({5000, -7})));
  const CompiledCircuit cc = compile(std::move(b).build());
  ASSERT_FALSE(cc.uses_bootstrapping);
  const auto secret = tfhe::generate_secret_keys(cc.params);  // the real, secure levelled set
  const FheExecutor executor(cc, nullptr);
  for (int s = 0; s < 5; ++s) {
    const auto inputs = random_inputs(cc.circuit);
    const auto got = decrypt_outputs(cc, secret, executor.run(expand_inputs(cc, encrypt_inputs(cc, secret, inputs))));
    EXPECT_EQ(got, run_clear(cc.circuit, inputs));
  }
}

TEST(FheExecutor, MlpLayerWithReluAndExactRounding) {
  CircuitBuilder b;
  const Value x = b.input({1, 5}, 3, true, "x");
  Tensor w({5, 3}, {1, -2, 3, 0, 2, -1, 3, 1, 1, -3, 0, 2, 1, 1, -1});
  const Value acc = b.add(b.matmul(x, w), Tensor({3}, {2, -1, 0}), "acc");
  // acc spans about 7 bits; drop 2 exactly, then a 5-bit ReLU that requantizes.
  const Value r = b.round_bits(acc, 2, RoundingMode::kNearest, "round");
  b.output(b.lookup(r, [](std::int64_t v) { return v > 0 ? v / 4 : 0; }, "relu"), "h");
  expect_fhe_equals_clear(std::move(b).build(), 4);
}

TEST(FheExecutor, ConvWithPerChannelTables) {
  CircuitBuilder b;
  const Value x = b.input({1, 1, 4, 4}, 2, false, "image");
  Tensor w({3, 1, 2, 2}, {1, 1, 1, 1, 1, -1, 0, 2, -1, 0, 0, 1});
  Conv2dOptions o;
  o.pad_top = o.pad_left = 1;
  const Value y = b.conv2d(x, w, o, "conv");
  std::vector<TableFunction> fs = {
      [](std::int64_t v) { return std::max<std::int64_t>(v, 0); },
      [](std::int64_t v) { return v * v % 7; },
      [](std::int64_t v) { return -v; },
  };
  b.output(b.lookup_per_channel(y, 1, fs, "act"));
  expect_fhe_equals_clear(std::move(b).build(), 2);
}

TEST(FheExecutor, TreeComparisonMatrix) {
  // A depth-2 tree on 3 features: node tests x[f] <= t as 1-bit lookups, path matrix,
  // leaf selection by equality with the path length, leaf values by a matmul.
  CircuitBuilder b;
  const Value x = b.input({3}, 4, false, "x");
  const Value tested = b.matmul(x, Tensor({3, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1}), "select");  // features of nodes 0..2
  std::vector<Table> le;
  for (std::int64_t t : {7, 3, 11}) {
    Table tab{0, 0, {}};
    for (std::int64_t v = 0; v < 16; ++v) tab.values.push_back(v <= t ? 1 : 0);
    le.push_back(tab);
  }
  const Value bits = b.lookup_per_element(tested, le, {0, 1, 2}, "compare");
  // Leaves: LL (n0 & n1), LR (n0 & !n1), RL (!n0 & n2), RR (!n0 & !n2): path sums with biases
  // so that the reached leaf scores exactly 2.
  const Value score = b.add(b.matmul(bits, Tensor({3, 4}, {1, 1, -1, -1, 1, -1, 0, 0, 0, 0, 1, -1})),
                            Tensor::vector({0, 1, 1, 2}), "paths");
  const Value hit = b.lookup(score, [](std::int64_t v) { return v == 2 ? 1 : 0; }, "leaf");
  b.output(b.matmul(hit, Tensor({4, 1}, {10, -20, 30, 5})), "value");
  const Circuit c = std::move(b).build();
  for (std::int64_t a = 0; a < 16; a += 5)
    for (std::int64_t z = 0; z < 16; z += 7) {
      const std::vector<Tensor> in = {Tensor::vector({a, 9, z})};
      const std::int64_t want = a <= 7 ? (9 <= 3 ? 10 : -20) : (z <= 11 ? 30 : 5);
      ASSERT_EQ(run_clear(c, in)[0].data[0], want);
      expect_fhe_equals_clear(c, 1, &in);
    }
}

// Shared rotations (multi-value bootstrapping): columns copying the same input element share
// one blind rotation, each reads its own table from it; a column that is not a copy leads
// itself. Two rows, so that the sharing stays within a row.
TEST(FheExecutor, SharedRotationsServeEveryTableOfACopiedInput) {
  CircuitBuilder b;
  const Value x = b.input({2, 3}, 3, false, "x");
  // Columns: x0, x0, x1, x0, 2*x2 - x1 (not a copy), x1.
  const Value xs = b.matmul(x, Tensor({3, 6}, {1, 1, 0, 1, 0, 0,  //
                                              0, 0, 1, 0, -1, 1,  //
                                              0, 0, 0, 0, 2, 0}),
                            "select");
  // Every table covers the node's range, [-7, 14] (the mixed column's).
  std::vector<Table> tables;
  for (std::int64_t t : {2, 5, 7}) {
    Table step{-7, 0, {}};
    for (std::int64_t v = -7; v <= 14; ++v) step.values.push_back(v < t ? 1 : 0);
    tables.push_back(step);
  }
  Table wide{-7, 0, {}};  // several jumps, negative values
  for (std::int64_t v = -7; v <= 14; ++v) wide.values.push_back((v * 5) % 7 - 3);
  tables.push_back(wide);
  Table up{-7, 0, {}};
  for (std::int64_t v = -7; v <= 14; ++v) up.values.push_back(v >= 4 ? 2 : 0);
  tables.push_back(up);
  const std::vector<std::uint32_t> index = {0, 1, 0, 2, 3, 4, 0, 1, 0, 2, 3, 4};
  const Value c = b.lookup_per_element_shared(xs, tables, index, "compare");
  b.output(c, "bits");
  const Circuit circuit = std::move(b).build();

  const CircuitAnalysis a = analyze(circuit);
  ASSERT_EQ(a.lookups.size(), 1u);
  EXPECT_TRUE(a.lookups[0].shared);
  EXPECT_EQ(a.lookups[0].rotations, 6);  // per row: x0, x1 and the mixed column
  EXPECT_EQ(a.statistics.lookup_pbs, 6);
  EXPECT_EQ(shared_rotation_leaders(circuit, c.id),
            (std::vector<std::uint32_t>{0, 0, 2, 0, 4, 2, 6, 6, 8, 6, 10, 8}));
  // The output noise is the widest table's sum of squared jumps (the wide table's), at
  // least a step's 1: the base (F_0 + F_last) is a clear constant.
  double widest = 0;
  for (const Table& t : tables) widest = std::max(widest, multi_value_norm2(lookup_entries(t, a.lookups[0])));
  EXPECT_DOUBLE_EQ(a.lookups[0].output_sq_norm2, widest);
  EXPECT_DOUBLE_EQ(a.sq_norm2[c.id], widest);
  EXPECT_DOUBLE_EQ(multi_value_norm2({1, 1, 0, 0}), 1.0);
  EXPECT_DOUBLE_EQ(multi_value_norm2({0, 0, 2, 2}), 4.0);
  EXPECT_DOUBLE_EQ(multi_value_norm2({0, 1, 1, 0}), 2.0);
  EXPECT_DOUBLE_EQ(multi_value_norm2({3, 3, 3, 3}), 0.0);
  const MultiValueForm form = multi_value_form({2, 0, 0, 1});
  EXPECT_EQ(form.base, 3);
  ASSERT_EQ(form.jumps.size(), 2u);
  EXPECT_EQ(form.jumps[0].entry, 1u);
  EXPECT_EQ(form.jumps[0].factor, -2);
  EXPECT_EQ(form.jumps[1].entry, 3u);
  EXPECT_EQ(form.jumps[1].factor, 1);

  for (std::int64_t v = 0; v < 8; ++v) {
    const std::vector<Tensor> in = {Tensor({2, 3}, {v, (v * 3) % 8, (v + 5) % 8, 7 - v, v / 2, (v * 7) % 8})};
    expect_fhe_equals_clear(circuit, 1, &in);
  }
  // The same circuit without sharing: one PBS per element.
  CircuitBuilder plain;
  const Value px = plain.input({2, 3}, 3, false, "x");
  plain.output(plain.lookup_per_element(plain.matmul(px, circuit.nodes[xs.id].constant), tables, index), "bits");
  EXPECT_EQ(analyze(std::move(plain).build()).statistics.lookup_pbs, 12);
}

TEST(FheExecutor, ApproximateRoundingReadsOneOfTheTwoNeighbouringMultiples) {
  CircuitBuilder b;
  const Value x = b.input({64}, 10, true, "acc");
  const Value r = b.round_bits(x, 4, RoundingMode::kApproximate, "round");
  const auto f = [](std::int64_t v) { return v / 16 + 100; };
  b.output(b.lookup(b.reshape(r, {8, 8}), f, "requant"));
  const Circuit c = std::move(b).build();
  EXPECT_EQ(analyze(c).statistics.total_pbs, 64);  // the rounding itself costs nothing
  const CompiledCircuit cc = compile_toy(c);
  const Keys& keys = toy_keys(cc.analysis.statistics.max_lookup_precision);
  const FheExecutor executor(cc, &keys.evaluation);
  std::vector<Tensor> in = {Tensor::filled({64}, 0)};
  for (std::size_t e = 0; e < 64; ++e) in[0].data[e] = e < 16 ? uniform(-32, 31) * 16 : uniform(-512, 511);
  const Tensor got = decrypt_outputs(cc, keys.secret, executor.run(expand_inputs(cc, encrypt_inputs(cc, keys.secret, in))))[0];
  for (std::size_t e = 0; e < 64; ++e) {
    const std::int64_t v = in[0].data[e], floor = v & ~std::int64_t{15};
    const std::int64_t y = got.data[e];
    EXPECT_TRUE(y == f(floor) || y == f(floor + 16)) << "input " << v << " read " << y;
    // A multiple of 16 sits half a step away from both ties: it reads itself.
    if (e < 16) EXPECT_EQ(y, f(v)) << "input " << v;
  }
}

// The clear simulation of approximate reads: the noise of the lookup reading the rounding
// (approximate_read_std_dev) drawn at the rounding. Far from a tie the read is the nearest
// multiple, at a tie both neighbours come out, and with no noise it is run_clear.
TEST(ClearSimulation, ApproximateReadsDrawTheirNeighbourOnlyNearATie) {
  CircuitBuilder b;
  const Value x = b.input({2}, 10, true, "acc");
  const Value r = b.round_bits(x, 4, RoundingMode::kApproximate, "round");
  b.output(b.lookup(b.reshape(r, {2}), [](std::int64_t v) { return v / 16 + 100; }, "requant"));
  const Circuit c = std::move(b).build();
  const CompiledCircuit cc = compile_toy(c);
  const std::vector<double> sd = approximate_read_std_dev(cc);
  ASSERT_EQ(sd.size(), c.nodes.size());
  for (std::uint32_t id = 0; id < c.nodes.size(); ++id) {
    if (id == r.id) {
      EXPECT_GT(sd[id], 0.0);
      EXPECT_LT(sd[id], 8.0 / 5);  // the toy set reads a step's centre right (p_error far below 2^-10)
    } else {
      EXPECT_EQ(sd[id], 0.0) << c.describe_node(id);
    }
  }
  std::mt19937_64 gen(7);
  const std::vector<Tensor> in = {Tensor::vector({-48, 40})};  // a multiple of 16, a tie (40 = 32 + 8)
  const std::vector<double> quiet(c.nodes.size(), 0.0);
  EXPECT_EQ(run_clear_noisy(c, in, quiet, gen)[0].data, run_clear(c, in)[0].data);
  // Wider noise than the toy set has (the draws are seeded: the test is deterministic).
  std::vector<double> wide = sd;
  wide[r.id] = 1.5;
  std::set<std::int64_t> at_tie;
  for (int draw = 0; draw < 200; ++draw) {
    const std::vector<std::int64_t> y = run_clear_noisy(c, in, wide, gen)[0].data;
    EXPECT_EQ(y[0], -48 / 16 + 100);  // 8 away from both ties: over five standard deviations
    at_tie.insert(y[1]);
  }
  EXPECT_EQ(at_tie, (std::set<std::int64_t>{102, 103}));
  EXPECT_THROW(run_clear_noisy(c, in, std::vector<double>(1, 0.0), gen), std::invalid_argument);
}

// Neighbour reads in the clear simulation: approximate_read_std_dev gives the lookup the noise
// of its own reads, in input steps; a draw moves the read by whole steps, clamped to the
// input's range: far from a change the entry, near one its neighbours, never past the ends.
TEST(ClearSimulation, NeighbourReadsMoveByStepsWithinTheRange) {
  CircuitBuilder b;
  const Value x = b.input({1, 3}, 4, false, "x");
  const Value xs = b.matmul(x, Tensor({3, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1}), "copy");
  Table t{0, 0, {}};
  for (std::int64_t v = 0; v < 16; ++v) t.values.push_back(10 * v);
  const Value y = b.lookup_per_element_shared(xs, {t}, {0, 0, 0}, "read", 6);
  b.output(y, "y");
  const Circuit c = std::move(b).build();
  const CompiledCircuit cc = compile_toy(c);
  const std::vector<double> sd = approximate_read_std_dev(cc);
  for (std::uint32_t id = 0; id < c.nodes.size(); ++id) {
    if (id == y.id) {
      EXPECT_GT(sd[id], 0.0);
      EXPECT_LT(sd[id], 0.1);  // the toy set is nearly noise-free
    } else {
      EXPECT_EQ(sd[id], 0.0) << c.describe_node(id);
    }
  }
  std::mt19937_64 gen(11);
  const std::vector<Tensor> in = {Tensor({1, 3}, {0, 7, 15})};
  const std::vector<double> quiet(c.nodes.size(), 0.0);
  EXPECT_EQ(run_clear_noisy(c, in, quiet, gen)[0].data, run_clear(c, in)[0].data);
  std::vector<double> wide = sd;
  wide[y.id] = 0.6;
  std::vector<std::set<std::int64_t>> seen(3);
  for (int draw = 0; draw < 400; ++draw) {
    const std::vector<std::int64_t> out = run_clear_noisy(c, in, wide, gen)[0].data;
    for (std::size_t e = 0; e < 3; ++e) seen[e].insert(out[e]);
  }
  for (const auto& s : seen)
    for (std::int64_t v : s) EXPECT_EQ(v % 10, 0) << v;  // whole steps
  EXPECT_EQ(*seen[0].begin(), 0);  // clamped at the bottom
  EXPECT_TRUE(seen[0].count(10));
  EXPECT_EQ(*seen[2].rbegin(), 150);  // and at the top
  EXPECT_TRUE(seen[2].count(140));
  EXPECT_TRUE(seen[1].count(60) && seen[1].count(70) && seen[1].count(80));
}

// An approximate rounding read by the client: the output's signature carries the step, and
// decryption rounds the phase to the nearest multiple of it (or, within the noise of a tie,
// the other neighbour), at the reading precision W - t rather than W.
TEST(FheExecutor, ApproximateOutputDecryptsToANeighbouringMultiple) {
  CircuitBuilder b;
  const Value x = b.input({64}, 10, true, "acc");
  const Value act = b.lookup(b.round_bits(x, 6, RoundingMode::kApproximate), [](std::int64_t v) { return v / 64; }, "act");
  b.output(act, "act");
  const Value r = b.round_bits(b.add(x, b.mul(act, 3)), 4, RoundingMode::kApproximate, "out");
  b.output(r, "rounded");
  const Circuit c = std::move(b).build();
  const CompiledCircuit cc = compile_toy(c);
  // The toy set decodes this circuit reliably: a failure below is the decoding, not noise.
  ASSERT_LT(cc.analysis.statistics.log2_predicted_p_error.value_or(0.0), -30.0);
  const CircuitSignature sig = signature_of(cc);
  EXPECT_EQ(sig.outputs[0].step_bits, 0u);
  EXPECT_EQ(sig.outputs[1].step_bits, 4u);
  const Keys& keys = toy_keys(cc.analysis.statistics.max_lookup_precision);
  const FheExecutor executor(cc, &keys.evaluation);
  std::vector<Tensor> in = {Tensor::filled({64}, 0)};
  for (std::size_t e = 8; e < 64; ++e) in[0].data[e] = uniform(-512, 511);  // the first 8 stay 0
  const auto out = decrypt_outputs(cc, keys.secret, executor.run(expand_inputs(cc, encrypt_inputs(cc, keys.secret, in))));
  const auto clear = run_clear(c, in);
  for (std::size_t e = 0; e < 64; ++e) {
    // The lookup may read a neighbouring multiple too; the output rounds what it returned.
    const std::int64_t a = out[0].data[e], y = out[1].data[e];
    EXPECT_LE(std::abs(a - clear[0].data[e]), 1) << "element " << e;
    const std::int64_t exact = in[0].data[e] + 3 * a;
    const std::int64_t floor = exact - (((exact % 16) + 16) % 16);
    EXPECT_TRUE(y == floor || y == floor + 16) << "element " << e << ": " << exact << " decrypted as " << y;
    // A multiple of 16 sits half a step away from both ties: it decrypts to itself.
    if (exact % 16 == 0) EXPECT_EQ(y, exact) << "element " << e;
    if (a == clear[0].data[e]) EXPECT_LE(std::abs(y - clear[1].data[e]), 16) << "element " << e;
  }
  EXPECT_EQ(out[1].data[0], 0);
}

TEST(FheExecutor, ExactFloorRoundingOfSignedValues) {
  CircuitBuilder b;
  const Value x = b.input({16}, 9, true, "x");
  const Value r = b.round_bits(b.mul(x, 3), 5, RoundingMode::kFloor, "floor");
  b.output(b.lookup(r, [](std::int64_t v) { return v / 32; }), "q");
  b.output(b.add(r, 1), "rounded");
  expect_fhe_equals_clear(std::move(b).build(), 2);
}

TEST(FheExecutor, DataMovementAndSums) {
  CircuitBuilder b;
  const Value x = b.input({2, 3, 4}, 3, true, "x");
  const Value t = b.transpose(x, {2, 0, 1});
  const Value s = b.slice(t, {1, 0, -2}, {4, 2, 3}, {2, 1, 1});
  // s is [2, 2, 2]; with the per-row sums over axes 0 and 2 ([3]): 11 values.
  b.output(b.concat({b.reshape(s, {8}), b.sum(x, {0, 2}, false)}, 0), "joined");
  const Value sum = b.sum(x, {1}, /*keepdims=*/true);
  const Value bc = b.broadcast(sum, {2, 3, 4});
  b.output(b.sub(x, bc), "centered");
  b.output(b.flatten(s, 0), "flat");
  expect_fhe_equals_clear(std::move(b).build(), 3);
}

// ---------------------------------------------------------------- random circuits

// A random circuit of `steps` operations on one or two inputs, keeping every lookup within
// 6 bits by exact rounding where needed.
Circuit random_circuit(int steps) {
  CircuitBuilder b;
  const std::int64_t width = uniform(2, 6);
  std::vector<Value> pool;
  pool.push_back(b.input({width}, static_cast<unsigned>(uniform(2, 5)), uniform(0, 1) == 1, "a"));
  if (uniform(0, 1)) pool.push_back(b.input({width}, 3, true, "b"));
  const auto span_bits = [&](Value v) {
    const ValueRange r = b.range(v);
    return static_cast<int>(std::bit_width(static_cast<std::uint64_t>(r.hi - r.lo) >> r.trailing_zeros));
  };
  for (int i = 0; i < steps; ++i) {
    Value v = pool[static_cast<std::size_t>(uniform(0, static_cast<std::int64_t>(pool.size()) - 1))];
    const std::int64_t n = b.shape(v)[0];
    switch (uniform(0, 5)) {
      case 0: {  // matmul to a random width
        const std::int64_t m = uniform(1, 6);
        Tensor w = Tensor::filled({n, m}, 0);
        for (auto& x : w.data) x = uniform(-3, 3);
        v = b.matmul(v, w);
        break;
      }
      case 1: {  // add or subtract another value of the same width
        for (const Value& o : pool)
          if (b.shape(o)[0] == n && o.id != v.id) {
            v = uniform(0, 1) ? b.add(v, o) : b.sub(v, o);
            break;
          }
        v = b.add(v, uniform(-9, 9));
        break;
      }
      case 2: {
        Tensor k = Tensor::filled({n}, 0);
        for (auto& x : k.data) x = uniform(-4, 4);
        v = b.mul(v, k);
        break;
      }
      case 3:
      case 4: {  // lookup, rounding first when the input is too wide
        const int bits = span_bits(v);
        if (bits > 6) v = b.round_bits(v, static_cast<unsigned>(bits - 6), uniform(0, 1) ? RoundingMode::kNearest : RoundingMode::kFloor);
        const ValueRange r = b.range(v);
        const std::size_t entries = static_cast<std::size_t>(((r.hi - r.lo) >> r.trailing_zeros) + 1);
        if (uniform(0, 2) == 0) {
          std::vector<Table> tables;
          std::vector<std::uint32_t> index;
          for (int t = 0; t < 3; ++t) tables.push_back(random_table(r.lo, r.trailing_zeros, entries, -20, 20));
          for (std::int64_t e = 0; e < n; ++e) index.push_back(static_cast<std::uint32_t>(uniform(0, 2)));
          v = b.lookup_per_element(v, tables, index);
        } else {
          v = b.lookup(v, random_table(r.lo, r.trailing_zeros, entries, -30, 30));
        }
        break;
      }
      case 5: {  // data movement
        if (n > 1) v = b.concat({b.slice(v, {1}, {n}), b.slice(v, {0}, {1})}, 0);
        v = b.reshape(b.transpose(b.reshape(v, {1, n}), {1, 0}), {n});
        break;
      }
    }
    pool.push_back(v);
  }
  b.output(pool.back(), "out");
  if (pool.size() > 3) b.output(pool[pool.size() / 2], "mid");
  return std::move(b).build();
}

TEST(FheExecutor, RandomCircuitsAgreeWithTheClearExecutor) {
  int with_lookups = 0;
  for (int trial = 0; trial < 24; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    Circuit c;
    try {
      c = random_circuit(static_cast<int>(uniform(2, 7)));
      (void)analyze(c);
    } catch (const std::invalid_argument&) {
      continue;  // an accumulator grew past the encoding limits: draw again
    }
    if (analyze(c).uses_bootstrapping()) ++with_lookups;
    expect_fhe_equals_clear(c, 2);
    // The circuit survives its own format and still agrees.
    expect_fhe_equals_clear(deserialize_circuit(serialize_circuit(c)), 1);
  }
  EXPECT_GE(with_lookups, 8);
}

// ---------------------------------------------------------------- errors

class FheExecutorErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    CircuitBuilder b;
    const Value x = b.input({3}, 3, false, "x");
    b.output(b.lookup(x, [](std::int64_t v) { return 7 - v; }));
    cc_ = compile_toy(std::move(b).build());
  }
  CompiledCircuit cc_;
};

TEST_F(FheExecutorErrors, RefusesMissingOrForeignKeys) {
  EXPECT_THROW(FheExecutor(cc_, nullptr), std::invalid_argument);
  const Keys& other = toy_keys(5);  // a different toy set
  try {
    FheExecutor e(cc_, &other.evaluation);
    FAIL() << "keys of another parameter set were accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("parameter set"), std::string::npos) << e.what();
  }
  EXPECT_THROW(encrypt_inputs(cc_, other.secret, {Tensor::vector({1, 2, 3})}), std::invalid_argument);
}

TEST_F(FheExecutorErrors, RefusesInputsThatDoNotMatchTheSignature) {
  const Keys& keys = toy_keys(3);
  const FheExecutor executor(cc_, &keys.evaluation);
  EXPECT_THROW(encrypt_inputs(cc_, keys.secret, {Tensor::vector({1, 2})}), std::invalid_argument);       // shape
  EXPECT_THROW(encrypt_inputs(cc_, keys.secret, {Tensor::vector({1, 2, 8})}), std::invalid_argument);    // range
  EXPECT_THROW(encrypt_inputs(cc_, keys.secret, {}), std::invalid_argument);                             // count
  auto good = expand_inputs(cc_, encrypt_inputs(cc_, keys.secret, {Tensor::vector({1, 2, 3})}));
  EXPECT_THROW(executor.run({}), std::invalid_argument);
  auto wrong_shape = good;
  wrong_shape[0].shape = {1, 3};
  EXPECT_THROW(executor.run(wrong_shape), std::invalid_argument);
  auto wrong_count = good;
  wrong_count[0].ciphertexts = tfhe::LweCiphertextList(good[0].ciphertexts.dimension(), 2);
  EXPECT_THROW(executor.run(wrong_count), std::invalid_argument);
  auto wrong_dim = good;
  wrong_dim[0].ciphertexts = tfhe::LweCiphertextList(tfhe::LweDimension(17), 3);
  EXPECT_THROW(executor.run(wrong_dim), std::invalid_argument);
  auto seeded = encrypt_inputs(cc_, keys.secret, {Tensor::vector({1, 2, 3})});
  seeded[0].bodies.pop_back();
  EXPECT_THROW(expand_inputs(cc_, seeded), std::invalid_argument);
  auto outputs = executor.run(good);
  outputs[0].shape = {4};
  EXPECT_THROW(decrypt_outputs(cc_, keys.secret, outputs), std::invalid_argument);
}

TEST_F(FheExecutorErrors, RowsAreCheckedAndAWaveCanBeAbandoned) {
  const Keys& keys = toy_keys(3);
  const FheExecutor executor(cc_, &keys.evaluation);
  const auto row = [&](std::int64_t v) {
    return expand_inputs(cc_, encrypt_inputs(cc_, keys.secret, {Tensor::vector({v, 1, 2})}));
  };
  EXPECT_THROW(executor.run_rows({}, &keys.evaluation), std::invalid_argument);
  std::vector<std::vector<EncryptedTensor>> rows = {row(0), row(5), row(7)};
  rows[1][0].ciphertexts = tfhe::LweCiphertextList(rows[1][0].ciphertexts.dimension(), 2);
  try {
    executor.run_rows(rows, &keys.evaluation);
    FAIL() << "a row of 2 ciphertexts for 3 elements was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("row 1: run: input 0 'x' holds 2 ciphertexts for 3 elements"), std::string::npos)
        << e.what();
  }
  rows[1] = row(5);
  struct Stop {};
  EXPECT_THROW(executor.run_rows(rows, &keys.evaluation, nullptr, [] { throw Stop{}; }), Stop);
  const auto outputs = executor.run_rows(rows, &keys.evaluation);
  ASSERT_EQ(outputs.size(), 3u);
  EXPECT_EQ(decrypt_outputs(cc_, keys.secret, outputs[1])[0], Tensor::vector({2, 6, 5}));
  // A wave's rows fit the memory it is given, and there is always at least one.
  const std::size_t ciphertext = outputs[0][0].ciphertexts[0].size() * sizeof(tfhe::Torus);
  EXPECT_EQ(executor.wave_rows(10 * 3 * ciphertext), 10u);
  EXPECT_EQ(executor.wave_rows(0), 1u);
}

TEST_F(FheExecutorErrors, ConcurrentRunsShareOneExecutor) {
  const Keys& keys = toy_keys(3);
  const FheExecutor executor(cc_, &keys.evaluation, {1});
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      const std::vector<Tensor> in = {Tensor::vector({t, 7 - t, 3})};
      const auto out = decrypt_outputs(cc_, keys.secret, executor.run(expand_inputs(cc_, encrypt_inputs(cc_, keys.secret, in))));
      ok[static_cast<std::size_t>(t)] = out == run_clear(cc_.circuit, in);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, std::vector<int>(4, 1));
}

}  // namespace
}  // namespace veil::circuit

namespace veil::circuit {
namespace {

TEST(FheExecutor, OutputsKeyswitchedToTheSmallKeyDecryptAlike) {
  CircuitBuilder b;
  const Value x = b.input({5}, 4, true, "x");
  b.output(b.lookup(b.mul(x, 3), [](std::int64_t v) { return v / 3 - 1; }, "f"), "y");
  const Circuit c = std::move(b).build();
  const CompiledCircuit cc = compile_toy(c);
  const Keys& keys = toy_keys(cc.analysis.statistics.max_lookup_precision);
  const FheExecutor executor(cc, &keys.evaluation);
  const std::vector<Tensor> in = {Tensor::vector({-8, -3, 0, 5, 7})};
  std::vector<EncryptedTensor> out = executor.run(expand_inputs(cc, encrypt_inputs(cc, keys.secret, in)));
  tfhe::LweCiphertextList small(cc.params.lwe_dimension, out[0].ciphertexts.count());
  tfhe::KeyswitchScratch ks_scratch;
  for (std::size_t e = 0; e < small.count(); ++e) tfhe::keyswitch(keys.evaluation.ksk, out[0].ciphertexts[e], small[e], ks_scratch);
  const std::vector<EncryptedTensor> switched = {EncryptedTensor{out[0].shape, small}};
  EXPECT_EQ(decrypt_outputs(cc, keys.secret, switched), run_clear(c, in));
  // Any other dimension is refused.
  const std::vector<EncryptedTensor> wrong = {EncryptedTensor{out[0].shape, tfhe::LweCiphertextList(tfhe::LweDimension(7), 5)}};
  EXPECT_THROW(decrypt_outputs(cc, keys.secret, wrong), std::invalid_argument);
}

}  // namespace
}  // namespace veil::circuit
