// The clear executor (clear_executor.hpp): the exact semantics of every operation on small
// examples computed by hand, convolutions against a naive reference written here, and the
// checks on the inputs it is given.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "../common/error_message.hpp"
#include "veil/circuit/clear_executor.hpp"

namespace veil::circuit {

// Readable failures: gtest finds this by argument-dependent lookup.
static void PrintTo(const Tensor& t, std::ostream* os) {
  *os << shape_string(t.shape) << " {";
  for (std::size_t i = 0; i < t.data.size(); ++i) *os << (i ? ", " : "") << t.data[i];
  *os << "}";
}

namespace {

using veil::test_support::error_of;
using veil::test_support::has;

Tensor t2(std::int64_t rows, std::int64_t cols, std::vector<std::int64_t> data) {
  return Tensor({rows, cols}, std::move(data));
}

std::vector<std::int64_t> iota(std::int64_t n, std::int64_t from = 0) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = from + i;
  return v;
}

// Builds a one-input circuit, outputs what `body` returns, runs it on `x`.
Tensor run1(const Shape& shape, std::int64_t lo, std::int64_t hi, const Tensor& x,
            const std::function<Value(CircuitBuilder&, Value)>& body) {
  CircuitBuilder b;
  const Value in = b.input_range(shape, lo, hi, "x");
  b.output(body(b, in), "y");
  const std::vector<Tensor> out = run_clear(std::move(b).build(), {x});
  EXPECT_EQ(out.size(), 1u);
  return out.at(0);
}

// ---------------------------------------------------------------- element-wise

TEST(ClearExecutor, AddAndSubAreElementWise) {
  CircuitBuilder b;
  const Value x = b.input_range({3}, -8, 7, "x");
  const Value y = b.input_range({3}, -8, 7, "y");
  b.output(b.add(x, y), "sum");
  b.output(b.sub(x, y), "diff");
  b.output(b.neg(y), "neg");
  const auto out = run_clear(std::move(b).build(), {Tensor::vector({1, 2, 3}), Tensor::vector({4, -5, 6})});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], Tensor::vector({5, -3, 9}));
  EXPECT_EQ(out[1], Tensor::vector({-3, 7, -3}));
  EXPECT_EQ(out[2], Tensor::vector({-4, 5, -6}));
}

TEST(ClearExecutor, ConstantsBroadcast) {
  const Tensor x = t2(2, 3, {1, 2, 3, 4, 5, 6});
  const auto run = [&](const std::function<Value(CircuitBuilder&, Value)>& f) { return run1({2, 3}, 0, 7, x, f); };
  EXPECT_EQ(run([](CircuitBuilder& b, Value v) { return b.add(v, Tensor::vector({10, 20, 30})); }),
            t2(2, 3, {11, 22, 33, 14, 25, 36}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value v) { return b.add(v, Tensor({2, 1}, {100, 200})); }),
            t2(2, 3, {101, 102, 103, 204, 205, 206}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value v) { return b.add(v, -1); }), t2(2, 3, {0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value v) { return b.mul(v, Tensor::vector({-1, 0, 2})); }),
            t2(2, 3, {-1, 0, 6, -4, 0, 12}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value v) { return b.mul(v, Tensor({2, 1}, {3, -2})); }),
            t2(2, 3, {3, 6, 9, -8, -10, -12}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value v) { return b.mul(v, Tensor({1, 3}, {1, 10, 100})); }),
            t2(2, 3, {1, 20, 300, 4, 50, 600}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value v) { return b.mul(v, 7); }), t2(2, 3, {7, 14, 21, 28, 35, 42}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value v) { return b.add(v, t2(2, 3, {6, 5, 4, 3, 2, 1})); }), Tensor::filled({2, 3}, 7));
}

// ---------------------------------------------------------------- matmul and dot

