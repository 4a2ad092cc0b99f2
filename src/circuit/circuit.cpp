// Builder checks and interval range inference for the circuit IR (circuit.hpp).
#include "veil/circuit/circuit.hpp"

#include <algorithm>
#include <bit>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <variant>

namespace veil::circuit {
namespace {

__extension__ using i128 = __int128;  // interval bounds never overflow
__extension__ using u128 = unsigned __int128;
constexpr std::int64_t kValueLimit = std::int64_t{1} << 62;

std::string node_label(const Node& node, std::size_t id) {
  std::string s = op_name(node.kind);
  if (!node.name.empty()) s += " '" + node.name + "'";
  return s + " (node " + std::to_string(id) + ")";
}

[[noreturn]] void fail(const std::string& label, const std::string& what) {
  throw std::invalid_argument(label + ": " + what);
}

std::string i128_string(i128 v) {
  if (v == 0) return "0";
  bool neg = v < 0;
  u128 u = neg ? static_cast<u128>(-(v + 1)) + 1 : static_cast<u128>(v);
  std::string s;
  while (u) {
    s += static_cast<char>('0' + static_cast<int>(u % 10));
    u /= 10;
  }
  if (neg) s += '-';
  return {s.rbegin(), s.rend()};
}

// Accumulates interval bounds in 128 bits, refusing sums that could leave the 128-bit range.
struct Bound {
  i128 lo = 0, hi = 0;
  void add(i128 l, i128 h, const std::string& label) {
    lo += l;
    hi += h;
    constexpr i128 kGuard = static_cast<i128>(1) << 100;
    if (lo < -kGuard || hi > kGuard) fail(label, "value range exceeds 2^100 while accumulating");
  }
};

void add_product(Bound& b, std::int64_t w, i128 xlo, i128 xhi, const std::string& label) {
  const i128 p = static_cast<i128>(w) * xlo, q = static_cast<i128>(w) * xhi;
  b.add(std::min(p, q), std::max(p, q), label);
}

unsigned ctz64(std::int64_t v) { return v == 0 ? 64u : static_cast<unsigned>(std::countr_zero(static_cast<std::uint64_t>(v))); }

ValueRange finish(i128 lo, i128 hi, unsigned tz, const std::string& label) {
  if (lo < -static_cast<i128>(kValueLimit) || hi > static_cast<i128>(kValueLimit))
    fail(label, "value range [" + i128_string(lo) + ", " + i128_string(hi) + "] exceeds +-2^62");
  tz = std::min(tz, 61u);
  ValueRange r{static_cast<std::int64_t>(lo), static_cast<std::int64_t>(hi), tz};
  const std::int64_t step = std::int64_t{1} << tz;
  // Align the bounds on the known trailing zeros (they already are when inferred exactly).
  r.lo = (r.lo >= 0 ? (r.lo + step - 1) / step : -((-r.lo) / step)) * step;
  r.hi = (r.hi >= 0 ? r.hi / step : -((-r.hi + step - 1) / step)) * step;
  if (r.lo > r.hi) r.lo = r.hi = static_cast<std::int64_t>(lo);
  return r;
}

// Range of the weighted sums y_o = sum_i weight(o, i) * x_i (o < outputs, i < terms), each
// x_i in [xlo, xhi] with x_tz known zero low bits: every term bounded on its own, the union
// over the outputs, and the trailing zeros the weights keep. Matmul and conv2d.
template <class Weight>
ValueRange weighted_sum_range(std::int64_t outputs, std::int64_t terms, const Weight& weight, i128 xlo, i128 xhi,
                              unsigned x_tz, const std::string& label) {
  i128 lo = 0, hi = 0;
  unsigned ctz = 64;
  for (std::int64_t o = 0; o < outputs; ++o) {
    Bound b;
    for (std::int64_t i = 0; i < terms; ++i) {
      const std::int64_t w = weight(o, i);
      add_product(b, w, xlo, xhi, label);
      ctz = std::min(ctz, ctz64(w));
    }
    lo = o == 0 ? b.lo : std::min(lo, b.lo);
    hi = o == 0 ? b.hi : std::max(hi, b.hi);
  }
  return finish(lo, hi, std::min(64u, x_tz + ctz), label);
}

bool is_gather_kind(OpKind kind) {
  return kind == OpKind::kReshape || kind == OpKind::kTranspose || kind == OpKind::kSlice ||
         kind == OpKind::kConcat || kind == OpKind::kBroadcast;
}

bool broadcastable(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  for (std::size_t i = 0; i < from.size(); ++i) {
    const std::int64_t f = from[from.size() - 1 - i], t = to[to.size() - 1 - i];
    if (f != t && f != 1) return false;
  }
  return true;
}

template <class A, std::size_t I = 0>
constexpr std::size_t variant_index() {
  if constexpr (std::is_same_v<std::variant_alternative_t<I, NodeAttributes>, A>)
    return I;
  else
    return variant_index<A, I + 1>();
}

// The alternative of NodeAttributes each kind carries.
std::size_t attributes_index(OpKind kind) {
  switch (kind) {
    case OpKind::kInput: return variant_index<InputAttributes>();
    case OpKind::kConv2d: return variant_index<Conv2dOptions>();
    case OpKind::kSum: return variant_index<SumAttributes>();
    case OpKind::kTranspose: return variant_index<TransposeAttributes>();
    case OpKind::kSlice: return variant_index<SliceAttributes>();
    case OpKind::kConcat: return variant_index<ConcatAttributes>();
    case OpKind::kLookup: return variant_index<LookupAttributes>();
    case OpKind::kRoundBits: return variant_index<RoundBitsAttributes>();
    default: return variant_index<NoAttributes>();
  }
}

void check_operand_count(const Node& n, std::size_t want, const std::string& label) {
  if (n.operands.size() != want)
    fail(label, "expects " + std::to_string(want) + " operands, got " + std::to_string(n.operands.size()));
}

std::int64_t table_domain_max(const Table& t) {
  return t.domain_min + static_cast<std::int64_t>(t.values.size() - 1) * (std::int64_t{1} << t.domain_shift);
}

void check_table(const Table& t, const std::string& label, std::size_t index) {
  const std::string which = "table " + std::to_string(index);
  if (t.values.empty() || t.values.size() > kMaxTableEntries)
    fail(label, which + " has " + std::to_string(t.values.size()) + " entries, expected 1 to " +
                    std::to_string(kMaxTableEntries));
  if (t.domain_shift > 61) fail(label, which + " has domain_shift " + std::to_string(t.domain_shift) + " > 61");
  if (t.domain_min < -kValueLimit || t.domain_min > kValueLimit)
    fail(label, which + " has domain_min " + std::to_string(t.domain_min) + " outside +-2^62");
  const i128 top = static_cast<i128>(t.domain_min) +
                   static_cast<i128>(t.values.size() - 1) * (static_cast<i128>(1) << t.domain_shift);
  if (top > kValueLimit) fail(label, which + " has a domain reaching past 2^62");
  for (std::int64_t v : t.values)
    if (v < -kValueLimit || v > kValueLimit)
      fail(label, which + " holds the value " + std::to_string(v) + " outside +-2^62");
}

Shape infer_shape(const Circuit& c, const Node& n, const std::string& label) {
  const auto operand_shape = [&](std::size_t i) -> const Shape& { return c.nodes[n.operands[i]].shape; };
  for (std::uint32_t op : n.operands)
    if (op >= c.nodes.size())
      fail(label, "operand " + std::to_string(op) + " is not an earlier node (there are " +
                      std::to_string(c.nodes.size()) + ")");
  const bool no_constant = n.constant.shape.empty() && n.constant.data.size() == 1 && n.constant.data[0] == 0;
  const bool uses_constant =
      n.kind == OpKind::kAddConstant || n.kind == OpKind::kMulConstant || n.kind == OpKind::kMatmul || n.kind == OpKind::kConv2d;
  if (!uses_constant && !no_constant) fail(label, "carries a constant it does not use");
  if (uses_constant && static_cast<std::int64_t>(n.constant.data.size()) != element_count(n.constant.shape, label + " constant"))
    fail(label, "constant of shape " + shape_string(n.constant.shape) + " holds " +
                    std::to_string(n.constant.data.size()) + " values");
  if (n.kind != OpKind::kLookup && (!n.tables.empty() || !n.table_index.empty())) fail(label, "carries tables it does not use");
  if (n.attributes.index() != attributes_index(n.kind)) fail(label, "carries the attributes of another operation");

  switch (n.kind) {
    case OpKind::kInput: {
      check_operand_count(n, 0, label);
      element_count(n.shape, label);
      const auto& [bits, sign, lo, hi] = std::get<InputAttributes>(n.attributes);
      if (bits < 1 || bits > 62) fail(label, "bit width " + std::to_string(bits) + " is outside [1, 62]");
      const std::int64_t min = sign ? -(std::int64_t{1} << (bits - 1)) : 0;
      const std::int64_t max = sign ? (std::int64_t{1} << (bits - 1)) - 1 : (std::int64_t{1} << bits) - 1;
      if (lo > hi || lo < min || hi > max)
        fail(label, "declared range [" + std::to_string(lo) + ", " + std::to_string(hi) + "] is not inside the " +
                        std::to_string(bits) + "-bit " + (sign ? "signed" : "unsigned") + " range [" +
                        std::to_string(min) + ", " + std::to_string(max) + "]");
      return n.shape;
    }
    case OpKind::kAdd:
    case OpKind::kSub: {
      check_operand_count(n, 2, label);
      if (operand_shape(0) != operand_shape(1))
        fail(label, "operand shapes " + shape_string(operand_shape(0)) + " and " + shape_string(operand_shape(1)) +
                        " differ (broadcast one explicitly)");
      return operand_shape(0);
    }
    case OpKind::kAddConstant:
    case OpKind::kMulConstant: {
      check_operand_count(n, 1, label);
      if (!broadcastable(n.constant.shape, operand_shape(0)))
        fail(label, "constant of shape " + shape_string(n.constant.shape) + " does not broadcast to " +
                        shape_string(operand_shape(0)));
      return operand_shape(0);
    }
    case OpKind::kMatmul: {
      check_operand_count(n, 1, label);
      const Shape& x = operand_shape(0);
      if (x.empty()) fail(label, "input is a scalar; matmul needs a last dimension K");
      if (n.constant.shape.size() != 2)
        fail(label, "weights must be a matrix [K, M], got shape " + shape_string(n.constant.shape));
      if (n.constant.shape[0] != x.back())
        fail(label, "weights " + shape_string(n.constant.shape) + " need K = " + std::to_string(n.constant.shape[0]) +
                        ", the input " + shape_string(x) + " has K = " + std::to_string(x.back()));
      Shape out(x.begin(), x.end() - 1);
      out.push_back(n.constant.shape[1]);
      element_count(out, label);
      return out;
    }
    case OpKind::kConv2d: {
      check_operand_count(n, 1, label);
      const Shape& x = operand_shape(0);
      const Shape& w = n.constant.shape;
      if (x.size() != 4) fail(label, "input must be [B, C, H, W], got " + shape_string(x));
      if (w.size() != 4) fail(label, "weights must be [O, C/groups, kh, kw], got " + shape_string(w));
      const Conv2dOptions& a = std::get<Conv2dOptions>(n.attributes);
      const std::int64_t sh = a.stride_h, sw = a.stride_w, pt = a.pad_top, pl = a.pad_left, pb = a.pad_bottom,
                         pr = a.pad_right, dh = a.dilation_h, dw = a.dilation_w, g = a.groups;
      if (sh < 1 || sw < 1 || dh < 1 || dw < 1 || sh > (1 << 20) || sw > (1 << 20) || dh > (1 << 20) || dw > (1 << 20))
        fail(label, "strides and dilations must be in [1, 2^20]");
      if (pt < 0 || pl < 0 || pb < 0 || pr < 0 || pt > (1 << 20) || pl > (1 << 20) || pb > (1 << 20) || pr > (1 << 20))
        fail(label, "paddings must be in [0, 2^20]");
      if (g < 1 || x[1] % g != 0 || w[0] % g != 0)
        fail(label, "groups " + std::to_string(g) + " must divide the input channels " + std::to_string(x[1]) +
                        " and the output channels " + std::to_string(w[0]));
      if (w[1] != x[1] / g)
        fail(label, "weights " + shape_string(w) + " expect " + std::to_string(w[1] * g) + " input channels with " +
                        std::to_string(g) + " groups, the input " + shape_string(x) + " has " + std::to_string(x[1]));
      const std::int64_t eh = x[2] + pt + pb - dh * (w[2] - 1), ew = x[3] + pl + pr - dw * (w[3] - 1);
      if (eh < 1 || ew < 1)
        fail(label, "kernel " + shape_string(w) + " with dilations does not fit the padded input " + shape_string(x));
      Shape out{x[0], w[0], (eh - 1) / sh + 1, (ew - 1) / sw + 1};
      element_count(out, label);
      return out;
    }
    case OpKind::kSum: {
      check_operand_count(n, 1, label);
      const Shape& x = operand_shape(0);
      const SumAttributes& a = std::get<SumAttributes>(n.attributes);
      if (a.axes.empty()) fail(label, "needs keepdims and at least one axis");
      const bool keep = a.keepdims;
      std::vector<bool> reduced(x.size(), false);
      std::int64_t prev = -1;
      for (const std::int64_t ax : a.axes) {
        if (ax <= prev || ax >= static_cast<std::int64_t>(x.size()))
          fail(label, "axes must be ascending, distinct and below the rank " + std::to_string(x.size()) +
                          ", got axis " + std::to_string(ax));
        prev = ax;
        reduced[static_cast<std::size_t>(ax)] = true;
      }
      Shape out;
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (!reduced[i])
          out.push_back(x[i]);
        else if (keep)
          out.push_back(1);
      }
      return out;
    }
    case OpKind::kReshape: {
      check_operand_count(n, 1, label);
      const std::int64_t a = element_count(operand_shape(0), label), b = element_count(n.shape, label);
      if (a != b)
        fail(label, "cannot reshape " + shape_string(operand_shape(0)) + " (" + std::to_string(a) + " elements) to " +
                        shape_string(n.shape) + " (" + std::to_string(b) + ")");
      return n.shape;
    }
    case OpKind::kTranspose: {
      check_operand_count(n, 1, label);
      const Shape& x = operand_shape(0);
      const std::vector<std::int64_t>& perm = std::get<TransposeAttributes>(n.attributes).perm;
      if (perm.size() != x.size())
        fail(label, "permutation of " + std::to_string(perm.size()) + " axes for a tensor of rank " +
                        std::to_string(x.size()));
      std::vector<bool> seen(x.size(), false);
      Shape out;
      for (std::int64_t p : perm) {
        if (p < 0 || p >= static_cast<std::int64_t>(x.size()) || seen[static_cast<std::size_t>(p)])
          fail(label, "perm is not a permutation of 0.." + std::to_string(static_cast<std::int64_t>(x.size()) - 1));
        seen[static_cast<std::size_t>(p)] = true;
        out.push_back(x[static_cast<std::size_t>(p)]);
      }
      return out;
    }
    case OpKind::kSlice: {
      check_operand_count(n, 1, label);
      const Shape& x = operand_shape(0);
      const std::size_t r = x.size();
      const SliceAttributes& a = std::get<SliceAttributes>(n.attributes);
      if (a.starts.size() != r || a.ends.size() != r || a.steps.size() != r)
        fail(label, "expects " + std::to_string(3 * r) + " attributes, got " +
                        std::to_string(a.starts.size() + a.ends.size() + a.steps.size()));
      Shape out(r);
      for (std::size_t i = 0; i < r; ++i) {
        const std::int64_t s = a.starts[i], e = a.ends[i], st = a.steps[i];
        if (st < 1 || s < 0 || s >= x[i] || e <= s || e > x[i])
          fail(label, "axis " + std::to_string(i) + ": slice " + std::to_string(s) + ":" + std::to_string(e) + ":" +
                          std::to_string(st) + " of a dimension of " + std::to_string(x[i]) +
                          " is empty or out of bounds");
        out[i] = (e - s - 1) / st + 1;
      }
      return out;
    }
    case OpKind::kConcat: {
      if (n.operands.empty()) fail(label, "needs at least one operand");
      const Shape& first = operand_shape(0);
      const std::int64_t axis = std::get<ConcatAttributes>(n.attributes).axis;
      if (axis < 0 || axis >= static_cast<std::int64_t>(first.size()))
        fail(label, "axis " + std::to_string(axis) + " is outside the rank " + std::to_string(first.size()));
      Shape out = first;
      out[static_cast<std::size_t>(axis)] = 0;
      for (std::size_t i = 0; i < n.operands.size(); ++i) {
        const Shape& s = operand_shape(i);
        bool ok = s.size() == first.size();
        for (std::size_t d = 0; ok && d < s.size(); ++d)
          if (d != static_cast<std::size_t>(axis) && s[d] != first[d]) ok = false;
        if (!ok)
          fail(label, "operand " + std::to_string(i) + " of shape " + shape_string(s) + " does not match " +
                          shape_string(first) + " outside axis " + std::to_string(axis));
        out[static_cast<std::size_t>(axis)] += s[static_cast<std::size_t>(axis)];
        element_count(out, label);
      }
      return out;
    }
    case OpKind::kBroadcast: {
      check_operand_count(n, 1, label);
      element_count(n.shape, label);
      if (!broadcastable(operand_shape(0), n.shape))
        fail(label, "cannot broadcast " + shape_string(operand_shape(0)) + " to " + shape_string(n.shape));
      return n.shape;
    }
    case OpKind::kLookup: {
      check_operand_count(n, 1, label);
      const unsigned neighbour = std::get<LookupAttributes>(n.attributes).neighbour_log2;
      if (neighbour > kMaxNeighbourLog2)
        fail(label, "neighbour reads must be 0 (exact) or n in [1, " + std::to_string(kMaxNeighbourLog2) +
                        "] (probability 2^-n), got " + std::to_string(neighbour));
      const std::int64_t count = element_count(operand_shape(0), label);
      if (n.tables.empty()) fail(label, "needs at least one table");
      if (n.tables.size() > static_cast<std::size_t>(count) && n.tables.size() > 1)
        fail(label, std::to_string(n.tables.size()) + " tables for " + std::to_string(count) + " elements");
      std::size_t total = 0;
      for (std::size_t i = 0; i < n.tables.size(); ++i) {
        check_table(n.tables[i], label, i);
        total += n.tables[i].values.size();
      }
      if (total > static_cast<std::size_t>(kMaxTensorElements))
        fail(label, "tables hold " + std::to_string(total) + " entries in all, more than " +
                        std::to_string(kMaxTensorElements));
      if (n.table_index.empty()) {
        if (n.tables.size() != 1) fail(label, std::to_string(n.tables.size()) + " tables but no table index");
      } else {
        if (static_cast<std::int64_t>(n.table_index.size()) != count)
          fail(label, "table index of " + std::to_string(n.table_index.size()) + " entries for " +
                          std::to_string(count) + " elements");
        for (std::uint32_t t : n.table_index)
          if (t >= n.tables.size())
            fail(label, "table index " + std::to_string(t) + " but only " + std::to_string(n.tables.size()) + " tables");
      }
      return operand_shape(0);
    }
    case OpKind::kRoundBits: {
      check_operand_count(n, 1, label);
      const RoundBitsAttributes& a = std::get<RoundBitsAttributes>(n.attributes);
      if (a.bits < 1 || a.bits > 61) fail(label, "bits " + std::to_string(a.bits) + " is outside [1, 61]");
      const auto mode = static_cast<unsigned>(a.mode);
      if (mode > 2) fail(label, "mode must be 0 (floor), 1 (nearest) or 2 (approximate), got " + std::to_string(mode));
      return operand_shape(0);
    }
  }
  fail(label, "unknown operation kind " + std::to_string(static_cast<unsigned>(n.kind)));
}

}  // namespace

