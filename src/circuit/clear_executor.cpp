// Clear execution. Arithmetic wraps modulo 2^64 (unsigned) so that partial sums of a dot
// product may leave int64 without undefined behaviour; the range analysis guarantees every
// node's final value fits +-2^62.
#include "veil/circuit/clear_executor.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "maps.hpp"
#include "veil/circuit/analysis.hpp"

namespace veil::circuit {
namespace {

using u64 = std::uint64_t;
std::int64_t wrap(u64 v) { return static_cast<std::int64_t>(v); }

// Phase noise of approximate reads (run_clear_noisy): per node, the generator, and the
// ranges (for the lookups with neighbour reads, which clamp to their input's range).
struct ReadNoise {
  const std::vector<double>* std_dev = nullptr;
  std::mt19937_64* rng = nullptr;
  const std::vector<ValueRange>* ranges = nullptr;
};

Tensor run_node(const Circuit& c, std::uint32_t id, const std::vector<Tensor>& values, const ReadNoise& noise) {
  const Node& n = c.nodes[id];
  const std::int64_t count = element_count(n.shape);
  Tensor out(n.shape, std::vector<std::int64_t>(static_cast<std::size_t>(count), 0));
  auto& y = out.data;
  const auto& x = values[n.operands[0]].data;
  switch (n.kind) {
    case OpKind::kInput:
      throw std::logic_error("run_node: inputs are not computed");
    case OpKind::kAdd:
    case OpKind::kSub: {
      const auto& b = values[n.operands[1]].data;
      for (std::size_t e = 0; e < y.size(); ++e)
        y[e] = wrap(n.kind == OpKind::kAdd ? u64(x[e]) + u64(b[e]) : u64(x[e]) - u64(b[e]));
      break;
    }
    case OpKind::kAddConstant:
    case OpKind::kMulConstant:
      for (std::int64_t e = 0; e < count; ++e) {
        const std::int64_t k = n.constant.data[static_cast<std::size_t>(detail::broadcast_source(n.constant.shape, n.shape, e))];
        const std::size_t i = static_cast<std::size_t>(e);
        y[i] = wrap(n.kind == OpKind::kAddConstant ? u64(x[i]) + u64(k) : u64(x[i]) * u64(k));
      }
      break;
    case OpKind::kMatmul: {
      const std::int64_t k = n.constant.shape[0], m = n.constant.shape[1];
      const std::int64_t rows = count / m;
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t j = 0; j < m; ++j) {
          u64 acc = 0;
          for (std::int64_t i = 0; i < k; ++i)
            acc += u64(x[static_cast<std::size_t>(r * k + i)]) * u64(n.constant.data[static_cast<std::size_t>(i * m + j)]);
          y[static_cast<std::size_t>(r * m + j)] = wrap(acc);
        }
      break;
    }
    case OpKind::kConv2d: {
      const Conv2dOptions& a = std::get<Conv2dOptions>(n.attributes);
      const Shape& xs = c.nodes[n.operands[0]].shape;
      const Shape& w = n.constant.shape;
      const std::int64_t cin = xs[1], h = xs[2], wd = xs[3], cg = w[1], kh = w[2], kw = w[3];
      const std::int64_t per_group = w[0] / a.groups;
      std::size_t e = 0;
      for (std::int64_t b = 0; b < n.shape[0]; ++b)
        for (std::int64_t o = 0; o < n.shape[1]; ++o)
          for (std::int64_t oy = 0; oy < n.shape[2]; ++oy)
            for (std::int64_t ox = 0; ox < n.shape[3]; ++ox, ++e) {
              u64 acc = 0;
              for (std::int64_t ci = 0; ci < cg; ++ci)
                for (std::int64_t i = 0; i < kh; ++i)
                  for (std::int64_t j = 0; j < kw; ++j) {
                    const std::int64_t iy = oy * a.stride_h - a.pad_top + i * a.dilation_h;
                    const std::int64_t ix = ox * a.stride_w - a.pad_left + j * a.dilation_w;
                    if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                    const std::int64_t ch = (o / per_group) * cg + ci;
                    acc += u64(x[static_cast<std::size_t>(((b * cin + ch) * h + iy) * wd + ix)]) *
                           u64(n.constant.data[static_cast<std::size_t>(((o * cg + ci) * kh + i) * kw + j)]);
                  }
              y[e] = wrap(acc);
            }
      break;
    }
    case OpKind::kSum: {
      const Shape& xs = c.nodes[n.operands[0]].shape;
      std::vector<bool> reduced(xs.size(), false);
      for (const std::int64_t axis : std::get<SumAttributes>(n.attributes).axes) reduced[static_cast<std::size_t>(axis)] = true;
      // Scatter-add every input element into its output element.
      const std::int64_t in_count = static_cast<std::int64_t>(x.size());
      std::vector<u64> acc(y.size(), 0);
      for (std::int64_t e = 0; e < in_count; ++e) {
        std::int64_t rem = e, out_index = 0, out_stride = 1;
        for (std::size_t d = xs.size(); d-- > 0;) {
          const std::int64_t coord = rem % xs[d];
          rem /= xs[d];
          if (!reduced[d]) {
            out_index += coord * out_stride;
            out_stride *= xs[d];
          }
        }
        acc[static_cast<std::size_t>(out_index)] += u64(x[static_cast<std::size_t>(e)]);
      }
      for (std::size_t i = 0; i < y.size(); ++i) y[i] = wrap(acc[i]);
      break;
    }
    case OpKind::kReshape:
    case OpKind::kTranspose:
    case OpKind::kSlice:
    case OpKind::kConcat:
    case OpKind::kBroadcast: {
      const detail::GatherMap m = detail::gather_map(c, id);
      for (std::size_t e = 0; e < y.size(); ++e)
        y[e] = values[n.operands[m.operand[e]]].data[static_cast<std::size_t>(m.element[e])];
      break;
    }
    case OpKind::kLookup: {
      const double sd = noise.std_dev != nullptr ? (*noise.std_dev)[id] : 0.0;
      if (sd > 0 && noise.ranges != nullptr) {
        // Neighbour reads: the input moved by round(e) steps, e ~ N(0, sd^2), clamped to its range.
        const ValueRange& r = (*noise.ranges)[n.operands[0]];
        const std::int64_t step = std::int64_t{1} << r.trailing_zeros;
        std::normal_distribution<double> gauss(0.0, sd);
        for (std::size_t e = 0; e < y.size(); ++e) {
          const double k = std::clamp(std::nearbyint(gauss(*noise.rng)), -65536.0, 65536.0);
          const std::int64_t v = std::clamp(x[e] + static_cast<std::int64_t>(k) * step, r.lo, r.hi);
          y[e] = table_value(n.tables[n.table_index.empty() ? 0 : n.table_index[e]], v);
        }
        break;
      }
      for (std::size_t e = 0; e < y.size(); ++e)
        y[e] = table_value(n.tables[n.table_index.empty() ? 0 : n.table_index[e]], x[e]);
      break;
    }
    case OpKind::kRoundBits: {
      const RoundBitsAttributes& a = std::get<RoundBitsAttributes>(n.attributes);
      const unsigned bits = static_cast<unsigned>(a.bits);
      const double sd = noise.std_dev != nullptr ? (*noise.std_dev)[id] : 0.0;
      if (a.mode == RoundingMode::kApproximate && sd > 0) {
        // floor_b(x) + 2^b * round((x - floor_b(x) + e) / 2^b): exact integers around the
        // rounded-away part, which alone carries the noise.
        std::normal_distribution<double> gauss(0.0, sd);
        const u64 mask = ~((u64{1} << bits) - 1);
        const double step = std::ldexp(1.0, static_cast<int>(bits));
        for (std::size_t e = 0; e < y.size(); ++e) {
          const u64 floor = u64(x[e]) & mask;
          const double low = static_cast<double>(u64(x[e]) - floor) + gauss(*noise.rng);
          const auto k = static_cast<std::int64_t>(std::floor(low / step + 0.5));
          y[e] = wrap(floor + u64(k) * (u64{1} << bits));
        }
        break;
      }
      const u64 add = a.mode != RoundingMode::kFloor ? (u64{1} << (bits - 1)) : 0;  // nearest; approximate reads as nearest
      const u64 mask = ~((u64{1} << bits) - 1);
      // Two's complement: clearing the low bits is the floor to a multiple of 2^b.
      for (std::size_t e = 0; e < y.size(); ++e) y[e] = wrap((u64(x[e]) + add) & mask);
      break;
    }
  }
  return out;
}

}  // namespace

