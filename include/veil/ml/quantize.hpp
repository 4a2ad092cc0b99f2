// Post-training quantization and lowering: a float Model plus calibration rows become a
// circuit (circuit.hpp) and the client's Processing (processing.hpp).
//
// Lowerings (the mathematics: docs/design.md, "Quantization" and "Trees as matrices"):
//   linear models  inputs quantized per feature (affine, calibration min/max), weights per
//                  output (symmetric), preprocessing and input scales folded into the
//                  weights, bias-corrected at the mean calibration codes; the circuit
//                  is one integer matmul, no lookup. The client
//                  dequantizes the accumulator and applies the link.
//   tree ensembles inputs quantized per feature (default 6 bits); per node one lookup on
//                  the quantized feature giving the comparison bit (evaluated on the
//                  dequantized value, so the client's quantization decides every split),
//                  the comparisons of one feature sharing one blind rotation, read
//                  approximately by default (a neighbouring code with probability at most
//                  2^-10: tree_comparison_neighbour_log2), so that the parameter set
//                  follows the leaf lookups rather than the input bits;
//                  leaves in groups (a subtree's leaves, as many as fit tree_group_bits):
//                  a clear matmul packs the group's path conditions and its subtree's
//                  comparison bits into one integer, and one lookup gives the reached
//                  leaf's quantized value, 0 when the path is not taken (or, for
//                  multi-output leaves, one 0/1 indicator per leaf followed by a clear
//                  matmul with the leaf values); trees summed on the client unless
//                  sum_trees_in_circuit; classifiers whose leaves hold class fractions
//                  compute every class but the last, which the client derives
//                  (Processing::complement).
//   networks       every encrypted value carries a per-element affine interpretation
//                  (real = s * v + b); linear ops (Gemm, MatMul, Conv, BatchNormalization,
//                  Add/Sub/Mul by constants, average pooling) fold the scales into
//                  per-output-channel quantized weights and the rest into the
//                  interpretation (with bias correction: the weights' rounding error at
//                  the calibration rows' mean input joins the offset; with range filling,
//                  network_fill_lookup_range, each unit's weight scale makes its calibrated
//                  range fill the levels of the rounding ahead of its lookup); each activation is one lookup fused with requantization
//                  to activation_bits, preceded by an approximate round_bits that keeps
//                  lookup_precision bits of the accumulator's calibrated range (each
//                  unit's range centred on zero first, by a clear constant, so that the
//                  bits go to the widest unit's width, not to the units' spread); MaxPool is
//                  max(a, b) = a + relu(b - a) through lookups, taken before the
//                  activation that feeds it when pool_before_activation; the last layer's
//                  accumulator is the output, centred and approximately rounded to
//                  network_output_bits (no lookup: the client's decryption rounds it; exact,
//                  unrounded, when the network has no lookup at all). The lookups read
//                  their rounded accumulator approximately by default (a neighbouring step
//                  with probability at most 2^-10: network_neighbour_log2, tables with a
//                  box of margin at either end) where that makes the circuit cheaper.
//   k-nearest     inputs quantized with one common step for every feature in the
//   neighbours    preprocessed space (knn_input_bits), the training points by the same
//                 quantizers; the exact squared code distances (one square lookup per
//                 feature, then levelled), one lookup per training point to a level that
//                 packs the distance bucket and the point's class, the k smallest levels by
//                 a bitonic selection network of compare-exchanges (one lookup each), one
//                 lookup per winner and class for the votes; exact reads only
//                 (src/ml/lower_knn.cpp states the algorithm and its cost).
// Range hints: every levelled node gets the range observed on the calibration rows, widened
// by range_margin of its span on each side (clipped to the inferred range), so that the
// circuit's bit widths follow real data (values outside wrap in FHE, as with Concrete's
// input sets).
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "veil/circuit/analysis.hpp"
#include "veil/circuit/circuit.hpp"
#include "veil/ml/data.hpp"
#include "veil/ml/model.hpp"
#include "veil/ml/processing.hpp"

