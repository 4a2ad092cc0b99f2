// Networks: post-training quantization of an ONNX graph into a circuit.
//
// Every encrypted tensor carries a per-element affine interpretation real[e] ~ s[e] * v[e] +
// b[e]. Linear ops fold s into their clear weights (quantized symmetrically per output
// channel) and compute the new b in floats, so that no integer bias is ever added under
// encryption; BatchNormalization and Add/Sub/Mul by constants only change (s, b).
// Activations are lookups t(v) = clamp(round(f(s v + b) / s_out), q_lo, q_lo + 2^n - 1)
// (offset 0 afterwards: real zero is integer zero, so zero padding stays exact), preceded by
// an approximate round_bits when the accumulator's calibrated range needs more than
// lookup_precision bits. Tables are grouped: elements with the same (s, b) share one.
// With range filling (filled_scale), a unit's weight scale is chosen so that its calibrated
// range fills the levels of that rounding rather than by its largest weight.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "lowering.hpp"
#include "network_ops.hpp"
#include "unary_ops.hpp"
#include "veil/circuit/analysis.hpp"
#include "veil/circuit/clear_executor.hpp"

namespace veil::ml::detail {
namespace {

using circuit::Shape;
using circuit::Value;

struct Enc {
  Value v;
  Shape shape;
  std::vector<double> s;  // per element
  std::vector<double> b;
};

using Function = std::function<double(double)>;

// The values (c - zero_point) * scale of the integer codes c in [lo, hi]: a fake quantization's
// output.
struct Grid {
  double scale = 1, zero_point = 0;
  double lo = 0, hi = 0;
};

// Univariate ops not evaluated yet (NetworkLowering::lower_univariate).
struct Chain {
  Enc x;  // the chain's input
  Function f = [](double v) { return v; };
  bool non_decreasing = true;
  std::optional<std::pair<double, double>> codes;  // inside QuantizeLinear's codes: their range
  std::optional<Grid> grid;                         // ends in DequantizeLinear of known codes
  // The node that ended it: the lookup's name and, without a grid, its output bits.
  std::string label;
  unsigned bits = 0;
};

class NetworkLowering {
 public:
  NetworkLowering(const Model& model, const Network& net, const Matrix& calibration, const QuantizationOptions& options)
      : model_(model), net_(net), options_(options) {
    for (const auto& n : net.nodes)
      for (const auto& in : n.inputs)
        if (!in.empty()) consumers_[in].push_back(&n);
    const std::size_t rows = std::min(calibration.rows, options.max_calibration_rows);
    calib_ = calibration.first_rows(rows);
    find_pooled_accumulators();
    // Float reference values of every tensor, per calibration row.
    for (std::size_t r = 0; r < rows; ++r) {
      std::vector<double> x(calib_.row(r).begin(), calib_.row(r).end());
      apply_preprocessing(model, x);
      auto values = evaluate_network(net, FloatTensor{net.input_shape, x});
      for (auto& [name, t] : values) {
        if (net.initializers.count(name)) continue;
        auto& range = float_range_[name];
        if (range.empty()) range.assign(2, 0.0), range[0] = INFINITY, range[1] = -INFINITY;
        for (double v : t.data) range[0] = std::min(range[0], v), range[1] = std::max(range[1], v);
        // Per channel (axis 1: a Gemm's units, a convolution's channels), for the lookups'
        // range filling (filled_scale).
        if (t.shape.size() >= 2 && t.shape[0] == 1 && t.shape[1] > 0) {
          const auto channels = static_cast<std::size_t>(t.shape[1]);
          const std::size_t inner = t.data.size() / channels;
          auto& cr = float_channel_range_[name];
          if (cr.empty()) cr.assign(channels, {INFINITY, -INFINITY});
          for (std::size_t e = 0; e < t.data.size(); ++e) {
            auto& c = cr[(e / inner) % channels];
            c.first = std::min(c.first, t.data[e]), c.second = std::max(c.second, t.data[e]);
          }
        }
        if (const auto p = pooled_.find(name); p != pooled_.end()) record_pool_differences(name, t, *p->second.pool);
      }
    }
  }

  // Accumulators whose activation may run after the max pooling that reads it
  // (defers_to_maxpool): X read only by a univariate node U, U's output only by an unpadded
  // MaxPool. There the first rounding X meets is that of the max's differences (lower_maxpool),
  // whose range is wider than X's own (up to twice): range filling sizes the weights for it.
  struct Pooled {
    const GraphNode* activation = nullptr;
    const GraphNode* pool = nullptr;
  };
  void find_pooled_accumulators() {
    if (!options_.pool_before_activation) return;
    std::map<std::string, const GraphNode*> producer;
    for (const auto& n : net_.nodes)
      for (const auto& o : n.outputs) producer[o] = &n;
    for (const auto& n : net_.nodes) {
      if (n.op_type != "MaxPool" || n.inputs.empty() || (n.outputs.size() > 1 && !n.outputs[1].empty())) continue;
      const auto u = producer.find(n.inputs[0]);
      if (u == producer.end() || u->second->inputs.empty()) continue;
      const NetworkOp* op = find_network_op(u->second->op_type);
      if (!op || op->family != OpFamily::kUnivariate) continue;
      const std::string& x = u->second->inputs[0];
      const auto cx = consumers_.find(x), cu = consumers_.find(n.inputs[0]);
      if (cx == consumers_.end() || cx->second.size() != 1 || cu == consumers_.end() || cu->second.size() != 1) continue;
      pooled_[x] = Pooled{u->second, &n};
    }
  }
  // Per channel, the range of the differences lower_maxpool's max tree takes (b - a of each
  // pair, level by level, on the float values `t` of the pooled accumulator).
  void record_pool_differences(const std::string& name, const FloatTensor& t, const GraphNode& pool) {
    if (t.shape.size() != 4 || t.shape[0] != 1) return;
    Window win;
    try {
      win = pool_window(pool, t.shape);
    } catch (const std::invalid_argument&) {
      return;  // the lowering says why
    }
    if (win.pad_top || win.pad_left || win.pad_bottom || win.pad_right) return;
    const std::int64_t channels = t.shape[1], h = t.shape[2], w = t.shape[3];
    auto& range = pool_diff_range_[name];
    if (range.empty()) range.assign(static_cast<std::size_t>(channels), {INFINITY, -INFINITY});
    for (std::int64_t c = 0; c < channels; ++c)
      for (std::int64_t oy = 0; oy < win.out_h; ++oy)
        for (std::int64_t ox = 0; ox < win.out_w; ++ox) {
          std::vector<double> parts;
          for (std::int64_t ky = 0; ky < win.kh; ++ky)
            for (std::int64_t kx = 0; kx < win.kw; ++kx)
              parts.push_back(t.data[static_cast<std::size_t>((c * h + oy * win.stride_h + ky * win.dilation_h) * w +
                                                              ox * win.stride_w + kx * win.dilation_w)]);
          auto& r = range[static_cast<std::size_t>(c)];
          while (parts.size() > 1) {
            std::vector<double> next;
            for (std::size_t i = 0; i + 1 < parts.size(); i += 2) {
              const double d = parts[i + 1] - parts[i];
              r.first = std::min(r.first, d), r.second = std::max(r.second, d);
              next.push_back(std::max(parts[i], parts[i + 1]));
            }
            if (parts.size() % 2) next.push_back(parts.back());
            parts = std::move(next);
          }
        }
  }

  QuantizedModel run() {
    QuantizedModel out;
    Processing& p = out.processing;
    p.model_kind = "network";
    p.input_shape = net_.input_shape;
    make_input(p);
    for (const auto& node : net_.nodes) lower_node(node);
    if (chains_.count(net_.output_name) && !enc_.count(net_.output_name)) {
      GraphNode out;
      out.name = net_.output_name;
      encrypted_value(out, net_.output_name);
    }
    auto it = enc_.find(net_.output_name);
    if (it == enc_.end())
      throw std::invalid_argument("network output '" + net_.output_name + "' does not depend on the input");
    Enc y = it->second;
    const auto& nodes = builder_.peek().nodes;
    const bool has_lookups = std::any_of(nodes.begin(), nodes.end(), [](const circuit::Node& n) { return n.kind == circuit::OpKind::kLookup; });
    if (has_lookups && nodes[y.v.id].kind != circuit::OpKind::kLookup) {
      // The client reads the top output_bits of the last accumulator: centred and
      // approximately rounded like a lookup's input, no lookup (decryption rounds it).
      const unsigned bits = options_.network_output_bits ? options_.network_output_bits : options_.lookup_precision;
      std::optional<Range> range;
      y = centred(y, "output", range, bits);
      y.v = round_for_lookup(y.v, "output", range, bits);
    }
    builder_.output(y.v, "y");
    out.circuit = std::move(builder_).build();
    for (const auto& [id, r] : exact_hints_) out.circuit.nodes[id].range_hint = r;
    set_range_hints(out.circuit, samples_, options_.range_margin);
    OutputDequantizer dq;
    dq.shape = y.shape;
    dq.scale = y.s;
    dq.offset = y.b;
    p.outputs.push_back(std::move(dq));
    p.aggregation = OutputAggregation::kNone;
    p.n_outputs = y.s.size();
    p.link = net_.link;
    return out;
  }

