// Analyses (analysis.hpp): encoding width, lookup precision and noise constraints, statistics,
// calibration, and parameter choice with compile(). Every expected number is derived by
// hand from the formulas analysis.hpp states; compiled parameter sets are checked with the
// engine's own security and noise functions (tfhe/parameters.hpp), not with the analysis.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "../common/error_message.hpp"
#include "../tfhe/toy_parameters.hpp"
#include "veil/circuit/analysis.hpp"
#include "veil/circuit/clear_executor.hpp"

namespace veil::circuit {
namespace {

using veil::test_support::error_of;
using veil::test_support::has;

Table table(std::int64_t domain_min, unsigned shift, std::vector<std::int64_t> values) {
  return Table{domain_min, shift, std::move(values)};
}

// log2 of the error probability of one read at precision p with the noise sq_norm2 (units of
// Var_BR) under `params`: the engine's own model, independent of the circuit analysis.
double log2_read_error(const tfhe::ParameterSet& params, unsigned p, double sq_norm2) {
  return tfhe::log2_lookup_error_probability_for_variance(p, tfhe::variance_at_blind_rotation_input(params, sq_norm2));
}

// ---------------------------------------------------------------- encoding width

TEST(CircuitAnalysis, EncodingWidthCoversTheWidestRead) {
  const auto width = [](const std::function<void(CircuitBuilder&)>& body) {
    CircuitBuilder b;
    body(b);
    return analyze(std::move(b).build()).encoding_width;
  };
  // Outputs: width(hi - lo).
  EXPECT_EQ(width([](CircuitBuilder& b) {
              const Value x = b.input({2}, 4, false);
              b.output(b.add(x, x));  // [0, 30]
            }),
            5u);
  EXPECT_EQ(width([](CircuitBuilder& b) { b.output(b.input({2}, 4, true)); }), 4u);             // span 15
  EXPECT_EQ(width([](CircuitBuilder& b) { b.output(b.input_range({2}, 100, 103)); }), 2u);      // span 3
  EXPECT_EQ(width([](CircuitBuilder& b) { b.output(b.input_range({2}, -1000, -1000)); }), 1u);  // span 0
  // Lookups: t + p.
  EXPECT_EQ(width([](CircuitBuilder& b) {
              const Value x = b.input({2}, 3, false);
              b.output(b.lookup(x, [](std::int64_t v) { return v & 1; }));  // p = 3, output 1 bit
            }),
            3u);
  EXPECT_EQ(width([](CircuitBuilder& b) {
              const Value x = b.input({2}, 6, false);                        // [0, 63]
              const Value r = b.round_bits(x, 3);                            // [0, 56], t = 3, p = 3
              b.output(b.lookup(r, [](std::int64_t v) { return v / 8; }));  // [0, 7]
            }),
            6u);
  EXPECT_EQ(width([](CircuitBuilder& b) {
              const Value m = b.mul(b.input({2}, 2, false), 8);               // [0, 24], t = 3, p = 2
              b.output(b.lookup(m, [](std::int64_t v) { return v / 8; }));  // [0, 3]
            }),
            5u);
  // An intermediate wider than every read does not count.
  EXPECT_EQ(width([](CircuitBuilder& b) {
              const Value x = b.input({2}, 3, false);
              const Value wide = b.mul(x, 1 << 20);
              b.output(b.lookup(b.round_bits(wide, 20), [](std::int64_t v) { return v >> 20; }));
            }),
            23u);  // t = 20, p = 3
}

TEST(CircuitAnalysis, LookupPrecisionKnownZerosAndReducedMin) {
  CircuitBuilder b;
  const auto positive = [](std::int64_t v) { return v > 0 ? 1 : 0; };
  const Value a = b.input_range({2}, -20, 11, "a");   // 0
  b.output(b.lookup(a, positive, "la"));               // 1: p = width(31) = 5, t = 0, min -20
  const Value q = b.input_range({3}, -3, 4, "q");     // 2
  const Value m = b.mul(q, 8, "m");                    // 3: [-24, 32], t = 3
  b.output(b.lookup(m, positive, "lm"));               // 4: p = width(7) = 3, min -3
  const Value r = b.round_bits(a, 2, RoundingMode::kFloor, "r");  // 5: [-20, 8], t = 2, 2 steps
  b.output(b.lookup(r, positive, "lr"));               // 6: p = width(7) = 3, min -5
  const CircuitAnalysis an = analyze(std::move(b).build());
  // Segments: {a, r} reads 5 (la), 2 (round_bits), 2 + 3 (lr): width 5; {q, m} reads 3 + 3:
  // width 6; each lookup's output its own segment of width 1. The widest is 6.
  ASSERT_EQ(an.encoding_width, 6u);
  EXPECT_EQ(an.widths, (std::vector<unsigned>{5, 1, 6, 6, 1, 5, 1}));
  ASSERT_EQ(an.lookups.size(), 3u);
  const LookupInfo& la = an.lookups[0];
  const LookupInfo& lm = an.lookups[1];
  const LookupInfo& lr = an.lookups[2];
  EXPECT_EQ(la.node, 1u);
  EXPECT_EQ(la.elements, 2);
  EXPECT_EQ(la.precision, 5u);
  EXPECT_EQ(la.known_zero_bits, 0u);
  EXPECT_EQ(la.reduced_min, -20);
  EXPECT_EQ(la.amplification_bits, 0u);           // its segment is exactly as wide as it reads
  EXPECT_DOUBLE_EQ(la.sq_norm2, 1.0);             // a fresh input
  EXPECT_DOUBLE_EQ(la.constraint_sq_norm2, 1.0);
  EXPECT_EQ(lm.node, 4u);
  EXPECT_EQ(lm.elements, 3);
  EXPECT_EQ(lm.precision, 3u);
  EXPECT_EQ(lm.known_zero_bits, 3u);
  EXPECT_EQ(lm.reduced_min, -3);
  EXPECT_EQ(lm.amplification_bits, 0u);
  EXPECT_DOUBLE_EQ(lm.sq_norm2, 64.0);  // 8^2
  EXPECT_DOUBLE_EQ(lm.constraint_sq_norm2, 64.0);
  EXPECT_EQ(lr.node, 6u);
  EXPECT_EQ(lr.precision, 3u);
  EXPECT_EQ(lr.known_zero_bits, 2u);
  EXPECT_EQ(lr.reduced_min, -5);
  EXPECT_EQ(lr.amplification_bits, 0u);
  EXPECT_DOUBLE_EQ(lr.sq_norm2, 3.0);  // the input plus one PBS output per extracted bit
  EXPECT_DOUBLE_EQ(lr.constraint_sq_norm2, 3.0);
  ASSERT_EQ(an.round_bits.size(), 1u);
  EXPECT_EQ(an.round_bits[0].node, 5u);
  EXPECT_EQ(an.round_bits[0].first_bit, 0u);
  EXPECT_EQ(an.round_bits[0].bits, 2u);
  EXPECT_EQ(an.round_bits[0].steps(), 2u);
  EXPECT_FALSE(an.round_bits[0].nearest);
}

TEST(CircuitAnalysis, LookupNoiseFollowsTheLinearCombination) {
  CircuitBuilder b;
  const Value x = b.input({3}, 2, false, "x");                                   // [0, 3]
  const Value d = b.dot(x, {1, 2, -3});                                          // nu^2 = 1 + 4 + 9
  const Value l1 = b.lookup(d, [](std::int64_t v) { return v > 0 ? v : 0; }, "relu");  // [0, 9]
  const Value l2 = b.lookup(d, [](std::int64_t v) { return v < 0 ? 1 : 0; });          // [0, 1]
  const Value s = b.mul(b.add(l1, l2), 3);                                       // nu^2 = (1 + 1) * 9
  b.output(b.lookup(s, [](std::int64_t v) { return v % 5; }, "last"));
  const CircuitAnalysis an = analyze(std::move(b).build());
  ASSERT_EQ(an.lookups.size(), 3u);
  EXPECT_DOUBLE_EQ(an.lookups[0].sq_norm2, 14.0);
  EXPECT_DOUBLE_EQ(an.lookups[1].sq_norm2, 14.0);
  EXPECT_DOUBLE_EQ(an.lookups[2].sq_norm2, 18.0);
  EXPECT_DOUBLE_EQ(an.sq_norm2[d.id], 14.0);
  EXPECT_DOUBLE_EQ(an.sq_norm2[l1.id], 1.0);
  EXPECT_DOUBLE_EQ(an.sq_norm2[s.id], 18.0);
  // Depth: d feeds two parallel lookups, then one more.
  EXPECT_EQ(an.pbs_depth[l1.id], 1u);
  EXPECT_EQ(an.pbs_depth[l2.id], 1u);
  EXPECT_EQ(an.statistics.pbs_depth, 2u);
}

TEST(CircuitAnalysis, LookupsNeedingMoreThan8BitsAreRefusedByName) {
  {
    CircuitBuilder b;
    const Value x = b.input({1}, 9, false, "x");
    Table t{0, 0, {}};
    for (std::int64_t v = 0; v < 512; ++v) t.values.push_back(v / 2);
    b.output(b.lookup(x, t, "wide"));
    const Circuit c = std::move(b).build();
    const std::string e = error_of([&] { analyze(c); });
    EXPECT_TRUE(has(e, "lookup 'wide' (node 1)")) << e;
    EXPECT_TRUE(has(e, "9 bits")) << e;
    EXPECT_TRUE(has(error_of([&] { compile(c); }), "wide"));
  }
  {
    // Signed: [-128, 127] is 8 bits, [-128, 128] is 9.
    CircuitBuilder b;
    const Value ok = b.input_range({1}, -128, 127, "ok");
    b.output(b.lookup(ok, [](std::int64_t v) { return v > 0; }, "fits"));
    EXPECT_EQ(analyze(std::move(b).build()).lookups.at(0).precision, 8u);
    CircuitBuilder c;
    const Value no = c.input_range({1}, -128, 128, "no");
    c.output(c.lookup(no, [](std::int64_t v) { return v > 0; }, "nine"));
    EXPECT_TRUE(has(error_of([&] { analyze(std::move(c).build()); }), "lookup 'nine'"));
  }
  {
    // Rounding one bit away first brings it to 8.
    CircuitBuilder b;
    const Value x = b.input({1}, 9, false, "x");
    b.output(b.lookup(b.round_bits(x, 1), [](std::int64_t v) { return v / 2; }, "rounded"));
    const CircuitAnalysis an = analyze(std::move(b).build());
    EXPECT_EQ(an.lookups.at(0).precision, 8u);
    EXPECT_EQ(an.lookups.at(0).known_zero_bits, 1u);
  }
}

TEST(CircuitAnalysis, EncodingWidthLimits) {
  {
    // t = 50, p = 2: W = 52 > 48 with lookups.
    CircuitBuilder b;
    const Value m = b.mul(b.input({1}, 2, false), std::int64_t{1} << 50);
    b.output(b.lookup(m, table(0, 50, {0, 1, 2, 3}), "high"));
    EXPECT_TRUE(has(error_of([&] { analyze(std::move(b).build()); }), "encoding width"));
  }
  {
    CircuitBuilder b;
    b.output(b.input({1}, 61, false, "x"), "x");
    EXPECT_TRUE(has(error_of([&] { analyze(std::move(b).build()); }), "encoding width"));
  }
  {
    CircuitBuilder b;
    const Value m = b.mul(b.input({1}, 2, false), std::int64_t{1} << 46);  // t + p = 48
    b.output(b.lookup(m, table(0, 46, {0, 1, 2, 3})));
    EXPECT_EQ(analyze(std::move(b).build()).encoding_width, 48u);
  }
}

TEST(CircuitAnalysis, MalformedCircuitsAreRefused) {
  CircuitBuilder b;
  const Value x = b.input({2}, 3, false, "x");
  b.output(b.add(x, x), "y");
  Circuit c = std::move(b).build();
  c.nodes[1].operands[1] = 5;
  EXPECT_TRUE(has(error_of([&] { analyze(c); }), "add (node 1)"));
}

// ---------------------------------------------------------------- statistics

// Lookups of 2 to 5 bits, one exact and one approximate rounding (see the comments for the
// hand-derived numbers).
Circuit statistics_circuit() {
  CircuitBuilder b;
  const Value x = b.input({2, 2}, 3, false, "x");                                   // 0: [0, 7]
  b.output(b.lookup(x, [](std::int64_t v) { return 7 - v; }, "l3"), "l3");          // 1: p 3, 4 PBS
  const Value y = b.input({3}, 5, false, "y");                                      // 2: [0, 31]
  b.output(b.lookup(y, [](std::int64_t v) { return v / 4; }, "l5"), "l5");          // 3: p 5, 3 PBS
  const Value r = b.round_bits(y, 3, RoundingMode::kFloor, "r");                    // 4: [0, 24] t 3, 9 PBS
  b.output(b.lookup(r, [](std::int64_t v) { return v / 8; }, "lr"), "lr");          // 5: p 2, 3 PBS
  const Value a = b.round_bits(y, 2, RoundingMode::kApproximate, "a");              // 6: [0, 32] t 2, free
  b.output(b.lookup(a, [](std::int64_t v) { return v / 8; }, "la"), "la");          // 7: p 4, 3 PBS
  return std::move(b).build();
}

TEST(CircuitAnalysis, StatisticsCountLookupsRoundingsAndDepth) {
  const CircuitAnalysis an = analyze(statistics_circuit());
  const CircuitStatistics& st = an.statistics;
  EXPECT_TRUE(an.uses_bootstrapping());
  EXPECT_EQ(st.lookups_by_precision, (std::map<unsigned, std::int64_t>{{2, 3}, {3, 4}, {4, 3}, {5, 3}}));
  EXPECT_EQ(st.lookup_pbs, 13);
  EXPECT_EQ(st.extraction_pbs, 9);  // 3 elements x 3 dropped bits; the approximate one is free
  EXPECT_EQ(st.total_pbs, 22);
  EXPECT_EQ(st.levelled_ops, 0);
  EXPECT_EQ(st.encrypted_inputs, 7);
  EXPECT_EQ(st.encrypted_outputs, 13);
  EXPECT_EQ(st.max_lookup_precision, 5u);
  EXPECT_EQ(st.max_value_bits, 6u);  // the approximate rounding may reach 32
  // Segments: {x} reads 3 (l3): width 3; {y, r, a} reads 5 (l5), 3 (round_bits), 3 + 2 (lr),
  // 2 + 4 (la): width 6; the lookups' outputs span 3, 3, 2 and 3 bits. The widest is 6.
  EXPECT_EQ(an.widths, (std::vector<unsigned>{3, 3, 6, 3, 6, 2, 6, 3}));
  EXPECT_EQ(st.encoding_width, 6u);
  EXPECT_EQ(an.encoding_width, 6u);
  EXPECT_EQ(st.pbs_depth, 4u);  // 3 extractions, then the lookup
  EXPECT_EQ(an.pbs_depth, (std::vector<unsigned>{0, 1, 0, 1, 3, 4, 0, 1}));
  EXPECT_FALSE(st.predicted_p_error.has_value());
  EXPECT_FALSE(st.warnings.empty());  // 2-bit and 5-bit lookups share one set

  // Only the exact rounding is lowered, one step per dropped bit; step i's noise is the
  // input's plus i PBS outputs, amplified 4^(W - i).
  ASSERT_EQ(an.round_bits.size(), 1u);
  const RoundBitsInfo& rb = an.round_bits[0];
  EXPECT_EQ(rb.node, 4u);
  EXPECT_EQ(rb.elements, 3);
  EXPECT_EQ(rb.first_bit, 0u);
  EXPECT_EQ(rb.bits, 3u);
  EXPECT_EQ(rb.steps(), 3u);
  EXPECT_DOUBLE_EQ(rb.input_sq_norm2, 1.0);
  EXPECT_EQ(rb.step_constraint_sq_norm2, (std::vector<double>{4096.0, 2048.0, 768.0}));

  // Lookups' constraints: (p, nu^2 * 4^(W - t - p)).
  ASSERT_EQ(an.lookups.size(), 4u);
  EXPECT_DOUBLE_EQ(an.lookups[0].constraint_sq_norm2, 1.0);   // l3: 1 * 4^0 (its segment is 3 bits wide)
  EXPECT_DOUBLE_EQ(an.lookups[1].constraint_sq_norm2, 4.0);   // l5: 1 * 4^1
  EXPECT_DOUBLE_EQ(an.lookups[2].sq_norm2, 4.0);              // lr: 1 + 3 extraction outputs
  EXPECT_DOUBLE_EQ(an.lookups[2].constraint_sq_norm2, 16.0);  // * 4^1
  EXPECT_DOUBLE_EQ(an.lookups[3].sq_norm2, 1.0);              // la: the approximate rounding adds nothing
  EXPECT_EQ(an.lookups[3].known_zero_bits, 2u);
  EXPECT_EQ(an.lookups[3].precision, 4u);
  EXPECT_DOUBLE_EQ(an.lookups[3].constraint_sq_norm2, 1.0);
  // Deduplicated per precision; precision 1 holds the extraction steps and the outputs
  // (1, nu^2 * 4^(w - 1)) at their own widths (16 at most), the largest being 4096.
  const std::vector<tfhe::NoiseConstraint> want = {{1, 4096.0}, {2, 16.0}, {3, 1.0}, {4, 1.0}, {5, 4.0}};
  EXPECT_EQ(an.constraints, want);
  EXPECT_DOUBLE_EQ(st.max_lookup_sq_norm2, 4096.0);
}

TEST(CircuitAnalysis, RoundingCostsOnePbsPerUnknownDroppedBit) {
  const auto stats = [](const std::function<void(CircuitBuilder&, Value)>& body) {
    CircuitBuilder b;
    const Value y = b.input({5}, 6, false, "y");
    body(b, y);
    return analyze(std::move(b).build());
  };
  const auto lookup = [](CircuitBuilder& b, Value v) { b.output(b.lookup(v, [](std::int64_t z) { return z / 16; })); };
  {
    const CircuitAnalysis an = stats([&](CircuitBuilder& b, Value y) { lookup(b, b.round_bits(y, 3, RoundingMode::kNearest)); });
    EXPECT_EQ(an.statistics.extraction_pbs, 15);
    ASSERT_EQ(an.round_bits.size(), 1u);
    EXPECT_TRUE(an.round_bits[0].nearest);
    EXPECT_EQ(an.statistics.pbs_depth, 4u);
  }
  {
    // Bit 0 is already known to be zero: two steps.
    const CircuitAnalysis an = stats([&](CircuitBuilder& b, Value y) { lookup(b, b.round_bits(b.mul(y, 2), 3)); });
    EXPECT_EQ(an.statistics.extraction_pbs, 10);
    ASSERT_EQ(an.round_bits.size(), 1u);
    EXPECT_EQ(an.round_bits[0].first_bit, 1u);
    EXPECT_EQ(an.round_bits[0].steps(), 2u);
    EXPECT_DOUBLE_EQ(an.round_bits[0].input_sq_norm2, 4.0);
  }
  {
    // Nothing to drop: no lowering at all.
    const CircuitAnalysis an = stats([&](CircuitBuilder& b, Value y) { lookup(b, b.round_bits(b.mul(y, 8), 3)); });
    EXPECT_EQ(an.statistics.extraction_pbs, 0);
    EXPECT_TRUE(an.round_bits.empty());
  }
  {
    const CircuitAnalysis an =
        stats([&](CircuitBuilder& b, Value y) { lookup(b, b.round_bits(y, 5, RoundingMode::kApproximate)); });
    EXPECT_EQ(an.statistics.extraction_pbs, 0);
    EXPECT_EQ(an.statistics.total_pbs, 5);
    EXPECT_EQ(an.statistics.pbs_depth, 1u);
    EXPECT_TRUE(an.round_bits.empty());
  }
  {
    // An exact rounding alone makes a circuit bootstrapped.
    const CircuitAnalysis an = stats([&](CircuitBuilder& b, Value y) { b.output(b.round_bits(y, 2)); });
    EXPECT_TRUE(an.uses_bootstrapping());
    EXPECT_EQ(an.statistics.total_pbs, 10);
    EXPECT_TRUE(an.lookups.empty());
  }
}

TEST(CircuitAnalysis, LevelledOperationsCountCiphertextTerms) {
  CircuitBuilder b;
  const Value x = b.input({2, 3}, 4, true, "x");                            // [-8, 7], 6 ciphertexts
  const Value a = b.add(x, x);                                               // 6 x 2 = 12
  b.mul(x, Tensor::vector({1, 0, -2}));                                      // zero weights cost nothing: 4
  const Value c = b.add(x, 5);                                               // 6
  b.matmul(x, Tensor({3, 2}, {1, 0, 2, 3, 0, -1}));                           // 2 rows x (2 + 2) = 8
  b.sum(x, {1});                                                             // 2 x 3 = 6
  b.transpose(x, {1, 0});                                                    // data movement: 0
  const Value d = b.sub(a, c);                                               // 12
  const Value cv = b.conv2d(b.reshape(x, {1, 1, 2, 3}), Tensor::filled({1, 1, 2, 2}, 1));  // 2 x 4 = 8
  b.output(d, "d");
  b.output(cv, "cv");
  const CircuitAnalysis an = analyze(std::move(b).build());
  const CircuitStatistics& st = an.statistics;
  EXPECT_EQ(st.levelled_ops, 56);
  EXPECT_FALSE(an.uses_bootstrapping());
  EXPECT_EQ(st.total_pbs, 0);
  EXPECT_EQ(st.pbs_depth, 0u);
  EXPECT_TRUE(st.lookups_by_precision.empty());
  EXPECT_TRUE(an.constraints.empty());
  EXPECT_EQ(st.encrypted_inputs, 6);
  EXPECT_EQ(st.encrypted_outputs, 8);
  // d in [-28, 17] and cv in [-32, 28]: W = width(60) = 6. The widest signed value: the matmul's
  // [-31, 29] and the mul's [-14, 16] both need 6 bits.
  EXPECT_EQ(st.encoding_width, 6u);
  EXPECT_EQ(st.max_value_bits, 6u);
  EXPECT_EQ(an.ranges[d.id], (ValueRange{-28, 17, 0}));
  EXPECT_EQ(an.ranges[cv.id], (ValueRange{-32, 28, 0}));
  EXPECT_DOUBLE_EQ(an.sq_norm2[d.id], 3.0);   // (1 + 1) + 1
  EXPECT_DOUBLE_EQ(an.sq_norm2[cv.id], 4.0);  // four unit weights
}

TEST(CircuitAnalysis, StatisticsToStringMentionsTheCounts) {
  const CircuitAnalysis an = analyze(statistics_circuit());
  const std::string s = an.statistics.to_string();
  for (const char* part : {"13", "9", "22", "2-bit", "3-bit", "4-bit", "5-bit", "warning"})
    EXPECT_TRUE(has(s, part)) << "missing \"" << part << "\" in:\n" << s;
  // Once compiled (with a toy set here), the parameters and the predicted error too.
  const CompiledCircuit cc = compile_with_parameters(statistics_circuit(), tfhe::toy::exact_set(5));
  const std::string t = cc.analysis.statistics.to_string();
  EXPECT_TRUE(has(t, cc.params.name)) << t;
  EXPECT_TRUE(has(t, "p_error")) << t;
  EXPECT_TRUE(cc.analysis.statistics.predicted_p_error.has_value());
  EXPECT_TRUE(cc.uses_bootstrapping);
}

// ---------------------------------------------------------------- calibration

Circuit calibration_circuit() {
  CircuitBuilder b;
  const Value x = b.input({4}, 8, false, "x");                             // 0: [0, 255]
  const Value s = b.sum_all(x, "s");                                       // 1: [0, 1020]
  const Value m = b.mul(x, 3, "m");                                        // 2: [0, 765]
  b.output(b.round_bits(m, 2, RoundingMode::kFloor, "r"), "r");            // 3: [0, 764]
  const Value a = b.round_bits(m, 3, RoundingMode::kApproximate, "a");     // 4: [0, 768]
  b.output(b.lookup(a, [](std::int64_t v) { return v / 64; }, "la"), "la");  // 5
  const Value ra = b.reshape(a, {2, 2}, "ra");                             // 6: approximate, moved
  b.output(b.lookup(ra, [](std::int64_t v) { return v / 64; }, "lra"), "lra");  // 7
  b.output(b.lookup(s, [](std::int64_t v) { return v / 16; }, "ls"), "ls");     // 8: needs 10 bits
  return std::move(b).build();
}

TEST(CircuitAnalysis, CalibrationNarrowsRanges) {
  const Circuit c = calibration_circuit();
  EXPECT_TRUE(has(error_of([&] { analyze(c); }), "lookup 'ls'"));
  const std::vector<std::vector<Tensor>> samples = {
      {Tensor::vector({10, 11, 12, 13})}, {Tensor::vector({20, 0, 5, 7})}, {Tensor::vector({1, 1, 1, 1})}};
  const Circuit cal = calibrate(c, samples);
  ASSERT_EQ(cal.nodes.size(), c.nodes.size());
  EXPECT_NO_THROW(validate_circuit(cal));
  // Observed: s in {46, 32, 4}; m and its floor rounding in [0, 60]; ls = s / 16 in [0, 2].
  const auto hint = [&](std::uint32_t id) { return cal.nodes[id].range_hint; };
  EXPECT_FALSE(hint(0).has_value());  // inputs keep their declaration
  ASSERT_TRUE(hint(1).has_value());
  EXPECT_EQ(hint(1)->lo, 4);
  EXPECT_EQ(hint(1)->hi, 46);
  ASSERT_TRUE(hint(2).has_value());
  EXPECT_EQ(hint(2)->lo, 0);
  EXPECT_EQ(hint(2)->hi, 60);
  ASSERT_TRUE(hint(3).has_value());
  EXPECT_EQ(hint(3)->hi, 60);
  ASSERT_TRUE(hint(8).has_value());
  EXPECT_EQ(hint(8)->lo, 0);
  EXPECT_EQ(hint(8)->hi, 2);
  // The approximate rounding, what moves it, and the lookups reading it keep the inferred range.
  EXPECT_FALSE(hint(4).has_value());
  EXPECT_FALSE(hint(5).has_value());
  EXPECT_FALSE(hint(6).has_value());
  EXPECT_FALSE(hint(7).has_value());
  // Everything else is unchanged.
  for (std::size_t id = 0; id < c.nodes.size(); ++id) {
    Node n = cal.nodes[id];
    n.range_hint.reset();
    EXPECT_EQ(n, c.nodes[id]) << "node " << id;
  }
  EXPECT_EQ(cal.outputs, c.outputs);

  const CircuitAnalysis an = analyze(cal);
  EXPECT_EQ(an.ranges[1], (ValueRange{4, 46, 0}));
  EXPECT_EQ(an.ranges[2], (ValueRange{0, 60, 0}));
  EXPECT_EQ(an.ranges[3], (ValueRange{0, 60, 2}));  // the rounding's zero bits stay known
  // The approximate rounding of m in [0, 60]: floor_8 in [0, 56], plus possibly 8.
  EXPECT_EQ(an.ranges[4], (ValueRange{0, 64, 3}));
  EXPECT_EQ(an.ranges[8], (ValueRange{0, 2, 0}));
  ASSERT_EQ(an.lookups.size(), 3u);
  EXPECT_EQ(an.lookups[2].node, 8u);
  EXPECT_EQ(an.lookups[2].precision, 6u);  // width(46 - 4)
  EXPECT_EQ(an.lookups[2].reduced_min, 4);
  EXPECT_EQ(an.lookups[0].precision, 4u);  // width(64 / 8)
  EXPECT_EQ(an.lookups[0].known_zero_bits, 3u);
  // The clear semantics do not change.
  for (const auto& sample : samples) EXPECT_EQ(run_clear(cal, sample), run_clear(c, sample));
}

TEST(CircuitAnalysis, CalibrationErrors) {
  const Circuit c = calibration_circuit();
  EXPECT_THROW(calibrate(c, {}), std::invalid_argument);
  EXPECT_THROW(calibrate(c, {{Tensor::vector({1, 2, 3})}}), std::invalid_argument);
  EXPECT_THROW(calibrate(c, {{Tensor::vector({1, 2, 3, 256})}}), std::invalid_argument);
  EXPECT_THROW(calibrate(c, {{}}), std::invalid_argument);
}

// ---------------------------------------------------------------- compile

// A 4-input, 2-output linear layer with a 4-bit ReLU:
//   column 0 weights {1, 1, -1, 1} on [0, 3]: [-3, 9]; column 1 {-1, 1, 1, 0}: [-3, 6].
//   lookup input [-3, 9]: p = 4, nu^2 = max(4, 3) = 4; output [0, 9]: 4 bits. W = 4.
Circuit relu_layer() {
  CircuitBuilder b;
  const Value x = b.input({4}, 2, false, "x");
  const Value acc = b.matmul(x, Tensor({4, 2}, {1, -1, 1, 1, -1, 1, 1, 0}), "acc");
  b.output(b.lookup(acc, [](std::int64_t v) { return v > 0 ? v : 0; }, "relu"), "y");
  return std::move(b).build();
}

TEST(CircuitAnalysis, CompileChoosesASecureSetMeetingTheTarget) {
  const CompiledCircuit cc = compile(relu_layer());
  ASSERT_TRUE(cc.uses_bootstrapping);
  EXPECT_EQ(cc.encoding_width(), 4u);
  EXPECT_NO_THROW(cc.params.validate());
  const tfhe::SecurityCheck sec = tfhe::check_security(cc.params, 128);
  EXPECT_TRUE(sec.secure) << sec.detail;
  EXPECT_GE(cc.params.message_bits, 4u);
  // The lookup (4, 4 * 4^0) and the outputs (1, 1 * 4^3).
  const std::vector<tfhe::NoiseConstraint> want = {{1, 64.0}, {4, 4.0}};
  ASSERT_EQ(cc.analysis.constraints, want);
  const double target = -40.0;
  EXPECT_LE(log2_read_error(cc.params, 4, 4.0), target + 1e-9);
  EXPECT_LE(log2_read_error(cc.params, 1, 64.0), target + 1e-9);
  // Whole circuit: 2 lookups and 2 output reads at 2^-40 each at most.
  const CircuitStatistics& st = cc.analysis.statistics;
  ASSERT_TRUE(st.log2_predicted_p_error.has_value());
  ASSERT_TRUE(st.predicted_p_error.has_value());
  EXPECT_LE(*st.log2_predicted_p_error, target + 2.0 + 1e-9);
  EXPECT_GT(*st.predicted_p_error, 0.0);
  EXPECT_NEAR(std::log2(*st.predicted_p_error), *st.log2_predicted_p_error, 1e-6);
  EXPECT_TRUE(has(st.parameters, cc.params.name));
  EXPECT_EQ(cc.circuit, relu_layer());
}

// Comparisons of two 6-bit features through one shared lookup (x0 against 20 and 40, x1
// against 33), packed into a 3-bit value read by an exact lookup.
Circuit comparisons(unsigned neighbour_log2) {
  CircuitBuilder b;
  const Value x = b.input({1, 2}, 6, false, "x");
  const Value xs = b.matmul(x, Tensor({2, 3}, {1, 1, 0, 0, 0, 1}), "select");
  std::vector<Table> tables;
  for (std::int64_t t : {20, 40, 33}) {
    Table tab{0, 0, {}};
    for (std::int64_t v = 0; v < 64; ++v) tab.values.push_back(v >= t ? 1 : 0);
    tables.push_back(std::move(tab));
  }
  const Value c = b.lookup_per_element_shared(xs, std::move(tables), {0, 1, 2}, "cmp", neighbour_log2);
  const Value packed = b.matmul(c, Tensor({3, 1}, {1, 2, 4}), "pack");
  b.output(b.lookup(packed, [](std::int64_t v) { return 7 - v; }, "leaf"), "y");
  return std::move(b).build();
}

// Neighbour reads: the comparisons' constraint carries their own probability, so the set is
// chosen for the narrow exact read instead of the 6-bit one; every read meets its bound; a
// read two entries away stays within the target; the statistics say so; calibration leaves
// the approximate lookup's range inferred.
TEST(CircuitAnalysis, NeighbourReadsLoosenTheirConstraintOnly) {
  const CompiledCircuit exact = compile(comparisons(0)), approx = compile(comparisons(8));
  EXPECT_EQ(exact.params.message_bits, 6u);
  EXPECT_EQ(approx.params.message_bits, 6u);
  EXPECT_LT(tfhe::ks_pbs_cost(approx.params), 0.5 * tfhe::ks_pbs_cost(exact.params))
      << approx.params.describe() << " vs " << exact.params.describe();
  // The output (1, 1 * 4^(3 - 1)), the packed read (3, 1 + 4 + 16), the comparisons (6, 1).
  const std::vector<tfhe::NoiseConstraint> want = {{1, 16.0}, {3, 21.0}, {6, 1.0, std::ldexp(1.0, -8)}};
  EXPECT_EQ(approx.analysis.constraints, want);
  EXPECT_EQ(approx.analysis.lookups[0].neighbour_log2, 8u);
  EXPECT_LE(log2_read_error(approx.params, 6, 1.0), -8.0 + 1e-9);
  EXPECT_GT(log2_read_error(approx.params, 6, 1.0), -40.0);
  EXPECT_LE(log2_read_error(approx.params, 3, 21.0), -40.0 + 1e-9);
  const CircuitStatistics& st = approx.analysis.statistics;
  EXPECT_EQ(st.approximate_pbs, 2);  // one rotation per feature
  ASSERT_TRUE(st.log2_neighbour_read_p.has_value());
  EXPECT_NEAR(*st.log2_neighbour_read_p, log2_read_error(approx.params, 6, 1.0), 1e-9);
  EXPECT_TRUE(has(st.to_string(), "approximate lookups: 2 PBS may read a neighbouring entry")) << st.to_string();
  // 2 rotations, 1 lookup, 1 output: each within 2^-40 (the rotations two entries away).
  EXPECT_LE(*st.log2_predicted_p_error, -40.0 + 2.0 + 1e-9);
  EXPECT_FALSE(exact.analysis.statistics.log2_neighbour_read_p.has_value());
  EXPECT_EQ(exact.analysis.statistics.approximate_pbs, 0);

  // A probability looser than the target allows for two-entry reads is tightened to that
  // limit; one no looser than the target is an exact read.
  const CompiledCircuit loose = compile(comparisons(2));
  EXPECT_LE(tfhe::log2_lookup_error_probability_for_variance(6, tfhe::variance_at_blind_rotation_input(loose.params, 1.0) / 9.0),
            -40.0 + 1e-9);
  EXPECT_GT(log2_read_error(loose.params, 6, 1.0), -8.0);
  EXPECT_EQ(compile(comparisons(45)).params, exact.params);

  const std::vector<std::vector<Tensor>> samples = {{Tensor({1, 2}, {10, 50})}, {Tensor({1, 2}, {30, 20})}};
  const std::uint32_t cmp = 2;  // x, select, cmp, pack, leaf
  ASSERT_EQ(comparisons(8).nodes[cmp].name, "cmp");
  EXPECT_FALSE(calibrate(comparisons(8), samples).nodes[cmp].range_hint.has_value());
  EXPECT_TRUE(calibrate(comparisons(0), samples).nodes[cmp].range_hint.has_value());
}

// A plain PBS with neighbour reads keeps one box of margin at either end: its entries start
// one step below the range and repeat the end values there (a read past an end must not
// wrap to the negated other end), which takes a 4-bit range of 15 values to 5 bits; a range
// of 14 values keeps 4.
TEST(CircuitAnalysis, PlainNeighbourReadsKeepAMarginBox) {
  for (const std::int64_t top : {14, 13}) {
    CircuitBuilder b;
    const Value x = b.input_range({4}, 0, top, "x");
    Table t{0, 0, {}};
    for (std::int64_t v = 0; v <= top; ++v) t.values.push_back(10 + v);
    const Value y = b.lookup_per_element(x, {t}, {0, 0, 0, 0}, "y", 8);
    b.output(y, "y");
    const CircuitAnalysis a = analyze(std::move(b).build());
    const LookupInfo& l = a.lookups[0];
    EXPECT_EQ(l.margin, 1u);
    EXPECT_EQ(l.reduced_min, -1);
    EXPECT_EQ(l.reduced_count, top + 1);
    EXPECT_EQ(l.precision, top == 14 ? 5u : 4u);
    const std::vector<std::int64_t> e = lookup_entries(t, l);
    EXPECT_EQ(e.front(), 10);
    EXPECT_EQ(e[1], 10);
    EXPECT_EQ(e[static_cast<std::size_t>(top) + 1], 10 + top);
    EXPECT_EQ(e.back(), 10 + top);
    EXPECT_EQ(e[5], 14);
  }
}

TEST(CircuitAnalysis, GlobalErrorTargetCoversTheWholeCircuit) {
  CompileOptions o;
  o.p_error = 0.5;  // ignored when a global target is given
  o.global_p_error = std::ldexp(1.0, -20);
  const CompiledCircuit cc = compile(relu_layer(), o);
  EXPECT_TRUE(tfhe::check_security(cc.params, 128).secure);
  ASSERT_TRUE(cc.analysis.statistics.log2_predicted_p_error.has_value());
  EXPECT_LE(*cc.analysis.statistics.log2_predicted_p_error, -20.0 + 1e-9);
  // Every read meets the even share 1 - (1 - g)^(1/4) (about 2^-22).
  const double share = std::log2(-std::expm1(std::log1p(-std::ldexp(1.0, -20)) / 4.0));
  EXPECT_LE(log2_read_error(cc.params, 4, 4.0), share + 1e-9);
  EXPECT_LE(log2_read_error(cc.params, 1, 64.0), share + 1e-9);
}

TEST(CircuitAnalysis, LinearCircuitsGetASecureLevelledSet) {
  // Wide accumulators: column 0 in [0, 16 x 4095 x 255] = [0, 16,707,600], column 1 (signs
  // alternating) in [-8,353,800, 8,353,800]. The node's range is their union, span
  // 25,061,400: W = 25. nu^2 = 16 x 255^2 for both columns.
  CircuitBuilder b;
  const Value x = b.input({2, 16}, 12, false, "x");
  std::vector<std::int64_t> w;
  for (int k = 0; k < 16; ++k) {
    w.push_back(255);
    w.push_back(k % 2 ? -255 : 255);
  }
  b.output(b.matmul(x, Tensor({16, 2}, w), "acc"), "acc");
  const Circuit c = std::move(b).build();
  const CompiledCircuit cc = compile(c);
  EXPECT_FALSE(cc.uses_bootstrapping);
  EXPECT_FALSE(cc.analysis.uses_bootstrapping());
  EXPECT_EQ(cc.encoding_width(), 25u);
  EXPECT_NO_THROW(cc.params.validate());
  const tfhe::SecurityCheck sec = tfhe::check_security(cc.params, 128);
  EXPECT_TRUE(sec.secure) << sec.detail;
  EXPECT_EQ(cc.params.glwe_dimension.value, 1u);
  EXPECT_GE(cc.params.polynomial_size.value, 1024u);
  // An output decodes right when its fresh noise times nu^2, at width W, meets the target:
  // (1, nu^2 * 4^(W - 1)) in units of the fresh variance.
  const double nu2 = 16.0 * 255.0 * 255.0;
  const double variance = nu2 * cc.params.glwe_std_dev * cc.params.glwe_std_dev * std::ldexp(1.0, 2 * 24);
  EXPECT_LE(variance, tfhe::max_variance_for_p_error(1, std::ldexp(1.0, -40)));
  EXPECT_LE(tfhe::log2_lookup_error_probability_for_variance(1, variance), -40.0 + 1e-9);
  ASSERT_TRUE(cc.analysis.statistics.log2_predicted_p_error.has_value());
  EXPECT_LE(*cc.analysis.statistics.log2_predicted_p_error, -40.0 + 2.0 + 1e-9);  // 4 outputs
  EXPECT_EQ(cc.analysis.statistics.total_pbs, 0);
}

TEST(CircuitAnalysis, UnreachableTargetsAreRefusedNamingTheMostDemandingLookup) {
  CircuitBuilder b;
  const Value x = b.input({2}, 6, false, "x");
  b.output(b.lookup(x, [](std::int64_t v) { return v / 2; }, "act"), "y");
  // x shares a segment with a 41-bit output: the 6-bit lookup's noise is amplified 2^35.
  b.output(b.add(x, b.input({2}, 40, false, "wide")), "w");
  const Circuit c = std::move(b).build();
  const CircuitAnalysis an = analyze(c);
  ASSERT_EQ(an.lookups.size(), 1u);
  EXPECT_EQ(an.lookups[0].amplification_bits, 35u);
  EXPECT_FALSE(an.statistics.warnings.empty());  // the amplification is worth a warning
  const std::string e = error_of([&] { compile(c); });
  EXPECT_TRUE(has(e, "lookup 'act' (node 1)")) << e;
}

TEST(CircuitAnalysis, InvalidErrorTargetsAreRefused) {
  const Circuit c = relu_layer();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (double p : {0.0, 1.0, -0.25, 2.0, nan}) {
    CompileOptions o;
    o.p_error = p;
    EXPECT_TRUE(has(error_of([&] { compile(c, o); }), "p_error")) << p;
    CompileOptions g;
    g.global_p_error = p;
    EXPECT_TRUE(has(error_of([&] { compile(c, g); }), "p_error")) << p;
  }
  // Levelled circuits check it too.
  CircuitBuilder b;
  b.output(b.add(b.input({2}, 4, false), 1));
  const Circuit lin = std::move(b).build();
  CompileOptions o;
  o.p_error = 0.0;
  EXPECT_THROW(compile(lin, o), std::invalid_argument);
}

TEST(CircuitAnalysis, CompileWithParametersKeepsTheSet) {
  const tfhe::ParameterSet toy = tfhe::toy::exact_set(4);
  const CompiledCircuit cc = compile_with_parameters(relu_layer(), toy);
  EXPECT_EQ(cc.params, toy);
  EXPECT_TRUE(cc.uses_bootstrapping);
  EXPECT_EQ(cc.encoding_width(), 4u);
  EXPECT_TRUE(cc.analysis.statistics.log2_predicted_p_error.has_value());
  tfhe::ParameterSet broken = toy;
  broken.polynomial_size = tfhe::PolynomialSize(100);
  EXPECT_THROW(compile_with_parameters(relu_layer(), broken), std::invalid_argument);
}

TEST(CircuitAnalysis, WidthOfSpan) {
  EXPECT_EQ(width_of_span(0), 1u);
  EXPECT_EQ(width_of_span(1), 1u);
  EXPECT_EQ(width_of_span(2), 2u);
  EXPECT_EQ(width_of_span(255), 8u);
  EXPECT_EQ(width_of_span(256), 9u);
  EXPECT_EQ(width_of_span(~std::uint64_t{0}), 64u);
}

}  // namespace
}  // namespace veil::circuit

