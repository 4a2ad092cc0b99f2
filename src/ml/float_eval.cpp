// Double-precision evaluation of a Network (the reference for calibration and tests).
#include <algorithm>
#include <cmath>
#include <optional>

#include "network_ops.hpp"
#include "unary_ops.hpp"
#include "veil/ml/model.hpp"

namespace veil::ml {
namespace {

using detail::node_fail;
using circuit::Shape;

// Multiply-adds one op may take for one sample. A network meant for FHE is orders of
// magnitude below it (a convolution of a 32x32x64 map by 3x3x64 kernels: 2^25); a model file
// asking for more is refused rather than evaluated for minutes (a fuzzing finding).
constexpr double kMaxOpMacs = 1073741824.0;  // 2^30

void check_cost(const GraphNode& n, double macs) {
  if (macs > kMaxOpMacs)
    node_fail(n, "needs " + std::to_string(static_cast<long double>(macs)).substr(0, 12) +
                     " multiply-adds for one sample, more than the 2^30 an op may take");
}

Shape broadcast_shape(const GraphNode& n, const Shape& a, const Shape& b) {
  const std::size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (std::size_t i = 0; i < r; ++i) {
    const std::int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const std::int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da != db && da != 1 && db != 1)
      node_fail(n, "shapes " + circuit::shape_string(a) + " and " + circuit::shape_string(b) + " do not broadcast");
    out[i] = std::max(da, db);
  }
  return out;
}

// Index into `src` (broadcast to `out`) of output element e.
std::int64_t broadcast_index(const Shape& src, const Shape& out, std::int64_t e) {
  const auto os = circuit::strides_of(out);
  const auto ss = circuit::strides_of(src);
  std::int64_t idx = 0;
  const std::size_t off = out.size() - src.size();
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::int64_t c = (e / os[i]) % out[i];
    if (i >= off && src[i - off] != 1) idx += c * ss[i - off];
  }
  return idx;
}

FloatTensor elementwise(const GraphNode& n, const FloatTensor& a, const FloatTensor& b, char op) {
  FloatTensor y;
  y.shape = broadcast_shape(n, a.shape, b.shape);
  const std::int64_t count = circuit::element_count(y.shape);
  y.data.resize(static_cast<std::size_t>(count));
  for (std::int64_t e = 0; e < count; ++e) {
    const double x = a.data[static_cast<std::size_t>(broadcast_index(a.shape, y.shape, e))];
    const double z = b.data[static_cast<std::size_t>(broadcast_index(b.shape, y.shape, e))];
    y.data[static_cast<std::size_t>(e)] = op == '+' ? x + z : op == '-' ? x - z : op == '*' ? x * z : x / z;
  }
  return y;
}

FloatTensor gemm(const GraphNode& n, const FloatTensor& a, const FloatTensor& b, const FloatTensor* c) {
  const bool ta = detail::attr_int(n, "transA", 0) != 0, tb = detail::attr_int(n, "transB", 0) != 0;
  const double alpha = detail::attr_float(n, "alpha", 1.0), beta = detail::attr_float(n, "beta", 1.0);
  if (a.shape.size() != 2 || b.shape.size() != 2) node_fail(n, "Gemm needs rank-2 operands");
  const std::int64_t m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1];
  const std::int64_t kb = tb ? b.shape[1] : b.shape[0], nn = tb ? b.shape[0] : b.shape[1];
  if (k != kb) node_fail(n, "inner dimensions " + std::to_string(k) + " and " + std::to_string(kb) + " differ");
  check_cost(n, static_cast<double>(m) * static_cast<double>(nn) * static_cast<double>(k));
  FloatTensor y{{m, nn}, {}};
  y.data.assign(static_cast<std::size_t>(circuit::element_count(y.shape, "node '" + n.name + "' output")), 0.0);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < nn; ++j) {
      double acc = 0;
      for (std::int64_t t = 0; t < k; ++t) {
        const double av = ta ? a.data[static_cast<std::size_t>(t * a.shape[1] + i)] : a.data[static_cast<std::size_t>(i * a.shape[1] + t)];
        const double bv = tb ? b.data[static_cast<std::size_t>(j * b.shape[1] + t)] : b.data[static_cast<std::size_t>(t * b.shape[1] + j)];
        acc += av * bv;
      }
      y.data[static_cast<std::size_t>(i * nn + j)] = alpha * acc;
    }
  if (c) {
    const Shape bs = broadcast_shape(n, c->shape, y.shape);
    if (bs != y.shape) node_fail(n, "C does not broadcast to the output");
    for (std::int64_t e = 0; e < m * nn; ++e)
      y.data[static_cast<std::size_t>(e)] += beta * c->data[static_cast<std::size_t>(broadcast_index(c->shape, y.shape, e))];
  }
  return y;
}