 private:
  [[noreturn]] void fail(const GraphNode& n, const std::string& what) const { node_fail(n, what); }

  void make_input(Processing& p) {
    const Shape& shape = net_.input_shape;
    const std::int64_t count = circuit::element_count(shape);
    // Per feature for [1, F]; per channel for [1, C, ...] (convolutions need one scale per channel).
    const std::int64_t channels = shape.size() > 2 ? shape[1] : count;
    const std::int64_t inner = count / channels;
    // Quantizers read the raw features (the client's values); preprocessing, if any, is
    // folded into the interpretation below.
    std::vector<double> rlo, rhi;
    column_ranges(calib_, rlo, rhi);
    Enc x;
    x.shape = shape;
    x.s.resize(static_cast<std::size_t>(count));
    x.b.resize(static_cast<std::size_t>(count));
    unsigned bits = options_.network_input_bits;
    const std::optional<InputGrid> grid = input_grid();
    if (grid) {
      // Codes c - lo (unsigned), standing for (c - zero_point) * scale.
      bits = circuit::width_of_span(static_cast<std::uint64_t>(grid->hi - grid->lo));
      for (std::size_t e = 0; e < x.s.size(); ++e) {
        InputQuantizer q;
        q.scale = grid->params.scale[e];
        q.zero_point = static_cast<std::int64_t>(grid->params.zero_point[e]) - grid->lo;
        q.n_bits = bits;
        q.q_min = 0;
        q.q_max = grid->hi - grid->lo;
        p.input_quantizers.push_back(q);
        x.s[e] = q.scale;
        x.b[e] = -q.scale * static_cast<double>(q.zero_point);
      }
    }
    for (std::int64_t c = 0; c < (grid ? 0 : channels); ++c) {
      double l = INFINITY, h = -INFINITY;
      for (std::int64_t i = 0; i < inner; ++i) {
        l = std::min(l, rlo[static_cast<std::size_t>(c * inner + i)]);
        h = std::max(h, rhi[static_cast<std::size_t>(c * inner + i)]);
      }
      InputQuantizer q = affine_quantizer(l, h, bits);
      if (q.q_max == q.q_min) {
        // Keep the channel's codes usable: a constant channel still gets its n bits.
        q.q_max = (std::int64_t{1} << bits) - 1;
      }
      for (std::int64_t i = 0; i < inner; ++i) {
        const auto e = static_cast<std::size_t>(c * inner + i);
        p.input_quantizers.push_back(q);
        x.s[e] = q.scale;
        x.b[e] = -q.scale * static_cast<double>(q.zero_point);
      }
    }
    if (!model_.preprocessing.empty()) {
      // x' = mul x + add per feature (only for [1, F] inputs).
      if (shape.size() != 2) throw std::invalid_argument("preprocessing is supported for [1, F] network inputs only");
      for (const auto& t : model_.preprocessing)
        for (std::size_t e = 0; e < x.s.size(); ++e) x.s[e] *= t.mul[e], x.b[e] = x.b[e] * t.mul[e] + t.add[e];
    }
    x.v = builder_.input(shape, bits, false, net_.input_name);
    enc_[net_.input_name] = x;
    if (grid) enc_[grid->output] = x;
    // Integer calibration inputs.
    for (std::size_t r = 0; r < calib_.rows; ++r) {
      std::vector<std::int64_t> q(static_cast<std::size_t>(count));
      for (std::size_t e = 0; e < q.size(); ++e) {
        const double v = calib_.at(r, e);
        if (std::isnan(v)) throw std::invalid_argument("calibration row " + std::to_string(r) + " has a missing value");
        q[e] = p.input_quantizers[e].quantize(v);
      }
      samples_.push_back({circuit::Tensor(shape, q)});
    }
  }

  const FloatTensor* constant(const std::string& name) const {
    auto it = net_.initializers.find(name);
    return it == net_.initializers.end() ? nullptr : &it->second;
  }
  // Input i as an encrypted value; a pending chain of univariate ops becomes its lookup here,
  // once, when the first reader needs it.
  const Enc& encrypted(const GraphNode& n, std::size_t i) {
    if (i >= n.inputs.size()) node_fail(n, "missing input " + std::to_string(i));
    return encrypted_value(n, n.inputs[i]);
  }
  const Enc& encrypted_value(const GraphNode& n, const std::string& name) {
    auto it = enc_.find(name);
    if (it != enc_.end()) return it->second;
    const auto c = chains_.find(name);
    if (c == chains_.end()) node_fail(n, "input '" + name + "' is not an encrypted value (constant folding of this op is not supported)");
    const Chain& ch = c->second;
    return enc_[name] = activation(ch.x, ch.f, ch.bits, name, ch.label, ch.grid);
  }
  // A value as a univariate function of an encrypted value: a pending chain, or an encrypted
  // value as the identity of itself. nullopt for constants.
  std::optional<Chain> as_chain(const std::string& name) const {
    if (const auto it = enc_.find(name); it != enc_.end()) {
      Chain c;
      c.x = it->second;
      return c;
    }
    if (const auto it = chains_.find(name); it != chains_.end()) return it->second;
    return std::nullopt;
  }

  // Observed integer range of every element of a value on the calibration rows.
  struct ElementRanges {
    std::vector<std::int64_t> lo, hi;
  };
  ElementRanges observed_elements(Value v) {
    const circuit::Circuit& c = builder_.peek();
    const auto count = static_cast<std::size_t>(circuit::element_count(c.nodes[v.id].shape));
    ElementRanges r{std::vector<std::int64_t>(count, INT64_MAX), std::vector<std::int64_t>(count, INT64_MIN)};
    for (const auto& sample : samples_) {
      const auto values = circuit::run_clear_all_nodes(c, sample);
      for (std::size_t e = 0; e < count; ++e)
        r.lo[e] = std::min(r.lo[e], values[v.id].data[e]), r.hi[e] = std::max(r.hi[e], values[v.id].data[e]);
    }
    return r;
  }

  // Observed integer range of a value (all elements) on the calibration rows.
  std::pair<std::int64_t, std::int64_t> observed(Value v) {
    const ElementRanges r = observed_elements(v);
    return {*std::min_element(r.lo.begin(), r.lo.end()), *std::max_element(r.hi.begin(), r.hi.end())};
  }

  // Mean over the calibration rows of every element of a value.
  std::vector<double> observed_mean(Value v) {
    const circuit::Circuit& c = builder_.peek();
    std::vector<double> mean(static_cast<std::size_t>(circuit::element_count(c.nodes[v.id].shape)), 0.0);
    for (const auto& sample : samples_) {
      const auto values = circuit::run_clear_all_nodes(c, sample);
      for (std::size_t e = 0; e < mean.size(); ++e) mean[e] += static_cast<double>(values[v.id].data[e]);
    }
    for (auto& m : mean) m /= static_cast<double>(std::max<std::size_t>(samples_.size(), 1));
    return mean;
  }

  // Approximate rounding that leaves at most `bits` bits (lookup_precision when 0) of the
  // calibrated range (`known`: that range, when the caller has it already).
  using Range = std::pair<std::int64_t, std::int64_t>;
  // `margin`: the lookup reading it has neighbour reads, whose table keeps a box at either
  // end: two values fewer fit.
  Value round_for_lookup(Value v, const std::string& name, std::optional<Range> known = std::nullopt, unsigned bits = 0,
                         bool margin = false) {
    if (bits == 0) bits = options_.lookup_precision;
    const auto inferred = builder_.range(v);
    auto [lo, hi] = known ? *known : observed(v);
    const auto widen = static_cast<std::int64_t>(std::ceil(static_cast<double>(hi - lo) * options_.range_margin));
    lo = std::max(inferred.lo, lo - widen);
    hi = std::min(inferred.hi, hi + widen);
    unsigned r = 0;
    const auto floor_div = [](std::int64_t a, std::int64_t d) { return a >= 0 ? a / d : -((-a + d - 1) / d); };
    // The observed range must fit lookup_precision bits, and the inferred one (which the
    // table covers) a table.
    while (r < 60) {
      const std::int64_t d = std::int64_t{1} << r;
      const std::int64_t span = floor_div(hi, d) - floor_div(lo, d) + (r > 0 ? 1 : 0);
      const auto entries = static_cast<std::uint64_t>(floor_div(inferred.hi, d) - floor_div(inferred.lo, d) + 1);
      if (circuit::width_of_span(static_cast<std::uint64_t>(span + (margin ? 2 : 0))) <= bits &&
          entries <= circuit::kMaxTableEntries)
        break;
      ++r;
    }
    if (r == 0 || r <= inferred.trailing_zeros) return v;
    return builder_.round_bits(v, r, circuit::RoundingMode::kApproximate, name + "/round");
  }

