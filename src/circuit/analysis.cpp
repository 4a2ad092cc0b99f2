// Range, width and noise analyses, statistics, calibration and parameter choice
// (analysis.hpp states the encoding and the lowering these numbers describe).
#include "veil/circuit/analysis.hpp"
#include "veil/tfhe/packing.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "maps.hpp"
#include "veil/circuit/clear_executor.hpp"
#include "veil/tfhe/serialization.hpp"

namespace veil::circuit {
namespace {

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

unsigned signed_width(const ValueRange& r) {
  if (r.lo >= 0) return width_of_span(static_cast<std::uint64_t>(r.hi));
  unsigned b = 1;
  while (b < 63 && (-(std::int64_t{1} << (b - 1)) > r.lo || (std::int64_t{1} << (b - 1)) - 1 < r.hi)) ++b;
  return b;
}

std::uint64_t span_of(const ValueRange& r) { return static_cast<std::uint64_t>(r.hi) - static_cast<std::uint64_t>(r.lo); }

double max_sq_weight(const std::vector<std::int64_t>& w) {
  double m = 0;
  for (std::int64_t v : w) m = std::max(m, static_cast<double>(v) * static_cast<double>(v));
  return m;
}

// Noise multiplier of every node (max over its elements), in units of Var_BR.
double node_sq_norm2(const Circuit& c, std::uint32_t id, const std::vector<double>& sq, const std::vector<RoundBitsInfo>& rb_of) {
  const Node& n = c.nodes[id];
  const auto in = [&](std::size_t i) { return sq[n.operands[i]]; };
  switch (n.kind) {
    case OpKind::kInput: return 1.0;
    case OpKind::kAdd:
    case OpKind::kSub: return in(0) + in(1);
    case OpKind::kAddConstant: return in(0);
    case OpKind::kMulConstant: return max_sq_weight(n.constant.data) * in(0);
    case OpKind::kMatmul: {
      const std::int64_t k = n.constant.shape[0], m = n.constant.shape[1];
      double worst = 0;
      for (std::int64_t j = 0; j < m; ++j) {
        double s = 0;
        for (std::int64_t i = 0; i < k; ++i) {
          const double w = static_cast<double>(n.constant.data[static_cast<std::size_t>(i * m + j)]);
          s += w * w;
        }
        worst = std::max(worst, s);
      }
      return worst * in(0);
    }
    case OpKind::kConv2d: {
      const Shape& w = n.constant.shape;
      const std::int64_t per_out = w[1] * w[2] * w[3];
      double worst = 0;
      for (std::int64_t o = 0; o < w[0]; ++o) {
        double s = 0;
        for (std::int64_t i = 0; i < per_out; ++i) {
          const double v = static_cast<double>(n.constant.data[static_cast<std::size_t>(o * per_out + i)]);
          s += v * v;
        }
        worst = std::max(worst, s);
      }
      return worst * in(0);
    }
    case OpKind::kSum: {
      const Shape& x = c.nodes[n.operands[0]].shape;
      double count = 1;
      for (const std::int64_t axis : std::get<SumAttributes>(n.attributes).axes) count *= static_cast<double>(x[static_cast<std::size_t>(axis)]);
      return count * in(0);
    }
    case OpKind::kReshape:
    case OpKind::kTranspose:
    case OpKind::kSlice:
    case OpKind::kBroadcast: return in(0);
    case OpKind::kConcat: {
      double m = 0;
      for (std::size_t i = 0; i < n.operands.size(); ++i) m = std::max(m, in(i));
      return m;
    }
    case OpKind::kLookup: throw std::logic_error("node_sq_norm2: a lookup's noise is its LookupInfo's");
    case OpKind::kRoundBits: {
      for (const auto& rb : rb_of)
        if (rb.node == id) return in(0) + static_cast<double>(rb.steps());
      return in(0);
    }
  }
  return in(0);
}

// Ciphertext multiply-adds of a levelled node (zero weights cost nothing), counted without
// building its linear map, which can be large; conv2d counts the terms padding removes too.
std::int64_t levelled_terms(const Circuit& c, std::uint32_t id) {
  const Node& n = c.nodes[id];
  const std::int64_t out = element_count(n.shape);
  const auto nonzero = [](const std::int64_t* w, std::int64_t count) {
    std::int64_t nz = 0;
    for (std::int64_t i = 0; i < count; ++i) nz += w[i] != 0;
    return nz;
  };
  switch (n.kind) {
    case OpKind::kAdd:
    case OpKind::kSub: return 2 * out;
    case OpKind::kMulConstant: {
      std::int64_t nz = 0;
      for (std::int64_t e = 0; e < out; ++e)
        nz += n.constant.data[static_cast<std::size_t>(detail::broadcast_source(n.constant.shape, n.shape, e))] != 0;
      return nz;
    }
    case OpKind::kMatmul: {
      const std::int64_t m = n.constant.shape[1];
      return (out / m) * nonzero(n.constant.data.data(), n.constant.size());
    }
    case OpKind::kConv2d: {
      const Shape& w = n.constant.shape;
      const std::int64_t per_out = w[1] * w[2] * w[3];
      const std::int64_t positions = out / w[0];  // batch x output pixels, per channel
      std::int64_t terms = 0;
      for (std::int64_t o = 0; o < w[0]; ++o) terms += positions * nonzero(n.constant.data.data() + o * per_out, per_out);
      return terms;
    }
    case OpKind::kSum: return element_count(c.nodes[n.operands[0]].shape);
    default: return out;
  }
}

// p_error 0: the circuit's target; otherwise an approximate read's own probability.
void add_constraint(std::vector<tfhe::NoiseConstraint>& out, unsigned bits, double sq, double p_error = 0.0) {
  for (auto& c : out)
    if (c.message_bits == bits && c.p_error == p_error) {
      c.sq_norm2 = std::max(c.sq_norm2, sq);
      return;
    }
  out.push_back({bits, sq, p_error});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.message_bits != b.message_bits ? a.message_bits < b.message_bits : a.p_error < b.p_error;
  });
}

// log2(sum_i count_i * 2^(l_i)), or the exact 1 - prod (1 - p_i)^count_i when not small.
struct ErrorSum {
  std::vector<std::pair<double, double>> terms;  // (log2 p, count)
  void add(double log2_p, double count) {
    if (count > 0) terms.emplace_back(log2_p, count);
  }
  double log2_total() const {
    if (terms.empty()) return -std::numeric_limits<double>::infinity();
    double mx = -std::numeric_limits<double>::infinity();
    for (const auto& [l, n] : terms) mx = std::max(mx, l + std::log2(n));
    double s = 0;
    for (const auto& [l, n] : terms) s += std::exp2(l + std::log2(n) - mx);
    const double union_bound = mx + std::log2(s);
    if (union_bound < -10) return union_bound;  // exact to 0.1% there
    double log1m = 0;
    for (const auto& [l, n] : terms) log1m += n * std::log1p(-std::exp2(l));
    return std::log2(-std::expm1(log1m));
  }
};