TEST(ClearExecutor, Matmul) {
  const Tensor w = t2(3, 2, {1, -1, 0, 2, 3, 1});
  // [1 2 3] -> [1 + 9, -1 + 4 + 3] = [10, 6]; [4 5 6] -> [4 + 18, -4 + 10 + 6] = [22, 12].
  EXPECT_EQ(run1({2, 3}, 0, 7, t2(2, 3, {1, 2, 3, 4, 5, 6}), [&](CircuitBuilder& b, Value v) { return b.matmul(v, w); }),
            t2(2, 2, {10, 6, 22, 12}));
  // Batched: leading dimensions are kept.
  EXPECT_EQ(run1({2, 1, 3}, 0, 7, Tensor({2, 1, 3}, {1, 2, 3, 4, 5, 6}),
                 [&](CircuitBuilder& b, Value v) { return b.matmul(v, w); }),
            Tensor({2, 1, 2}, {10, 6, 22, 12}));
  // A vector.
  EXPECT_EQ(run1({3}, -4, 3, Tensor::vector({-1, 2, -3}), [&](CircuitBuilder& b, Value v) { return b.matmul(v, w); }),
            Tensor::vector({-1 - 9, 1 + 4 - 3}));
  EXPECT_EQ(run1({3}, 0, 7, Tensor::vector({1, 2, 3}), [](CircuitBuilder& b, Value v) { return b.dot(v, {4, 5, 6}); }),
            Tensor::scalar(32));
}

TEST(ClearExecutor, LargeValuesAreExact) {
  // 2^40 * (2^20 - 1) + (-2^40) * 2^19 fits comfortably; every partial product is exact.
  const std::int64_t p40 = std::int64_t{1} << 40;
  const Tensor y = run1({2}, 0, (1 << 20) - 1, Tensor::vector({(1 << 20) - 1, 1 << 19}),
                        [&](CircuitBuilder& b, Value v) { return b.dot(v, {p40, -p40}); });
  EXPECT_EQ(y, Tensor::scalar(p40 * ((1 << 20) - 1) - p40 * (1 << 19)));
}

// ---------------------------------------------------------------- conv2d

// A naive reference written independently of the executor: zero-pad the input explicitly,
// then correlate every output position with the dilated kernel of its group.
Tensor naive_conv2d(const Tensor& x, const Tensor& w, const Conv2dOptions& o) {
  const std::int64_t B = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const std::int64_t O = w.shape[0], Cg = w.shape[1], KH = w.shape[2], KW = w.shape[3];
  const std::int64_t PH = H + o.pad_top + o.pad_bottom, PW = W + o.pad_left + o.pad_right;
  std::vector<std::int64_t> padded(static_cast<std::size_t>(B * C * PH * PW), 0);
  const auto P = [&](std::int64_t b, std::int64_t c, std::int64_t i, std::int64_t j) -> std::int64_t& {
    return padded[static_cast<std::size_t>(((b * C + c) * PH + i) * PW + j)];
  };
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t i = 0; i < H; ++i)
        for (std::int64_t j = 0; j < W; ++j)
          P(b, c, i + o.pad_top, j + o.pad_left) = x.data[static_cast<std::size_t>(((b * C + c) * H + i) * W + j)];
  const std::int64_t span_h = (KH - 1) * o.dilation_h + 1, span_w = (KW - 1) * o.dilation_w + 1;
  std::int64_t OH = 0, OW = 0;
  for (std::int64_t i = 0; i + span_h <= PH; i += o.stride_h) ++OH;
  for (std::int64_t j = 0; j + span_w <= PW; j += o.stride_w) ++OW;
  const std::int64_t out_per_group = O / o.groups;
  std::vector<std::int64_t> y;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t oc = 0; oc < O; ++oc)
      for (std::int64_t oy = 0; oy < OH; ++oy)
        for (std::int64_t ox = 0; ox < OW; ++ox) {
          std::int64_t acc = 0;
          const std::int64_t first_channel = (oc / out_per_group) * Cg;
          for (std::int64_t k = 0; k < Cg; ++k)
            for (std::int64_t i = 0; i < KH; ++i)
              for (std::int64_t j = 0; j < KW; ++j)
                acc += P(b, first_channel + k, oy * o.stride_h + i * o.dilation_h, ox * o.stride_w + j * o.dilation_w) *
                       w.data[static_cast<std::size_t>(((oc * Cg + k) * KH + i) * KW + j)];
          y.push_back(acc);
        }
  return Tensor({B, O, OH, OW}, std::move(y));
}

