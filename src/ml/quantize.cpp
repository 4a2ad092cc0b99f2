// compile_model's dispatch, shared quantization helpers and predict_clear.
#include "veil/ml/quantize.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <stdexcept>

#include "lowering.hpp"
#include "veil/circuit/analysis.hpp"
#include "veil/circuit/clear_executor.hpp"
#include "veil/tfhe/pbs.hpp"

namespace veil::ml {
namespace detail {

InputQuantizer affine_quantizer(double lo, double hi, unsigned bits, bool reserve_top) {
  InputQuantizer q;
  q.n_bits = bits;
  q.is_signed = false;
  q.q_min = 0;
  const std::int64_t top = (std::int64_t{1} << bits) - 1 - (reserve_top ? 1 : 0);
  if (top < 1) throw std::invalid_argument("affine_quantizer: " + std::to_string(bits) + " bits leave no room");
  q.q_max = top;
  if (reserve_top) q.missing_code = top + 1;
  if (!(hi > lo)) {
    // Constant on the calibration rows: one code (0) standing for that value, so that the
    // lowerings see a constant (values outside the calibrated range clamp, as always).
    q.scale = lo != 0 ? std::fabs(lo) : 1.0;
    q.zero_point = lo > 0 ? -1 : (lo < 0 ? 1 : 0);
    q.q_max = 0;
    return q;
  }
  q.scale = (hi - lo) / static_cast<double>(top);
  q.zero_point = static_cast<std::int64_t>(std::nearbyint(-lo / q.scale));
  return q;
}

void column_ranges(const Matrix& rows, std::vector<double>& lo, std::vector<double>& hi) {
  lo.assign(rows.cols, std::numeric_limits<double>::infinity());
  hi.assign(rows.cols, -std::numeric_limits<double>::infinity());
  for (std::size_t r = 0; r < rows.rows; ++r)
    for (std::size_t c = 0; c < rows.cols; ++c) {
      const double v = rows.at(r, c);
      if (std::isnan(v)) continue;
      lo[c] = std::min(lo[c], v);
      hi[c] = std::max(hi[c], v);
    }
  for (std::size_t c = 0; c < rows.cols; ++c)
    if (lo[c] > hi[c]) lo[c] = hi[c] = 0;
}

void set_range_hints(circuit::Circuit& c, const std::vector<std::vector<circuit::Tensor>>& samples, double margin) {
  const circuit::Circuit calibrated = circuit::calibrate(c, samples);
  for (std::size_t id = 0; id < c.nodes.size(); ++id) {
    const auto& n = calibrated.nodes[id];
    switch (n.kind) {
      case circuit::OpKind::kAdd:
      case circuit::OpKind::kSub:
      case circuit::OpKind::kAddConstant:
      case circuit::OpKind::kMulConstant:
      case circuit::OpKind::kMatmul:
      case circuit::OpKind::kConv2d:
      case circuit::OpKind::kSum:
        break;
      default:
        continue;
    }
    if (!n.range_hint || circuit::is_approximate(c, static_cast<std::uint32_t>(id))) continue;
    circuit::ValueRange h = *n.range_hint;
    const double span = static_cast<double>(h.hi - h.lo);
    const auto widen = static_cast<std::int64_t>(std::ceil(span * margin));
    h.lo -= widen;
    h.hi += widen;
    // Keep an existing (tighter, exact) hint set by the lowering.
    if (c.nodes[id].range_hint) {
      h.lo = std::max(h.lo, c.nodes[id].range_hint->lo);
      h.hi = std::min(h.hi, c.nodes[id].range_hint->hi);
      if (h.lo > h.hi) h = *c.nodes[id].range_hint;
    }
    c.nodes[id].range_hint = h;
  }
}

double quantize_symmetric(const std::vector<double>& values, unsigned bits, std::vector<std::int64_t>& q) {
  double mx = 0;
  for (double v : values) mx = std::max(mx, std::fabs(v));
  const double levels = static_cast<double>((std::int64_t{1} << (bits - 1)) - 1);
  const double scale = mx > 0 ? mx / levels : 1.0;
  q.resize(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) q[i] = static_cast<std::int64_t>(std::nearbyint(values[i] / scale));
  return scale;
}

}  // namespace detail

namespace {

// The compiled circuit when it bootstraps, for comparing the costs of lowering choices;
// nullopt for a levelled-only circuit or one compile() refuses (it says why when the caller
// compiles the choice made).
std::optional<circuit::CompiledCircuit> compile_bootstrapped(const circuit::Circuit& c) {
  try {
    circuit::CompiledCircuit cc = circuit::compile(c);
    if (!cc.uses_bootstrapping) return std::nullopt;
    return cc;
  } catch (const std::invalid_argument&) {
    return std::nullopt;
  }
}

// A bootstrapped circuit's cost model (nullopt as above): its set's cost per KS-PBS, and that
// times its PBS count.
struct CircuitCost {
  double per_pbs;
  double total;
};
std::optional<CircuitCost> circuit_cost(const circuit::Circuit& c) {
  const std::optional<circuit::CompiledCircuit> cc = compile_bootstrapped(c);
  if (!cc) return std::nullopt;
  const double per_pbs = tfhe::ks_pbs_cost(cc->params);
  return CircuitCost{per_pbs, static_cast<double>(cc->analysis.statistics.total_pbs) * per_pbs};
}
std::optional<double> total_cost(const circuit::Circuit& c) {
  const std::optional<CircuitCost> cost = circuit_cost(c);
  return cost ? std::optional<double>(cost->total) : std::nullopt;
}

// A network with fake quantization in its graph (quantization-aware training).
bool is_quantization_aware(const Network& net) {
  if (!net.weight_steps.empty()) return true;
  return std::any_of(net.nodes.begin(), net.nodes.end(),
                     [](const GraphNode& n) { return n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear"; });
}

void check_bits(unsigned bits, unsigned lo, unsigned hi, const char* what) {
  if (bits < lo || bits > hi)
    throw std::invalid_argument(std::string("compile_model: ") + what + " = " + std::to_string(bits) + " is outside [" +
                                std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

// An automatic width: the fewest bits b in [min, max] whose lowering `lower(b)` predicts the
// calibration rows as faithfully (to the float model) as lower(max) does, give or take
// `tolerance`.
template <class Lower>
QuantizedModel fewest_bits_within_tolerance(const Model& model, const Matrix& calibration, const QuantizationOptions& options,
                                            unsigned min, unsigned max, double tolerance, Lower&& lower) {
  const Matrix rows = calibration.first_rows(std::min(calibration.rows, options.max_calibration_rows));
  const Predictions reference = predict_float(model, rows);
  QuantizedModel widest = lower(max);
  const double bound = prediction_infidelity(model.task, predict_clear(widest, rows), reference) + tolerance;
  for (unsigned b = min; b < max; ++b) {
    QuantizedModel q = lower(b);
    if (prediction_infidelity(model.task, predict_clear(q, rows), reference) <= bound + 1e-12) return q;
  }
  return widest;
}
}  // namespace

QuantizedModel compile_model(const Model& model, const Matrix& calibration, const QuantizationOptions& options) {
  if (calibration.rows == 0) throw std::invalid_argument("compile_model: no calibration rows");
  if (calibration.cols != model.n_features)
    throw std::invalid_argument("compile_model: calibration rows have " + std::to_string(calibration.cols) +
                                " columns, the model " + std::to_string(model.n_features) + " features");
  check_bits(options.linear_input_bits, 1, 16, "linear_input_bits");
  check_bits(options.linear_weight_bits, 2, 16, "linear_weight_bits");
  if (options.tree_input_bits != 0) check_bits(options.tree_input_bits, 1, 8, "tree_input_bits");
  check_bits(options.max_tree_input_bits, 2, 8, "max_tree_input_bits");
  check_bits(options.tree_leaf_bits, 2, 16, "tree_leaf_bits");
  if (options.tree_group_bits > 8) throw std::invalid_argument("compile_model: tree_group_bits must be in [0, 8], got " + std::to_string(options.tree_group_bits));
  if (options.network_neighbour_log2 > circuit::kMaxNeighbourLog2)
    throw std::invalid_argument("compile_model: network_neighbour_log2 must be in [0, " +
                                std::to_string(circuit::kMaxNeighbourLog2) + "], got " +
                                std::to_string(options.network_neighbour_log2));
  if (options.tree_comparison_neighbour_log2 > circuit::kMaxNeighbourLog2)
    throw std::invalid_argument("compile_model: tree_comparison_neighbour_log2 must be in [0, " +
                                std::to_string(circuit::kMaxNeighbourLog2) + "], got " +
                                std::to_string(options.tree_comparison_neighbour_log2));
  check_bits(options.network_input_bits, 1, 8, "network_input_bits");
  check_bits(options.network_weight_bits, 2, 16, "network_weight_bits");
  check_bits(options.network_activation_bits, 1, 8, "network_activation_bits");
  if (options.network_output_bits != 0) check_bits(options.network_output_bits, 1, 8, "network_output_bits");
  if (options.lookup_precision != 0) check_bits(options.lookup_precision, kMinLookupPrecision, 8, "lookup_precision");
  check_bits(options.max_lookup_precision, kMinLookupPrecision, 8, "max_lookup_precision");
  check_bits(options.max_qat_lookup_precision, kMinLookupPrecision, 8, "max_qat_lookup_precision");
  check_bits(options.fill_max_weight_bits, 2, 16, "fill_max_weight_bits");
  check_bits(options.fill_min_lookup_precision, kMinLookupPrecision, 8, "fill_min_lookup_precision");
  if (!(options.qat_auto_tolerance >= 0) || options.qat_auto_tolerance > 1)
    throw std::invalid_argument("compile_model: qat_auto_tolerance must be in [0, 1]");
  if (!(options.auto_tolerance >= 0) || options.auto_tolerance > 1)
    throw std::invalid_argument("compile_model: auto_tolerance must be in [0, 1]");
  if (!(options.tree_auto_tolerance >= 0) || options.tree_auto_tolerance > 1)
    throw std::invalid_argument("compile_model: tree_auto_tolerance must be in [0, 1]");
  if (!(options.range_margin >= 0) || options.range_margin > 10)
    throw std::invalid_argument("compile_model: range_margin must be in [0, 10]");
  const auto finish = [&](QuantizedModel q) {
    q.processing.task = model.task;
    q.processing.n_features = model.n_features;
    q.processing.classes = model.classes;
    return q;
  };
  if (const auto* lin = std::get_if<LinearModel>(&model.body)) return finish(detail::lower_linear(model, *lin, calibration, options));
  if (const auto* knn = std::get_if<NearestNeighbors>(&model.body)) {
    if (options.knn_input_bits != 0) check_bits(options.knn_input_bits, 1, 8, "knn_input_bits");
    check_bits(options.knn_max_input_bits, 1, 8, "knn_max_input_bits");
    check_bits(options.knn_distance_bits, 3, 8, "knn_distance_bits");
    return finish(detail::lower_knn(model, *knn, calibration, options));
  }
  if (const auto* ens = std::get_if<TreeEnsemble>(&model.body)) {
    const auto lower_as = [&](unsigned bits, bool shared, unsigned group_bits) {
      QuantizationOptions o = options;
      o.tree_input_bits = bits;
      o.tree_shared_comparisons = shared;
      o.tree_group_bits = group_bits;
      QuantizedModel q = finish(detail::lower_trees(model, *ens, calibration, o));
      q.tree_input_bits = bits;
      return q;
    };
    const auto lower = [&](unsigned bits) { return lower_as(bits, false, options.tree_group_bits); };
    QuantizedModel q = options.tree_input_bits != 0
                           ? lower(options.tree_input_bits)
                           : fewest_bits_within_tolerance(model, calibration, options, 2, options.max_tree_input_bits,
                                                          options.tree_auto_tolerance, lower);
    if (!options.tree_shared_comparisons) return q;
    // Shared comparisons (same clear predictions) when they make the circuit cheaper: fewer
    // PBS, but their outputs' noise may cost a larger parameter set. With neighbour reads the
    // set follows the leaf lookups' width: narrower groups (more of them) may pay.
    std::optional<double> best_cost = total_cost(q.circuit);
    const unsigned widest = options.tree_group_bits ? options.tree_group_bits : q.tree_input_bits;
    const unsigned narrowest = options.tree_group_bits || options.tree_comparison_neighbour_log2 == 0 ? widest : 2;
    for (unsigned g = widest; g >= narrowest && g >= 1; --g) {
      QuantizedModel shared = lower_as(q.tree_input_bits, true, g);
      const std::optional<double> cost = total_cost(shared.circuit);
      if (cost && (!best_cost || *cost < *best_cost)) {
        best_cost = cost;
        q = std::move(shared);
      }
    }
    return q;
  }
  const auto& net = std::get<Network>(model.body);
  // The lowering under `base` (its neighbour reads): the automatic precision, then the free
  // output bits.
  const auto lower_network = [&](const QuantizationOptions& base) {
    const auto lower_with = [&](unsigned precision, unsigned output_bits) {
      QuantizationOptions o = base;
      o.lookup_precision = precision;
      o.network_output_bits = output_bits;
      QuantizedModel q = finish(detail::lower_network(model, net, calibration, o));
      q.lookup_precision = precision;
      return q;
    };
    // Output bits beyond the lookups' precision, where the set costs no more per PBS
    // (network_output_bits).
    const auto with_free_output_bits = [&](QuantizedModel q) {
      const unsigned precision = q.lookup_precision;
      const std::optional<CircuitCost> base_cost = circuit_cost(q.circuit);
      if (!base_cost) return q;
      for (unsigned bits = std::min(8u, precision + 2); bits > precision; --bits) {
        QuantizedModel wider = lower_with(precision, bits);
        const std::optional<CircuitCost> c = circuit_cost(wider.circuit);
        if (c && c->per_pbs <= base_cost->per_pbs) return wider;
      }
      return q;
    };
    // The automatic precision is chosen with the outputs read at the lookups' precision (or
    // at the bits asked for); the outputs then get the bits that are free.
    const unsigned output_bits = base.network_output_bits;
    const auto lower = [&](unsigned precision) { return lower_with(precision, output_bits ? output_bits : precision); };
    const bool qat = is_quantization_aware(net);
    QuantizedModel q = base.lookup_precision != 0
                           ? lower(base.lookup_precision)
                           : fewest_bits_within_tolerance(model, calibration, base, kMinLookupPrecision,
                                                          qat ? base.max_qat_lookup_precision : base.max_lookup_precision,
                                                          qat ? base.qat_auto_tolerance : base.auto_tolerance, lower);
    return output_bits ? q : with_free_output_bits(std::move(q));
  };
  const auto lower_reads = [&](const QuantizationOptions& base) {
    QuantizedModel q = lower_network(base);
    if (base.network_neighbour_log2 == 0) return q;
    // Neighbour reads cost each table two values of range (its margins), which may cost the
    // automatic precision a bit: exact reads when those come out cheaper (the wine MLP: 4 bits
    // exact against 5 with neighbour reads).
    QuantizationOptions exact_options = base;
    exact_options.network_neighbour_log2 = 0;
    QuantizedModel exact = lower_network(exact_options);
    const std::optional<double> approx_cost = total_cost(q.circuit), exact_cost = total_cost(exact.circuit);
    return approx_cost && (!exact_cost || *approx_cost < *exact_cost) ? q : exact;
  };
  QuantizedModel q = lower_reads(options);
  if (!options.network_fill_lookup_range || is_quantization_aware(net)) return q;
  // A fixed precision below filling's lowers the same circuit either way.
  if (options.lookup_precision != 0 && options.lookup_precision < options.fill_min_lookup_precision) return q;
  // Range filling's finer weights raise the accumulators' noise, and its better agreement at
  // the widest precision may make the automatic precision a bit wider (the iris MLP: 5 bits
  // filled against 4): the unfilled lowering when it comes out strictly cheaper.
  QuantizationOptions unfilled_options = options;
  unfilled_options.network_fill_lookup_range = false;
  QuantizedModel unfilled = lower_reads(unfilled_options);
  const std::optional<double> filled_cost = total_cost(q.circuit), unfilled_cost = total_cost(unfilled.circuit);
  return unfilled_cost && (!filled_cost || *unfilled_cost < *filled_cost) ? unfilled : q;
}

double prediction_infidelity(Task task, const Predictions& quantized, const Predictions& reference) {
  if (task == Task::kClassification) {
    if (quantized.labels.size() != reference.labels.size() || reference.labels.empty())
      throw std::invalid_argument("prediction_infidelity: prediction counts differ or are zero");
    return 1.0 - accuracy(quantized.labels, std::vector<double>(reference.labels.begin(), reference.labels.end()));
  }
  return 1.0 - r2_score(quantized.values, reference.values);
}

Predictions predict_clear(const QuantizedModel& model, const Matrix& rows) {
  const auto inputs = quantize_inputs(model.processing, rows);
  std::vector<std::vector<circuit::Tensor>> outputs;
  outputs.reserve(inputs.size());
  for (const auto& in : inputs) outputs.push_back(circuit::run_clear(model.circuit, {in}));
  return postprocess(model.processing, outputs);
}

Predictions predict_simulated(const QuantizedModel& model, const circuit::CompiledCircuit& compiled, const Matrix& rows,
                              std::uint64_t seed, const std::vector<double>* std_dev_override) {
  const std::vector<double> std_dev = std_dev_override ? *std_dev_override : circuit::approximate_read_std_dev(compiled);
  std::mt19937_64 rng(seed);
  const auto inputs = quantize_inputs(model.processing, rows);
  std::vector<std::vector<circuit::Tensor>> outputs;
  outputs.reserve(inputs.size());
  for (const auto& in : inputs) outputs.push_back(circuit::run_clear_noisy(compiled.circuit, {in}, std_dev, rng));
  return postprocess(model.processing, outputs);
}

}  // namespace veil::ml