  // x plus a clear constant per interpretation group (elements with the same s and b) that
  // puts the middle of the group's calibrated range at 0, the constant folded into b. The
  // rounding ahead of a lookup keeps lookup_precision bits of the range of *all* elements:
  // centred, that range is the widest group's, not the spread of the groups' positions
  // (a unit that is always negative no longer pushes the others' levels apart).
  // `observed_out`: the calibrated range of the returned value (all elements). `bits`: what
  // the rounding keeps (lookup_precision when 0).
  Enc centred(Enc x, const std::string& label, std::optional<Range>& observed_out, unsigned bits = 0) {
    if (bits == 0) bits = options_.lookup_precision;
    observed_out.reset();
    if (samples_.empty() || x.s.size() < 2) return x;
    const ElementRanges r = observed_elements(x.v);
    std::map<std::pair<double, double>, std::pair<std::int64_t, std::int64_t>> group_range;
    for (std::size_t e = 0; e < x.s.size(); ++e) {
      auto [it, fresh] = group_range.try_emplace({x.s[e], x.b[e]}, r.lo[e], r.hi[e]);
      if (!fresh) it->second.first = std::min(it->second.first, r.lo[e]), it->second.second = std::max(it->second.second, r.hi[e]);
    }
    circuit::Tensor c(x.shape, std::vector<std::int64_t>(x.s.size(), 0));
    std::int64_t lo = INT64_MAX, hi = INT64_MIN, clo = INT64_MAX, chi = INT64_MIN;
    for (std::size_t e = 0; e < x.s.size(); ++e) {
      const auto [glo, ghi] = group_range.at({x.s[e], x.b[e]});
      c.data[e] = -(glo + (ghi - glo) / 2);
      lo = std::min(lo, glo), hi = std::max(hi, ghi);
      clo = std::min(clo, glo + c.data[e]), chi = std::max(chi, ghi + c.data[e]);
    }
    // Only where the lookup needs rounding and centring narrows what it rounds.
    const auto width = [](std::int64_t a, std::int64_t b) { return circuit::width_of_span(static_cast<std::uint64_t>(b - a)); };
    observed_out = Range{lo, hi};
    if (width(lo, hi) <= bits || chi - clo >= hi - lo) return x;
    observed_out = Range{clo, chi};
    // real = s v + b = s (v + c) + (b - s c)
    for (std::size_t e = 0; e < x.s.size(); ++e) x.b[e] -= x.s[e] * static_cast<double>(c.data[e]);
    x.v = builder_.add(x.v, c, label + "/centre");
    return x;
  }

  // One lookup fused with requantization to `bits` bits of f's calibrated output range.
  // `grid`: f ends in a fake quantization whose codes the output keeps (lower_univariate).
  Enc activation(const Enc& x_in, const Function& f, unsigned bits, const std::string& out_name, const std::string& label,
                 const std::optional<Grid>& grid = std::nullopt) {
    double s_out = 0;
    std::int64_t q_lo = 0, q_hi = 0;
    if (grid) {
      // Output c - zero_point for the code c: real zero is integer zero.
      s_out = grid->scale;
      q_lo = static_cast<std::int64_t>(grid->lo - grid->zero_point);
      q_hi = static_cast<std::int64_t>(grid->hi - grid->zero_point);
    } else {
      auto fr = float_range_.find(out_name);
      double lo = 0, hi = 0;
      if (fr != float_range_.end()) lo = fr->second[0], hi = fr->second[1];
      if (!(hi > lo)) hi = lo + 1e-6;
      const double levels = static_cast<double>((std::int64_t{1} << bits) - 1);
      s_out = (hi - lo) / levels;
      q_lo = static_cast<std::int64_t>(std::nearbyint(lo / s_out));
      q_hi = q_lo + (std::int64_t{1} << bits) - 1;
    }
    std::optional<Range> range;
    const Enc x = centred(x_in, label, range);
    const unsigned neighbour = options_.network_neighbour_log2;
    const Value in = round_for_lookup(x.v, label, range, 0, neighbour > 0);
    std::map<std::pair<double, double>, std::uint32_t> groups;
    std::vector<circuit::Table> tables;
    std::vector<std::uint32_t> index(x.s.size());
    for (std::size_t e = 0; e < x.s.size(); ++e) {
      const auto key = std::make_pair(x.s[e], x.b[e]);
      auto it = groups.find(key);
      if (it == groups.end()) {
        const double s = x.s[e], b = x.b[e];
        tables.push_back(builder_.table_for(in, [=](std::int64_t t) {
          const double y = f(s * static_cast<double>(t) + b);
          double q = std::nearbyint(y / s_out);
          if (std::isnan(q)) q = static_cast<double>(q_lo);  // outside f's domain (log of a negative)
          return static_cast<std::int64_t>(std::clamp(q, static_cast<double>(q_lo), static_cast<double>(q_hi)));
        }));
        it = groups.emplace(key, static_cast<std::uint32_t>(tables.size() - 1)).first;
      }
      index[e] = it->second;
    }
    Enc y;
    y.v = builder_.lookup_per_element(in, std::move(tables), std::move(index), label, neighbour);
    y.shape = x.shape;
    y.s.assign(x.s.size(), s_out);
    y.b.assign(x.s.size(), 0.0);
    return y;
  }

  unsigned activation_bits(const GraphNode& n) const {
    auto it = options_.activation_bits_per_node.find(n.name);
    return it == options_.activation_bits_per_node.end() ? options_.network_activation_bits : it->second;
  }
  unsigned weight_bits(const GraphNode& n) const {
    auto it = options_.weight_bits_per_node.find(n.name);
    return it == options_.weight_bits_per_node.end() ? options_.network_weight_bits : it->second;
  }

  // Requantizes x with offset 0 and one scale (identity lookup): what convolutions, pools and
  // additions need when the interpretation varies inside a channel.
  Enc requantize(const Enc& x, const std::string& float_name, const std::string& label) {
    return activation(x, [](double v) { return v; }, options_.network_activation_bits, float_name, label);
  }

  static bool uniform_per_channel(const Enc& x, bool need_offset, bool positive) {
    if (x.shape.size() < 2) return false;
    const std::int64_t c = x.shape[1];
    const std::int64_t inner = static_cast<std::int64_t>(x.s.size()) / (x.shape[0] * c);
    for (std::int64_t e = 0; e < static_cast<std::int64_t>(x.s.size()); ++e) {
      const std::int64_t first = (e / inner) * inner;
      const auto i = static_cast<std::size_t>(e), f = static_cast<std::size_t>(first);
      if (std::fabs(x.s[i] - x.s[f]) > 1e-12 * std::fabs(x.s[f])) return false;
      if (need_offset && std::fabs(x.b[i] - x.b[f]) > 1e-12 * (1 + std::fabs(x.b[f]))) return false;
      if (positive && !(x.s[i] > 0)) return false;
    }
    return true;
  }

  void lower_node(const GraphNode& n) {
    const std::string& out = n.outputs[0];
    bool any_enc = false;
    if (adopted_input_.count(n.name)) return;  // the input's own quantization (input_grid)
    for (const auto& in : n.inputs)
      if (enc_.count(in) || deferred_.count(in) || chains_.count(in)) any_enc = true;
    if (!any_enc) fail(n, "does not depend on the network input (constant subgraphs are not folded)");

    const NetworkOp* op = find_network_op(n.op_type);
    if (!op) fail(n, "op is not supported by the lowering");
    switch (op->family) {
      case OpFamily::kUnivariate: {
        const auto f = unary_op(n, [this](const std::string& name) { return constant(name); });
        if (!f) fail(n, "is not a univariate op");
        lower_univariate(n, *f);
        break;
      }
      case OpFamily::kElementwise: lower_elementwise(n); break;
      case OpFamily::kMatmul: lower_gemm(n); break;
      case OpFamily::kConv: lower_conv(n); break;
      case OpFamily::kBatchNormalization: lower_batchnorm(n); break;
      case OpFamily::kMaxPool: lower_maxpool(n); break;
      case OpFamily::kAveragePool: lower_avgpool(n, n.op_type == "GlobalAveragePool"); break;
      case OpFamily::kReshape: {
        Enc x = encrypted(n, 0);
        const Shape target = reshaped_shape(n, x.shape, net_.initializers);
        x.v = builder_.reshape(x.v, target, n.name);
        x.shape = target;
        enc_[out] = x;
        break;
      }
      case OpFamily::kPad: lower_pad(n); break;
      case OpFamily::kTranspose: lower_transpose(n); break;
      case OpFamily::kConcat: lower_concat(n); break;
      case OpFamily::kReduce: lower_reduce(n); break;
    }
  }

  // The node reading `name`, when exactly one does (and reads it as its first input).
  const GraphNode* single_consumer(const std::string& name) const {
    const auto it = consumers_.find(name);
    if (it == consumers_.end() || it->second.size() != 1) return nullptr;
    const GraphNode* c = it->second[0];
    return c->inputs.at(0) == name ? c : nullptr;
  }