TEST(ClearExecutor, Conv2dByHand) {
  const Tensor x({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  const Tensor w({1, 1, 2, 2}, {1, 2, 3, 4});
  // Valid positions: 1 + 4 + 12 + 20, 2 + 6 + 15 + 24, 4 + 10 + 21 + 32, 5 + 12 + 24 + 36.
  EXPECT_EQ(run1({1, 1, 3, 3}, 0, 15, x, [&](CircuitBuilder& b, Value v) { return b.conv2d(v, w); }),
            Tensor({1, 1, 2, 2}, {37, 47, 67, 77}));
  // Padding 1 all round, stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1) of the input:
  // 4*1; 3*2 + 4*3; 2*4 + 4*7; 5 + 12 + 24 + 36.
  Conv2dOptions o;
  o.pad_top = o.pad_left = o.pad_bottom = o.pad_right = 1;
  o.stride_h = o.stride_w = 2;
  EXPECT_EQ(run1({1, 1, 3, 3}, 0, 15, x, [&](CircuitBuilder& b, Value v) { return b.conv2d(v, w, o); }),
            Tensor({1, 1, 2, 2}, {4, 18, 36, 77}));
  // Groups: channel 0 times 2, channel 1 times -1.
  const Tensor x2({1, 2, 2, 2}, {1, 2, 3, 4, 10, 20, 30, 40});
  Conv2dOptions g;
  g.groups = 2;
  EXPECT_EQ(run1({1, 2, 2, 2}, 0, 63, x2,
                 [&](CircuitBuilder& b, Value v) { return b.conv2d(v, Tensor({2, 1, 1, 1}, {2, -1}), g); }),
            Tensor({1, 2, 2, 2}, {2, 4, 6, 8, -10, -20, -30, -40}));
  // Without groups, a 1x1 convolution mixes channels: c0 + c1 and c0 - c1.
  EXPECT_EQ(run1({1, 2, 2, 2}, 0, 63, x2,
                 [&](CircuitBuilder& b, Value v) { return b.conv2d(v, Tensor({2, 2, 1, 1}, {1, 1, 1, -1})); }),
            Tensor({1, 2, 2, 2}, {11, 22, 33, 44, -9, -18, -27, -36}));
}

TEST(ClearExecutor, Conv2dMatchesANaiveLoop) {
  std::mt19937_64 rng(20240611);
  const auto uniform = [&](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
  };
  struct Case {
    Shape x, w;
    Conv2dOptions o;
  };
  const auto opts = [](std::int64_t sh, std::int64_t sw, std::int64_t pt, std::int64_t pl, std::int64_t pb,
                       std::int64_t pr, std::int64_t dh, std::int64_t dw, std::int64_t g) {
    Conv2dOptions o;
    o.stride_h = sh, o.stride_w = sw, o.pad_top = pt, o.pad_left = pl, o.pad_bottom = pb, o.pad_right = pr;
    o.dilation_h = dh, o.dilation_w = dw, o.groups = g;
    return o;
  };
  const std::vector<Case> cases = {
      {{2, 3, 5, 6}, {4, 3, 3, 3}, opts(1, 1, 0, 0, 0, 0, 1, 1, 1)},
      {{2, 3, 5, 6}, {4, 3, 3, 2}, opts(2, 2, 0, 0, 0, 0, 1, 1, 1)},
      {{1, 3, 5, 6}, {2, 3, 3, 3}, opts(1, 1, 1, 1, 1, 1, 1, 1, 1)},
      {{1, 2, 5, 6}, {3, 2, 2, 3}, opts(1, 1, 0, 2, 1, 0, 1, 1, 1)},
      {{1, 2, 7, 6}, {2, 2, 3, 2}, opts(1, 2, 0, 0, 0, 0, 2, 3, 1)},
      {{2, 4, 5, 5}, {6, 2, 3, 3}, opts(1, 1, 1, 1, 1, 1, 1, 1, 2)},
      {{1, 4, 6, 5}, {8, 1, 2, 2}, opts(2, 1, 0, 1, 1, 0, 1, 1, 4)},
      {{1, 4, 7, 8}, {4, 2, 3, 2}, opts(2, 3, 1, 0, 2, 1, 1, 2, 2)},
      {{1, 1, 4, 4}, {1, 1, 5, 5}, opts(3, 3, 2, 2, 2, 2, 1, 1, 1)},
  };
  for (std::size_t k = 0; k < cases.size(); ++k) {
    SCOPED_TRACE("case " + std::to_string(k));
    const Case& c = cases[k];
    Tensor x = Tensor::filled(c.x, 0), w = Tensor::filled(c.w, 0);
    for (auto& v : x.data) v = uniform(-8, 7);
    for (auto& v : w.data) v = uniform(-3, 3);
    const Tensor want = naive_conv2d(x, w, c.o);
    const Tensor got = run1(c.x, -8, 7, x, [&](CircuitBuilder& b, Value v) { return b.conv2d(v, w, c.o); });
    EXPECT_EQ(got, want);
  }
}

// ---------------------------------------------------------------- sum

TEST(ClearExecutor, Sum) {
  const Tensor x = t2(2, 3, {1, 2, 3, 4, 5, 6});
  const auto run = [&](const std::function<Value(CircuitBuilder&, Value)>& f) { return run1({2, 3}, 0, 7, x, f); };
  EXPECT_EQ(run([](CircuitBuilder& b, Value v) { return b.sum(v, {0}); }), Tensor::vector({5, 7, 9}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value v) { return b.sum(v, {1}); }), Tensor::vector({6, 15}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value v) { return b.sum(v, {-1}, true); }), t2(2, 1, {6, 15}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value v) { return b.sum(v, {0}, true); }), t2(1, 3, {5, 7, 9}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value v) { return b.sum_all(v); }), Tensor::scalar(21));
  // x[i][j][k] = 12i + 4j + k; over i and k: 4 * 12 + 2 * 4 * 4j + 2 * (0 + 1 + 2 + 3) = 60 + 32j.
  const Tensor x3({2, 3, 4}, iota(24));
  EXPECT_EQ(run1({2, 3, 4}, 0, 23, x3, [](CircuitBuilder& b, Value v) { return b.sum(v, {0, 2}); }),
            Tensor::vector({60, 92, 124}));
  EXPECT_EQ(run1({2, 3, 4}, 0, 23, x3, [](CircuitBuilder& b, Value v) { return b.sum(v, {2, 0}, true); }),
            Tensor({1, 3, 1}, {60, 92, 124}));
  // Over j: 3 * 12i + 4 * (0 + 1 + 2) + 3k = 36i + 12 + 3k.
  EXPECT_EQ(run1({2, 3, 4}, 0, 23, x3, [](CircuitBuilder& b, Value v) { return b.sum(v, {1}); }),
            t2(2, 4, {12, 15, 18, 21, 48, 51, 54, 57}));
}

