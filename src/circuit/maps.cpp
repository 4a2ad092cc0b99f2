#include "maps.hpp"

#include <stdexcept>

namespace veil::circuit::detail {

bool is_gather(OpKind kind) {
  return kind == OpKind::kReshape || kind == OpKind::kTranspose || kind == OpKind::kSlice ||
         kind == OpKind::kConcat || kind == OpKind::kBroadcast;
}

bool is_linear(OpKind kind) {
  return kind == OpKind::kAdd || kind == OpKind::kSub || kind == OpKind::kAddConstant ||
         kind == OpKind::kMulConstant || kind == OpKind::kMatmul || kind == OpKind::kConv2d || kind == OpKind::kSum;
}

std::int64_t broadcast_source(const Shape& from, const Shape& to, std::int64_t e) {
  std::int64_t src = 0, src_stride = 1;
  for (std::size_t i = 0; i < to.size(); ++i) {
    const std::size_t d = to.size() - 1 - i;
    const std::int64_t coord = e % to[d];
    e /= to[d];
    if (i < from.size()) {
      const std::int64_t f = from[from.size() - 1 - i];
      if (f != 1) src += coord * src_stride;
      src_stride *= f;
    }
  }
  return src;
}

namespace {

// element[e] = sum over axes of base[i] + coord_i(e) * step[i], for every element e of `shape`
// (row-major): the source offsets of a transpose or a slice.
void strided_sources(const Shape& shape, const std::vector<std::int64_t>& base, const std::vector<std::int64_t>& step,
                     std::vector<std::int64_t>& element) {
  std::int64_t offset0 = 0;
  for (std::int64_t b : base) offset0 += b;
  for (std::size_t e = 0; e < element.size(); ++e) {
    std::int64_t rem = static_cast<std::int64_t>(e), src = offset0;
    for (std::size_t i = shape.size(); i-- > 0;) {
      src += (rem % shape[i]) * step[i];
      rem /= shape[i];
    }
    element[e] = src;
  }
}

}  // namespace

GatherMap gather_map(const Circuit& c, std::uint32_t id) {
  const Node& n = c.nodes[id];
  const std::int64_t count = element_count(n.shape);
  GatherMap m;
  m.operand.assign(static_cast<std::size_t>(count), 0);
  m.element.resize(static_cast<std::size_t>(count));
  const Shape& x = c.nodes[n.operands[0]].shape;
  switch (n.kind) {
    case OpKind::kReshape:
      for (std::int64_t e = 0; e < count; ++e) m.element[static_cast<std::size_t>(e)] = e;
      break;
    case OpKind::kBroadcast:
      for (std::int64_t e = 0; e < count; ++e) m.element[static_cast<std::size_t>(e)] = broadcast_source(x, n.shape, e);
      break;
    case OpKind::kTranspose: {
      // Output axis i reads input axis perm[i].
      const auto xs = strides_of(x);
      std::vector<std::int64_t> base(n.shape.size(), 0), step(n.shape.size());
      const std::vector<std::int64_t>& perm = std::get<TransposeAttributes>(n.attributes).perm;
      for (std::size_t i = 0; i < n.shape.size(); ++i) step[i] = xs[static_cast<std::size_t>(perm[i])];
      strided_sources(n.shape, base, step, m.element);
      break;
    }
    case OpKind::kSlice: {
      // Output axis i reads input axis i from starts[i] in steps of steps[i].
      const auto xs = strides_of(x);
      const std::size_t r = n.shape.size();
      const SliceAttributes& a = std::get<SliceAttributes>(n.attributes);
      std::vector<std::int64_t> base(r), step(r);
      for (std::size_t i = 0; i < r; ++i) {
        base[i] = a.starts[i] * xs[i];
        step[i] = a.steps[i] * xs[i];
      }
      strided_sources(n.shape, base, step, m.element);
      break;
    }
    case OpKind::kConcat: {
      const std::size_t axis = static_cast<std::size_t>(std::get<ConcatAttributes>(n.attributes).axis);
      std::int64_t outer = 1, inner = 1;
      for (std::size_t i = 0; i < axis; ++i) outer *= n.shape[i];
      for (std::size_t i = axis + 1; i < n.shape.size(); ++i) inner *= n.shape[i];
      std::size_t e = 0;
      for (std::int64_t o = 0; o < outer; ++o)
        for (std::size_t k = 0; k < n.operands.size(); ++k) {
          const std::int64_t len = c.nodes[n.operands[k]].shape[axis] * inner;
          for (std::int64_t j = 0; j < len; ++j, ++e) {
            m.operand[e] = static_cast<std::uint32_t>(k);
            m.element[e] = o * len + j;
          }
        }
      break;
    }
    default:
      throw std::logic_error("gather_map: not a data-movement node");
  }
  return m;
}

LinearMap linear_map(const Circuit& c, std::uint32_t id) {
  const Node& n = c.nodes[id];
  const std::int64_t count = element_count(n.shape);
  LinearMap m;
  m.row_begin.reserve(static_cast<std::size_t>(count) + 1);
  m.row_begin.push_back(0);
  m.constant.assign(static_cast<std::size_t>(count), 0);
  const auto term = [&](std::uint32_t op, std::int64_t e, std::int64_t w) {
    if (w == 0) return;
    m.operand.push_back(op);
    m.element.push_back(e);
    m.weight.push_back(w);
  };
  const auto end_row = [&] { m.row_begin.push_back(m.operand.size()); };
  const Shape& x = c.nodes[n.operands[0]].shape;
  switch (n.kind) {
    case OpKind::kAdd:
    case OpKind::kSub:
      for (std::int64_t e = 0; e < count; ++e) {
        term(0, e, 1);
        term(1, e, n.kind == OpKind::kAdd ? 1 : -1);
        end_row();
      }
      break;
    case OpKind::kAddConstant:
      for (std::int64_t e = 0; e < count; ++e) {
        term(0, e, 1);
        m.constant[static_cast<std::size_t>(e)] =
            n.constant.data[static_cast<std::size_t>(broadcast_source(n.constant.shape, n.shape, e))];
        end_row();
      }
      break;
    case OpKind::kMulConstant:
      for (std::int64_t e = 0; e < count; ++e) {
        term(0, e, n.constant.data[static_cast<std::size_t>(broadcast_source(n.constant.shape, n.shape, e))]);
        end_row();
      }
      break;
    case OpKind::kMatmul: {
      const std::int64_t k = n.constant.shape[0], cols = n.constant.shape[1];
      for (std::int64_t e = 0; e < count; ++e) {
        const std::int64_t row = e / cols, col = e % cols;
        for (std::int64_t i = 0; i < k; ++i) term(0, row * k + i, n.constant.data[static_cast<std::size_t>(i * cols + col)]);
        end_row();
      }
      break;
    }
    case OpKind::kConv2d: {
      const Conv2dOptions& a = std::get<Conv2dOptions>(n.attributes);
      const std::int64_t sh = a.stride_h, sw = a.stride_w, pt = a.pad_top, pl = a.pad_left, dh = a.dilation_h,
                         dw = a.dilation_w, g = a.groups;
      const Shape& w = n.constant.shape;
      const std::int64_t cin = x[1], h = x[2], wd = x[3], cout = w[0], cg = w[1], kh = w[2], kw = w[3];
      const std::int64_t oh = n.shape[2], ow = n.shape[3];
      const std::int64_t out_per_group = cout / g;
      for (std::int64_t b = 0; b < x[0]; ++b)
        for (std::int64_t o = 0; o < cout; ++o) {
          const std::int64_t group = o / out_per_group;
          for (std::int64_t y = 0; y < oh; ++y)
            for (std::int64_t z = 0; z < ow; ++z) {
              for (std::int64_t ci = 0; ci < cg; ++ci) {
                const std::int64_t ch = group * cg + ci;
                for (std::int64_t i = 0; i < kh; ++i) {
                  const std::int64_t iy = y * sh - pt + i * dh;
                  if (iy < 0 || iy >= h) continue;
                  for (std::int64_t j = 0; j < kw; ++j) {
                    const std::int64_t ix = z * sw - pl + j * dw;
                    if (ix < 0 || ix >= wd) continue;
                    term(0, ((b * cin + ch) * h + iy) * wd + ix,
                         n.constant.data[static_cast<std::size_t>(((o * cg + ci) * kh + i) * kw + j)]);
                  }
                }
              }
              end_row();
            }
        }
      break;
    }
    case OpKind::kSum: {
      const std::size_t r = x.size();
      std::vector<bool> reduced(r, false);
      for (const std::int64_t axis : std::get<SumAttributes>(n.attributes).axes) reduced[static_cast<std::size_t>(axis)] = true;
      // Output element -> the kept coordinates; every reduced coordinate is summed.
      Shape kept, red;
      for (std::size_t i = 0; i < r; ++i) (reduced[i] ? red : kept).push_back(x[i]);
      const auto xs = strides_of(x);
      std::int64_t red_count = 1;
      for (auto d : red) red_count *= d;
      for (std::int64_t e = 0; e < count; ++e) {
        std::int64_t base = 0, rem = e;
        for (std::size_t i = r; i-- > 0;) {
          if (reduced[i]) continue;
          std::int64_t dim = x[i];
          base += (rem % dim) * xs[i];
          rem /= dim;
        }
        for (std::int64_t t = 0; t < red_count; ++t) {
          std::int64_t off = 0, rr = t;
          for (std::size_t i = r; i-- > 0;) {
            if (!reduced[i]) continue;
            off += (rr % x[i]) * xs[i];
            rr /= x[i];
          }
          term(0, base + off, 1);
        }
        end_row();
      }
      break;
    }
    default:
      throw std::logic_error("linear_map: not a levelled node");
  }
  return m;
}

}  // namespace veil::circuit::detail