FloatTensor matmul(const GraphNode& n, const FloatTensor& a, const FloatTensor& b) {
  if (b.shape.size() != 2 || a.shape.empty()) node_fail(n, "MatMul supports x[..., K] @ W[K, N]");
  const std::int64_t k = b.shape[0], nn = b.shape[1];
  if (a.shape.back() != k) node_fail(n, "inner dimensions differ");
  const std::int64_t rows = circuit::element_count(a.shape) / k;
  check_cost(n, static_cast<double>(rows) * static_cast<double>(nn) * static_cast<double>(k));
  FloatTensor y;
  y.shape = a.shape;
  y.shape.back() = nn;
  y.data.assign(static_cast<std::size_t>(circuit::element_count(y.shape, "node '" + n.name + "' output")), 0.0);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < nn; ++j) {
      double acc = 0;
      for (std::int64_t t = 0; t < k; ++t) acc += a.data[static_cast<std::size_t>(r * k + t)] * b.data[static_cast<std::size_t>(t * nn + j)];
      y.data[static_cast<std::size_t>(r * nn + j)] = acc;
    }
  return y;
}

FloatTensor conv(const GraphNode& n, const FloatTensor& x, const FloatTensor& w, const FloatTensor* bias) {
  if (w.shape.size() != 4) node_fail(n, "only 2-D convolutions are supported");
  const detail::Window win = detail::window_of(n, x.shape, w.shape[2], w.shape[3]);
  const std::int64_t groups = detail::attr_int(n, "group", 1);
  const std::int64_t b = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3], o = w.shape[0], cg = w.shape[1];
  if (groups < 1 || c != cg * groups || o % groups != 0) node_fail(n, "channels do not match the weights and groups");
  // ONNX's B: one value per output channel (a fuzzed graph with fewer read past its end).
  if (bias != nullptr && (bias->shape.size() != 1 || bias->data.size() != static_cast<std::size_t>(o)))
    node_fail(n, "the bias has " + std::to_string(bias->data.size()) + " values in shape " + circuit::shape_string(bias->shape) +
                     ", not one per output channel (" + std::to_string(o) + ")");
  FloatTensor y{{b, o, win.out_h, win.out_w}, {}};
  check_cost(n, static_cast<double>(b) * static_cast<double>(o) * static_cast<double>(win.out_h) *
                    static_cast<double>(win.out_w) * static_cast<double>(cg) * static_cast<double>(win.kh) *
                    static_cast<double>(win.kw));
  y.data.assign(static_cast<std::size_t>(circuit::element_count(y.shape)), 0.0);
  const std::int64_t per_group = o / groups;
  for (std::int64_t bi = 0; bi < b; ++bi)
    for (std::int64_t oc = 0; oc < o; ++oc)
      for (std::int64_t oy = 0; oy < win.out_h; ++oy)
        for (std::int64_t ox = 0; ox < win.out_w; ++ox) {
          double acc = bias ? bias->data[static_cast<std::size_t>(oc)] : 0.0;
          const std::int64_t g = oc / per_group;
          for (std::int64_t ic = 0; ic < cg; ++ic)
            for (std::int64_t ky = 0; ky < win.kh; ++ky)
              for (std::int64_t kx = 0; kx < win.kw; ++kx) {
                const std::int64_t iy = oy * win.stride_h - win.pad_top + ky * win.dilation_h;
                const std::int64_t ix = ox * win.stride_w - win.pad_left + kx * win.dilation_w;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                acc += x.data[static_cast<std::size_t>(((bi * c + g * cg + ic) * h + iy) * wd + ix)] *
                       w.data[static_cast<std::size_t>(((oc * cg + ic) * win.kh + ky) * win.kw + kx)];
              }
          y.data[static_cast<std::size_t>(((bi * o + oc) * win.out_h + oy) * win.out_w + ox)] = acc;
        }
  return y;
}