// ---------------------------------------------------------------- data movement

TEST(ClearExecutor, ReshapeAndFlattenKeepRowMajorOrder) {
  const Tensor x({2, 3, 4}, iota(24, -5));
  EXPECT_EQ(run1({2, 3, 4}, -5, 18, x, [](CircuitBuilder& b, Value v) { return b.reshape(v, {4, -1}); }),
            Tensor({4, 6}, iota(24, -5)));
  EXPECT_EQ(run1({2, 3, 4}, -5, 18, x, [](CircuitBuilder& b, Value v) { return b.flatten(v, 2); }),
            Tensor({6, 4}, iota(24, -5)));
}

TEST(ClearExecutor, Transpose) {
  EXPECT_EQ(run1({2, 3}, 0, 7, t2(2, 3, {1, 2, 3, 4, 5, 6}), [](CircuitBuilder& b, Value v) { return b.transpose(v, {1, 0}); }),
            t2(3, 2, {1, 4, 2, 5, 3, 6}));
  // perm {2, 0, 1}: out[a][b][c] = x[b][c][a] = 12b + 4c + a.
  const Tensor got =
      run1({2, 3, 4}, 0, 23, Tensor({2, 3, 4}, iota(24)), [](CircuitBuilder& b, Value v) { return b.transpose(v, {2, 0, 1}); });
  std::vector<std::int64_t> want;
  for (std::int64_t a = 0; a < 4; ++a)
    for (std::int64_t bb = 0; bb < 2; ++bb)
      for (std::int64_t c = 0; c < 3; ++c) want.push_back(12 * bb + 4 * c + a);
  EXPECT_EQ(got, Tensor({4, 2, 3}, want));
}