std::int64_t table_value(const Table& table, std::int64_t v) {
  const std::int64_t offset = v - table.domain_min;
  const std::int64_t step_mask = (std::int64_t{1} << table.domain_shift) - 1;
  const std::int64_t index = offset >> table.domain_shift;
  if (offset < 0 || (offset & step_mask) != 0 || index >= static_cast<std::int64_t>(table.values.size()))
    throw std::invalid_argument("lookup: value " + std::to_string(v) + " is outside the table's domain");
  return table.values[static_cast<std::size_t>(index)];
}

namespace {

std::vector<Tensor> run_all(const Circuit& c, const std::vector<Tensor>& inputs, const ReadNoise& noise) {
  const auto input_ids = c.inputs();
  if (inputs.size() != input_ids.size())
    throw std::invalid_argument("run_clear: " + std::to_string(inputs.size()) + " input tensors for " +
                                std::to_string(input_ids.size()) + " circuit inputs");
  std::vector<Tensor> values(c.nodes.size());
  std::size_t next_input = 0;
  for (std::uint32_t id = 0; id < c.nodes.size(); ++id) {
    const Node& n = c.nodes[id];
    if (n.kind == OpKind::kInput) {
      const Tensor& t = inputs[next_input];
      const std::string label = "run_clear: input " + std::to_string(next_input) +
                                (n.name.empty() ? std::string{} : " '" + n.name + "'");
      ++next_input;
      if (t.shape != n.shape)
        throw std::invalid_argument(label + " has shape " + shape_string(t.shape) + ", expected " + shape_string(n.shape));
      if (t.data.size() != static_cast<std::size_t>(element_count(n.shape)))
        throw std::invalid_argument(label + " holds " + std::to_string(t.data.size()) + " values for its shape");
      const InputAttributes& a = std::get<InputAttributes>(n.attributes);
      for (std::int64_t v : t.data)
        if (v < a.lo || v > a.hi)
          throw std::invalid_argument(label + " holds " + std::to_string(v) + ", outside its range [" +
                                      std::to_string(a.lo) + ", " + std::to_string(a.hi) + "]");
      values[id] = t;
    } else {
      values[id] = run_node(c, id, values, noise);
    }
  }
  return values;
}

std::vector<Tensor> outputs_of(const Circuit& c, std::vector<Tensor> all) {
  std::vector<Tensor> out;
  out.reserve(c.outputs.size());
  for (std::uint32_t o : c.outputs) out.push_back(std::move(all[o]));
  return out;
}

}  // namespace

std::vector<Tensor> run_clear_all_nodes(const Circuit& c, const std::vector<Tensor>& inputs) {
  return run_all(c, inputs, {});
}

std::vector<Tensor> run_clear(const Circuit& c, const std::vector<Tensor>& inputs) {
  return outputs_of(c, run_all(c, inputs, {}));
}

std::vector<Tensor> run_clear_noisy(const Circuit& c, const std::vector<Tensor>& inputs,
                                    const std::vector<double>& std_dev, std::mt19937_64& rng) {
  if (std_dev.size() != c.nodes.size())
    throw std::invalid_argument("run_clear_noisy: " + std::to_string(std_dev.size()) + " noise levels for " +
                                std::to_string(c.nodes.size()) + " nodes");
  // The ranges only when a lookup reads neighbours (a network's circuit needs none).
  std::vector<ValueRange> ranges;
  for (std::uint32_t id = 0; id < c.nodes.size(); ++id)
    if (c.nodes[id].kind == OpKind::kLookup && std_dev[id] > 0) {
      ranges = analyze(c).ranges;
      break;
    }
  return outputs_of(c, run_all(c, inputs, ReadNoise{&std_dev, &rng, ranges.empty() ? nullptr : &ranges}));
}

}  // namespace veil::circuit