FloatTensor pool(const GraphNode& n, const FloatTensor& x, bool is_max) {
  const detail::Window win = detail::pool_window(n, x.shape);
  const std::int64_t b = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3];
  FloatTensor y{{b, c, win.out_h, win.out_w}, {}};
  check_cost(n, static_cast<double>(b) * static_cast<double>(c) * static_cast<double>(win.out_h) *
                    static_cast<double>(win.out_w) * static_cast<double>(win.kh) * static_cast<double>(win.kw));
  y.data.assign(static_cast<std::size_t>(circuit::element_count(y.shape)), 0.0);
  for (std::int64_t bc = 0; bc < b * c; ++bc)
    for (std::int64_t oy = 0; oy < win.out_h; ++oy)
      for (std::int64_t ox = 0; ox < win.out_w; ++ox) {
        double acc = is_max ? -INFINITY : 0.0;
        std::int64_t count = 0;
        for (std::int64_t ky = 0; ky < win.kh; ++ky)
          for (std::int64_t kx = 0; kx < win.kw; ++kx) {
            const std::int64_t iy = oy * win.stride_h - win.pad_top + ky * win.dilation_h;
            const std::int64_t ix = ox * win.stride_w - win.pad_left + kx * win.dilation_w;
            if (iy < 0 || iy >= h || ix < 0 || ix >= wd) {
              if (!is_max && win.count_include_pad) ++count;
              continue;
            }
            const double v = x.data[static_cast<std::size_t>((bc * h + iy) * wd + ix)];
            acc = is_max ? std::max(acc, v) : acc + v;
            ++count;
          }
        y.data[static_cast<std::size_t>((bc * win.out_h + oy) * win.out_w + ox)] = is_max ? acc : acc / static_cast<double>(count);
      }
  return y;
}

}  // namespace

namespace detail {
FloatTensor conv_float(const GraphNode& n, const FloatTensor& x, const FloatTensor& w, const FloatTensor* bias) {
  return conv(n, x, w, bias);
}
FloatTensor pool_float(const GraphNode& n, const FloatTensor& x, bool is_max) { return pool(n, x, is_max); }

PadSpec pad_spec(const GraphNode& n, const std::map<std::string, FloatTensor>& values, std::int64_t opset, std::size_t rank) {
  PadSpec p;
  if (attr_string(n, "mode", "constant") != "constant") node_fail(n, "only mode 'constant' is supported");
  if (opset < 11) {
    p.pads = attr_ints(n, "pads", {});
    p.value = attr_float(n, "value", 0.0);
  } else {
    if (n.inputs.size() < 2 || !values.count(n.inputs[1])) node_fail(n, "pads must be a constant input");
    for (double v : values.at(n.inputs[1]).data) {
      // Checked before the cast: a double outside int64's range converts with undefined behaviour.
      if (!(std::fabs(v) <= static_cast<double>(circuit::kMaxTensorElements)) || v != std::floor(v))
        node_fail(n, "pad " + std::to_string(v) + " is not an integer in [-2^24, 2^24]");
      p.pads.push_back(static_cast<std::int64_t>(v));
    }
    if (n.inputs.size() >= 3 && !n.inputs[2].empty()) {
      if (!values.count(n.inputs[2])) node_fail(n, "constant_value must be a constant input");
      p.value = values.at(n.inputs[2]).data.at(0);
    }
    if (n.inputs.size() >= 4 && !n.inputs[3].empty()) node_fail(n, "the axes input is not supported");
  }
  if (p.pads.size() != 2 * rank) node_fail(n, std::to_string(p.pads.size()) + " pads for rank " + std::to_string(rank));
  for (auto v : p.pads) {
    if (v < 0) node_fail(n, "negative pads are not supported");
    // Bounded so that dimension + before + after cannot overflow.
    if (v > circuit::kMaxTensorElements) node_fail(n, "pad " + std::to_string(v) + " exceeds 2^24");
  }
  return p;
}
}  // namespace detail