TEST(ClearExecutor, Slice) {
  const Tensor v = Tensor::vector(iota(10));
  const auto run = [&](const std::function<Value(CircuitBuilder&, Value)>& f) { return run1({10}, 0, 9, v, f); };
  EXPECT_EQ(run([](CircuitBuilder& b, Value x) { return b.slice(x, {2}, {8}, {3}); }), Tensor::vector({2, 5}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value x) { return b.slice(x, {-3}, {100}); }), Tensor::vector({7, 8, 9}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value x) { return b.slice(x, {-4}, {-1}); }), Tensor::vector({6, 7, 8}));
  EXPECT_EQ(run([](CircuitBuilder& b, Value x) { return b.slice(x, {0}, {10}, {4}); }), Tensor::vector({0, 4, 8}));
  // Rows 1..2, columns 1 and 3 of [[0..3], [4..7], [8..11]].
  EXPECT_EQ(run1({3, 4}, 0, 11, t2(3, 4, iota(12)),
                 [](CircuitBuilder& b, Value x) { return b.slice(x, {1, -3}, {3, 4}, {1, 2}); }),
            t2(2, 2, {5, 7, 9, 11}));
}

TEST(ClearExecutor, Concat) {
  CircuitBuilder b;
  const Value a = b.input_range({2, 2}, 0, 9, "a");
  const Value c = b.input_range({2, 1}, 0, 9, "c");
  const Value d = b.input_range({1, 2}, 0, 9, "d");
  b.output(b.concat({a, c}, 1));
  b.output(b.concat({a, d}, 0));
  b.output(b.concat({c, a, c}, -1));
  const auto out = run_clear(std::move(b).build(), {t2(2, 2, {1, 2, 3, 4}), t2(2, 1, {5, 6}), t2(1, 2, {7, 8})});
  EXPECT_EQ(out[0], t2(2, 3, {1, 2, 5, 3, 4, 6}));
  EXPECT_EQ(out[1], t2(3, 2, {1, 2, 3, 4, 7, 8}));
  EXPECT_EQ(out[2], t2(2, 4, {5, 1, 2, 5, 6, 3, 4, 6}));
}

TEST(ClearExecutor, Broadcast) {
  EXPECT_EQ(run1({3}, 0, 7, Tensor::vector({1, 2, 3}), [](CircuitBuilder& b, Value v) { return b.broadcast(v, {2, 3}); }),
            t2(2, 3, {1, 2, 3, 1, 2, 3}));
  EXPECT_EQ(run1({2, 1}, 0, 7, t2(2, 1, {1, 2}), [](CircuitBuilder& b, Value v) { return b.broadcast(v, {2, 3}); }),
            t2(2, 3, {1, 1, 1, 2, 2, 2}));
  EXPECT_EQ(run1({}, 0, 7, Tensor::scalar(5), [](CircuitBuilder& b, Value v) { return b.broadcast(v, {2}); }),
            Tensor::vector({5, 5}));
  EXPECT_EQ(run1({2, 1}, 0, 7, t2(2, 1, {1, 2}), [](CircuitBuilder& b, Value v) { return b.broadcast(v, {2, 2, 2}); }),
            Tensor({2, 2, 2}, {1, 1, 2, 2, 1, 1, 2, 2}));
}

// ---------------------------------------------------------------- lookups

TEST(ClearExecutor, LookupReadsTheTableAtTheValue) {
  const Table t{-2, 0, {10, 20, 30, 40, 50, 60}};
  EXPECT_EQ(run1({3}, -2, 3, Tensor::vector({-2, 0, 3}), [&](CircuitBuilder& b, Value v) { return b.lookup(v, t); }),
            Tensor::vector({10, 30, 60}));
  // A table in steps of 4 read by multiples of 4.
  const Table s{0, 2, {7, 8, 9, 10}};
  EXPECT_EQ(run1({2}, 0, 3, Tensor::vector({1, 3}), [&](CircuitBuilder& b, Value v) { return b.lookup(b.mul(v, 4), s); }),
            Tensor::vector({8, 10}));
  // From a function.
  EXPECT_EQ(run1({4}, -3, 3, Tensor::vector({-3, -1, 0, 2}),
                 [](CircuitBuilder& b, Value v) { return b.lookup(v, [](std::int64_t z) { return z * z - 1; }); }),
            Tensor::vector({8, 0, -1, 3}));
}