const char* op_name(OpKind kind) {
  switch (kind) {
    case OpKind::kInput: return "input";
    case OpKind::kAdd: return "add";
    case OpKind::kSub: return "sub";
    case OpKind::kAddConstant: return "add_constant";
    case OpKind::kMulConstant: return "mul_constant";
    case OpKind::kMatmul: return "matmul";
    case OpKind::kConv2d: return "conv2d";
    case OpKind::kSum: return "sum";
    case OpKind::kReshape: return "reshape";
    case OpKind::kTranspose: return "transpose";
    case OpKind::kSlice: return "slice";
    case OpKind::kConcat: return "concat";
    case OpKind::kBroadcast: return "broadcast";
    case OpKind::kLookup: return "lookup";
    case OpKind::kRoundBits: return "round_bits";
  }
  return "unknown op";
}

std::vector<std::uint32_t> Circuit::inputs() const {
  std::vector<std::uint32_t> ids;
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].kind == OpKind::kInput) ids.push_back(static_cast<std::uint32_t>(i));
  return ids;
}

std::string Circuit::describe_node(std::uint32_t id) const {
  if (id >= nodes.size()) return "node " + std::to_string(id) + " (out of range)";
  return node_label(nodes[id], id);
}

ValueRange infer_range(const Circuit& c, std::uint32_t id, const std::vector<ValueRange>& ranges) {
  const Node& n = c.nodes[id];
  const std::string label = node_label(n, id);
  const auto in = [&](std::size_t i) -> const ValueRange& { return ranges[n.operands[i]]; };
  ValueRange r;
  switch (n.kind) {
    case OpKind::kInput:
      r = finish(std::get<InputAttributes>(n.attributes).lo, std::get<InputAttributes>(n.attributes).hi, 0, label);
      break;
    case OpKind::kAdd:
      r = finish(static_cast<i128>(in(0).lo) + in(1).lo, static_cast<i128>(in(0).hi) + in(1).hi,
                 std::min(in(0).trailing_zeros, in(1).trailing_zeros), label);
      break;
    case OpKind::kSub:
      r = finish(static_cast<i128>(in(0).lo) - in(1).hi, static_cast<i128>(in(0).hi) - in(1).lo,
                 std::min(in(0).trailing_zeros, in(1).trailing_zeros), label);
      break;
    case OpKind::kAddConstant: {
      const auto [mn, mx] = std::minmax_element(n.constant.data.begin(), n.constant.data.end());
      unsigned tz = in(0).trailing_zeros;
      for (std::int64_t v : n.constant.data) tz = std::min(tz, ctz64(v));
      r = finish(static_cast<i128>(in(0).lo) + *mn, static_cast<i128>(in(0).hi) + *mx, tz, label);
      break;
    }
    case OpKind::kMulConstant: {
      const auto [mn, mx] = std::minmax_element(n.constant.data.begin(), n.constant.data.end());
      const i128 c0 = static_cast<i128>(*mn) * in(0).lo, c1 = static_cast<i128>(*mn) * in(0).hi,
                 c2 = static_cast<i128>(*mx) * in(0).lo, c3 = static_cast<i128>(*mx) * in(0).hi;
      unsigned ctz = 64;
      for (std::int64_t v : n.constant.data) ctz = std::min(ctz, ctz64(v));
      r = finish(std::min({c0, c1, c2, c3}), std::max({c0, c1, c2, c3}), std::min(64u, in(0).trailing_zeros + ctz), label);
      break;
    }
    case OpKind::kMatmul: {
      const std::int64_t k = n.constant.shape[0], m = n.constant.shape[1];
      const auto weight = [&](std::int64_t j, std::int64_t i) { return n.constant.data[static_cast<std::size_t>(i * m + j)]; };
      r = weighted_sum_range(m, k, weight, in(0).lo, in(0).hi, in(0).trailing_zeros, label);
      break;
    }
    case OpKind::kConv2d: {
      const Shape& w = n.constant.shape;
      const std::int64_t per_out = w[1] * w[2] * w[3];
      const Conv2dOptions& o = std::get<Conv2dOptions>(n.attributes);
      const bool padded = o.pad_top || o.pad_left || o.pad_bottom || o.pad_right;
      const i128 xlo = padded ? std::min<std::int64_t>(in(0).lo, 0) : in(0).lo;
      const i128 xhi = padded ? std::max<std::int64_t>(in(0).hi, 0) : in(0).hi;
      const auto weight = [&](std::int64_t o, std::int64_t i) { return n.constant.data[static_cast<std::size_t>(o * per_out + i)]; };
      r = weighted_sum_range(w[0], per_out, weight, xlo, xhi, in(0).trailing_zeros, label);
      break;
    }
    case OpKind::kSum: {
      const Shape& x = c.nodes[n.operands[0]].shape;
      i128 count = 1;
      for (const std::int64_t axis : std::get<SumAttributes>(n.attributes).axes) count *= x[static_cast<std::size_t>(axis)];
      r = finish(count * in(0).lo, count * in(0).hi, in(0).trailing_zeros, label);
      break;
    }
    case OpKind::kReshape:
    case OpKind::kTranspose:
    case OpKind::kSlice:
    case OpKind::kBroadcast:
      r = in(0);
      break;
    case OpKind::kConcat: {
      r = in(0);
      for (std::size_t i = 1; i < n.operands.size(); ++i) {
        r.lo = std::min(r.lo, in(i).lo);
        r.hi = std::max(r.hi, in(i).hi);
        r.trailing_zeros = std::min(r.trailing_zeros, in(i).trailing_zeros);
      }
      break;
    }
    case OpKind::kLookup: {
      const ValueRange& x = in(0);
      std::vector<bool> used(n.tables.size(), n.table_index.empty());
      for (std::uint32_t t : n.table_index) used[t] = true;
      i128 lo = 0, hi = 0;
      bool any = false;
      const std::int64_t step = std::int64_t{1} << x.trailing_zeros;
      for (std::size_t t = 0; t < n.tables.size(); ++t) {
        if (!used[t]) continue;
        const Table& table = n.tables[t];
        const std::int64_t dmax = table_domain_max(table);
        const bool aligned = table.domain_shift <= x.trailing_zeros &&
                             ((x.lo - table.domain_min) & ((std::int64_t{1} << table.domain_shift) - 1)) == 0;
        if (x.lo < table.domain_min || x.hi > dmax || !aligned)
          fail(label, "table " + std::to_string(t) + " covers [" + std::to_string(table.domain_min) + ", " +
                          std::to_string(dmax) + "] in steps of 2^" + std::to_string(table.domain_shift) +
                          ", but its input takes values in [" + std::to_string(x.lo) + ", " + std::to_string(x.hi) +
                          "] in steps of 2^" + std::to_string(x.trailing_zeros));
        for (std::int64_t v = x.lo;; v += step) {
          const std::int64_t y = table.values[static_cast<std::size_t>((v - table.domain_min) >> table.domain_shift)];
          lo = any ? std::min<i128>(lo, y) : y;
          hi = any ? std::max<i128>(hi, y) : y;
          any = true;
          if (v >= x.hi) break;
        }
      }
      r = finish(lo, hi, 0, label);
      break;
    }
    case OpKind::kRoundBits: {
      const RoundBitsAttributes& a = std::get<RoundBitsAttributes>(n.attributes);
      const unsigned bits = static_cast<unsigned>(a.bits);
      const ValueRange& x = in(0);
      if (x.trailing_zeros >= bits) {
        r = x;
        break;
      }
      const i128 shift = a.mode == RoundingMode::kNearest ? (static_cast<i128>(1) << (bits - 1)) : 0;
      const auto floor_to = [&](i128 v) {
        const i128 s = static_cast<i128>(1) << bits;
        return (v >= 0 ? v / s : -((-v + s - 1) / s)) * s;
      };
      if (a.mode == RoundingMode::kApproximate)
        // Floor or the multiple above it, whichever the noise picks near a tie.
        r = finish(floor_to(x.lo), floor_to(x.hi) + (static_cast<i128>(1) << bits), bits, label);
      else
        r = finish(floor_to(x.lo + shift), floor_to(x.hi + shift), bits, label);
      break;
    }
  }
  if (n.range_hint) {
    const ValueRange& h = *n.range_hint;
    if (h.hi < r.lo || h.lo > r.hi || h.lo > h.hi)
      fail(label, "range hint [" + std::to_string(h.lo) + ", " + std::to_string(h.hi) +
                      "] does not meet the inferred range [" + std::to_string(r.lo) + ", " + std::to_string(r.hi) + "]");
    r = finish(std::max(r.lo, h.lo), std::min(r.hi, h.hi), r.trailing_zeros, label);
  }
  return r;
}