namespace {

FloatTensor pad(const FloatTensor& x, const detail::PadSpec& p) {
  const std::size_t r = x.shape.size();
  FloatTensor y;
  y.shape = x.shape;
  for (std::size_t i = 0; i < r; ++i) y.shape[i] += p.pads[i] + p.pads[i + r];
  y.data.assign(static_cast<std::size_t>(circuit::element_count(y.shape)), p.value);
  const auto xs = circuit::strides_of(x.shape), ys = circuit::strides_of(y.shape);
  for (std::int64_t e = 0; e < static_cast<std::int64_t>(x.data.size()); ++e) {
    std::int64_t idx = 0;
    for (std::size_t i = 0; i < r; ++i) idx += ((e / xs[i]) % x.shape[i] + p.pads[i]) * ys[i];
    y.data[static_cast<std::size_t>(idx)] = x.data[static_cast<std::size_t>(e)];
  }
  return y;
}

// QuantizeLinear and DequantizeLinear on any operand (weights are quantized per axis).
FloatTensor quantize_linear(const GraphNode& n, const FloatTensor& x, const FloatTensor& scale, const FloatTensor* zp, bool quantize) {
  const detail::QuantParams p = detail::quant_params(n, x.shape, scale, zp);
  FloatTensor y{x.shape, std::vector<double>(x.data.size()), ElementType::kFloat};
  if (quantize) y.type = zp ? zp->type : ElementType::kUint8;
  for (std::size_t e = 0; e < x.data.size(); ++e) {
    y.data[e] = quantize ? detail::quantize_value(x.data[e], p.scale[e], p.zero_point[e], p.q_min, p.q_max)
                         : detail::dequantize_value(x.data[e], p.scale[e], p.zero_point[e]);
  }
  return y;
}

}  // namespace

namespace detail {

QuantParams quant_params(const GraphNode& n, const circuit::Shape& x, const FloatTensor& scale, const FloatTensor* zp) {
  QuantParams p;
  const std::size_t count = static_cast<std::size_t>(circuit::element_count(x));
  const std::size_t k = scale.data.size();
  if (k == 0) node_fail(n, "the scale is empty");
  // A scalar, or a 1-D scale of one entry (which broadcasts the same way), is per tensor.
  p.per_tensor = k == 1 && scale.shape.size() <= 1;
  std::int64_t axis = 0, inner = 1;
  if (!p.per_tensor) {
    if (scale.shape.size() != 1) node_fail(n, "the scale must be a scalar or 1-D, got " + circuit::shape_string(scale.shape));
    axis = attr_int(n, "axis", 1);
    const auto rank = static_cast<std::int64_t>(x.size());
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= rank) node_fail(n, "axis " + std::to_string(attr_int(n, "axis", 1)) + " is out of range for " + circuit::shape_string(x));
    if (x[static_cast<std::size_t>(axis)] != static_cast<std::int64_t>(k))
      node_fail(n, "the scale has " + std::to_string(k) + " entries for axis " + std::to_string(axis) + " of " + circuit::shape_string(x));
    for (std::size_t i = static_cast<std::size_t>(axis) + 1; i < x.size(); ++i) inner *= x[i];
  }
  if (zp) {
    if (zp->data.size() != k || (!p.per_tensor && zp->shape != scale.shape))
      node_fail(n, "the zero point's shape " + circuit::shape_string(zp->shape) + " is not the scale's " + circuit::shape_string(scale.shape));
    if (zp->type == ElementType::kInt8) p.q_min = -128, p.q_max = 127;
    else if (zp->type != ElementType::kUint8) node_fail(n, "the zero point must be int8 or uint8");
  }
  std::vector<double> s(k), z(k, 0.0);
  for (std::size_t i = 0; i < k; ++i) {
    s[i] = scale.data[i];
    if (!(s[i] > 0) || !std::isfinite(s[i])) node_fail(n, "the scale " + std::to_string(s[i]) + " is not positive and finite");
    if (zp) {
      z[i] = zp->data[i];
      if (z[i] != std::nearbyint(z[i]) || z[i] < static_cast<double>(p.q_min) || z[i] > static_cast<double>(p.q_max))
        node_fail(n, "the zero point " + std::to_string(z[i]) + " is outside its type");
    }
  }
  p.scale.resize(count);
  p.zero_point.resize(count);
  for (std::size_t e = 0; e < count; ++e) {
    const std::size_t c = p.per_tensor ? 0 : (e / static_cast<std::size_t>(inner)) % k;
    p.scale[e] = s[c];
    p.zero_point[e] = z[c];
  }
  return p;
}

// The inputs of the node being evaluated.
struct OpArgs {
  const Network& net;
  const GraphNode& n;
  const std::map<std::string, FloatTensor>& values;
  const FloatTensor& in(std::size_t i) const {
    if (i >= n.inputs.size() || n.inputs[i].empty()) node_fail(n, "missing input " + std::to_string(i));
    const auto it = values.find(n.inputs[i]);
    if (it == values.end()) node_fail(n, "input '" + n.inputs[i] + "' is not computed");
    return it->second;
  }
  const FloatTensor* optional(std::size_t i) const { return i < n.inputs.size() && !n.inputs[i].empty() ? &in(i) : nullptr; }
  // What the univariate ops' constant inputs (Clip's bounds, the quantizers' scales) read.
  const FloatTensor* constant(const std::string& name) const {
    const auto it = values.find(name);
    return it == values.end() || !net.initializers.count(name) ? nullptr : &it->second;
  }
};