TEST(ClearExecutor, PerElementAndPerChannelLookups) {
  const Table plus100{0, 0, {100, 101, 102, 103}};
  const Table negate{0, 0, {0, -1, -2, -3}};
  const Table square{0, 0, {0, 1, 4, 9}};
  EXPECT_EQ(run1({2, 2}, 0, 3, t2(2, 2, {1, 2, 3, 0}),
                 [&](CircuitBuilder& b, Value v) { return b.lookup_per_element(v, {plus100, negate}, {0, 1, 1, 0}); }),
            t2(2, 2, {101, -2, -3, 100}));
  // Channels along axis 0 of [2, 3].
  EXPECT_EQ(run1({2, 3}, 0, 3, t2(2, 3, {1, 2, 3, 1, 2, 3}),
                 [&](CircuitBuilder& b, Value v) { return b.lookup_per_channel(v, 0, {plus100, negate}); }),
            t2(2, 3, {101, 102, 103, -1, -2, -3}));
  // Channels along axis 1 of [2, 3].
  EXPECT_EQ(run1({2, 3}, 0, 3, t2(2, 3, {1, 2, 3, 3, 2, 1}),
                 [&](CircuitBuilder& b, Value v) { return b.lookup_per_channel(v, 1, {plus100, negate, square}); }),
            t2(2, 3, {101, -2, 9, 103, -2, 1}));
  // NCHW channels of a [1, 2, 1, 2] tensor, from functions.
  EXPECT_EQ(run1({1, 2, 1, 2}, 0, 3, Tensor({1, 2, 1, 2}, {0, 3, 2, 1}),
                 [&](CircuitBuilder& b, Value v) {
                   return b.lookup_per_channel(v, 1,
                                               std::vector<TableFunction>{[](std::int64_t z) { return 2 * z; },
                                                                          [](std::int64_t z) { return z - 5; }});
                 }),
            Tensor({1, 2, 1, 2}, {0, 6, -3, -4}));
}

TEST(ClearExecutor, TableValue) {
  const Table t{-4, 1, {7, 8, 9}};  // -4 -> 7, -2 -> 8, 0 -> 9
  EXPECT_EQ(table_value(t, -4), 7);
  EXPECT_EQ(table_value(t, -2), 8);
  EXPECT_EQ(table_value(t, 0), 9);
  EXPECT_THROW(table_value(t, -3), std::invalid_argument);
  EXPECT_THROW(table_value(t, -6), std::invalid_argument);
  EXPECT_THROW(table_value(t, 2), std::invalid_argument);
}

// ---------------------------------------------------------------- round_bits

// floor(v / 2^b) * 2^b, written with division on exact multiples only.
std::int64_t floor_multiple(std::int64_t v, unsigned b) {
  const std::int64_t m = std::int64_t{1} << b;
  std::int64_t r = v - ((v % m) + m) % m;
  return r;
}

TEST(ClearExecutor, RoundBitsByHand) {
  const Tensor x = Tensor::vector({-8, -7, -6, -5, -1, 0, 1, 5, 6, 7});
  const auto run = [&](RoundingMode mode) {
    CircuitBuilder b;
    const Value v = b.input({10}, 4, true, "x");
    const Value r = b.round_bits(v, 2, mode, "r");
    b.output(r, "y");
    return run_clear_all_nodes(std::move(b).build(), {x})[r.id];
  };
  EXPECT_EQ(run(RoundingMode::kFloor), Tensor::vector({-8, -8, -8, -8, -4, 0, 0, 4, 4, 4}));
  EXPECT_EQ(run(RoundingMode::kNearest), Tensor::vector({-8, -8, -4, -4, 0, 0, 0, 4, 8, 8}));
  EXPECT_EQ(run(RoundingMode::kApproximate), Tensor::vector({-8, -8, -4, -4, 0, 0, 0, 4, 8, 8}));
}