  // A chain of univariate ops, each the only reader of the one before, is one lookup computing
  // their composition: Relu then a fake quantization (QuantizeLinear, Clip on the codes,
  // DequantizeLinear) cost one PBS, not three. A chain that ends in DequantizeLinear of codes
  // whose range it knows (QuantizeLinear's type, narrowed by Clip) gives exactly those codes:
  // the lookup's output is the quantization-aware model's own grid, not a requantization by
  // the calibrated range.
  void lower_univariate(const GraphNode& n, const UnaryFunction& u) {
    const std::string& out = n.outputs[0];
    Chain c;
    if (const auto it = chains_.find(n.inputs.at(0)); it != chains_.end()) c = it->second;
    else c.x = encrypted(n, 0);
    c.f = [prev = c.f, g = u.f](double v) { return g(prev(v)); };
    c.non_decreasing = c.non_decreasing && u.non_decreasing;
    const std::string& op = n.op_type;
    if (op == "QuantizeLinear") {
      const QuantParams p = per_tensor_quant(n);
      c.codes = {static_cast<double>(p.q_min), static_cast<double>(p.q_max)};
      c.grid.reset();
    } else if (op == "Clip" && c.codes) {
      // Clip on the codes: the bounds are u.f's values at the infinities.
      const double lo = std::max(c.codes->first, std::ceil(u.f(-INFINITY)));
      const double hi = std::min(c.codes->second, std::floor(u.f(INFINITY)));
      if (lo > hi) fail(n, "the clip leaves no code");
      c.codes = {lo, hi};
    } else if (op == "DequantizeLinear" && c.codes) {
      const QuantParams p = per_tensor_quant(n);
      c.grid = Grid{p.scale[0], p.zero_point[0], c.codes->first, c.codes->second};
      c.codes.reset();
    } else {
      c.codes.reset();
      c.grid.reset();
    }
    c.label = n.name;
    c.bits = activation_bits(n);
    if (defers_to_maxpool(n, c.x, UnaryFunction{c.f, c.non_decreasing})) {
      deferred_[out] = {c.x, c.f, c.bits, n.name, c.grid};
      return;
    }
    // Pending until a reader needs the encrypted value (encrypted_value): a univariate reader
    // or an elementwise one with a scalar constant composes instead.
    chains_[out] = std::move(c);
  }

  // y = a op b, op one of + - * /, on real values.
  static double apply_binary(char op, double a, double b) {
    return op == '+' ? a + b : op == '-' ? a - b : op == '*' ? a * b : a / b;
  }
  static char binary_op(const std::string& op_type) {
    return op_type == "Add" ? '+' : op_type == "Sub" ? '-' : op_type == "Mul" ? '*' : '/';
  }

  // Elementwise ops that stay univariate: a pending chain with a scalar constant, two functions
  // of the same encrypted value (x * sigmoid(x), x * x, Gelu's x * (1 + erf(x / sqrt 2)) / 2),
  // a constant divided by an encrypted value. True when it built a chain for n's output.
  bool compose_elementwise(const GraphNode& n) {
    const char op = binary_op(n.op_type);
    const auto a = as_chain(n.inputs.at(0)), b = as_chain(n.inputs.at(1));
    const bool pending_a = chains_.count(n.inputs[0]) && !enc_.count(n.inputs[0]);
    const bool pending_b = chains_.count(n.inputs[1]) && !enc_.count(n.inputs[1]);
    Chain c;
    if (a && b) {
      if (a->x.v.id != b->x.v.id) return false;
      if (!pending_a && !pending_b && (op == '+' || op == '-')) return false;  // levelled: x + x
      c.x = a->x;
      c.f = [op, fa = a->f, fb = b->f](double v) { return apply_binary(op, fa(v), fb(v)); };
      c.non_decreasing = false;
    } else if (a || b) {
      const bool chain_first = a.has_value();
      const Chain& in = chain_first ? *a : *b;
      const FloatTensor* k = constant(n.inputs[chain_first ? 1 : 0]);
      if (!k || k->data.size() != 1) return false;
      const bool pending = chain_first ? pending_a : pending_b;
      if (!pending && !(op == '/' && !chain_first)) return false;  // affine: the interpretation takes it
      const double kv = k->data[0];
      c.x = in.x;
      c.f = [op, chain_first, kv, f = in.f](double v) { return chain_first ? apply_binary(op, f(v), kv) : apply_binary(op, kv, f(v)); };
      c.non_decreasing = in.non_decreasing && chain_first &&
                         (op == '+' || op == '-' || ((op == '*' || op == '/') && kv > 0));
    } else {
      return false;
    }
    c.label = n.name;
    c.bits = activation_bits(n);
    chains_[n.outputs[0]] = std::move(c);
    return true;
  }

  QuantParams per_tensor_quant(const GraphNode& n) const {
    const FloatTensor* scale = constant(n.inputs.at(1));
    const FloatTensor* zp = n.inputs.size() > 2 && !n.inputs[2].empty() ? constant(n.inputs[2]) : nullptr;
    if (!scale || (n.inputs.size() > 2 && !n.inputs[2].empty() && !zp)) fail(n, "the scale and zero point must be constants");
    QuantParams p = quant_params(n, {1}, *scale, zp);
    if (!p.per_tensor) fail(n, "per-axis quantization of a value computed from the input is not supported (only of constant weights)");
    return p;
  }

  // Quantization-aware graphs quantize their input in the graph: input -> QuantizeLinear ->
  // (Clip on the codes) -> DequantizeLinear with the same scale and zero point. The client
  // then quantizes with exactly that grid (per tensor or per axis), and the three nodes add
  // nothing to the circuit. nullopt when the input is not read that way.
  struct InputGrid {
    QuantParams params;  // per input element
    std::int64_t lo = 0, hi = 0;
    std::string output;  // the DequantizeLinear's output
  };
  std::optional<InputGrid> input_grid() {
    const GraphNode* q = single_consumer(net_.input_name);
    if (!q || q->op_type != "QuantizeLinear" || q->inputs.size() < 2) return std::nullopt;
    const auto params = [&](const GraphNode& n) -> std::optional<QuantParams> {
      const FloatTensor* scale = constant(n.inputs.at(1));
      const bool has_zp = n.inputs.size() > 2 && !n.inputs[2].empty();
      const FloatTensor* zp = has_zp ? constant(n.inputs[2]) : nullptr;
      if (!scale || (has_zp && !zp)) return std::nullopt;
      return quant_params(n, net_.input_shape, *scale, zp);
    };
    InputGrid g;
    const auto qp = params(*q);
    if (!qp) return std::nullopt;
    g.params = *qp;
    double lo = static_cast<double>(qp->q_min), hi = static_cast<double>(qp->q_max);
    std::set<std::string> names{q->name};
    for (const GraphNode* n = single_consumer(q->outputs[0]); n; n = single_consumer(n->outputs[0])) {
      names.insert(n->name);
      if (n->op_type == "Clip") {
        const auto u = unary_op(*n, [this](const std::string& name) { return constant(name); });
        lo = std::max(lo, std::ceil(u->f(-INFINITY)));
        hi = std::min(hi, std::floor(u->f(INFINITY)));
        if (lo > hi) fail(*n, "the clip leaves no code");
        continue;
      }
      if (n->op_type != "DequantizeLinear" || n->inputs.size() < 2) return std::nullopt;
      const auto dp = params(*n);
      if (!dp || dp->scale != qp->scale || dp->zero_point != qp->zero_point) return std::nullopt;
      g.lo = static_cast<std::int64_t>(lo);
      g.hi = static_cast<std::int64_t>(hi);
      g.output = n->outputs[0];
      adopted_input_ = std::move(names);
      return g;
    }
    return std::nullopt;
  }

  // Weights that a DequantizeLinear produced (Network::weight_steps) stay on their grid when
  // every product step[i] * unit[i] (unit: what multiplies the weight, alpha times the input's
  // scale) is one value for the output unit: q = w / step exactly, scale = that value
  // (positive: the signs go into q). nullopt otherwise, and the weights are quantized.
  static std::optional<double> on_grid(const std::vector<double>& w, const std::vector<double>& step,
                                       const std::vector<double>& unit, std::vector<std::int64_t>& q) {
    if (w.empty()) return std::nullopt;
    const double scale = step[0] * unit[0];
    if (!(std::fabs(scale) > 0) || !std::isfinite(scale)) return std::nullopt;
    q.assign(w.size(), 0);
    for (std::size_t i = 0; i < w.size(); ++i) {
      if (std::fabs(step[i] * unit[i] - scale) > 1e-9 * std::fabs(scale)) return std::nullopt;
      const double k = w[i] / step[i];
      const double r = std::nearbyint(k);
      if (std::fabs(k - r) > 1e-6 * std::max(1.0, std::fabs(r)) || std::fabs(r) > 32768) return std::nullopt;
      q[i] = static_cast<std::int64_t>(scale < 0 ? -r : r);
    }
    return std::fabs(scale);
  }

  const FloatTensor* weight_steps(const std::string& name) const {
    const auto it = net_.weight_steps.find(name);
    return it == net_.weight_steps.end() ? nullptr : &it->second;
  }

  // max(f(a), f(b)) = f(max(a, b)) for a non-decreasing f: an activation (requantization
  // included) whose only consumer is an unpadded MaxPool runs after the pooling, on a
  // quarter of the elements for 2x2 windows, and the max reads the accumulators instead.
  // That needs one interpretation per channel with a positive scale, so that every element
  // of a window goes through the same non-decreasing function.
  bool defers_to_maxpool(const GraphNode& act, const Enc& x, const UnaryFunction& f) const {
    if (!options_.pool_before_activation || !f.non_decreasing) return false;
    const std::string& out = act.outputs[0];
    if (out == net_.output_name || x.shape.size() != 4 || !uniform_per_channel(x, true, true)) return false;
    const GraphNode* consumer = nullptr;
    for (const auto& node : net_.nodes)
      for (const auto& in : node.inputs)
        if (in == out) {
          if (consumer) return false;
          consumer = &node;
        }
    if (!consumer || consumer->op_type != "MaxPool" || consumer->inputs.at(0) != out) return false;
    if (consumer->outputs.size() > 1 && !consumer->outputs[1].empty()) return false;
    const Window win = pool_window(*consumer, x.shape);
    return !(win.pad_top || win.pad_left || win.pad_bottom || win.pad_right);
  }