// ---------------------------------------------------------------- builder

void CircuitBuilder::check_value(Value v, const char* op) const {
  if (v.id >= circuit_.nodes.size())
    throw std::invalid_argument(std::string(op) + ": value " + std::to_string(v.id) + " does not belong to this builder");
}

Value CircuitBuilder::push(Node node) {
  const std::uint32_t id = static_cast<std::uint32_t>(circuit_.nodes.size());
  const std::string label = node_label(node, id);
  if (circuit_.nodes.size() >= (std::size_t{1} << 24)) fail(label, "too many nodes");
  if (node.name.size() > kMaxNameBytes) fail(label, "name longer than " + std::to_string(kMaxNameBytes) + " bytes");
  if (node.operands.size() > kMaxOperands) fail(label, std::to_string(node.operands.size()) + " operands, at most " + std::to_string(kMaxOperands));
  Shape inferred = infer_shape(circuit_, node, label);
  if (node.kind != OpKind::kLookup && !is_gather_kind(node.kind))
    for (std::uint32_t op : node.operands)
      if (is_approximate(circuit_, op))
        fail(label, "reads " + circuit_.describe_node(op) +
                        ", an approximate round_bits result: only a lookup may read one (its low bits are not cleared "
                        "under encryption)");
  if (node.kind == OpKind::kReshape || node.kind == OpKind::kInput || node.kind == OpKind::kBroadcast) {
    // The shape is the attribute.
  } else if (!node.shape.empty() && node.shape != inferred) {
    fail(label, "declared shape " + shape_string(node.shape) + " differs from the inferred " + shape_string(inferred));
  }
  node.shape = std::move(inferred);
  circuit_.nodes.push_back(std::move(node));
  try {
    ranges_.push_back(infer_range(circuit_, id, ranges_));
  } catch (...) {
    circuit_.nodes.pop_back();
    throw;
  }
  return Value{id};
}