TEST(ClearExecutor, RoundBitsAgainstTheFormulaOnSignedRanges) {
  std::vector<std::int64_t> values = iota(81, -40);
  for (unsigned bits = 1; bits <= 5; ++bits)
    for (RoundingMode mode : {RoundingMode::kFloor, RoundingMode::kNearest, RoundingMode::kApproximate}) {
      SCOPED_TRACE("bits " + std::to_string(bits) + " mode " + std::to_string(static_cast<int>(mode)));
      CircuitBuilder b;
      const Value v = b.input_range({81}, -40, 40, "x");
      const Value r = b.round_bits(v, bits, mode);
      b.output(b.lookup(r, [](std::int64_t z) { return z; }));
      const std::vector<Tensor> all = run_clear_all_nodes(std::move(b).build(), {Tensor::vector(values)});
      const std::int64_t half = std::int64_t{1} << (bits - 1);
      for (std::size_t i = 0; i < values.size(); ++i) {
        const std::int64_t want =
            mode == RoundingMode::kFloor ? floor_multiple(values[i], bits) : floor_multiple(values[i] + half, bits);
        ASSERT_EQ(all[r.id].data[i], want) << "x = " << values[i];
      }
      // The lookup reads the rounded value.
      EXPECT_EQ(all.back(), all[r.id]);
    }
}

// ---------------------------------------------------------------- inputs

TEST(ClearExecutor, InputCountShapeAndRangeAreChecked) {
  CircuitBuilder b;
  const Value x = b.input({3}, 4, false, "x");
  const Value y = b.input_range({2}, -2, 3, "y");
  b.output(b.add(b.sum_all(x), b.sum_all(y)), "s");
  const Circuit c = std::move(b).build();
  const Tensor good_x = Tensor::vector({1, 2, 15}), good_y = Tensor::vector({-2, 3});
  EXPECT_EQ(run_clear(c, {good_x, good_y}), std::vector<Tensor>{Tensor::scalar(19)});

  EXPECT_TRUE(has(error_of([&] { run_clear(c, {good_x}); }), "1"));
  EXPECT_THROW(run_clear(c, {}), std::invalid_argument);
  EXPECT_THROW(run_clear(c, {good_x, good_y, good_y}), std::invalid_argument);
  const std::string shape = error_of([&] { run_clear(c, {Tensor::vector({1, 2}), good_y}); });
  EXPECT_TRUE(has(shape, "'x'")) << shape;
  EXPECT_TRUE(has(shape, "[2]")) << shape;
  EXPECT_TRUE(has(error_of([&] { run_clear(c, {good_x, Tensor({1, 2}, {0, 0})}); }), "'y'"));
  // Values outside the declared range, by width or by declaration.
  const std::string over = error_of([&] { run_clear(c, {Tensor::vector({1, 16, 0}), good_y}); });
  EXPECT_TRUE(has(over, "'x'") && has(over, "16")) << over;
  EXPECT_TRUE(has(error_of([&] { run_clear(c, {Tensor::vector({-1, 0, 0}), good_y}); }), "'x'"));
  const std::string under = error_of([&] { run_clear(c, {good_x, Tensor::vector({-3, 0})}); });
  EXPECT_TRUE(has(under, "'y'") && has(under, "-3")) << under;
  EXPECT_TRUE(has(error_of([&] { run_clear(c, {good_x, Tensor::vector({0, 4})}); }), "'y'"));
  // A tensor whose data does not match its own shape.
  Tensor bad = good_x;
  bad.data.push_back(0);
  EXPECT_THROW(run_clear(c, {bad, good_y}), std::invalid_argument);
  EXPECT_THROW(run_clear_all_nodes(c, {good_x}), std::invalid_argument);
}

TEST(ClearExecutor, AllNodesGivesEveryValue) {
  CircuitBuilder b;
  const Value x = b.input({2}, 3, false, "x");
  const Value m = b.mul(x, 3);
  const Value s = b.sum_all(m);
  b.output(s);
  const auto all = run_clear_all_nodes(std::move(b).build(), {Tensor::vector({2, 5})});
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[x.id], Tensor::vector({2, 5}));
  EXPECT_EQ(all[m.id], Tensor::vector({6, 15}));
  EXPECT_EQ(all[s.id], Tensor::scalar(21));
}

TEST(ClearExecutor, InputsAreMatchedInCreationOrder) {
  CircuitBuilder b;
  const Value p = b.input({1}, 4, false, "p");
  const Value q = b.input({1}, 4, false, "q");
  b.output(b.sub(q, p), "q-p");
  b.output(p, "p");
  const auto out = run_clear(std::move(b).build(), {Tensor::vector({3}), Tensor::vector({10})});
  EXPECT_EQ(out[0], Tensor::vector({7}));
  EXPECT_EQ(out[1], Tensor::vector({3}));
}

}  // namespace
}  // namespace veil::circuit