namespace {

FloatTensor eval_univariate(const OpArgs& a) {
  FloatTensor y = a.in(0);
  if (a.n.op_type == "QuantizeLinear" || a.n.op_type == "DequantizeLinear") {
    // Per tensor or per axis (fake-quantized weights are per output channel).
    return quantize_linear(a.n, y, a.in(1), a.optional(2), a.n.op_type == "QuantizeLinear");
  }
  const auto f = unary_op(a.n, [&](const std::string& name) { return a.constant(name); });
  if (!f) node_fail(a.n, "is not a univariate op");
  for (double& e : y.data) e = f->f(e);
  y.type = ElementType::kFloat;
  if (a.n.op_type == "Clip") y.type = a.in(0).type;  // Clip on quantized codes keeps their type
  return y;
}

FloatTensor eval_elementwise(const OpArgs& a) {
  const char op = a.n.op_type == "Add" ? '+' : a.n.op_type == "Sub" ? '-' : a.n.op_type == "Mul" ? '*' : '/';
  return elementwise(a.n, a.in(0), a.in(1), op);
}
FloatTensor eval_gemm(const OpArgs& a) { return gemm(a.n, a.in(0), a.in(1), a.optional(2)); }
FloatTensor eval_matmul(const OpArgs& a) { return matmul(a.n, a.in(0), a.in(1)); }
FloatTensor eval_conv(const OpArgs& a) { return conv(a.n, a.in(0), a.in(1), a.optional(2)); }
FloatTensor eval_maxpool(const OpArgs& a) { return pool(a.n, a.in(0), true); }
FloatTensor eval_avgpool(const OpArgs& a) { return pool(a.n, a.in(0), false); }
FloatTensor eval_pad(const OpArgs& a) { return pad(a.in(0), pad_spec(a.n, a.values, a.net.opset, a.in(0).shape.size())); }

FloatTensor eval_batchnorm(const OpArgs& a) {
  const GraphNode& n = a.n;
  const FloatTensor& x = a.in(0);
  if (attr_int(n, "training_mode", 0) != 0) node_fail(n, "training_mode = 1 is not supported");
  const double eps = attr_float(n, "epsilon", 1e-5);
  const auto &sc = a.in(1), &bi = a.in(2), &mean = a.in(3), &var = a.in(4);
  if (x.shape.size() < 2) node_fail(n, "input must have a channel axis");
  const std::int64_t c = x.shape[1];
  if (static_cast<std::int64_t>(sc.data.size()) != c || static_cast<std::int64_t>(bi.data.size()) != c ||
      static_cast<std::int64_t>(mean.data.size()) != c || static_cast<std::int64_t>(var.data.size()) != c)
    node_fail(n, "parameters must have one entry per channel");
  std::int64_t inner = 1;
  for (std::size_t i = 2; i < x.shape.size(); ++i) inner *= x.shape[i];
  FloatTensor y = x;
  for (std::int64_t e = 0; e < static_cast<std::int64_t>(y.data.size()); ++e) {
    const auto ch = static_cast<std::size_t>((e / inner) % c);
    auto& val = y.data[static_cast<std::size_t>(e)];
    val = sc.data[ch] * (val - mean.data[ch]) / std::sqrt(var.data[ch] + eps) + bi.data[ch];
  }
  return y;
}

FloatTensor eval_global_avgpool(const OpArgs& a) {
  const FloatTensor& x = a.in(0);
  if (x.shape.size() != 4) node_fail(a.n, "expects NCHW");
  const std::int64_t hw = x.shape[2] * x.shape[3];
  FloatTensor y;
  y.shape = {x.shape[0], x.shape[1], 1, 1};
  for (std::int64_t bc = 0; bc < x.shape[0] * x.shape[1]; ++bc) {
    double s = 0;
    for (std::int64_t i = 0; i < hw; ++i) s += x.data[static_cast<std::size_t>(bc * hw + i)];
    y.data.push_back(s / static_cast<double>(hw));
  }
  return y;
}

FloatTensor eval_reshape(const OpArgs& a) {
  FloatTensor y = a.in(0);
  y.shape = reshaped_shape(a.n, y.shape, a.values);
  return y;
}

// Row-major multi-index helpers for the data-movement ops.
std::vector<std::int64_t> index_of(std::int64_t e, const Shape& shape) {
  std::vector<std::int64_t> idx(shape.size());
  for (std::size_t i = shape.size(); i-- > 0;) {
    idx[i] = e % shape[i];
    e /= shape[i];
  }
  return idx;
}

FloatTensor eval_transpose(const OpArgs& a) {
  const FloatTensor& x = a.in(0);
  const auto perm = transpose_perm(a.n, x.shape.size());
  FloatTensor y;
  for (auto p : perm) y.shape.push_back(x.shape[static_cast<std::size_t>(p)]);
  const auto xs = circuit::strides_of(x.shape);
  y.data.resize(x.data.size());
  for (std::int64_t e = 0; e < static_cast<std::int64_t>(y.data.size()); ++e) {
    const auto o = index_of(e, y.shape);
    std::int64_t src = 0;
    for (std::size_t k = 0; k < perm.size(); ++k) src += o[k] * xs[static_cast<std::size_t>(perm[k])];
    y.data[static_cast<std::size_t>(e)] = x.data[static_cast<std::size_t>(src)];
  }
  return y;
}

FloatTensor eval_concat(const OpArgs& a) {
  if (a.n.inputs.empty()) node_fail(a.n, "no input");
  const FloatTensor& first = a.in(0);
  const std::int64_t axis = concat_axis(a.n, first.shape.size());
  FloatTensor y;
  y.shape = first.shape;
  y.shape[static_cast<std::size_t>(axis)] = 0;
  for (std::size_t i = 0; i < a.n.inputs.size(); ++i) {
    const Shape& s = a.in(i).shape;
    if (s.size() != first.shape.size()) node_fail(a.n, "inputs of different ranks");
    for (std::size_t d = 0; d < s.size(); ++d)
      if (static_cast<std::int64_t>(d) != axis && s[d] != first.shape[d])
        node_fail(a.n, "input " + std::to_string(i) + " " + circuit::shape_string(s) + " does not match " + circuit::shape_string(first.shape));
    y.shape[static_cast<std::size_t>(axis)] += s[static_cast<std::size_t>(axis)];
  }
  circuit::element_count(y.shape, "node '" + a.n.name + "' output");
  // Blocks of the inner dimensions, input after input, per outer index.
  std::int64_t outer = 1;
  for (std::int64_t d = 0; d < axis; ++d) outer *= first.shape[static_cast<std::size_t>(d)];
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::size_t i = 0; i < a.n.inputs.size(); ++i) {
      const FloatTensor& t = a.in(i);
      const std::int64_t block = outer ? static_cast<std::int64_t>(t.data.size()) / outer : 0;
      y.data.insert(y.data.end(), t.data.begin() + o * block, t.data.begin() + (o + 1) * block);
    }
  return y;
}