Value CircuitBuilder::add_node(Node node) {
  const std::uint32_t id = static_cast<std::uint32_t>(circuit_.nodes.size());
  const std::string label = node_label(node, id);
  Shape declared = node.shape;
  Shape inferred = infer_shape(circuit_, node, label);
  if (declared != inferred)
    fail(label, "declared shape " + shape_string(declared) + " differs from the inferred " + shape_string(inferred));
  return push(std::move(node));
}

Value CircuitBuilder::input(const Shape& shape, unsigned bit_width, bool is_signed, std::string name) {
  if (bit_width < 1 || bit_width > 62)
    throw std::invalid_argument("input '" + name + "': bit width " + std::to_string(bit_width) + " is outside [1, 62]");
  const std::int64_t lo = is_signed ? -(std::int64_t{1} << (bit_width - 1)) : 0;
  const std::int64_t hi = is_signed ? (std::int64_t{1} << (bit_width - 1)) - 1 : (std::int64_t{1} << bit_width) - 1;
  Node n;
  n.kind = OpKind::kInput;
  n.shape = shape;
  n.attributes = InputAttributes{bit_width, is_signed, lo, hi};
  n.name = std::move(name);
  return push(std::move(n));
}

Value CircuitBuilder::input_range(const Shape& shape, std::int64_t lo, std::int64_t hi, std::string name) {
  if (lo > hi || lo < -kValueLimit || hi > kValueLimit)
    throw std::invalid_argument("input '" + name + "': range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                "] is empty or exceeds +-2^62");
  const bool is_signed = lo < 0;
  // The narrowest width holding [lo, hi]; computed in 128 bits (2^62 itself needs 63).
  unsigned bits = 1;
  const auto fits = [&](unsigned b) {
    const i128 half = static_cast<i128>(1) << (b - 1);
    return is_signed ? (-half <= lo && hi <= half - 1) : hi <= (static_cast<i128>(1) << b) - 1;
  };
  while (bits <= 62 && !fits(bits)) ++bits;
  if (bits > 62)
    throw std::invalid_argument("input '" + name + "': range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                "] needs more than 62 bits");
  Node n;
  n.kind = OpKind::kInput;
  n.shape = shape;
  n.attributes = InputAttributes{bits, is_signed, lo, hi};
  n.name = std::move(name);
  return push(std::move(n));
}