// The noise constraint of decrypting output `o`: nu^2 * 4^(W - t - 1) (analysis.hpp).
double output_read_sq_norm2(const CircuitAnalysis& a, std::uint32_t o) {
  return std::ldexp(a.sq_norm2[o], 2 * static_cast<int>(a.widths[o] - output_step_bits(a, o) - 1));
}

}  // namespace

unsigned output_step_bits(const CircuitAnalysis& a, std::uint32_t node) {
  return std::min(a.ranges[node].trailing_zeros, a.widths[node] - 1);
}

unsigned width_of_span(std::uint64_t span) { return std::max(1u, static_cast<unsigned>(std::bit_width(span))); }

std::vector<std::int64_t> lookup_entries(const Table& table, const LookupInfo& info) {
  std::vector<std::int64_t> entries(std::size_t{1} << info.precision, 0);
  const auto margin = static_cast<std::int64_t>(info.margin);
  for (std::size_t r = 0; r < entries.size(); ++r) {
    const std::int64_t i = std::clamp<std::int64_t>(static_cast<std::int64_t>(r) - margin, 0, info.reduced_count - 1);
    const std::int64_t v = (info.reduced_min + margin + i) * (std::int64_t{1} << info.known_zero_bits);
    const std::int64_t offset = v - table.domain_min;
    const std::int64_t index = offset >> table.domain_shift;
    if (offset >= 0 && (offset & ((std::int64_t{1} << table.domain_shift) - 1)) == 0 &&
        index < static_cast<std::int64_t>(table.values.size()))
      entries[r] = table.values[static_cast<std::size_t>(index)];
  }
  return entries;
}

MultiValueForm multi_value_form(const std::vector<std::int64_t>& entries) {
  MultiValueForm form;
  form.base = entries.front() + entries.back();
  for (std::size_t m = 1; m < entries.size(); ++m)
    if (entries[m] != entries[m - 1]) form.jumps.push_back({m, entries[m] - entries[m - 1]});
  return form;
}

double multi_value_norm2(const std::vector<std::int64_t>& entries) {
  double sum = 0;
  for (const MultiValueTerm& t : multi_value_form(entries).jumps) sum += static_cast<double>(t.factor) * static_cast<double>(t.factor);
  return sum;
}

std::vector<std::uint32_t> shared_rotation_leaders(const Circuit& c, std::uint32_t id) {
  const Node& n = c.nodes[id];
  const std::size_t count = static_cast<std::size_t>(element_count(n.shape));
  std::vector<std::uint32_t> leader(count);
  for (std::size_t e = 0; e < count; ++e) leader[e] = static_cast<std::uint32_t>(e);
  const Node& x = c.nodes[n.operands[0]];
  if (x.kind != OpKind::kMatmul) return leader;
  const std::int64_t k = x.constant.shape[0], m = x.constant.shape[1];
  // Column j copies input element src[j] when it is one-hot with a 1.
  std::vector<std::int64_t> src(static_cast<std::size_t>(m), -1);
  for (std::int64_t j = 0; j < m; ++j) {
    std::int64_t one = -1;
    bool copy = true;
    for (std::int64_t i = 0; i < k && copy; ++i) {
      const std::int64_t w = x.constant.data[static_cast<std::size_t>(i * m + j)];
      if (w == 0) continue;
      if (w != 1 || one >= 0) copy = false;
      one = i;
    }
    if (copy && one >= 0) src[static_cast<std::size_t>(j)] = one;
  }
  // Row by row (the leading dimensions), the first column copying each input element leads.
  std::vector<std::int64_t> first(static_cast<std::size_t>(k));
  for (std::size_t row = 0; row * static_cast<std::size_t>(m) < count; ++row) {
    std::fill(first.begin(), first.end(), -1);
    for (std::int64_t j = 0; j < m; ++j) {
      const std::size_t e = row * static_cast<std::size_t>(m) + static_cast<std::size_t>(j);
      const std::int64_t s = src[static_cast<std::size_t>(j)];
      if (s < 0) continue;
      std::int64_t& f = first[static_cast<std::size_t>(s)];
      if (f < 0) f = static_cast<std::int64_t>(e);
      leader[e] = static_cast<std::uint32_t>(f);
    }
  }
  return leader;
}