FloatTensor eval_reduce(const OpArgs& a) {
  const FloatTensor& x = a.in(0);
  const ReduceSpec r = reduce_spec(a.n, x.shape, a.values);
  if (r.axes.empty()) return x;
  Shape kept = x.shape;
  std::int64_t count = 1;
  for (auto ax : r.axes) count *= kept[static_cast<std::size_t>(ax)], kept[static_cast<std::size_t>(ax)] = 1;
  FloatTensor y;
  y.shape = kept;
  y.data.assign(static_cast<std::size_t>(circuit::element_count(kept)), 0.0);
  const auto ks = circuit::strides_of(kept);
  for (std::int64_t e = 0; e < static_cast<std::int64_t>(x.data.size()); ++e) {
    const auto idx = index_of(e, x.shape);
    std::int64_t dst = 0;
    for (std::size_t d = 0; d < idx.size(); ++d) dst += (kept[d] == 1 ? 0 : idx[d]) * ks[d];
    y.data[static_cast<std::size_t>(dst)] += x.data[static_cast<std::size_t>(e)];
  }
  if (a.n.op_type == "ReduceMean")
    for (double& v : y.data) v /= static_cast<double>(count);
  if (!r.keepdims) {
    Shape out;
    for (std::size_t d = 0; d < kept.size(); ++d)
      if (!std::binary_search(r.axes.begin(), r.axes.end(), static_cast<std::int64_t>(d))) out.push_back(kept[d]);
    y.shape = out;
  }
  return y;
}