namespace {
Node unary(OpKind kind, Value a, std::string name) {
  Node n;
  n.kind = kind;
  n.operands = {a.id};
  n.name = std::move(name);
  return n;
}
}  // namespace

Value CircuitBuilder::add(Value a, Value b, std::string name) {
  check_value(a, "add");
  check_value(b, "add");
  Node n = unary(OpKind::kAdd, a, std::move(name));
  n.operands.push_back(b.id);
  return push(std::move(n));
}

Value CircuitBuilder::sub(Value a, Value b, std::string name) {
  check_value(a, "sub");
  check_value(b, "sub");
  Node n = unary(OpKind::kSub, a, std::move(name));
  n.operands.push_back(b.id);
  return push(std::move(n));
}

Value CircuitBuilder::neg(Value a, std::string name) { return mul(a, std::int64_t{-1}, std::move(name)); }

Value CircuitBuilder::with_constant(OpKind kind, Value a, const Tensor& constant, std::string name) {
  check_value(a, op_name(kind));
  Node n = unary(kind, a, std::move(name));
  n.constant = constant;
  return push(std::move(n));
}

Value CircuitBuilder::add(Value a, const Tensor& constant, std::string name) {
  return with_constant(OpKind::kAddConstant, a, constant, std::move(name));
}

Value CircuitBuilder::add(Value a, std::int64_t constant, std::string name) {
  return add(a, Tensor::scalar(constant), std::move(name));
}