  void lower_batchnorm(const GraphNode& n) {
    Enc x = encrypted(n, 0);
    if (attr_int(n, "training_mode", 0) != 0) fail(n, "training_mode = 1 is not supported");
    const double eps = attr_float(n, "epsilon", 1e-5);
    const FloatTensor *sc = constant(n.inputs.at(1)), *bi = constant(n.inputs.at(2)), *mean = constant(n.inputs.at(3)),
                      *var = constant(n.inputs.at(4));
    if (!sc || !bi || !mean || !var) fail(n, "parameters must be constants");
    const std::int64_t c = x.shape.at(1);
    const std::int64_t inner = static_cast<std::int64_t>(x.s.size()) / c;
    if (static_cast<std::int64_t>(sc->data.size()) != c) fail(n, "parameters must have one entry per channel");
    for (std::size_t e = 0; e < x.s.size(); ++e) {
      const auto ch = static_cast<std::size_t>((static_cast<std::int64_t>(e) / inner) % c);
      const double a = sc->data[ch] / std::sqrt(var->data[ch] + eps);
      const double d = bi->data[ch] - mean->data[ch] * a;
      x.s[e] *= a;
      x.b[e] = x.b[e] * a + d;
    }
    enc_[n.outputs[0]] = x;
  }

  // The interpretation follows its elements through data movement: (s, b) of output element e
  // are those of the input element it copies (source[e]).
  static void move_interpretation(const Enc& x, Enc& y, const std::vector<std::int64_t>& source) {
    y.s.clear(), y.b.clear();
    for (auto e : source) y.s.push_back(x.s[static_cast<std::size_t>(e)]), y.b.push_back(x.b[static_cast<std::size_t>(e)]);
  }

  void lower_transpose(const GraphNode& n) {
    const Enc& x = encrypted(n, 0);
    const auto perm = transpose_perm(n, x.shape.size());
    Enc y;
    y.v = builder_.transpose(x.v, perm, n.name);
    y.shape = builder_.shape(y.v);
    const auto xs = circuit::strides_of(x.shape), ys = circuit::strides_of(y.shape);
    std::vector<std::int64_t> source(x.s.size());
    for (std::int64_t e = 0; e < static_cast<std::int64_t>(source.size()); ++e) {
      std::int64_t src = 0;
      for (std::size_t k = 0; k < perm.size(); ++k) src += ((e / ys[k]) % y.shape[k]) * xs[static_cast<std::size_t>(perm[k])];
      source[static_cast<std::size_t>(e)] = src;
    }
    move_interpretation(x, y, source);
    enc_[n.outputs[0]] = y;
  }

  // Concat of encrypted tensors; each keeps its interpretation. A constant operand would have
  // to be encrypted by the server: refused.
  void lower_concat(const GraphNode& n) {
    std::vector<Enc> parts;
    for (std::size_t i = 0; i < n.inputs.size(); ++i) {
      if (!enc_.count(n.inputs[i]) && constant(n.inputs[i]))
        fail(n, "input " + std::to_string(i) + " is a constant; only encrypted tensors can be concatenated");
      parts.push_back(encrypted(n, i));
    }
    if (parts.empty()) fail(n, "no input");
    const std::int64_t axis = concat_axis(n, parts[0].shape.size());
    std::vector<Value> values;
    for (const auto& p : parts) values.push_back(p.v);
    Enc y;
    y.v = builder_.concat(values, axis, n.name);
    y.shape = builder_.shape(y.v);
    std::int64_t outer = 1;
    for (std::int64_t d = 0; d < axis; ++d) outer *= y.shape[static_cast<std::size_t>(d)];
    for (std::int64_t o = 0; o < outer; ++o)
      for (const auto& p : parts) {
        const auto block = static_cast<std::int64_t>(p.s.size()) / outer;
        y.s.insert(y.s.end(), p.s.begin() + o * block, p.s.begin() + (o + 1) * block);
        y.b.insert(y.b.end(), p.b.begin() + o * block, p.b.begin() + (o + 1) * block);
      }
    enc_[n.outputs[0]] = y;
  }

  // ReduceSum / ReduceMean: an encrypted sum, once the summed elements share one scale (else
  // requantized to one first, a lookup per element); the offsets add up.
  void lower_reduce(const GraphNode& n) {
    Enc x = encrypted(n, 0);
    const ReduceSpec r = reduce_spec(n, x.shape, net_.initializers);
    if (r.axes.empty()) {
      enc_[n.outputs[0]] = x;
      return;
    }
    Shape kept = x.shape;
    std::int64_t count = 1;
    for (auto ax : r.axes) count *= kept[static_cast<std::size_t>(ax)], kept[static_cast<std::size_t>(ax)] = 1;
    const auto ks = circuit::strides_of(kept), xs = circuit::strides_of(x.shape);
    const auto target = [&](std::int64_t e) {
      std::int64_t dst = 0;
      for (std::size_t d = 0; d < kept.size(); ++d) dst += (kept[d] == 1 ? 0 : (e / xs[d]) % x.shape[d]) * ks[d];
      return static_cast<std::size_t>(dst);
    };
    const auto out_count = static_cast<std::size_t>(circuit::element_count(kept));
    const auto uniform = [&](const Enc& t) {
      std::vector<double> first(out_count, NAN);
      for (std::size_t e = 0; e < t.s.size(); ++e) {
        double& f = first[target(static_cast<std::int64_t>(e))];
        if (std::isnan(f)) f = t.s[e];
        else if (std::fabs(t.s[e] - f) > 1e-12 * std::fabs(f)) return false;
      }
      return true;
    };
    if (!uniform(x)) x = requantize(x, n.inputs[0], n.name + "/requantize");
    const double divisor = n.op_type == "ReduceMean" ? static_cast<double>(count) : 1.0;
    Enc y;
    y.v = builder_.sum(x.v, r.axes, r.keepdims, n.name);
    y.shape = builder_.shape(y.v);
    y.s.assign(out_count, 0.0);
    y.b.assign(out_count, 0.0);
    for (std::size_t e = 0; e < x.s.size(); ++e) {
      const std::size_t t = target(static_cast<std::int64_t>(e));
      y.s[t] = x.s[e] / divisor;
      y.b[t] += x.b[e] / divisor;
    }
    enc_[n.outputs[0]] = y;
  }

  void lower_elementwise(const GraphNode& n) {
    const std::string& op = n.op_type;
    if (compose_elementwise(n)) return;
    const auto is_encrypted = [&](const std::string& name) { return enc_.count(name) || chains_.count(name); };
    const bool e0 = is_encrypted(n.inputs.at(0)), e1 = is_encrypted(n.inputs.at(1));
    if (e0 && e1) {
      if (op == "Mul") fail(n, "a product of two encrypted values is not supported (unless both are functions of the same one)");
      if (op == "Div") fail(n, "a quotient of two encrypted values is not supported (unless both are functions of the same one)");
      Enc a = encrypted(n, 0), b = encrypted(n, 1);
      if (a.shape != b.shape) fail(n, "encrypted operands of different shapes are not supported");
      bool same = true;
      for (std::size_t e = 0; e < a.s.size(); ++e)
        if (std::fabs(a.s[e] - b.s[e]) > 1e-12 * std::fabs(a.s[e])) same = false;
      if (!same) {
        // A common scale: both requantized by the range of the result.
        a = requantize(a, n.outputs[0], n.name + "/lhs");
        b = requantize(b, n.outputs[0], n.name + "/rhs");
      }
      Enc y = a;
      y.v = op == "Add" ? builder_.add(a.v, b.v, n.name) : builder_.sub(a.v, b.v, n.name);
      for (std::size_t e = 0; e < y.b.size(); ++e) y.b[e] = op == "Add" ? a.b[e] + b.b[e] : a.b[e] - b.b[e];
      enc_[n.outputs[0]] = y;
      return;
    }
    const bool enc_first = e0;
    Enc x = encrypted(n, enc_first ? 0 : 1);
    const FloatTensor* c = constant(n.inputs.at(enc_first ? 1 : 0));
    if (!c) fail(n, "operand is neither encrypted nor constant");
    // The constant must broadcast to the encrypted operand's shape.
    const Shape& xs = x.shape;
    if (c->shape.size() > xs.size()) fail(n, "the constant " + circuit::shape_string(c->shape) + " is larger than the operand");
    const auto xstr = circuit::strides_of(xs), cstr = circuit::strides_of(c->shape);
    const std::size_t off = xs.size() - c->shape.size();
    for (std::size_t i = 0; i < c->shape.size(); ++i)
      if (c->shape[i] != 1 && c->shape[i] != xs[off + i])
        fail(n, "the constant " + circuit::shape_string(c->shape) + " does not broadcast to " + circuit::shape_string(xs));
    for (std::size_t e = 0; e < x.s.size(); ++e) {
      std::int64_t idx = 0;
      for (std::size_t i = 0; i < c->shape.size(); ++i)
        if (c->shape[i] != 1) idx += ((static_cast<std::int64_t>(e) / xstr[off + i]) % xs[off + i]) * cstr[i];
      const double k = c->data[static_cast<std::size_t>(idx)];
      if (n.op_type == "Add") x.b[e] += k;
      else if (n.op_type == "Mul") x.s[e] *= k, x.b[e] *= k;
      else if (n.op_type == "Div") {
        if (!enc_first) fail(n, "a constant tensor divided by an encrypted value is not supported (a scalar is)");
        if (k == 0 || !std::isfinite(1.0 / k)) fail(n, "division by zero");
        x.s[e] /= k, x.b[e] /= k;
      }
      else if (enc_first) x.b[e] -= k;
      else x.s[e] = -x.s[e], x.b[e] = k - x.b[e];
    }
    enc_[n.outputs[0]] = x;
  }