const std::vector<NetworkOp>& registry() {
  static const std::vector<NetworkOp> ops = [] {
    std::vector<NetworkOp> v = {
        {"Add", OpFamily::kElementwise, eval_elementwise},
        {"Sub", OpFamily::kElementwise, eval_elementwise},
        {"Mul", OpFamily::kElementwise, eval_elementwise},
        {"Div", OpFamily::kElementwise, eval_elementwise},
        {"Gemm", OpFamily::kMatmul, eval_gemm},
        {"MatMul", OpFamily::kMatmul, eval_matmul},
        {"Conv", OpFamily::kConv, eval_conv},
        {"BatchNormalization", OpFamily::kBatchNormalization, eval_batchnorm},
        {"MaxPool", OpFamily::kMaxPool, eval_maxpool},
        {"AveragePool", OpFamily::kAveragePool, eval_avgpool},
        {"GlobalAveragePool", OpFamily::kAveragePool, eval_global_avgpool},
        {"Flatten", OpFamily::kReshape, eval_reshape},
        {"Reshape", OpFamily::kReshape, eval_reshape},
        {"Squeeze", OpFamily::kReshape, eval_reshape},
        {"Unsqueeze", OpFamily::kReshape, eval_reshape},
        {"Pad", OpFamily::kPad, eval_pad},
        {"Transpose", OpFamily::kTranspose, eval_transpose},
        {"Concat", OpFamily::kConcat, eval_concat},
        {"ReduceSum", OpFamily::kReduce, eval_reduce},
        {"ReduceMean", OpFamily::kReduce, eval_reduce},
    };
    for (const auto& name : unary_op_names()) v.push_back({name, OpFamily::kUnivariate, eval_univariate});
    std::sort(v.begin(), v.end(), [](const NetworkOp& x, const NetworkOp& y) { return x.name < y.name; });
    return v;
  }();
  return ops;
}

// An axes list from an attribute (opsets before `input_from`) or a constant input 1;
// normalised to [0, rank), sorted, each once. nullopt when neither is given.
std::optional<std::vector<std::int64_t>> axes_of(const GraphNode& n, const std::map<std::string, FloatTensor>& values,
                                                 std::size_t rank) {
  std::vector<std::int64_t> axes;
  if (n.attributes.count("axes")) {
    axes = attr_ints(n, "axes", {});
  } else if (n.inputs.size() >= 2 && !n.inputs[1].empty()) {
    const auto it = values.find(n.inputs[1]);
    if (it == values.end()) node_fail(n, "the axes must be a constant");
    for (double d : it->second.data) {
      if (d != std::floor(d) || std::fabs(d) > 64) node_fail(n, "axis " + std::to_string(d) + " is not a small integer");
      axes.push_back(static_cast<std::int64_t>(d));
    }
  } else {
    return std::nullopt;
  }
  for (auto& ax : axes) {
    if (ax < -static_cast<std::int64_t>(rank) || ax >= static_cast<std::int64_t>(rank))
      node_fail(n, "axis " + std::to_string(ax) + " is out of range for rank " + std::to_string(rank));
    if (ax < 0) ax += static_cast<std::int64_t>(rank);
  }
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end()) node_fail(n, "an axis is listed twice");
  return axes;
}

}  // namespace

const NetworkOp* find_network_op(const std::string& op_type) {
  const auto& ops = registry();
  const auto it = std::lower_bound(ops.begin(), ops.end(), op_type, [](const NetworkOp& o, const std::string& name) { return o.name < name; });
  return it != ops.end() && it->name == op_type ? &*it : nullptr;
}

const std::vector<std::string>& network_op_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& op : registry()) v.push_back(op.name);
    return v;
  }();
  return names;
}

void evaluate_node(const Network& net, const GraphNode& n, std::map<std::string, FloatTensor>& v) {
  const NetworkOp* op = find_network_op(n.op_type);
  if (!op) node_fail(n, "op is not supported by the evaluator");
  if (n.outputs.empty()) node_fail(n, "no output");
  FloatTensor y = op->evaluate(OpArgs{net, n, v});
  v[n.outputs[0]] = std::move(y);
}