Value CircuitBuilder::mul(Value a, const Tensor& constant, std::string name) {
  return with_constant(OpKind::kMulConstant, a, constant, std::move(name));
}

Value CircuitBuilder::mul(Value a, std::int64_t constant, std::string name) {
  return mul(a, Tensor::scalar(constant), std::move(name));
}

Value CircuitBuilder::matmul(Value x, const Tensor& weights, std::string name) {
  return with_constant(OpKind::kMatmul, x, weights, std::move(name));
}

Value CircuitBuilder::dot(Value x, const std::vector<std::int64_t>& weights, std::string name) {
  check_value(x, "dot");
  if (shape(x).size() != 1)
    throw std::invalid_argument("dot '" + name + "': input must be a vector, got " + shape_string(shape(x)));
  Value m = matmul(x, Tensor({static_cast<std::int64_t>(weights.size()), 1}, weights), name);
  return reshape(m, {}, name.empty() ? std::string{} : name + ".reshape");
}

Value CircuitBuilder::conv2d(Value x, const Tensor& weights, const Conv2dOptions& o, std::string name) {
  check_value(x, "conv2d");
  Node n = unary(OpKind::kConv2d, x, std::move(name));
  n.constant = weights;
  n.attributes = o;
  return push(std::move(n));
}

Value CircuitBuilder::sum(Value a, std::vector<std::int64_t> axes, bool keepdims, std::string name) {
  check_value(a, "sum");
  const std::int64_t rank = static_cast<std::int64_t>(shape(a).size());
  for (auto& ax : axes)
    if (ax < 0) ax += rank;
  std::sort(axes.begin(), axes.end());
  Node n = unary(OpKind::kSum, a, std::move(name));
  n.attributes = SumAttributes{keepdims, std::move(axes)};
  return push(std::move(n));
}