  // Range filling (QuantizationOptions::network_fill_lookup_range): the rounding ahead of a
  // lookup keeps lookup_precision bits of the widest unit's centred range, at a power-of-two
  // step, so a unit whose accumulator spans less than the widest one's, and every unit when
  // the widest falls short of the next power of two, reads fewer levels than the lookup
  // offers. Each unit's weight scale is chosen instead so that its calibrated float range
  // (widened by range_margin) spans a common integer width T that fills those levels at the
  // rounding step the widest unit needs: the weights get finer codes (more bits than
  // network_weight_bits, at most fill_max_weight_bits) and the lookup more levels of every
  // unit. `pooled`: the accumulators feed a max pool ahead of their activation
  // (find_pooled_accumulators), and each unit's range is that of the max's differences, which
  // lower_maxpool rounds first. From fill_min_lookup_precision (5 bits by default): below,
  // the tables' boxes of margin and the 10%
  // of slack leave too few levels to fill (the iris MLPs of python/tests/test_models.py lost
  // a row of agreement with the float model at 3 and 4 bits). Returns the scale for unit
  // `unit` of `out` (0: keep the symmetric quantization's). `scales`: every unit's scale from
  // quantize_symmetric; `max_abs`: the unit's largest weight magnitude (times the input scale).
  double filled_scale(const std::string& out, std::size_t unit, const std::vector<double>& scales, double max_abs,
                      bool pooled) {
    if (!options_.network_fill_lookup_range || options_.lookup_precision < options_.fill_min_lookup_precision) return 0;
    const auto it = float_channel_range_.find(out);
    if (it == float_channel_range_.end() || it->second.size() != scales.size()) return 0;
    const double widen = 1 + 2 * options_.range_margin;
    // Pooled before its activation: the rounding that binds is the max's differences'
    // (pool_differences), wider than the accumulator's own range.
    const auto diffs = pooled ? pool_diff_range_.find(out) : pool_diff_range_.end();
    const bool by_differences = diffs != pool_diff_range_.end() && diffs->second.size() == scales.size();
    const auto span = [&](std::size_t j) {
      double width = it->second[j].second - it->second[j].first;
      if (by_differences) width = std::max(width, diffs->second[j].second - diffs->second[j].first);
      return width * widen;
    };
    double widest = 0;  // integer span of the widest unit at its symmetric scale
    for (std::size_t j = 0; j < scales.size(); ++j)
      if (scales[j] > 0 && std::isfinite(span(j))) widest = std::max(widest, span(j) / scales[j]);
    // Values a lookup reads of its rounded input: 2^p less a box of margin at either end and
    // one for approximate rounding, less 10% for the distance between float and quantized
    // ranges.
    const double levels = 0.9 * static_cast<double>((std::int64_t{1} << options_.lookup_precision) - 4);
    if (!(widest > levels) || !(span(unit) > 0) || !(max_abs > 0)) return 0;
    double step = 1;
    while (widest > levels * step) step *= 2;
    const double target = levels * step;
    const double finest = max_abs / static_cast<double>((std::int64_t{1} << (options_.fill_max_weight_bits - 1)) - 1);
    // Never coarser than the unit's own symmetric scale: with weight bits above
    // fill_max_weight_bits, `finest` alone would cut the codes the caller asked for.
    return std::min(scales[unit], std::max(span(unit) / target, finest));
  }

  // Range filling for one unit quantized symmetrically (not on a trained grid): when
  // filled_scale gives a scale, the unit's codes `qa` are redone at it and `sw` takes it.
  void fill_unit(const std::string& out, std::size_t unit, const std::vector<double>& sym, const std::vector<double>& top,
                 const std::vector<double>& a, std::vector<std::int64_t>& qa, double& sw, bool pooled = false) {
    const double filled = filled_scale(out, unit, sym, top[unit], pooled);
    if (!(filled > 0)) return;
    sw = filled;
    for (std::size_t i = 0; i < a.size(); ++i) qa[i] = static_cast<std::int64_t>(std::nearbyint(a[i] / sw));
  }

  void lower_gemm(const GraphNode& n) {
    const Enc& x = encrypted(n, 0);
    const FloatTensor* w = constant(n.inputs.at(1));
    if (!w || w->shape.size() != 2) fail(n, "the weights must be a rank-2 constant");
    const bool gemm = n.op_type == "Gemm";
    if (gemm && attr_int(n, "transA", 0) != 0) fail(n, "transA = 1 is not supported");
    const bool tb = gemm && attr_int(n, "transB", 0) != 0;
    const double alpha = gemm ? attr_float(n, "alpha", 1.0) : 1.0, beta = gemm ? attr_float(n, "beta", 1.0) : 1.0;
    const std::int64_t k = tb ? w->shape[1] : w->shape[0], m = tb ? w->shape[0] : w->shape[1];
    if (static_cast<std::int64_t>(x.s.size()) != k || x.shape.back() != k)
      fail(n, "input " + circuit::shape_string(x.shape) + " is not one row of " + std::to_string(k) + " features");
    const FloatTensor* c = gemm && n.inputs.size() >= 3 && !n.inputs[2].empty() ? constant(n.inputs[2]) : nullptr;
    if (gemm && n.inputs.size() >= 3 && !n.inputs[2].empty() && !c) fail(n, "the bias must be a constant");
    auto wv = [&](std::int64_t i, std::int64_t j) { return w->data[static_cast<std::size_t>(tb ? j * k + i : i * m + j)]; };
    const FloatTensor* steps = weight_steps(n.inputs.at(1));
    // Bias correction: the weights' rounding error times the mean input joins the offset.
    const std::vector<double> mean = observed_mean(x.v);
    circuit::Tensor q({k, m}, std::vector<std::int64_t>(static_cast<std::size_t>(k * m), 0));
    Enc y;
    y.shape = x.shape;
    y.shape.back() = m;
    // The symmetric scales of every unit, for filled_scale.
    std::vector<double> sym(static_cast<std::size_t>(m), 0.0), top(sym.size(), 0.0);
    for (std::int64_t j = 0; j < m && !steps; ++j) {
      std::vector<double> a(static_cast<std::size_t>(k));
      for (std::int64_t i = 0; i < k; ++i) a[static_cast<std::size_t>(i)] = alpha * wv(i, j) * x.s[static_cast<std::size_t>(i)];
      std::vector<std::int64_t> unused;
      sym[static_cast<std::size_t>(j)] = quantize_symmetric(a, weight_bits(n), unused);
      for (double v : a) top[static_cast<std::size_t>(j)] = std::max(top[static_cast<std::size_t>(j)], std::fabs(v));
    }
    for (std::int64_t j = 0; j < m; ++j) {
      std::vector<double> a(static_cast<std::size_t>(k));
      double offset = 0;
      if (c) offset = beta * c->data[c->data.size() == 1 ? 0 : static_cast<std::size_t>(j)];
      for (std::int64_t i = 0; i < k; ++i) {
        a[static_cast<std::size_t>(i)] = alpha * wv(i, j) * x.s[static_cast<std::size_t>(i)];
        offset += alpha * wv(i, j) * x.b[static_cast<std::size_t>(i)];
      }
      std::vector<std::int64_t> qa;
      std::optional<double> grid;
      if (steps) {
        std::vector<double> wj(static_cast<std::size_t>(k)), sj(wj.size()), unit(wj.size());
        for (std::int64_t i = 0; i < k; ++i) {
          const auto ii = static_cast<std::size_t>(i);
          const auto idx = static_cast<std::size_t>(tb ? j * k + i : i * m + j);
          wj[ii] = w->data[idx], sj[ii] = steps->data[idx], unit[ii] = alpha * x.s[ii];
        }
        grid = on_grid(wj, sj, unit, qa);
      }
      double sw = grid ? *grid : quantize_symmetric(a, weight_bits(n), qa);
      if (!grid) fill_unit(n.outputs[0], static_cast<std::size_t>(j), sym, top, a, qa, sw);
      for (std::int64_t i = 0; i < k; ++i) {
        const auto ii = static_cast<std::size_t>(i);
        q.data[static_cast<std::size_t>(i * m + j)] = qa[ii];
        offset += (a[ii] - sw * static_cast<double>(qa[ii])) * mean[ii];
      }
      y.s.push_back(sw);
      y.b.push_back(offset);
    }
    if (c && c->data.size() != 1 && static_cast<std::int64_t>(c->data.size()) != m) fail(n, "the bias must have one entry per output");
    y.v = builder_.matmul(x.v, q, n.name);
    enc_[n.outputs[0]] = y;
  }