namespace veil::circuit {
namespace {

TEST(CircuitAnalysis, LookupOutputsStartNarrowSegments) {
  // A network layer: a wide accumulator read through approximate rounding by a lookup whose
  // 4-bit output is the circuit's output. The output decodes at 4 bits, not at the
  // accumulator's width, so its constraint is 4^3, not 4^(W - 1).
  CircuitBuilder b;
  const Value x = b.input({1, 30}, 8, false, "x");
  const Value acc = b.matmul(x, Tensor::filled({30, 2}, 7), "acc");  // [0, 53550]: 16 bits
  const Value r = b.round_bits(acc, 12, RoundingMode::kApproximate, "round");
  const Value y = b.lookup(r, [](std::int64_t v) { return std::min<std::int64_t>(v >> 12, 15); }, "act");
  b.output(y, "y");
  const CircuitAnalysis an = analyze(std::move(b).build());
  EXPECT_EQ(an.widths[acc.id], 16u);
  EXPECT_EQ(an.widths[y.id], 4u);
  EXPECT_EQ(an.encoding_width, 16u);
  ASSERT_EQ(an.lookups.size(), 1u);
  EXPECT_EQ(an.lookups[0].input_width, 16u);
  EXPECT_EQ(an.lookups[0].output_width, 4u);
  EXPECT_EQ(an.lookups[0].amplification_bits, 0u);
  // Precision 1 holds the output read only: nu^2 = 1 (a PBS output) times 4^(4 - 1).
  ASSERT_FALSE(an.constraints.empty());
  EXPECT_EQ(an.constraints.front().message_bits, 1u);
  EXPECT_DOUBLE_EQ(an.constraints.front().sq_norm2, 64.0);
}

}  // namespace
}  // namespace veil::circuit