Value CircuitBuilder::sum_all(Value a, std::string name) {
  check_value(a, "sum");
  std::vector<std::int64_t> axes(shape(a).size());
  std::iota(axes.begin(), axes.end(), 0);
  if (axes.empty()) return reshape(a, {}, std::move(name));
  return sum(a, axes, false, std::move(name));
}

Value CircuitBuilder::reshape(Value a, Shape s, std::string name) {
  check_value(a, "reshape");
  const std::int64_t total = element_count(shape(a), "reshape");
  std::int64_t known = 1;
  int unknown = -1;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      if (unknown >= 0) throw std::invalid_argument("reshape '" + name + "': more than one -1 in " + shape_string(s));
      unknown = static_cast<int>(i);
    } else if (s[i] < 1) {
      throw std::invalid_argument("reshape '" + name + "': dimension " + std::to_string(s[i]) + " in " + shape_string(s));
    } else {
      if (s[i] > kMaxTensorElements / known)  // checked before multiplying: no overflow
        throw std::invalid_argument("reshape '" + name + "': shape " + shape_string(s) + " is too large");
      known *= s[i];
    }
  }
  if (unknown >= 0) {
    if (total % known != 0)
      throw std::invalid_argument("reshape '" + name + "': cannot infer -1 in " + shape_string(s) + " from " +
                                  std::to_string(total) + " elements");
    s[static_cast<std::size_t>(unknown)] = total / known;
  }
  Node n = unary(OpKind::kReshape, a, std::move(name));
  n.shape = std::move(s);
  return push(std::move(n));
}

Value CircuitBuilder::flatten(Value a, std::int64_t axis, std::string name) {
  check_value(a, "flatten");
  const Shape& x = shape(a);
  if (axis < 0) axis += static_cast<std::int64_t>(x.size());
  if (axis < 0 || axis > static_cast<std::int64_t>(x.size()))
    throw std::invalid_argument("flatten '" + name + "': axis " + std::to_string(axis) + " outside the rank " +
                                std::to_string(x.size()));
  std::int64_t outer = 1, inner = 1;
  for (std::size_t i = 0; i < x.size(); ++i) (static_cast<std::int64_t>(i) < axis ? outer : inner) *= x[i];
  return reshape(a, {outer, inner}, std::move(name));
}

Value CircuitBuilder::transpose(Value a, std::vector<std::int64_t> perm, std::string name) {
  check_value(a, "transpose");
  Node n = unary(OpKind::kTranspose, a, std::move(name));
  n.attributes = TransposeAttributes{std::move(perm)};
  return push(std::move(n));
}

Value CircuitBuilder::slice(Value a, std::vector<std::int64_t> starts, std::vector<std::int64_t> ends,
                            std::vector<std::int64_t> steps, std::string name) {
  check_value(a, "slice");
  const Shape& x = shape(a);
  const std::size_t r = x.size();
  if (steps.empty()) steps.assign(r, 1);
  if (starts.size() != r || ends.size() != r || steps.size() != r)
    throw std::invalid_argument("slice '" + name + "': starts/ends/steps need " + std::to_string(r) + " entries each");
  for (std::size_t i = 0; i < r; ++i) {
    if (starts[i] < 0) starts[i] += x[i];
    if (ends[i] < 0) ends[i] += x[i];
    ends[i] = std::min(ends[i], x[i]);
  }
  Node n = unary(OpKind::kSlice, a, std::move(name));
  n.attributes = SliceAttributes{std::move(starts), std::move(ends), std::move(steps)};
  return push(std::move(n));
}

Value CircuitBuilder::concat(const std::vector<Value>& values, std::int64_t axis, std::string name) {
  Node n;
  n.kind = OpKind::kConcat;
  n.name = std::move(name);
  if (values.size() > kMaxOperands)
    throw std::invalid_argument("concat '" + n.name + "': " + std::to_string(values.size()) + " operands, at most " +
                                std::to_string(kMaxOperands));
  for (Value v : values) {
    check_value(v, "concat");
    n.operands.push_back(v.id);
  }
  if (!values.empty() && axis < 0) axis += static_cast<std::int64_t>(shape(values[0]).size());
  n.attributes = ConcatAttributes{axis};
  return push(std::move(n));
}

Value CircuitBuilder::broadcast(Value a, Shape s, std::string name) {
  check_value(a, "broadcast");
  Node n = unary(OpKind::kBroadcast, a, std::move(name));
  n.shape = std::move(s);
  return push(std::move(n));
}

Table CircuitBuilder::table_for(Value v, const TableFunction& f) const {
  check_value(v, "lookup");
  const ValueRange r = range(v);
  const std::uint64_t count = (static_cast<std::uint64_t>(r.hi - r.lo) >> r.trailing_zeros) + 1;
  if (count > kMaxTableEntries)
    throw std::invalid_argument("lookup: input " + circuit_.describe_node(v.id) + " takes " + std::to_string(count) +
                                " values in [" + std::to_string(r.lo) + ", " + std::to_string(r.hi) +
                                "], too many for a table: round_bits first");
  Table t;
  t.domain_min = r.lo;
  t.domain_shift = r.trailing_zeros;
  t.values.resize(count);
  for (std::uint64_t i = 0; i < count; ++i) t.values[i] = f(r.lo + static_cast<std::int64_t>(i << r.trailing_zeros));
  return t;
}

Value CircuitBuilder::lookup(Value a, Table table, std::string name) {
  check_value(a, "lookup");
  Node n = unary(OpKind::kLookup, a, std::move(name));
  n.attributes = LookupAttributes{};
  n.tables.push_back(std::move(table));
  return push(std::move(n));
}