  void lower_conv(const GraphNode& n) {
    Enc x = encrypted(n, 0);
    const FloatTensor* w = constant(n.inputs.at(1));
    if (!w || w->shape.size() != 4) fail(n, "the weights must be a rank-4 constant (2-D convolution)");
    const FloatTensor* bias = n.inputs.size() >= 3 && !n.inputs[2].empty() ? constant(n.inputs[2]) : nullptr;
    if (n.inputs.size() >= 3 && !n.inputs[2].empty() && !bias) fail(n, "the bias must be a constant");
    if (!uniform_per_channel(x, false, false)) x = requantize(x, n.inputs[0], n.name + "/requantize");
    const Window win = window_of(n, x.shape, w->shape[2], w->shape[3]);
    const std::int64_t groups = attr_int(n, "group", 1);
    const std::int64_t o = w->shape[0], cg = w->shape[1], per_out = cg * w->shape[2] * w->shape[3];
    const std::int64_t inner = x.shape[2] * x.shape[3];
    if (groups < 1 || x.shape[1] != cg * groups || o % groups != 0) fail(n, "channels do not match the weights and groups");
    circuit::Tensor q(w->shape, std::vector<std::int64_t>(w->data.size(), 0));
    std::vector<double> out_scale(static_cast<std::size_t>(o));
    // Bias correction with the per-channel mean input (borders ignored).
    const std::vector<double> mean_e = observed_mean(x.v);
    std::vector<double> mean_c(static_cast<std::size_t>(x.shape[1]), 0.0);
    for (std::size_t e = 0; e < mean_e.size(); ++e) mean_c[(e / static_cast<std::size_t>(inner)) % mean_c.size()] += mean_e[e] / static_cast<double>(inner);
    std::vector<double> correction(static_cast<std::size_t>(o), 0.0);
    const auto scaled_weights = [&](std::int64_t oc) {
      const std::int64_t g = oc / (o / groups);
      std::vector<double> a(static_cast<std::size_t>(per_out));
      for (std::int64_t i = 0; i < per_out; ++i) {
        const std::int64_t ic = g * cg + i / (w->shape[2] * w->shape[3]);
        a[static_cast<std::size_t>(i)] = w->data[static_cast<std::size_t>(oc * per_out + i)] * x.s[static_cast<std::size_t>(ic * inner)];
      }
      return a;
    };
    // The symmetric scales of every channel, for filled_scale.
    const FloatTensor* conv_steps = weight_steps(n.inputs.at(1));
    std::vector<double> sym(static_cast<std::size_t>(o), 0.0), top(sym.size(), 0.0);
    for (std::int64_t oc = 0; oc < o && !conv_steps; ++oc) {
      const std::vector<double> a = scaled_weights(oc);
      std::vector<std::int64_t> unused;
      sym[static_cast<std::size_t>(oc)] = quantize_symmetric(a, weight_bits(n), unused);
      for (double v : a) top[static_cast<std::size_t>(oc)] = std::max(top[static_cast<std::size_t>(oc)], std::fabs(v));
    }
    // Range filling for the max's differences when the activation will run after the pooling:
    // defers_to_maxpool's conditions that the weights do not change (a non-decreasing
    // activation, one offset per channel; the scales are positive).
    const FloatTensor offsets = conv_float(n, FloatTensor{x.shape, x.b}, *w, bias);
    bool pooled = false;
    if (const auto p = pooled_.find(n.outputs[0]); p != pooled_.end() && !conv_steps) {
      const auto f = unary_op(*p->second.activation, [this](const std::string& name) { return constant(name); });
      pooled = f && f->non_decreasing && p->second.activation->outputs[0] != net_.output_name;
      const std::int64_t out_inner = static_cast<std::int64_t>(offsets.data.size()) / o;
      for (std::size_t e = 0; pooled && e < offsets.data.size(); ++e) {
        const double first = offsets.data[static_cast<std::size_t>(static_cast<std::int64_t>(e) / out_inner * out_inner)];
        if (std::fabs(offsets.data[e] - first) > 1e-12 * (1 + std::fabs(first))) pooled = false;
      }
    }
    for (std::int64_t oc = 0; oc < o; ++oc) {
      const std::int64_t g = oc / (o / groups);
      const std::vector<double> a = scaled_weights(oc);
      std::vector<std::int64_t> qa;
      std::optional<double> grid;
      if (const FloatTensor* steps = weight_steps(n.inputs.at(1))) {
        std::vector<double> wo(w->data.begin() + oc * per_out, w->data.begin() + (oc + 1) * per_out);
        std::vector<double> so(steps->data.begin() + oc * per_out, steps->data.begin() + (oc + 1) * per_out);
        std::vector<double> unit(static_cast<std::size_t>(per_out));
        for (std::int64_t i = 0; i < per_out; ++i)
          unit[static_cast<std::size_t>(i)] = x.s[static_cast<std::size_t>((g * cg + i / (w->shape[2] * w->shape[3])) * inner)];
        grid = on_grid(wo, so, unit, qa);
      }
      double sw = grid ? *grid : quantize_symmetric(a, weight_bits(n), qa);
      if (!grid) fill_unit(n.outputs[0], static_cast<std::size_t>(oc), sym, top, a, qa, sw, pooled);
      out_scale[static_cast<std::size_t>(oc)] = sw;
      for (std::int64_t i = 0; i < per_out; ++i) {
        const std::int64_t ic = g * cg + i / (w->shape[2] * w->shape[3]);
        correction[static_cast<std::size_t>(oc)] +=
            (a[static_cast<std::size_t>(i)] - sw * static_cast<double>(qa[static_cast<std::size_t>(i)])) * mean_c[static_cast<std::size_t>(ic)];
      }
      std::copy(qa.begin(), qa.end(), q.data.begin() + oc * per_out);
    }
    circuit::Conv2dOptions co;
    co.stride_h = win.stride_h, co.stride_w = win.stride_w;
    co.pad_top = win.pad_top, co.pad_left = win.pad_left, co.pad_bottom = win.pad_bottom, co.pad_right = win.pad_right;
    co.dilation_h = win.dilation_h, co.dilation_w = win.dilation_w, co.groups = groups;
    Enc y;
    y.v = builder_.conv2d(x.v, q, co, n.name);
    y.shape = builder_.shape(y.v);
    // Offsets: the float convolution of the input offsets (zero padding contributes 0).
    y.b = offsets.data;
    const std::int64_t out_inner = y.shape[2] * y.shape[3];
    for (std::size_t e = 0; e < y.b.size(); ++e) {
      const auto oc = static_cast<std::size_t>((static_cast<std::int64_t>(e) / out_inner) % o);
      y.s.push_back(out_scale[oc]);
      y.b[e] += correction[oc];
    }
    enc_[n.outputs[0]] = y;
  }

  // Slice of x for window offset (ky, kx): out_h x out_w positions.
  Value window_slice(Value v, const Shape& s, const Window& w, std::int64_t ky, std::int64_t kx, const std::string& name) {
    const std::int64_t y0 = ky * w.dilation_h, x0 = kx * w.dilation_w;
    return builder_.slice(v, {0, 0, y0, x0},
                          {s[0], s[1], y0 + (w.out_h - 1) * w.stride_h + 1, x0 + (w.out_w - 1) * w.stride_w + 1},
                          {1, 1, w.stride_h, w.stride_w}, name);
  }

  void lower_maxpool(const GraphNode& n) {
    const auto deferred = deferred_.find(n.inputs.at(0));
    Enc x = deferred != deferred_.end() ? deferred->second.x : encrypted(n, 0);
    if (n.outputs.size() > 1 && !n.outputs[1].empty()) fail(n, "the Indices output is not supported");
    const Window win = pool_window(n, x.shape);
    if (win.pad_top || win.pad_left || win.pad_bottom || win.pad_right) fail(n, "padded max pooling is not supported");
    if (!uniform_per_channel(x, true, true)) x = requantize(x, n.inputs[0], n.name + "/requantize");
    std::vector<Value> parts;
    for (std::int64_t ky = 0; ky < win.kh; ++ky)
      for (std::int64_t kx = 0; kx < win.kw; ++kx)
        parts.push_back(window_slice(x.v, x.shape, win, ky, kx, n.name + "/window"));
    const auto in_range = builder_.range(x.v);
    // max(a, b) = a + relu(b - a), reduced as a tree (depth log2(kh * kw) lookups).
    while (parts.size() > 1) {
      std::vector<Value> next;
      for (std::size_t i = 0; i + 1 < parts.size(); i += 2) {
        const Value d = builder_.sub(parts[i + 1], parts[i], n.name + "/diff");
        // The difference of two values in [lo, hi].
        exact_hints_[d.id] = circuit::ValueRange{in_range.lo - in_range.hi, in_range.hi - in_range.lo, 0};
        // Accumulators (under a deferred activation) are rounded first: the max is then
        // exact up to one rounding step 2^r, m in [lo, hi + 2^r], and with neighbour reads
        // up to two. Activations are narrow enough to be compared exactly.
        const bool rounded = deferred != deferred_.end();
        const unsigned neighbour = rounded ? options_.network_neighbour_log2 : 0;
        const Value rd = rounded ? round_for_lookup(d, n.name, std::nullopt, 0, neighbour > 0) : d;
        const auto relu = [](std::int64_t t) { return t > 0 ? t : 0; };
        const Value r = builder_.lookup_per_element(rd, {builder_.table_for(rd, relu)}, {}, n.name + "/relu", neighbour);
        const Value m = builder_.add(parts[i], r, n.name + "/max");
        const std::int64_t step = rd.id == d.id ? 0 : std::int64_t{1} << builder_.range(rd).trailing_zeros;
        exact_hints_[m.id] = circuit::ValueRange{in_range.lo, in_range.hi + (neighbour > 0 ? 2 : 1) * step, 0};
        next.push_back(m);
      }
      if (parts.size() % 2) next.push_back(parts.back());
      parts = std::move(next);
    }
    Enc y;
    y.v = parts[0];
    y.shape = builder_.shape(y.v);
    const std::int64_t c = x.shape[1], inner_in = x.shape[2] * x.shape[3], inner_out = y.shape[2] * y.shape[3];
    for (std::int64_t e = 0; e < circuit::element_count(y.shape); ++e) {
      const std::int64_t ch = (e / inner_out) % c, src = ((e / inner_out) / c * c + ch) * inner_in;
      y.s.push_back(x.s[static_cast<std::size_t>(src)]);
      y.b.push_back(x.b[static_cast<std::size_t>(src)]);
    }
    if (deferred != deferred_.end()) {
      const DeferredActivation& a = deferred->second;
      // The pooled output's float range is that of f(max): requantize to it.
      y = activation(y, a.f, a.bits, n.outputs[0], a.label, a.grid);
    }
    enc_[n.outputs[0]] = y;
  }