namespace veil::ml {

enum class TreeLeafMode {
  kAuto,          // value lookups up to 4 computed values per leaf, indicator + matmul beyond
  kValueLookup,   // one lookup per (leaf group, value): the reached leaf's quantized value or 0
  kIndicator,     // one lookup per leaf (0/1), then a clear matmul with the leaf values
};

// The narrowest network lookups: where the automatic choice starts, the least an explicit
// lookup_precision may ask.
inline constexpr unsigned kMinLookupPrecision = 2;

struct QuantizationOptions {
  // Linear models (Concrete ML's defaults: 8 and 8).
  unsigned linear_input_bits = 8;
  unsigned linear_weight_bits = 8;
  // Tree ensembles (Concrete ML's default: 6 input bits). 0 chooses them per model: the
  // fewest bits in [2, max_tree_input_bits] whose clear predictions on the calibration rows
  // stray from the float model's at most tree_auto_tolerance more than max_tree_input_bits' do
  // (as lookup_precision = 0 for networks). Every comparison reads all input bits, so 4 bits
  // put a tree ensemble on the 4-bit set, about 5x cheaper per PBS than the 6-bit one.
  unsigned tree_input_bits = 6;
  unsigned max_tree_input_bits = 6;
  unsigned tree_leaf_bits = 6;  // leaf values, symmetric, one scale for the whole ensemble
  bool sum_trees_in_circuit = false;
  TreeLeafMode tree_leaf_mode = TreeLeafMode::kAuto;
  // Value lookups serve a whole subtree's leaves while the lookup reads at most this many
  // bits (0: tree_input_bits, so that leaf lookups are never wider than comparisons).
  unsigned tree_group_bits = 0;
  // Classifiers whose leaf values sum to one constant (class fractions) compute all classes
  // but the last; the client takes the last as the constant minus the others.
  bool tree_complement_class = true;
  // Models whose trees route missing values by default directions (XGBoost) reserve the top
  // input code for NaN, so that a missing feature follows its node's default direction.
  bool tree_missing_values = true;
  // The comparisons of one feature share one blind rotation (multi-value bootstrapping:
  // CircuitBuilder::lookup_per_element_shared) when some feature has several: one PBS per
  // compared feature instead of one per comparison, at a PBS output's noise (two for
  // XGBoost's tables whose missing-value code makes a second jump).
  // compile_model keeps it when the compiled circuit's PBS count times its set's cost is
  // lower, over the group widths it tries (tree_group_bits when set; else from the input
  // bits down to 2 with neighbour reads, the input bits alone without).
  bool tree_shared_comparisons = true;
  // Comparisons read their feature approximately (circuit neighbour reads, needs
  // tree_shared_comparisons): one may see a neighbouring code, and so flip when the feature
  // sits next to its threshold, with probability up to 2^-n per read; 0 reads exactly. The
  // parameter set then follows the leaf lookups, which compile_model narrows to the
  // cheapest group width, instead of the comparisons' input bits: at 6 bits the 4-bit set
  // instead of the 6-bit one. The clear predictions are the same; FHE's differ from them only
  // where a feature's code is next to a threshold (docs/perf-log.md measures how often).
  unsigned tree_comparison_neighbour_log2 = 10;
  // k-nearest neighbours: input bits per feature (one common step for all features in the
  // preprocessed space); 0: the most up to knn_max_input_bits whose squared distances need
  // at most two bits more than knn_distance_bits, or with knn_exact_distances whose squared
  // distances a lookup reads exactly (8 bits: features * (2^bits - 1)^2 < 256 or so; an
  // explicit value wider than that is then refused). Without knn_exact_distances,
  // distances wider than knn_distance_bits are rounded to that many bits by an approximate
  // round_bits (free; a distance next to a rounding tie may land in either neighbouring
  // level under encryption): 4-bit inputs on iris lose no accuracy against the float model
  // where exact 3-bit ones lose 3 to 8 points.
  unsigned knn_input_bits = 0;
  unsigned knn_max_input_bits = 4;
  bool knn_exact_distances = false;
  unsigned knn_distance_bits = 7;
  // Networks.
  unsigned network_input_bits = 6;
  unsigned network_weight_bits = 5;
  unsigned network_activation_bits = 5;
  // Bits of the last accumulator's calibrated range the client reads. 0: the most, up to
  // lookup_precision + 2 (and 8), that leave the parameter set compile() picks at its
  // default error target no costlier than lookup_precision bits would: at the lookups' own
  // precision close logits often round to the same value and the argmax breaks the tie by
  // class order, but each bit quadruples the output's noise constraint (free with the 5-
  // and 6-bit sets, where the lookups' constraints bind; not with the 4-bit wine MLP's).
  // The automatic lookup precision is chosen with the outputs read at that precision.
  unsigned network_output_bits = 0;
  // Rounding threshold: lookups read at most this many bits, at least kMinLookupPrecision.
  // 0 (the default) chooses it per model: the smallest precision in [kMinLookupPrecision,
  // max_lookup_precision] whose clear predictions on
  // the calibration rows follow the float model's within auto_tolerance of what
  // max_lookup_precision achieves (prediction_infidelity). Every bit less makes each PBS
  // cheaper (6-bit set: N = 4096, two levels; 5-bit: N = 2048).
  unsigned lookup_precision = 0;
  unsigned max_lookup_precision = 6;
  // Automatic choices: how much more the predictions on the calibration rows may stray from
  // the float model's than at the largest width (0.01: one row in a hundred more with
  // another label). The defaults are the accuracy targets Veil holds itself to: 1 point for
  // networks (lookup_precision = 0), 2 for tree ensembles (tree_input_bits = 0).
  double auto_tolerance = 0.01;
  double tree_auto_tolerance = 0.02;
  // Quantization-aware networks (fake quantization in the graph: QuantizeLinear /
  // DequantizeLinear) carry their own grids, which the circuit keeps; rounding accumulators
  // ahead of lookups is the only place it departs from the model, so their automatic precision
  // answers to a tighter tolerance (half a point) and may go one bit wider.
  double qat_auto_tolerance = 0.005;
  unsigned max_qat_lookup_precision = 7;
  // An activation whose only consumer is an unpadded MaxPool runs after it, on the pooled
  // elements (a quarter of them for 2x2 windows): the max then reads rounded accumulator
  // differences, which costs up to one rounding step of accuracy (cnn_digits: 730 -> 442
  // lookups, accuracy 0.964 -> 0.956, float 0.969).
  bool pool_before_activation = true;
  // Network lookups read their (rounded) accumulator approximately: a read may return a
  // neighbouring step's entry with probability up to 2^-n, on top of approximate rounding's
  // neighbour near a tie (circuit neighbour reads; each table gets a box of margin at either
  // end, so the rounding keeps 2^p - 2 values of the calibrated range). The set then needs
  // no 2^-40 reads at the lookups' precision: cheaper PBS (docs/perf-log.md measures the
  // accuracy). 0: the reads are as exact as the error target makes them.
  unsigned network_neighbour_log2 = 10;
  // Range filling: each unit of a Gemm or convolution gets the weight scale at which its
  // calibrated output range spans the same integer width, the one that fills the levels of
  // the lookup precision at the rounding step the widest unit needs (instead of the widest
  // unit alone setting the step, narrower units reading fewer levels, and up to half the
  // levels lost to the power-of-two step). The weights' codes get finer, up to
  // fill_max_weight_bits, never coarser than the weight bits asked for. Where the activation
  // runs after a max pool (pool_before_activation), the range filled is that of the max's
  // differences (b - a, up to twice the accumulators'), the first rounding the accumulators
  // meet. From fill_min_lookup_precision bits of lookup precision (below, too few levels are
  // left to fill); compile_model keeps the unfilled lowering where it is strictly cheaper.
  // Post-training networks only: trained weight grids are kept.
  bool network_fill_lookup_range = true;
  unsigned fill_max_weight_bits = 6;
  // The narrowest lookup precision filling applies to (in [kMinLookupPrecision, 8]): below
  // 5 bits, the tables' boxes of margin and the slack leave few levels to fill.
  unsigned fill_min_lookup_precision = 5;
  std::map<std::string, unsigned> activation_bits_per_node;  // by ONNX node name
  std::map<std::string, unsigned> weight_bits_per_node;
  // Calibration.
  double range_margin = 0.1;
  std::size_t max_calibration_rows = 1000;  // networks: rows observed per layer
};

struct QuantizedModel {
  circuit::Circuit circuit;
  Processing processing;
  // The widths the lowering used, the automatic choices included: the lookup precision of
  // a network and the input bits of a tree ensemble (0 for the other models).
  unsigned lookup_precision = 0;
  unsigned tree_input_bits = 0;
  unsigned knn_input_bits = 0;  // k-nearest neighbours
};

// Quantizes and lowers `model` with `calibration` rows (n_features columns, at least one
// row, no NaN except for models that route missing values). Throws std::invalid_argument
// naming the model part (layer, node, tree) that cannot be lowered: an unsupported op or
// attribute, a shape the lowering does not handle, bit widths outside [1, 8] / [2, 16].
QuantizedModel compile_model(const Model& model, const Matrix& calibration, const QuantizationOptions& options = {});

// Quantize, run the circuit with the clear executor, post-process: "what FHE will return".
Predictions predict_clear(const QuantizedModel& model, const Matrix& rows);
// predict_clear with every approximate read drawn as FHE makes it (circuit::run_clear_noisy,
// the noise of circuit::approximate_read_std_dev for `compiled`, the compile of
// model.circuit): an estimate of the FHE predictions at clear speed, reproducible for a seed.
// Circuits without approximate reads predict exactly as predict_clear. `std_dev`, when given,
// replaces approximate_read_std_dev's per-node noise (e.g. drawn at some nodes only).
Predictions predict_simulated(const QuantizedModel& model, const circuit::CompiledCircuit& compiled, const Matrix& rows,
                              std::uint64_t seed, const std::vector<double>* std_dev = nullptr);

// How far quantized predictions stray from reference (float) ones on the same rows:
// classification, the fraction of labels that differ; regression, 1 - R^2 of the quantized
// values against the reference values. What the automatic widths bound.
double prediction_infidelity(Task task, const Predictions& quantized, const Predictions& reference);

}  // namespace veil::ml