Value CircuitBuilder::lookup(Value a, const TableFunction& f, std::string name) {
  return lookup(a, table_for(a, f), std::move(name));
}

Value CircuitBuilder::lookup_per_element(Value a, std::vector<Table> tables, std::vector<std::uint32_t> table_index,
                                         std::string name, unsigned neighbour_log2) {
  check_value(a, "lookup");
  Node n = unary(OpKind::kLookup, a, std::move(name));
  n.tables = std::move(tables);
  n.table_index = std::move(table_index);
  n.attributes = LookupAttributes{false, neighbour_log2};
  if (n.tables.size() == 1 && !n.table_index.empty()) {
    for (std::uint32_t t : n.table_index)
      if (t != 0) return push(std::move(n));  // let the check name the bad index
    n.table_index.clear();
  }
  return push(std::move(n));
}

Value CircuitBuilder::lookup_per_element_shared(Value a, std::vector<Table> tables,
                                                std::vector<std::uint32_t> table_index, std::string name,
                                                unsigned neighbour_log2) {
  check_value(a, "lookup");
  Node n = unary(OpKind::kLookup, a, std::move(name));
  n.tables = std::move(tables);
  n.table_index = std::move(table_index);
  n.attributes = LookupAttributes{true, neighbour_log2};
  return push(std::move(n));
}

Value CircuitBuilder::lookup_per_channel(Value a, std::int64_t axis, std::vector<Table> tables, std::string name) {
  check_value(a, "lookup");
  const Shape& x = shape(a);
  if (axis < 0) axis += static_cast<std::int64_t>(x.size());
  if (axis < 0 || axis >= static_cast<std::int64_t>(x.size()))
    throw std::invalid_argument("lookup '" + name + "': channel axis " + std::to_string(axis) + " outside the rank " +
                                std::to_string(x.size()));
  const std::int64_t channels = x[static_cast<std::size_t>(axis)];
  if (static_cast<std::int64_t>(tables.size()) != channels)
    throw std::invalid_argument("lookup '" + name + "': " + std::to_string(tables.size()) + " tables for " +
                                std::to_string(channels) + " channels along axis " + std::to_string(axis));
  const std::int64_t count = element_count(x, "lookup");
  const std::int64_t stride = strides_of(x)[static_cast<std::size_t>(axis)];
  std::vector<std::uint32_t> index(static_cast<std::size_t>(count));
  for (std::int64_t e = 0; e < count; ++e) index[static_cast<std::size_t>(e)] = static_cast<std::uint32_t>((e / stride) % channels);
  return lookup_per_element(a, std::move(tables), std::move(index), std::move(name));
}

Value CircuitBuilder::lookup_per_channel(Value a, std::int64_t axis, const std::vector<TableFunction>& fs, std::string name) {
  std::vector<Table> tables;
  tables.reserve(fs.size());
  for (const auto& f : fs) tables.push_back(table_for(a, f));
  return lookup_per_channel(a, axis, std::move(tables), std::move(name));
}

Value CircuitBuilder::round_bits(Value a, unsigned bits, RoundingMode mode, std::string name) {
  check_value(a, "round_bits");
  Node n = unary(OpKind::kRoundBits, a, std::move(name));
  n.attributes = RoundBitsAttributes{bits, mode};
  return push(std::move(n));
}

void CircuitBuilder::output(Value v, std::string name) {
  check_value(v, "output");
  if (name.size() > kMaxNameBytes)
    throw std::invalid_argument("output: name of " + std::to_string(name.size()) + " bytes, at most " +
                                std::to_string(kMaxNameBytes));
  circuit_.outputs.push_back(v.id);
  circuit_.output_names.push_back(std::move(name));
}

const Shape& CircuitBuilder::shape(Value v) const {
  check_value(v, "shape");
  return circuit_.nodes[v.id].shape;
}

ValueRange CircuitBuilder::range(Value v) const {
  check_value(v, "range");
  return ranges_[v.id];
}

Circuit CircuitBuilder::build() && {
  if (circuit_.outputs.empty()) throw std::logic_error("CircuitBuilder::build: the circuit has no output");
  return std::move(circuit_);
}

bool is_approximate(const Circuit& circuit, std::uint32_t id) {
  // Walks back through data movement only (operands have smaller ids: this terminates).
  std::vector<std::uint32_t> stack{id};
  while (!stack.empty()) {
    const std::uint32_t at = stack.back();
    stack.pop_back();
    if (at >= circuit.nodes.size()) continue;
    const Node& n = circuit.nodes[at];
    if (n.kind == OpKind::kRoundBits && std::holds_alternative<RoundBitsAttributes>(n.attributes) &&
        std::get<RoundBitsAttributes>(n.attributes).mode == RoundingMode::kApproximate)
      return true;
    if (is_gather_kind(n.kind)) stack.insert(stack.end(), n.operands.begin(), n.operands.end());
  }
  return false;
}

void validate_circuit(const Circuit& circuit) {
  CircuitBuilder b;
  for (const Node& n : circuit.nodes) b.add_node(n);
  if (circuit.outputs.empty()) throw std::invalid_argument("circuit has no output");
  for (const std::string& name : circuit.output_names)
    if (name.size() > kMaxNameBytes)
      throw std::invalid_argument("circuit has an output name of " + std::to_string(name.size()) + " bytes, at most " +
                                  std::to_string(kMaxNameBytes));
  if (circuit.output_names.size() != circuit.outputs.size())
    throw std::invalid_argument("circuit has " + std::to_string(circuit.outputs.size()) + " outputs but " +
                                std::to_string(circuit.output_names.size()) + " output names");
  for (std::uint32_t o : circuit.outputs) {
    if (o >= circuit.nodes.size())
      throw std::invalid_argument("output refers to node " + std::to_string(o) + ", the circuit has " +
                                  std::to_string(circuit.nodes.size()));
  }
}

}  // namespace veil::circuit