  void lower_avgpool(const GraphNode& n, bool global) {
    Enc x = encrypted(n, 0);
    if (x.shape.size() != 4) fail(n, "expects an NCHW input");
    if (!uniform_per_channel(x, false, false)) x = requantize(x, n.inputs[0], n.name + "/requantize");
    const std::int64_t c = x.shape[1], inner = x.shape[2] * x.shape[3];
    Enc y;
    if (global) {
      y.v = builder_.sum(x.v, {2, 3}, true, n.name);
      y.shape = builder_.shape(y.v);
      for (std::int64_t ch = 0; ch < c; ++ch) {
        double b = 0;
        for (std::int64_t i = 0; i < inner; ++i) b += x.b[static_cast<std::size_t>(ch * inner + i)];
        y.s.push_back(x.s[static_cast<std::size_t>(ch * inner)] / static_cast<double>(inner));
        y.b.push_back(b / static_cast<double>(inner));
      }
    } else {
      const Window win = pool_window(n, x.shape);
      circuit::Tensor ones({c, 1, win.kh, win.kw}, std::vector<std::int64_t>(static_cast<std::size_t>(c * win.kh * win.kw), 1));
      circuit::Conv2dOptions co;
      co.stride_h = win.stride_h, co.stride_w = win.stride_w;
      co.pad_top = win.pad_top, co.pad_left = win.pad_left, co.pad_bottom = win.pad_bottom, co.pad_right = win.pad_right;
      co.dilation_h = win.dilation_h, co.dilation_w = win.dilation_w, co.groups = c;
      y.v = builder_.conv2d(x.v, ones, co, n.name);
      y.shape = builder_.shape(y.v);
      // The divisor of each output (count_include_pad or not) is what the float pool divides
      // by: pooling a tensor of ones gives (valid count) / divisor.
      const FloatTensor onesf{x.shape, std::vector<double>(x.s.size(), 1.0)};
      const FloatTensor frac = pool_float(n, onesf, false);
      const FloatTensor offsets = pool_float(n, FloatTensor{x.shape, x.b}, false);
      y.b = offsets.data;
      const std::int64_t out_inner = y.shape[2] * y.shape[3];
      for (std::size_t e = 0; e < y.b.size(); ++e) {
        const std::int64_t ch = (static_cast<std::int64_t>(e) / out_inner) % c;
        // Count of valid positions of this window, from the dimensions.
        const std::int64_t oy = (static_cast<std::int64_t>(e) / y.shape[3]) % y.shape[2], ox = static_cast<std::int64_t>(e) % y.shape[3];
        std::int64_t valid = 0;
        for (std::int64_t ky = 0; ky < win.kh; ++ky)
          for (std::int64_t kx = 0; kx < win.kw; ++kx) {
            const std::int64_t iy = oy * win.stride_h - win.pad_top + ky * win.dilation_h;
            const std::int64_t ix = ox * win.stride_w - win.pad_left + kx * win.dilation_w;
            valid += iy >= 0 && iy < x.shape[2] && ix >= 0 && ix < x.shape[3];
          }
        const double divisor = static_cast<double>(valid) / frac.data[e];
        y.s.push_back(x.s[static_cast<std::size_t>(ch * inner)] / divisor);
      }
    }
    enc_[n.outputs[0]] = y;
  }

  void lower_pad(const GraphNode& n) {
    Enc x = encrypted(n, 0);
    const PadSpec spec = pad_spec(n, net_.initializers, net_.opset, x.shape.size());
    const std::size_t r = x.shape.size();
    bool any = false;
    for (auto p : spec.pads) any = any || p != 0;
    if (!any) {
      enc_[n.outputs[0]] = x;
      return;
    }
    // Padded elements: integer 0 interpreted as the pad value (per-element offsets).
    for (std::size_t axis = 0; axis < r; ++axis) {
      const std::int64_t before = spec.pads[axis], after = spec.pads[axis + r];
      if (!before && !after) continue;
      Shape one = x.shape;
      one[axis] = 1;
      std::vector<std::int64_t> starts(r, 0), ends(x.shape.begin(), x.shape.end());
      ends[axis] = 1;
      const Value zero1 = builder_.mul(builder_.slice(x.v, starts, ends, {}, n.name + "/zero_slice"), 0, n.name + "/zero");
      std::vector<Value> parts;
      if (before) {
        Shape s = x.shape;
        s[axis] = before;
        parts.push_back(builder_.broadcast(zero1, s, n.name + "/pad_before"));
      }
      parts.push_back(x.v);
      if (after) {
        Shape s = x.shape;
        s[axis] = after;
        parts.push_back(builder_.broadcast(zero1, s, n.name + "/pad_after"));
      }
      const Value v = builder_.concat(parts, static_cast<std::int64_t>(axis), n.name);
      Enc y;
      y.v = v;
      y.shape = builder_.shape(v);
      const auto ys = circuit::strides_of(y.shape), xs = circuit::strides_of(x.shape);
      const std::int64_t ch_axis = r >= 2 ? 1 : 0;
      for (std::int64_t e = 0; e < circuit::element_count(y.shape); ++e) {
        std::vector<std::int64_t> idx(r);
        for (std::size_t i = 0; i < r; ++i) idx[i] = (e / ys[i]) % y.shape[i];
        const std::int64_t pos = idx[axis] - before;
        if (pos >= 0 && pos < x.shape[axis]) {
          std::int64_t src = 0;
          for (std::size_t i = 0; i < r; ++i) src += (i == axis ? pos : idx[i]) * xs[i];
          y.s.push_back(x.s[static_cast<std::size_t>(src)]);
          y.b.push_back(x.b[static_cast<std::size_t>(src)]);
        } else {
          // Keep the channel's scale so that convolutions still see one scale per channel.
          std::int64_t src = 0;
          for (std::size_t i = 0; i < r; ++i) src += (i == axis ? 0 : idx[i]) * xs[i];
          (void)ch_axis;
          y.s.push_back(x.s[static_cast<std::size_t>(src)]);
          y.b.push_back(spec.value);
        }
      }
      x = y;
    }
    enc_[n.outputs[0]] = x;
  }

  const Model& model_;
  const Network& net_;
  const QuantizationOptions& options_;
  Matrix calib_;
  std::map<std::string, std::vector<double>> float_range_;
  std::map<std::string, std::vector<std::pair<double, double>>> float_channel_range_;
  std::map<std::string, Pooled> pooled_;  // find_pooled_accumulators
  std::map<std::string, std::vector<std::pair<double, double>>> pool_diff_range_;  // per channel
  std::map<std::string, Enc> enc_;
  circuit::CircuitBuilder builder_;
  std::vector<std::vector<circuit::Tensor>> samples_;
  std::map<std::uint32_t, circuit::ValueRange> exact_hints_;
  // Activations moved behind the max pooling that is their only consumer (see defers_to_maxpool).
  struct DeferredActivation {
    Enc x;  // the activation's input
    Function f;
    unsigned bits = 0;
    std::string label;
    std::optional<Grid> grid;
  };
  std::map<std::string, DeferredActivation> deferred_;
  std::map<std::string, Chain> chains_;  // univariate results folded into their reader's lookup
  std::map<std::string, std::vector<const GraphNode*>> consumers_;
  std::set<std::string> adopted_input_;  // nodes of the input's in-graph quantization
};

}  // namespace

QuantizedModel lower_network(const Model& model, const Network& net, const Matrix& calibration,
                             const QuantizationOptions& options) {
  NetworkLowering lowering(model, net, calibration, options);
  return lowering.run();
}

}  // namespace veil::ml::detail