CircuitAnalysis analyze(const Circuit& c) {
  validate_circuit(c);
  CircuitAnalysis a;
  const std::size_t count = c.nodes.size();
  a.ranges.reserve(count);
  for (std::uint32_t id = 0; id < count; ++id) a.ranges.push_back(infer_range(c, id, a.ranges));

  CircuitStatistics& st = a.statistics;
  for (std::uint32_t id = 0; id < count; ++id) {
    const Node& n = c.nodes[id];
    st.max_value_bits = std::max(st.max_value_bits, signed_width(a.ranges[id]));
    if (n.kind == OpKind::kInput) st.encrypted_inputs += element_count(n.shape);
    if (n.kind == OpKind::kLookup) {
      const ValueRange& x = a.ranges[n.operands[0]];
      LookupInfo info;
      info.node = id;
      info.elements = element_count(n.shape);
      info.known_zero_bits = x.trailing_zeros;
      info.reduced_min = x.lo >> x.trailing_zeros;
      const std::uint64_t reduced_span = span_of(x) >> x.trailing_zeros;
      info.reduced_count = static_cast<std::int64_t>(reduced_span) + 1;
      info.precision = width_of_span(reduced_span);
      info.shared = std::get<LookupAttributes>(n.attributes).shared;
      info.neighbour_log2 = std::get<LookupAttributes>(n.attributes).neighbour_log2;
      if (info.neighbour_log2 > 0 && !info.shared) {
        info.margin = 1;  // a plain PBS with neighbour reads: one box below and one above
        info.reduced_min -= 1;
        info.precision = width_of_span(reduced_span + 2);
      }
      if (info.precision > kMaxLookupPrecision)
        throw std::invalid_argument(
            c.describe_node(id) + ": its input takes values in [" + std::to_string(x.lo) + ", " + std::to_string(x.hi) +
            "]" + (x.trailing_zeros ? " in steps of 2^" + std::to_string(x.trailing_zeros) : std::string{}) +
            ", which needs " + std::to_string(info.precision) + " bits of lookup precision; at most " +
            std::to_string(kMaxLookupPrecision) + " are supported: round_bits(input, " +
            std::to_string(info.precision - kMaxLookupPrecision + x.trailing_zeros) + ") before it, or calibrate");
      info.rotations = info.elements;
      if (info.shared) {
        const std::vector<std::uint32_t> leader = shared_rotation_leaders(c, id);
        info.rotations = 0;
        for (std::size_t e = 0; e < leader.size(); ++e) info.rotations += leader[e] == e ? 1 : 0;
        info.output_sq_norm2 = 0;
        for (const Table& t : n.tables) info.output_sq_norm2 = std::max(info.output_sq_norm2, multi_value_norm2(lookup_entries(t, info)));
      }
      a.lookups.push_back(info);
    } else if (n.kind == OpKind::kRoundBits) {
      const ValueRange& x = a.ranges[n.operands[0]];
      RoundBitsInfo info;
      info.node = id;
      info.elements = element_count(n.shape);
      const RoundBitsAttributes& attributes = std::get<RoundBitsAttributes>(n.attributes);
      info.bits = static_cast<unsigned>(attributes.bits);
      info.first_bit = std::min(x.trailing_zeros, info.bits);
      info.nearest = attributes.mode == RoundingMode::kNearest;
      // Approximate rounding costs nothing: the lookup reading it takes the high bits.
      const bool approximate = attributes.mode == RoundingMode::kApproximate;
      if (!approximate && info.steps() > 0) a.round_bits.push_back(info);
    }
  }

  // Segments (analysis.hpp): union of every node with its operands, except across lookups.
  std::vector<std::uint32_t> parent(count);
  for (std::uint32_t id = 0; id < count; ++id) parent[id] = id;
  const auto find = [&](std::uint32_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  for (std::uint32_t id = 0; id < count; ++id)
    if (c.nodes[id].kind != OpKind::kLookup)
      for (std::uint32_t op : c.nodes[id].operands) parent[find(op)] = find(id);
  // Encoding width of each segment: every read value must fit.
  std::vector<unsigned> segment_width(count, 1);
  const auto need = [&](std::uint32_t node, unsigned w) {
    unsigned& sw = segment_width[find(node)];
    sw = std::max(sw, w);
  };
  for (std::uint32_t o : c.outputs) need(o, width_of_span(span_of(a.ranges[o])));
  for (const auto& l : a.lookups) need(c.nodes[l.node].operands[0], l.known_zero_bits + l.precision);
  for (const auto& r : a.round_bits) need(r.node, r.bits);
  const bool bootstrapping = a.uses_bootstrapping();
  const unsigned max_w = bootstrapping ? kMaxEncodingWidth : 60u;
  a.widths.resize(count);
  unsigned w = 1;
  for (std::uint32_t id = 0; id < count; ++id) {
    a.widths[id] = segment_width[find(id)];
    w = std::max(w, a.widths[id]);
  }
  if (w > max_w) {
    std::uint32_t culprit = 0;
    for (std::uint32_t id = 0; id < count; ++id)
      if (a.widths[id] == w) {
        culprit = id;
        break;
      }
    throw std::invalid_argument("circuit needs an encoding width of " + std::to_string(w) + " bits (in the segment of " +
                                c.describe_node(culprit) + "), at most " + std::to_string(max_w) +
                                " are supported " + (bootstrapping ? "with lookups" : "for levelled circuits"));
  }
  a.encoding_width = w;
  st.encoding_width = w;

  // Noise, depth and constraints, in topological order.
  a.sq_norm2.assign(count, 0.0);
  a.pbs_depth.assign(count, 0);
  std::size_t next_lookup = 0, next_round = 0;
  for (std::uint32_t id = 0; id < count; ++id) {
    const Node& n = c.nodes[id];
    unsigned depth = 0;
    for (std::uint32_t op : n.operands) depth = std::max(depth, a.pbs_depth[op]);
    if (n.kind == OpKind::kLookup) {
      LookupInfo& l = a.lookups[next_lookup++];
      l.sq_norm2 = a.sq_norm2[n.operands[0]];
      l.input_width = a.widths[n.operands[0]];
      l.output_width = a.widths[id];
      l.amplification_bits = l.input_width - l.known_zero_bits - l.precision;
      l.constraint_sq_norm2 = std::ldexp(l.sq_norm2, 2 * static_cast<int>(l.amplification_bits));
      add_constraint(a.constraints, l.precision, l.constraint_sq_norm2,
                     l.neighbour_log2 > 0 ? std::ldexp(1.0, -static_cast<int>(l.neighbour_log2)) : 0.0);
      depth += 1;
    } else if (n.kind == OpKind::kRoundBits && next_round < a.round_bits.size() && a.round_bits[next_round].node == id) {
      RoundBitsInfo& r = a.round_bits[next_round++];
      r.input_sq_norm2 = a.sq_norm2[n.operands[0]];
      r.width = a.widths[id];
      for (unsigned k = 0; k < r.steps(); ++k) {
        const unsigned bit = r.first_bit + k;
        const double sq = std::ldexp(r.input_sq_norm2 + k, 2 * static_cast<int>(r.width - bit));
        r.step_constraint_sq_norm2.push_back(sq);
        add_constraint(a.constraints, 1, sq);
      }
      depth += static_cast<unsigned>(r.steps());
    }
    a.pbs_depth[id] = depth;
    // A lookup's outputs: a PBS output's noise (1), or its tables' squared jumps with shared rotations.
    a.sq_norm2[id] = n.kind == OpKind::kLookup ? a.lookups[next_lookup - 1].output_sq_norm2
                                               : node_sq_norm2(c, id, a.sq_norm2, a.round_bits);
  }
  if (bootstrapping)
    for (std::uint32_t o : c.outputs)
      add_constraint(a.constraints, 1, output_read_sq_norm2(a, o));

  // Statistics.
  unsigned min_p = kMaxLookupPrecision + 1;
  for (const auto& l : a.lookups) {
    st.lookups_by_precision[l.precision] += l.rotations;
    st.lookup_pbs += l.rotations;
    if (l.neighbour_log2 > 0) st.approximate_pbs += l.rotations;
    st.max_lookup_precision = std::max(st.max_lookup_precision, l.precision);
    min_p = std::min(min_p, l.precision);
  }
  for (const auto& r : a.round_bits) st.extraction_pbs += r.elements * static_cast<std::int64_t>(r.steps());
  st.total_pbs = st.lookup_pbs + st.extraction_pbs;
  for (std::uint32_t o : c.outputs) st.encrypted_outputs += element_count(c.nodes[o].shape);
  for (std::uint32_t id = 0; id < count; ++id) {
    st.pbs_depth = std::max<std::size_t>(st.pbs_depth, a.pbs_depth[id]);
    if (detail::is_linear(c.nodes[id].kind)) st.levelled_ops += levelled_terms(c, id);
  }
  for (const auto& k : a.constraints) st.max_lookup_sq_norm2 = std::max(st.max_lookup_sq_norm2, k.sq_norm2);
  if (!a.lookups.empty() && st.max_lookup_precision >= min_p + 3)
    st.warnings.push_back("lookups of " + std::to_string(min_p) + " to " + std::to_string(st.max_lookup_precision) +
                          " bits share one parameter set sized for " + std::to_string(st.max_lookup_precision) +
                          " bits: the narrow ones cost as much as the widest (one set per circuit for now)");
  for (const auto& l : a.lookups)
    if (l.amplification_bits >= 6) {
      st.warnings.push_back(c.describe_node(l.node) + " reads a " + std::to_string(l.precision) + "-bit input at width " +
                            std::to_string(l.input_width) + ": its noise is amplified 2^" + std::to_string(l.amplification_bits) +
                            " times (narrow the circuit's widest read or round it)");
      break;
    }
  return a;
}

Circuit calibrate(Circuit circuit, const std::vector<std::vector<Tensor>>& samples) {
  if (samples.empty()) throw std::invalid_argument("calibrate: no samples");
  validate_circuit(circuit);
  const std::size_t count = circuit.nodes.size();
  std::vector<std::int64_t> lo(count, std::numeric_limits<std::int64_t>::max()), hi(count, std::numeric_limits<std::int64_t>::min());
  for (const auto& sample : samples) {
    const std::vector<Tensor> values = run_clear_all_nodes(circuit, sample);
    for (std::size_t id = 0; id < count; ++id)
      for (std::int64_t v : values[id].data) {
        lo[id] = std::min(lo[id], v);
        hi[id] = std::max(hi[id], v);
      }
  }
  for (std::size_t id = 0; id < count; ++id)
  {
    const Node& n = circuit.nodes[id];
    if (n.kind == OpKind::kInput) continue;
    // An approximate rounding may return the multiple above the nearest one, and a lookup
    // reading it the entry next to the one the clear run read: both keep the inferred range
    // (which covers every entry they can read).
    if (is_approximate(circuit, static_cast<std::uint32_t>(id))) continue;
    if (n.kind == OpKind::kLookup && is_approximate(circuit, n.operands[0])) continue;
    if (n.kind == OpKind::kLookup && std::get<LookupAttributes>(n.attributes).neighbour_log2 != 0) continue;  // neighbour reads
    circuit.nodes[id].range_hint = ValueRange{lo[id], hi[id], 0};
  }
  return circuit;
}

std::vector<double> approximate_read_std_dev(const CompiledCircuit& cc) {
  const Circuit& c = cc.circuit;
  const CircuitAnalysis& a = cc.analysis;
  std::vector<double> sd(c.nodes.size(), 0.0);
  if (!cc.uses_bootstrapping) return sd;
  // The approximate round_bits nodes behind `id` through data movement.
  const auto raise = [&](std::uint32_t id, double value) {
    std::vector<std::uint32_t> stack{id};
    while (!stack.empty()) {
      const Node& n = c.nodes[stack.back()];
      const std::uint32_t at = stack.back();
      stack.pop_back();
      if (n.kind == OpKind::kRoundBits && std::get<RoundBitsAttributes>(n.attributes).mode == RoundingMode::kApproximate)
        sd[at] = std::max(sd[at], value);
      else if (detail::is_gather(n.kind))
        stack.insert(stack.end(), n.operands.begin(), n.operands.end());
    }
  };
  // A lookup lifts its input so that its 2^p boxes of 2^t values fill the torus: one value is
  // 2^-(1 + t + p) of it.
  for (const LookupInfo& l : a.lookups) {
    const double v = tfhe::variance_at_blind_rotation_input(cc.params, l.constraint_sq_norm2);
    raise(c.nodes[l.node].operands[0], std::sqrt(v) * std::ldexp(1.0, 1 + static_cast<int>(l.known_zero_bits + l.precision)));
    // An approximate lookup's own reads: one input step (2^t values) is 2^-(1 + p) of it.
    if (l.neighbour_log2 > 0) sd[l.node] = std::sqrt(v) * std::ldexp(1.0, 1 + static_cast<int>(l.precision));
  }
  // An output decrypts at its segment's width W: one value is Delta_W = 2^-(1 + W).
  for (std::uint32_t o : c.outputs) {
    const double v = tfhe::variance_at_blind_rotation_input(cc.params, a.sq_norm2[o]);
    raise(o, std::sqrt(v) * std::ldexp(1.0, 1 + static_cast<int>(a.widths[o])));
  }
  return sd;
}

double log2_circuit_error_probability(const CircuitAnalysis& a, const tfhe::ParameterSet& params, bool uses_bootstrapping) {
  ErrorSum sum;
  const unsigned w = a.encoding_width;
  if (!uses_bootstrapping) {
    // Levelled only: outputs carry fresh noise times their norm, no keyswitch.
    const double fresh = params.glwe_std_dev * params.glwe_std_dev;
    // The analysis counts noise in units of one fresh/PBS-output variance.
    (void)fresh;
    return -std::numeric_limits<double>::infinity();
  }
  for (const auto& l : a.lookups) {
    const double v = tfhe::variance_at_blind_rotation_input(params, l.constraint_sq_norm2);
    // An approximate read errs when it lands two entries away: three times as far as an
    // exact read's bound, a ninth of the variance at that bound.
    sum.add(tfhe::log2_lookup_error_probability_for_variance(l.precision, l.neighbour_log2 > 0 ? v / 9.0 : v),
            static_cast<double>(l.rotations));
  }
  for (const auto& r : a.round_bits)
    for (double sq : r.step_constraint_sq_norm2)
      sum.add(tfhe::log2_lookup_error_probability_for_variance(1, tfhe::variance_at_blind_rotation_input(params, sq)),
              static_cast<double>(r.elements));
  (void)w;
  return sum.log2_total();
}

namespace {

// Output reads of a levelled circuit: fresh noise times the output's norm, bound Delta_W / 2.
double log2_levelled_error(const Circuit& c, const CircuitAnalysis& a, double fresh_variance) {
  ErrorSum sum;
  for (std::uint32_t o : c.outputs) {
    const double var = output_read_sq_norm2(a, o) * fresh_variance;
    sum.add(tfhe::log2_lookup_error_probability_for_variance(1, var), static_cast<double>(element_count(c.nodes[o].shape)));
  }
  return sum.log2_total();
}

double log2_output_error(const Circuit& c, const CircuitAnalysis& a, const tfhe::ParameterSet& params) {
  ErrorSum sum;
  for (std::uint32_t o : c.outputs) {
    const double sq = output_read_sq_norm2(a, o);
    sum.add(tfhe::log2_lookup_error_probability_for_variance(1, tfhe::variance_at_blind_rotation_input(params, sq)),
            static_cast<double>(element_count(c.nodes[o].shape)));
  }
  return sum.log2_total();
}

// True variance of output o's read (analysis.hpp, OutputTransport); bits 64: no switch.
double output_read_variance(const CompiledCircuit& cc, std::uint32_t o, bool keyswitch, unsigned bits) {
  const CircuitAnalysis& a = cc.analysis;
  double v = 0;
  if (cc.uses_bootstrapping) {
    const tfhe::NoiseBreakdown noise = tfhe::noise_breakdown(cc.params);
    v = a.sq_norm2[o] * noise.blind_rotation + (keyswitch ? noise.keyswitch : 0.0);
  } else {
    v = a.sq_norm2[o] * cc.params.glwe_std_dev * cc.params.glwe_std_dev;
  }
  if (bits < 64)
    v += tfhe::modulus_switch_variance_to_bits(keyswitch ? cc.params.lwe_dimension : cc.params.big_lwe_dimension(), bits);
  return v;
}

// log2 error of one element of output o read at `variance`: the bound is half a step of
// W - t bits, i.e. the 1-bit bound after scaling the variance by 4^(W - t - 1).
double log2_output_element_error_at(const CompiledCircuit& cc, std::uint32_t o, double variance) {
  const CircuitAnalysis& a = cc.analysis;
  const int scale = 2 * static_cast<int>(a.widths[o] - output_step_bits(a, o) - 1);
  return tfhe::log2_lookup_error_probability_for_variance(1, std::ldexp(variance, scale));
}
double log2_output_element_error(const CompiledCircuit& cc, std::uint32_t o, bool keyswitch, unsigned bits) {
  return log2_output_element_error_at(cc, o, output_read_variance(cc, o, keyswitch, bits));
}

void finish_statistics(CompiledCircuit& cc) {
  CircuitStatistics& st = cc.analysis.statistics;
  double l2;
  if (cc.uses_bootstrapping) {
    ErrorSum both;
    both.add(log2_circuit_error_probability(cc.analysis, cc.params, true), 1);
    both.add(log2_output_error(cc.circuit, cc.analysis, cc.params), 1);
    l2 = both.log2_total();
  } else {
    l2 = log2_levelled_error(cc.circuit, cc.analysis, cc.params.glwe_std_dev * cc.params.glwe_std_dev);
  }
  st.log2_predicted_p_error = l2;
  st.predicted_p_error = std::exp2(l2);
  st.log2_neighbour_read_p.reset();
  if (cc.uses_bootstrapping)
    for (const LookupInfo& l : cc.analysis.lookups)
      if (l.neighbour_log2 > 0) {
        const double p = tfhe::log2_lookup_error_probability_for_variance(
            l.precision, tfhe::variance_at_blind_rotation_input(cc.params, l.constraint_sq_norm2));
        st.log2_neighbour_read_p = std::max(st.log2_neighbour_read_p.value_or(-INFINITY), p);
      }
  st.parameters = cc.params.describe() + (cc.uses_bootstrapping ? "" : " (levelled only: no PBS, evaluation keys unused)");
  const tfhe::NoiseBreakdown noise = tfhe::noise_breakdown(cc.params);
  if (cc.uses_bootstrapping && noise.fresh > noise.blind_rotation)
    st.warnings.push_back("fresh encryptions are noisier than PBS outputs under " + cc.params.name +
                          ": the noise analysis counts them as PBS outputs (optimistic)");
}

// The error probability an approximate read's constraint carries at the circuit's target
// p_error: its own, but no looser than keeps a read two entries away (three times an exact
// read's distance) within p_error; 0 (an exact read) when its own is no looser than p_error.
double neighbour_p_error(unsigned bits, double own, double p_error) {
  if (!(own > p_error)) return 0.0;
  const double limit = std::exp2(tfhe::log2_lookup_error_probability_for_variance(
      bits, 9.0 * tfhe::max_variance_for_p_error(bits, p_error)));
  const double p = std::min(own, limit);
  return p > p_error ? p : 0.0;
}

tfhe::ParameterSet levelled_parameters(const Circuit& c, const CircuitAnalysis& a, double p_error, unsigned security_bits) {
  // The most demanding output read: its noise multiplier times 4^(W-t-1).
  double worst = 0;
  for (std::uint32_t o : c.outputs) worst = std::max(worst, output_read_sq_norm2(a, o));
  const double max_var = tfhe::max_variance_for_p_error(1, p_error);
  for (unsigned log_n = 10; log_n <= 16; ++log_n) {
    const std::size_t big_n = std::size_t{1} << log_n;
    const double sigma = std::exp2(tfhe::min_secure_log2_std_dev(big_n, security_bits));
    if (!(worst * sigma * sigma <= max_var)) continue;
    tfhe::ParameterSet p;
    p.name = "levelled_w" + std::to_string(a.encoding_width) + "_N" + std::to_string(big_n);
    p.message_bits = std::min(a.encoding_width, 8u);
    p.glwe_dimension = tfhe::GlweDimension(1);
    p.polynomial_size = tfhe::PolynomialSize(big_n);
    p.glwe_std_dev = sigma;
    // Filler for the unused small key and decompositions: valid, secure and as small as the
    // format allows, so that a client that generates keys anyway wastes little.
    p.lwe_dimension = tfhe::LweDimension(630);
    p.lwe_std_dev = std::exp2(tfhe::min_secure_log2_std_dev(630, security_bits));
    p.pbs_base_log = tfhe::DecompositionBaseLog(20);
    p.pbs_level_count = tfhe::DecompositionLevelCount(1);
    p.ks_base_log = tfhe::DecompositionBaseLog(4);
    p.ks_level_count = tfhe::DecompositionLevelCount(1);
    return p;
  }
  throw std::invalid_argument("levelled circuit: no 2^10..2^16 polynomial size keeps its " +
                              std::to_string(a.encoding_width) + "-bit outputs (noise norm^2 x 4^(w-1) " + fmt("%.3g", worst) +
                              ") correct at p_error " + fmt("%.3g", p_error));
}

}  // namespace

std::vector<OutputTransport> plan_output_transport(const CompiledCircuit& cc, double p_error) {
  if (!(p_error > 0.0 && p_error < 1.0))
    throw std::invalid_argument("plan_output_transport: p_error must be in (0, 1), got " + fmt("%.17g", p_error));
  const double target = std::log2(p_error);
  std::vector<OutputTransport> plan;
  for (std::uint32_t o : cc.circuit.outputs) {
    // An approximately rounded output is decoded where its rounding left it, anywhere in its
    // step: the clear simulation (approximate_read_std_dev) draws its noise with the variance
    // of a lookup input, and the answer may carry no more.
    const double assumed = cc.uses_bootstrapping ? tfhe::variance_at_blind_rotation_input(cc.params, cc.analysis.sq_norm2[o])
                                                 : std::numeric_limits<double>::infinity();
    const auto fits = [&](bool ks, unsigned b) {
      return log2_output_element_error(cc, o, ks, b) <= target && output_read_variance(cc, o, ks, b) <= assumed;
    };
    std::optional<OutputTransport> best;
    std::uint64_t best_bits = 0;
    for (const bool ks : {false, true}) {
      if (ks && !cc.uses_bootstrapping) continue;
      if (!fits(ks, 63)) continue;
      unsigned b = 1;
      while (b < 63 && !fits(ks, b)) ++b;
      const std::uint64_t words = (ks ? cc.params.lwe_dimension.value : cc.params.big_lwe_dimension().value) + 1;
      if (!best || words * b < best_bits) best = OutputTransport{ks, b}, best_bits = words * b;
    }
    if (!best) {
      const double unswitched = output_read_variance(cc, o, false, 64);
      unsigned b = 1;
      while (b < 63 && output_read_variance(cc, o, false, b) > std::min(unswitched * (1.0 + 1.0 / 64.0), std::max(assumed, unswitched))) ++b;
      best = OutputTransport{false, b};
    }
    plan.push_back(*best);
  }
  return plan;
}

double AnswerPacking::break_even_rows() const {
  if (!(unpacked_bytes > packed_bytes)) return std::numeric_limits<double>::infinity();
  return static_cast<double>(key_bytes) / static_cast<double>(unpacked_bytes - packed_bytes);
}

AnswerPacking plan_answer_packing(const CompiledCircuit& cc, const std::vector<OutputTransport>& transport, double p_error,
                                  double max_break_even_rows, unsigned security_bits, std::uint64_t max_key_bytes) {
  if (!(p_error > 0.0 && p_error < 1.0))
    throw std::invalid_argument("plan_answer_packing: p_error must be in (0, 1), got " + fmt("%.17g", p_error));
  if (transport.size() != cc.circuit.outputs.size())
    throw std::invalid_argument("plan_answer_packing: " + std::to_string(transport.size()) + " forms for " +
                                std::to_string(cc.circuit.outputs.size()) + " outputs");
  AnswerPacking best;
  // A frame is its 64-byte header plus its own fields; the envelope adds 8 bytes a frame.
  constexpr std::uint64_t kFrame = 64 + 8;
  for (std::size_t i = 0; i < transport.size(); ++i) {
    const std::uint32_t o = cc.circuit.outputs[i];
    const std::uint64_t count = static_cast<std::uint64_t>(element_count(cc.circuit.nodes[o].shape));
    const std::uint64_t words = count * ((transport[i].keyswitch ? cc.params.lwe_dimension.value
                                                                  : cc.params.big_lwe_dimension().value) + 1);
    best.outputs += count;
    best.unpacked_bytes += kFrame + 24 + (words * transport[i].modulus_bits + 7) / 8;
  }
  const std::size_t big = cc.params.big_lwe_dimension().value;
  const auto unpacked = [&](std::string why) {
    best.reason = std::move(why);
    return best;
  };
  if (!cc.uses_bootstrapping) return unpacked("levelled circuit: no evaluation keys to carry a packing key");
  if (best.outputs < 2) return unpacked("one output a row: nothing to share");
  if (best.outputs > big) return unpacked(std::to_string(best.outputs) + " outputs a row, more than k*N = " + std::to_string(big));
  const std::size_t np = std::bit_ceil(best.outputs);
  if (np > big || big % np != 0)  // k*N need not be a power of two (k = 3, 5, 6)
    return unpacked("N' = " + std::to_string(np) + " does not divide k*N = " + std::to_string(big));
  const double target = std::log2(p_error);
  const tfhe::NoiseBreakdown noise = tfhe::noise_breakdown(cc.params);
  tfhe::ParameterSet p = cc.params;
  p.answer_polynomial_size = tfhe::PolynomialSize(np);
  // The decomposition of the set `p` names (its answer key): the fewest answer bits b, then the
  // fewest levels, then the least noise; nullopt where none fits.
  struct Choice {
    unsigned base_log = 0, level_count = 0, modulus_bits = 0;
    double variance = 0;
  };
  const auto choose_decomposition = [&]() -> std::optional<Choice> {
    const tfhe::LweDimension answer_dimension = p.answer_lwe_dimension();
    std::optional<Choice> chosen;
    for (unsigned levels = 1; levels <= 4; ++levels) {
      for (unsigned base_log = 1; base_log * levels <= 48; ++base_log) {
        p.answer_base_log = tfhe::DecompositionBaseLog(base_log);
        p.answer_level_count = tfhe::DecompositionLevelCount(levels);
        const double packing = tfhe::packing_keyswitch_variance(p, best.outputs);
        // As plan_output_transport: within p_error and the simulation's variance, or, for an
        // output whose unswitched read already misses them, adding at most 1/64 to its variance.
        const auto fits = [&](unsigned b) {
          for (std::uint32_t o : cc.circuit.outputs) {
            const double unswitched = cc.analysis.sq_norm2[o] * noise.blind_rotation;
            const double v = unswitched + packing + tfhe::modulus_switch_variance_to_bits(answer_dimension, b);
            const double assumed = tfhe::variance_at_blind_rotation_input(cc.params, cc.analysis.sq_norm2[o]);
            const bool reachable = log2_output_element_error_at(cc, o, unswitched) <= target && unswitched <= assumed;
            const bool ok = reachable ? log2_output_element_error_at(cc, o, v) <= target && v <= assumed
                                      : v <= std::min(unswitched * (1.0 + 1.0 / 64.0), std::max(assumed, unswitched));
            if (!ok) return false;
          }
          return true;
        };
        if (!fits(63)) continue;
        unsigned b = 1;
        while (b < 63 && !fits(b)) ++b;
        const bool better = !chosen || b < chosen->modulus_bits ||
                            (b == chosen->modulus_bits && levels < chosen->level_count) ||
                            (b == chosen->modulus_bits && levels == chosen->level_count && packing < chosen->variance);
        if (better) chosen = Choice{base_log, levels, b, packing};
      }
    }
    return chosen;
  };
  // A row's packed answer and the packing key's share of the seeded evaluation keys (what the
  // format writes: seeded_evaluation_keys_bytes) for the answer key p names and decomposition c.
  const std::uint64_t keys_without_packing = tfhe::seeded_evaluation_keys_bytes(cc.params);
  const auto plan = [&](const Choice& c) {
    p.answer_base_log = tfhe::DecompositionBaseLog(c.base_log);
    p.answer_level_count = tfhe::DecompositionLevelCount(c.level_count);
    AnswerPacking a = best;
    a.polynomial_size = static_cast<unsigned>(np);
    a.glwe_dimension = static_cast<unsigned>(p.answer_key_dimension.value);
    a.std_dev = p.answer_std_dev;
    a.base_log = c.base_log;
    a.level_count = c.level_count;
    a.modulus_bits = c.modulus_bits;
    a.packed_bytes = kFrame + 32 + ((p.answer_lwe_dimension().value + a.outputs) * a.modulus_bits + 7) / 8;
    a.key_bytes = tfhe::seeded_evaluation_keys_bytes(p) - keys_without_packing;
    return a;
  };
  const auto work = [&](const AnswerPacking& a) {
    const std::uint64_t mask = a.glwe_dimension != 0 ? std::uint64_t{a.glwe_dimension} * np : std::uint64_t{big};
    return std::uint64_t{a.level_count} * (mask + np);
  };
  // First the answer key as long and as noisy as the big key (format 1.3's only choice) ...
  p.answer_key_dimension = tfhe::GlweDimension(0);
  p.answer_std_dev = 0.0;
  const std::optional<Choice> full = choose_decomposition();
  if (!full) return unpacked("no packing keyswitch of up to 4 levels keeps every read within p_error");
  const AnswerPacking full_plan = plan(*full);
  const std::uint64_t full_work = work(full_plan), full_key = full_plan.key_bytes;
  const auto fits_budget = [&](const AnswerPacking& x) { return max_key_bytes == 0 || x.key_bytes <= max_key_bytes; };
  // `chosen` within the key budget, `unbounded` without it (what the compile reports when
  // the budget rules packing out).
  std::optional<AnswerPacking> chosen;
  AnswerPacking unbounded = full_plan;
  if (fits_budget(full_plan)) chosen = full_plan;
  const auto better = [&](const AnswerPacking& x, const AnswerPacking& than) {
    return x.packed_bytes < than.packed_bytes || (x.packed_bytes == than.packed_bytes && work(x) < work(than));
  };
  // ... then shorter ones, at the noise the security curve asks for their length: a shorter
  // mask, switched to fewer bits, where the server's work and the packing key grow no larger
  // (a noisier key may need more levels). The shortest answer wins, then the least work.
  const std::size_t step = std::max<std::size_t>(np, 32);
  for (std::size_t d = step; d < big; d += step) {
    const double log2_std = tfhe::min_secure_log2_std_dev(d, security_bits);
    if (!std::isfinite(log2_std) || log2_std >= -1.0) continue;
    p.answer_key_dimension = tfhe::GlweDimension(d / np);
    p.answer_std_dev = std::exp2(log2_std);
    const std::optional<Choice> c = choose_decomposition();
    if (!c) continue;
    const AnswerPacking shorter = plan(*c);
    if (work(shorter) > full_work || shorter.key_bytes > full_key) continue;
    if (better(shorter, unbounded)) unbounded = shorter;
    if (fits_budget(shorter) && (!chosen || better(shorter, *chosen))) chosen = shorter;
  }
  if (!chosen) {
    AnswerPacking a = unbounded;
    a.reason = max_break_even_rows < 0 ? "packing is off"
                                       : "its key would take the evaluation keys past the key budget (--max-key-mb)";
    return a;
  }
  AnswerPacking a = *chosen;
  p.answer_key_dimension = tfhe::GlweDimension(a.glwe_dimension);
  p.answer_std_dev = a.std_dev;
  p.answer_base_log = tfhe::DecompositionBaseLog(a.base_log);
  p.answer_level_count = tfhe::DecompositionLevelCount(a.level_count);
  const tfhe::LweDimension answer_dimension = p.answer_lwe_dimension();
  ErrorSum sum;
  const double packing = tfhe::packing_keyswitch_variance(p, a.outputs);
  for (std::uint32_t o : cc.circuit.outputs)
    sum.add(log2_output_element_error_at(cc, o,
                                         cc.analysis.sq_norm2[o] * noise.blind_rotation + packing +
                                             tfhe::modulus_switch_variance_to_bits(answer_dimension, a.modulus_bits)),
            static_cast<double>(element_count(cc.circuit.nodes[o].shape)));
  a.log2_error = sum.log2_total();
  a.packed = a.packed_bytes < a.unpacked_bytes && a.break_even_rows() <= max_break_even_rows;
  if (a.packed_bytes >= a.unpacked_bytes)
    a.reason = "the packed answer would be no smaller";
  else if (max_break_even_rows < 0)
    a.reason = "packing is off";
  else if (!a.packed)
    a.reason = "its key would be repaid after " + fmt("%.1f", a.break_even_rows()) + " rows, more than " +
               fmt("%.0f", max_break_even_rows);
  return a;
}

double log2_output_read_error(const CompiledCircuit& cc, const std::vector<OutputTransport>& transport) {
  if (transport.size() != cc.circuit.outputs.size())
    throw std::invalid_argument("log2_output_read_error: " + std::to_string(transport.size()) + " forms for " +
                                std::to_string(cc.circuit.outputs.size()) + " outputs");
  ErrorSum sum;
  for (std::size_t i = 0; i < transport.size(); ++i) {
    const std::uint32_t o = cc.circuit.outputs[i];
    sum.add(log2_output_element_error(cc, o, transport[i].keyswitch, transport[i].modulus_bits),
            static_cast<double>(element_count(cc.circuit.nodes[o].shape)));
  }
  return sum.log2_total();
}

double per_read_p_error(const CompiledCircuit& cc, const CompileOptions& options) {
  if (!options.global_p_error) return options.p_error;
  const CircuitStatistics& st = cc.analysis.statistics;
  const double reads = static_cast<double>(st.total_pbs + st.encrypted_outputs);
  return -std::expm1(std::log1p(-*options.global_p_error) / std::max(reads, 1.0));
}

CompiledCircuit compile(Circuit circuit, const CompileOptions& options) {
  CompiledCircuit cc;
  cc.analysis = analyze(circuit);
  cc.circuit = std::move(circuit);
  cc.uses_bootstrapping = cc.analysis.uses_bootstrapping();
  const CircuitStatistics& st = cc.analysis.statistics;
  const double reads = static_cast<double>(st.total_pbs + st.encrypted_outputs);
  double p_error = options.p_error;
  if (options.global_p_error) {
    const double g = *options.global_p_error;
    if (!(g > 0.0 && g < 1.0)) throw std::invalid_argument("compile: global_p_error must be in (0, 1), got " + fmt("%.17g", g));
    p_error = -std::expm1(std::log1p(-g) / std::max(reads, 1.0));
  }
  if (!(p_error > 0.0 && p_error < 1.0)) throw std::invalid_argument("compile: p_error must be in (0, 1), got " + fmt("%.17g", p_error));
  if (!cc.uses_bootstrapping) {
    cc.params = levelled_parameters(cc.circuit, cc.analysis, p_error, options.security_bits);
  } else {
    tfhe::OptimizerOptions o = options.search;
    o.constraints = cc.analysis.constraints;
    for (tfhe::NoiseConstraint& k : o.constraints)
      if (k.p_error > 0.0) k.p_error = neighbour_p_error(k.message_bits, k.p_error, p_error);
    o.p_error = p_error;
    o.security_bits = options.security_bits;
    auto params = tfhe::optimize_parameters(o);
    if (!params && o.max_key_bytes != 0) {
      tfhe::OptimizerOptions unlimited = o;
      unlimited.max_key_bytes = 0;
      if (const auto without = tfhe::optimize_parameters(unlimited))
        throw std::invalid_argument("compile: no " + std::to_string(options.security_bits) + "-bit secure parameter set meets p_error " + fmt("%.3g", p_error) +
                                    " with evaluation keys of at most " + fmt("%.4g", o.max_key_bytes / 1e6) +
                                    " MB; the cheapest set without that budget (" + without->name + ") needs " +
                                    fmt("%.4g", tfhe::seeded_evaluation_keys_bytes(*without) / 1e6) + " MB");
    }
    if (!params) {
      std::string worst;
      double worst_sq = -1;
      for (const auto& l : cc.analysis.lookups)
        if (l.constraint_sq_norm2 > worst_sq) {
          worst_sq = l.constraint_sq_norm2;
          worst = cc.circuit.describe_node(l.node) + " (" + std::to_string(l.precision) + " bits, noise amplified 2^" +
                  std::to_string(l.amplification_bits) + ")";
        }
      for (const auto& r : cc.analysis.round_bits)
        if (!r.step_constraint_sq_norm2.empty() && r.step_constraint_sq_norm2.back() > worst_sq) {
          worst_sq = r.step_constraint_sq_norm2.back();
          worst = cc.circuit.describe_node(r.node) + " (bit extraction at width " + std::to_string(r.width) + ")";
        }
      throw std::invalid_argument("compile: no " + std::to_string(options.security_bits) +
                                  "-bit secure parameter set meets p_error " + fmt("%.3g", p_error) +
                                  " for this circuit; the most demanding operation is " + worst + " with noise norm^2 " +
                                  fmt("%.3g", worst_sq) + " at encoding width " +
                                  std::to_string(cc.analysis.encoding_width) + ": narrow it or round earlier");
    }
    cc.params = *params;
  }
  finish_statistics(cc);
  return cc;
}

CompiledCircuit compile_with_parameters(Circuit circuit, const tfhe::ParameterSet& params) {
  params.validate();
  CompiledCircuit cc;
  cc.analysis = analyze(circuit);
  cc.circuit = std::move(circuit);
  cc.uses_bootstrapping = cc.analysis.uses_bootstrapping();
  cc.params = params;
  for (const auto& l : cc.analysis.lookups)
    if ((std::size_t{1} << l.precision) > params.polynomial_size.value)
      throw std::invalid_argument(cc.circuit.describe_node(l.node) + ": a " + std::to_string(l.precision) +
                                  "-bit table does not fit N = " + std::to_string(params.polynomial_size.value));
  finish_statistics(cc);
  return cc;
}

std::string CircuitStatistics::to_string() const {
  std::string s = "circuit statistics\n";
  s += "  encrypted inputs: " + std::to_string(encrypted_inputs) + " ciphertexts, outputs: " +
       std::to_string(encrypted_outputs) + "\n";
  s += "  encoding width W: " + std::to_string(encoding_width) + " bits (widest intermediate " +
       std::to_string(max_value_bits) + " bits)\n";
  s += "  lookups: " + std::to_string(lookup_pbs) + " PBS";
  if (!lookups_by_precision.empty()) {
    s += " (";
    bool first = true;
    for (const auto& [p, n] : lookups_by_precision) {
      s += (first ? "" : ", ") + std::to_string(p) + "-bit: " + std::to_string(n);
      first = false;
    }
    s += ")";
  }
  s += "\n  round_bits: " + std::to_string(extraction_pbs) + " PBS (one per dropped bit)\n";
  s += "  total PBS: " + std::to_string(total_pbs) + " in " + std::to_string(pbs_depth) + " sequential waves\n";
  s += "  levelled operations: " + std::to_string(levelled_ops) + " ciphertext multiply-adds\n";
  if (max_lookup_sq_norm2 > 0) s += "  most demanding noise constraint: 2^" + fmt("%.1f", std::log2(max_lookup_sq_norm2)) + " x Var_BR\n";
  if (approximate_pbs > 0) {
    s += "  approximate lookups: " + std::to_string(approximate_pbs) + " PBS may read a neighbouring entry";
    if (log2_neighbour_read_p) s += ", probability 2^" + fmt("%.1f", *log2_neighbour_read_p) + " per read at most";
    s += "\n";
  }
  if (!parameters.empty()) s += "  parameters: " + parameters + "\n";
  if (log2_predicted_p_error)
    s += "  predicted p_error (whole circuit): " +
         (*log2_predicted_p_error < -1000 ? std::string("below 2^-1000") : "2^" + fmt("%.1f", *log2_predicted_p_error)) + "\n";
  for (const auto& w : warnings) s += "  warning: " + w + "\n";
  return s;
}

}  // namespace veil::circuit