Shape reshaped_shape(const GraphNode& n, const Shape& x, const std::map<std::string, FloatTensor>& values) {
  const std::string& op = n.op_type;
  if (op == "Flatten") {
    std::int64_t axis = attr_int(n, "axis", 1);
    if (axis < 0) axis += static_cast<std::int64_t>(x.size());
    if (axis < 0 || axis > static_cast<std::int64_t>(x.size())) node_fail(n, "axis out of range");
    std::int64_t a = 1;
    for (std::int64_t i = 0; i < axis; ++i) a *= x[static_cast<std::size_t>(i)];
    return {a, circuit::element_count(x) / std::max<std::int64_t>(a, 1)};
  }
  if (op == "Reshape") {
    if (n.inputs.size() < 2 || !values.count(n.inputs[1])) node_fail(n, "the target shape must be a constant");
    return reshape_target(n, x, values.at(n.inputs[1]).data);
  }
  if (op == "Squeeze") {
    const auto axes = axes_of(n, values, x.size());
    Shape out;
    for (std::size_t d = 0; d < x.size(); ++d) {
      const bool listed = axes && std::binary_search(axes->begin(), axes->end(), static_cast<std::int64_t>(d));
      if (listed && x[d] != 1) node_fail(n, "axis " + std::to_string(d) + " of " + circuit::shape_string(x) + " is not of size 1");
      if (!(listed || (!axes && x[d] == 1))) out.push_back(x[d]);
    }
    return out;
  }
  if (op == "Unsqueeze") {
    const std::size_t rank = x.size() + (n.attributes.count("axes") ? attr_ints(n, "axes", {}).size()
                                         : n.inputs.size() >= 2 && values.count(n.inputs[1]) ? values.at(n.inputs[1]).data.size()
                                                                                             : 0);
    const auto axes = axes_of(n, values, rank);
    if (!axes || axes->empty()) node_fail(n, "the axes are required");
    if (rank > circuit::kMaxRank) node_fail(n, "rank " + std::to_string(rank) + " exceeds " + std::to_string(circuit::kMaxRank));
    Shape out;
    std::size_t next = 0;
    for (std::size_t d = 0; d < rank; ++d)
      out.push_back(std::binary_search(axes->begin(), axes->end(), static_cast<std::int64_t>(d)) ? 1 : x[next++]);
    return out;
  }
  node_fail(n, "is not a reshape");
}

std::vector<std::int64_t> transpose_perm(const GraphNode& n, std::size_t rank) {
  std::vector<std::int64_t> perm = attr_ints(n, "perm", {});
  if (perm.empty())
    for (std::size_t d = rank; d-- > 0;) perm.push_back(static_cast<std::int64_t>(d));
  if (perm.size() != rank) node_fail(n, "perm has " + std::to_string(perm.size()) + " entries for rank " + std::to_string(rank));
  std::vector<bool> seen(rank, false);
  for (auto p : perm) {
    if (p < 0 || p >= static_cast<std::int64_t>(rank) || seen[static_cast<std::size_t>(p)]) node_fail(n, "perm is not a permutation");
    seen[static_cast<std::size_t>(p)] = true;
  }
  return perm;
}

std::int64_t concat_axis(const GraphNode& n, std::size_t rank) {
  if (!n.attributes.count("axis")) node_fail(n, "the axis attribute is required");
  std::int64_t axis = attr_int(n, "axis", 0);
  if (axis < -static_cast<std::int64_t>(rank) || axis >= static_cast<std::int64_t>(rank))
    node_fail(n, "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return axis < 0 ? axis + static_cast<std::int64_t>(rank) : axis;
}

ReduceSpec reduce_spec(const GraphNode& n, const Shape& x, const std::map<std::string, FloatTensor>& values) {
  ReduceSpec r;
  r.keepdims = attr_int(n, "keepdims", 1) != 0;
  const auto axes = axes_of(n, values, x.size());
  if (axes && !axes->empty()) {
    r.axes = *axes;
  } else if (attr_int(n, "noop_with_empty_axes", 0) == 0) {
    for (std::size_t d = 0; d < x.size(); ++d) r.axes.push_back(static_cast<std::int64_t>(d));
  }
  return r;
}

}  // namespace detail

std::map<std::string, FloatTensor> evaluate_network(const Network& net, const FloatTensor& input) {
  std::map<std::string, FloatTensor> v = net.initializers;
  if (input.shape != net.input_shape)
    throw std::invalid_argument("evaluate_network: input shape " + circuit::shape_string(input.shape) + ", expected " +
                                circuit::shape_string(net.input_shape));
  v[net.input_name] = input;
  for (const auto& n : net.nodes) detail::evaluate_node(net, n, v);
  return v;
}

}  // namespace veil::ml
