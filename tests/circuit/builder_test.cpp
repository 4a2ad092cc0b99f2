// CircuitBuilder (circuit.hpp): shape inference and its errors for every operation, the
// approximate-rounding read rule, interval range inference, the +-2^62 value limit, and
// validate_circuit on tampered circuits. Every expected shape and range is worked out by
// hand in the comments beside it.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include <unistd.h>

#include "../common/error_message.hpp"
#include "veil/circuit/circuit.hpp"
#include "veil/circuit/serialization.hpp"

namespace veil::circuit {
namespace {

using veil::test_support::error_of;

constexpr std::int64_t k2p62 = std::int64_t{1} << 62;

::testing::AssertionResult mentions(const std::string& message, std::initializer_list<const char*> parts) {
  for (const char* p : parts)
    if (message.find(p) == std::string::npos)
      return ::testing::AssertionFailure() << "message \"" << message << "\" does not mention \"" << p << "\"";
  return ::testing::AssertionSuccess();
}

// Runs `f` in a child process (killed after 1 s) and expects it to throw
// std::invalid_argument: for inputs that have made the builder hang or crash.
void expect_refused_in_child(const std::function<void()>& f) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        alarm(1);
        try {
          f();
        } catch (const std::invalid_argument&) {
          std::_Exit(0);
        } catch (...) {
          std::_Exit(2);
        }
        std::_Exit(1);
      },
      ::testing::ExitedWithCode(0), "");
}

ValueRange vr(std::int64_t lo, std::int64_t hi, unsigned tz = 0) { return ValueRange{lo, hi, tz}; }

// A node's attributes in their stored form (serialization.hpp), which the assertions below
// spell out.
std::vector<std::int64_t> stored(const Node& n) { return encode_attributes(n.attributes); }

// Rewrites node `id`'s attributes through their stored form, as a forged file would;
// decoding refuses what the typed form cannot hold (a length or flag out of place).
void tamper_attributes(Circuit& c, std::uint32_t id, const std::function<void(std::vector<std::int64_t>&)>& f) {
  std::vector<std::int64_t> v = stored(c.nodes[id]);
  f(v);
  c.nodes[id].attributes = decode_attributes(c.nodes[id].kind, v, c.describe_node(id));
}

Table table(std::int64_t domain_min, unsigned shift, std::vector<std::int64_t> values) {
  return Table{domain_min, shift, std::move(values)};
}

// Identity table over [lo, hi].
Table identity(std::int64_t lo, std::int64_t hi) {
  Table t{lo, 0, {}};
  for (std::int64_t v = lo; v <= hi; ++v) t.values.push_back(v);
  return t;
}

// ---------------------------------------------------------------- inputs

TEST(CircuitBuilder, InputsDeclareShapeWidthAndRange) {
  CircuitBuilder b;
  const Value x = b.input({2, 3}, 4, false, "x");
  const Value s = b.input({}, 4, true, "s");
  const Value r = b.input_range({4}, -5, 9, "r");
  const Value u = b.input_range({1}, 0, 100, "u");
  EXPECT_EQ(b.shape(x), (Shape{2, 3}));
  EXPECT_EQ(b.shape(s), Shape{});
  EXPECT_EQ(b.range(x), vr(0, 15));
  EXPECT_EQ(b.range(s), vr(-8, 7));
  EXPECT_EQ(b.range(r), vr(-5, 9));
  EXPECT_EQ(b.range(u), vr(0, 100));
  // Attributes {bit_width, is_signed, lo, hi}: [-5, 9] needs 5 signed bits, [0, 100] 7 unsigned.
  EXPECT_EQ(stored(b.peek().nodes[r.id]), (std::vector<std::int64_t>{5, 1, -5, 9}));
  EXPECT_EQ(stored(b.peek().nodes[u.id]), (std::vector<std::int64_t>{7, 0, 0, 100}));
  EXPECT_EQ(stored(b.peek().nodes[x.id]), (std::vector<std::int64_t>{4, 0, 0, 15}));
  EXPECT_EQ(b.peek().nodes[x.id].kind, OpKind::kInput);
  EXPECT_EQ(b.peek().nodes[x.id].name, "x");
  EXPECT_EQ(b.peek().inputs(), (std::vector<std::uint32_t>{0, 1, 2, 3}));
}

TEST(CircuitBuilder, InputErrors) {
  CircuitBuilder b;
  EXPECT_TRUE(mentions(error_of([&] { b.input({2}, 0, false, "zero"); }), {"input", "zero", "bit width"}));
  EXPECT_TRUE(mentions(error_of([&] { b.input({2}, 63, true, "wide"); }), {"input", "wide"}));
  EXPECT_TRUE(mentions(error_of([&] { b.input({2, 0}, 4, false, "empty"); }), {"input", "empty", "[2, 0]"}));
  EXPECT_TRUE(mentions(error_of([&] { b.input({-1}, 4, false, "neg"); }), {"input", "neg"}));
  EXPECT_TRUE(mentions(error_of([&] { b.input(Shape(9, 1), 4, false, "rank9"); }), {"input", "rank9"}));
  EXPECT_TRUE(mentions(error_of([&] { b.input({1 << 13, 1 << 12}, 4, false, "huge"); }), {"input", "huge"}));
  EXPECT_TRUE(mentions(error_of([&] { b.input_range({2}, 3, 2, "backwards"); }), {"input", "backwards"}));
  // The widest input is 62 bits: [0, 2^62 - 1] or [-2^61, 2^61 - 1].
  const Value w = b.input({1}, 62, false, "w62");
  EXPECT_EQ(b.range(w), vr(0, k2p62 - 1));
  const Value ws = b.input({1}, 62, true, "s62");
  EXPECT_EQ(b.range(ws), vr(-(k2p62 / 2), k2p62 / 2 - 1));
  EXPECT_EQ(b.peek().nodes.size(), 2u);
}

// Ranges whose width would be 63 bits or more cannot be declared. Each call runs in a child
// process under an alarm: a hang or a crash there fails the test instead of the binary.
TEST(CircuitBuilder, InputRangesNeedingMoreThan62BitsAreRefused) {
  expect_refused_in_child([] { CircuitBuilder().input_range({1}, 0, k2p62, "a"); });
  expect_refused_in_child([] { CircuitBuilder().input_range({1}, -1, k2p62, "b"); });
  expect_refused_in_child([] { CircuitBuilder().input_range({1}, -k2p62, k2p62, "c"); });
  expect_refused_in_child([] { CircuitBuilder().input_range({1}, -k2p62, 0, "d"); });
  CircuitBuilder b;
  error_of([&] { b.input_range({1}, 0, k2p62 + 1, "e"); });
  error_of([&] { b.input_range({1}, -k2p62 - 1, 0, "f"); });
  EXPECT_TRUE(b.peek().nodes.empty());
  const Value ok = b.input_range({1}, -(k2p62 / 2), k2p62 / 2 - 1, "ok");
  EXPECT_EQ(std::get<InputAttributes>(b.peek().nodes[ok.id].attributes).bit_width, 62);
  const Value ok2 = b.input_range({1}, 0, k2p62 - 1, "ok2");
  EXPECT_EQ(std::get<InputAttributes>(b.peek().nodes[ok2.id].attributes).bit_width, 62);
}

// ---------------------------------------------------------------- element-wise

TEST(CircuitBuilder, AddAndSubNeedEqualShapes) {
  CircuitBuilder b;
  const Value x = b.input({2, 3}, 4, false, "x");  // [0, 15]
  const Value y = b.input({2, 3}, 4, true, "y");   // [-8, 7]
  const Value z = b.input({3, 2}, 4, false, "z");
  const Value s = b.add(x, y);
  const Value d = b.sub(x, y);
  EXPECT_EQ(b.shape(s), (Shape{2, 3}));
  EXPECT_EQ(b.range(s), vr(-8, 22));  // [0 + -8, 15 + 7]
  EXPECT_EQ(b.range(d), vr(-7, 23));  // [0 - 7, 15 + 8]
  EXPECT_EQ(b.peek().nodes[s.id].kind, OpKind::kAdd);
  EXPECT_EQ(b.peek().nodes[d.id].kind, OpKind::kSub);
  EXPECT_EQ(b.peek().nodes[d.id].operands, (std::vector<std::uint32_t>{x.id, y.id}));
  EXPECT_TRUE(mentions(error_of([&] { b.add(x, z, "ab"); }), {"add 'ab'", "[2, 3]", "[3, 2]"}));
  EXPECT_TRUE(mentions(error_of([&] { b.sub(z, x, "cd"); }), {"sub 'cd'", "[3, 2]", "[2, 3]"}));
  EXPECT_TRUE(mentions(error_of([&] { b.add(x, Value{99}); }), {"add"}));
  const Value n = b.neg(x);
  EXPECT_EQ(b.range(n), vr(-15, 0));
}

TEST(CircuitBuilder, ConstantsBroadcastToTheOperandNeverTheReverse) {
  CircuitBuilder b;
  const Value x = b.input({2, 3}, 4, false, "x");  // [0, 15]
  EXPECT_EQ(b.shape(b.add(x, 7)), (Shape{2, 3}));
  EXPECT_EQ(b.shape(b.add(x, Tensor::vector({1, 2, 3}))), (Shape{2, 3}));
  EXPECT_EQ(b.shape(b.mul(x, Tensor({2, 1}, {1, 2}))), (Shape{2, 3}));
  EXPECT_EQ(b.shape(b.mul(x, Tensor({2, 3}, {1, 2, 3, 4, 5, 6}))), (Shape{2, 3}));
  EXPECT_EQ(b.shape(b.mul(x, Tensor({1, 1}, {3}))), (Shape{2, 3}));
  EXPECT_TRUE(mentions(error_of([&] { b.add(x, Tensor::vector({1, 2}), "bias"); }), {"add_constant 'bias'", "[2]", "[2, 3]"}));
  EXPECT_TRUE(mentions(error_of([&] { b.add(x, Tensor({1, 2, 3}, {1, 2, 3, 4, 5, 6}), "b3"); }), {"add_constant 'b3'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.mul(x, Tensor({3, 3}, std::vector<std::int64_t>(9, 1)), "scale"); }),
                       {"mul_constant 'scale'", "[3, 3]"}));
  const Value v = b.input({3}, 2, false, "v");
  EXPECT_TRUE(mentions(error_of([&] { b.mul(v, Tensor({2, 3}, {1, 2, 3, 4, 5, 6}), "grow"); }), {"mul_constant 'grow'"}));
}

TEST(CircuitBuilder, ConstantRangesAreIntervalArithmetic) {
  CircuitBuilder b;
  const Value x = b.input({3}, 4, false, "x");  // [0, 15]
  const Value y = b.input({3}, 4, true, "y");   // [-8, 7]
  EXPECT_EQ(b.range(b.add(x, Tensor::vector({-3, 5, 2}))), vr(-3, 20));
  // {-2, 3} * [-8, 7]: corners 16, -14, -24, 21.
  EXPECT_EQ(b.range(b.mul(y, Tensor::vector({-2, 3, 3}))), vr(-24, 21));
  EXPECT_EQ(b.range(b.mul(x, -3)), vr(-45, 0));
  EXPECT_EQ(b.range(b.mul(y, 0)).lo, 0);
  EXPECT_EQ(b.range(b.mul(y, 0)).hi, 0);
}

TEST(CircuitBuilder, TrailingZerosFollowMultiplesOfPowersOfTwo) {
  CircuitBuilder b;
  const Value x = b.input({3}, 4, false, "x");        // [0, 15]
  const Value m = b.mul(x, 4);                          // multiples of 4 in [0, 60]
  EXPECT_EQ(b.range(m), vr(0, 60, 2));
  EXPECT_EQ(b.range(b.add(m, 2)), vr(2, 62, 1));       // + 2 keeps one zero bit
  EXPECT_EQ(b.range(b.add(m, 8)), vr(8, 68, 2));
  EXPECT_EQ(b.range(b.add(m, m)), vr(0, 120, 2));
  EXPECT_EQ(b.range(b.add(m, x)), vr(0, 75, 0));
  EXPECT_EQ(b.range(b.mul(m, 6)), vr(0, 360, 3));       // 4 * 6 = 8 * 3
  EXPECT_EQ(b.range(b.mul(m, Tensor::vector({2, 4, 6}))), vr(0, 360, 3));
  EXPECT_EQ(b.range(b.sum_all(m)), vr(0, 180, 2));
  EXPECT_EQ(b.range(b.matmul(m, Tensor({3, 1}, {1, -2, 3}))), vr(-120, 240, 2));
  EXPECT_EQ(b.range(b.reshape(m, {3, 1})), vr(0, 60, 2));
  EXPECT_EQ(b.range(b.concat({m, b.mul(x, 2)}, 0)), vr(0, 60, 1));
}

// ---------------------------------------------------------------- matmul, dot, conv2d

TEST(CircuitBuilder, MatmulShapesAndKMismatch) {
  CircuitBuilder b;
  const Value x = b.input({2, 3}, 2, false, "x");  // [0, 3]
  const Value v = b.input({5}, 2, false, "v");
  const Value t = b.input({4, 2, 3}, 2, false, "t");
  const Value s = b.input({}, 2, false, "s");
  const Tensor w32({3, 2}, {1, -2, 2, 1, -1, 0});
  const Value y = b.matmul(x, w32);
  EXPECT_EQ(b.shape(y), (Shape{2, 2}));
  EXPECT_EQ(b.shape(b.matmul(v, Tensor({5, 4}, std::vector<std::int64_t>(20, 1)))), (Shape{4}));
  EXPECT_EQ(b.shape(b.matmul(t, w32)), (Shape{4, 2, 2}));
  // Column 0 {1, 2, -1} on [0, 3]: [-3, 9]; column 1 {-2, 1, 0}: [-6, 3].
  EXPECT_EQ(b.range(y), vr(-6, 9));
  EXPECT_TRUE(mentions(error_of([&] { b.matmul(x, Tensor({4, 2}, std::vector<std::int64_t>(8, 1)), "fc"); }),
                       {"matmul 'fc'", "K = 4", "K = 3"}));
  EXPECT_TRUE(mentions(error_of([&] { b.matmul(x, Tensor::vector({1, 2, 3}), "vec"); }), {"matmul 'vec'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.matmul(s, Tensor({1, 1}, {1}), "scal"); }), {"matmul 'scal'", "scalar"}));
}

TEST(CircuitBuilder, DotIsAScalar) {
  CircuitBuilder b;
  const Value x = b.input({3}, 2, false, "x");  // [0, 3]
  const Value d = b.dot(x, {1, -1, 2}, "d");
  EXPECT_EQ(b.shape(d), Shape{});
  EXPECT_EQ(b.range(d), vr(-3, 9));
  const Value m = b.input({2, 3}, 2, false, "m");
  EXPECT_TRUE(mentions(error_of([&] { b.dot(m, {1, 2, 3}, "dm"); }), {"dot 'dm'", "vector"}));
  EXPECT_TRUE(mentions(error_of([&] { b.dot(x, {1, 2}, "short"); }), {"matmul 'short'"}));
}

TEST(CircuitBuilder, Conv2dShapes) {
  CircuitBuilder b;
  const Value x = b.input({1, 2, 5, 5}, 2, false, "x");
  const Tensor w = Tensor::filled({4, 2, 3, 3}, 1);
  EXPECT_EQ(b.shape(b.conv2d(x, w)), (Shape{1, 4, 3, 3}));
  Conv2dOptions o;
  o.stride_h = o.stride_w = 2;
  o.pad_top = o.pad_left = o.pad_bottom = o.pad_right = 1;
  EXPECT_EQ(b.shape(b.conv2d(x, w, o)), (Shape{1, 4, 3, 3}));  // (5 + 2 - 3) / 2 + 1
  // out = (in + pads - dilation * (k - 1) - 1) / stride + 1 per spatial axis.
  o = {};
  o.stride_h = 2;
  o.pad_top = 1;
  o.pad_right = 2;
  // H: (5 + 1 - 2 - 1) / 2 + 1 = 2; W: (5 + 2 - 2 - 1) / 1 + 1 = 5.
  EXPECT_EQ(b.shape(b.conv2d(x, w, o)), (Shape{1, 4, 2, 5}));
  o = {};
  o.dilation_h = 2;  // H: (5 - 4 - 1) + 1 = 1
  EXPECT_EQ(b.shape(b.conv2d(x, w, o)), (Shape{1, 4, 1, 3}));
  o = {};
  o.stride_w = 3;
  o.dilation_w = 2;
  o.pad_left = 3;  // W: (5 + 3 - 4 - 1) / 3 + 1 = 2
  EXPECT_EQ(b.shape(b.conv2d(x, w, o)), (Shape{1, 4, 3, 2}));

  const Value g = b.input({2, 4, 6, 6}, 2, false, "g");
  o = {};
  o.groups = 2;
  EXPECT_EQ(b.shape(b.conv2d(g, Tensor::filled({6, 2, 3, 3}, 1), o)), (Shape{2, 6, 4, 4}));
  o.groups = 4;  // depthwise
  EXPECT_EQ(b.shape(b.conv2d(g, Tensor::filled({4, 1, 2, 2}, 1), o)), (Shape{2, 4, 5, 5}));
}

TEST(CircuitBuilder, Conv2dErrors) {
  CircuitBuilder b;
  const Value x = b.input({1, 4, 5, 5}, 2, false, "x");
  const Value v = b.input({4, 5, 5}, 2, false, "v");
  const std::size_t before = b.peek().nodes.size();
  Conv2dOptions o;
  o.groups = 3;  // does not divide 4 channels
  EXPECT_TRUE(mentions(error_of([&] { b.conv2d(x, Tensor::filled({3, 1, 3, 3}, 1), o, "c1"); }), {"conv2d 'c1'", "groups 3"}));
  o.groups = 2;  // weights expect 4 * 2 = 8 input channels
  EXPECT_TRUE(mentions(error_of([&] { b.conv2d(x, Tensor::filled({4, 4, 3, 3}, 1), o, "c2"); }), {"conv2d 'c2'"}));
  o.groups = 2;  // 3 output channels not divisible by 2 groups
  EXPECT_TRUE(mentions(error_of([&] { b.conv2d(x, Tensor::filled({3, 2, 3, 3}, 1), o, "c3"); }), {"conv2d 'c3'"}));
  o = {};
  EXPECT_TRUE(mentions(error_of([&] { b.conv2d(x, Tensor::filled({2, 4, 7, 7}, 1), o, "big"); }), {"conv2d 'big'"}));
  o.dilation_w = 3;  // 1 + 3 * 2 = 7 > 5
  EXPECT_TRUE(mentions(error_of([&] { b.conv2d(x, Tensor::filled({2, 4, 3, 3}, 1), o, "dil"); }), {"conv2d 'dil'"}));
  o = {};
  o.stride_h = 0;
  EXPECT_TRUE(mentions(error_of([&] { b.conv2d(x, Tensor::filled({2, 4, 3, 3}, 1), o, "s0"); }), {"conv2d 's0'"}));
  o = {};
  o.pad_bottom = -1;
  EXPECT_TRUE(mentions(error_of([&] { b.conv2d(x, Tensor::filled({2, 4, 3, 3}, 1), o, "p"); }), {"conv2d 'p'"}));
  o = {};
  o.groups = 0;
  EXPECT_TRUE(mentions(error_of([&] { b.conv2d(x, Tensor::filled({2, 4, 3, 3}, 1), o, "g0"); }), {"conv2d 'g0'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.conv2d(v, Tensor::filled({2, 4, 3, 3}, 1), {}, "r3"); }), {"conv2d 'r3'", "[4, 5, 5]"}));
  EXPECT_TRUE(mentions(error_of([&] { b.conv2d(x, Tensor::filled({2, 4, 3}, 1), {}, "w3"); }), {"conv2d 'w3'"}));
  EXPECT_EQ(b.peek().nodes.size(), before);
}

TEST(CircuitBuilder, Conv2dRangeCountsPaddingAsZero) {
  CircuitBuilder b;
  const Value x = b.input_range({1, 1, 3, 3}, 1, 3, "x");
  const Tensor ones = Tensor::filled({1, 1, 2, 2}, 1);
  // Unpadded: every output sums four values of [1, 3].
  EXPECT_EQ(b.range(b.conv2d(x, ones)), vr(4, 12));
  // Padded: a corner output reads a single input element, so 4 is no longer a lower bound.
  Conv2dOptions o;
  o.pad_top = o.pad_left = o.pad_bottom = o.pad_right = 1;
  const ValueRange r = b.range(b.conv2d(x, ones, o));
  EXPECT_LE(r.lo, 1);
  EXPECT_GE(r.lo, 0);
  EXPECT_EQ(r.hi, 12);
  // Two output channels: {1, -1, 2, 0} gives [1 - 3 + 2, 3 - 1 + 6] = [0, 8]; {-1, -1, -1, -1} [-12, -4].
  EXPECT_EQ(b.range(b.conv2d(x, Tensor({2, 1, 2, 2}, {1, -1, 2, 0, -1, -1, -1, -1}))), vr(-12, 8));
}

// ---------------------------------------------------------------- sum

TEST(CircuitBuilder, SumAxesAndKeepdims) {
  CircuitBuilder b;
  const Value x = b.input_range({2, 3, 4}, -2, 5, "x");
  EXPECT_EQ(b.shape(b.sum(x, {1})), (Shape{2, 4}));
  EXPECT_EQ(b.shape(b.sum(x, {1}, true)), (Shape{2, 1, 4}));
  EXPECT_EQ(b.shape(b.sum(x, {0, 2})), (Shape{3}));
  EXPECT_EQ(b.shape(b.sum(x, {2, 0})), (Shape{3}));
  EXPECT_EQ(b.shape(b.sum(x, {0, 2}, true)), (Shape{1, 3, 1}));
  EXPECT_EQ(b.shape(b.sum(x, {-1})), (Shape{2, 3}));
  EXPECT_EQ(b.shape(b.sum(x, {0, 1, 2})), Shape{});
  EXPECT_EQ(b.shape(b.sum_all(x)), Shape{});
  const Value s = b.sum(x, {2, 0}, false, "s");
  EXPECT_EQ(stored(b.peek().nodes[s.id]), (std::vector<std::int64_t>{0, 0, 2}));  // {keepdims, ascending axes}
  EXPECT_EQ(b.range(b.sum(x, {2})), vr(-8, 20));       // 4 terms of [-2, 5]
  EXPECT_EQ(b.range(b.sum(x, {0, 2})), vr(-16, 40));   // 8 terms
  EXPECT_EQ(b.range(b.sum_all(x)), vr(-48, 120));      // 24 terms
  const Value sc = b.input({}, 3, false, "scalar");
  EXPECT_EQ(b.shape(b.sum_all(sc)), Shape{});
  EXPECT_EQ(b.range(b.sum_all(sc)), vr(0, 7));

  EXPECT_TRUE(mentions(error_of([&] { b.sum(x, {1, 1}, false, "dup"); }), {"sum 'dup'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.sum(x, {1, -2}, false, "dup2"); }), {"sum 'dup2'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.sum(x, {3}, false, "far"); }), {"sum 'far'", "axis 3"}));
  EXPECT_TRUE(mentions(error_of([&] { b.sum(x, {-4}, false, "neg"); }), {"sum 'neg'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.sum(x, {}, false, "none"); }), {"sum 'none'"}));
}

// ---------------------------------------------------------------- data movement

TEST(CircuitBuilder, ReshapeInfersOneDimension) {
  CircuitBuilder b;
  const Value x = b.input({2, 3, 4}, 3, false, "x");
  EXPECT_EQ(b.shape(b.reshape(x, {4, -1})), (Shape{4, 6}));
  EXPECT_EQ(b.shape(b.reshape(x, {-1})), (Shape{24}));
  EXPECT_EQ(b.shape(b.reshape(x, {2, -1, 3})), (Shape{2, 4, 3}));
  EXPECT_EQ(b.shape(b.reshape(x, {24, 1})), (Shape{24, 1}));
  EXPECT_EQ(b.range(b.reshape(x, {24})), vr(0, 7));
  const Value one = b.input({1, 1}, 3, false, "one");
  EXPECT_EQ(b.shape(b.reshape(one, {})), Shape{});
  const std::size_t before = b.peek().nodes.size();
  EXPECT_TRUE(mentions(error_of([&] { b.reshape(x, {-1, -1}, "two"); }), {"reshape 'two'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.reshape(x, {5, -1}, "indiv"); }), {"reshape 'indiv'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.reshape(x, {2, 13}, "count"); }), {"reshape 'count'", "[2, 3, 4]", "[2, 13]"}));
  EXPECT_TRUE(mentions(error_of([&] { b.reshape(x, {0, -1}, "zero"); }), {"reshape 'zero'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.reshape(x, {-2, 12}, "neg"); }), {"reshape 'neg'"}));
  EXPECT_EQ(b.peek().nodes.size(), before);
}

// A reshape whose known dimensions multiply past int64 must be refused, not divide by the
// wrapped product (2^24 * 2^40 = 2^64 wraps to 0).
TEST(CircuitBuilder, ReshapeWithOverflowingDimensionsIsRefusedNotCrashed) {
  expect_refused_in_child([] {
    CircuitBuilder b;
    const Value x = b.input({2, 3, 4}, 3, false, "x");
    b.reshape(x, {std::int64_t{1} << 24, std::int64_t{1} << 40, -1}, "overflow");
  });
  expect_refused_in_child([] {
    CircuitBuilder b;
    const Value x = b.input({2, 3, 4}, 3, false, "x");
    b.reshape(x, {std::int64_t{1} << 24, std::int64_t{1} << 40}, "overflow");
  });
}

TEST(CircuitBuilder, FlattenFollowsOnnx) {
  CircuitBuilder b;
  const Value x = b.input({2, 3, 4}, 3, false, "x");
  EXPECT_EQ(b.shape(b.flatten(x)), (Shape{2, 12}));
  EXPECT_EQ(b.shape(b.flatten(x, 0)), (Shape{1, 24}));
  EXPECT_EQ(b.shape(b.flatten(x, 2)), (Shape{6, 4}));
  EXPECT_EQ(b.shape(b.flatten(x, 3)), (Shape{24, 1}));
  EXPECT_EQ(b.shape(b.flatten(x, -1)), (Shape{6, 4}));
  EXPECT_EQ(b.peek().nodes.back().kind, OpKind::kReshape);
  EXPECT_TRUE(mentions(error_of([&] { b.flatten(x, 4, "f4"); }), {"flatten 'f4'", "axis"}));
  EXPECT_TRUE(mentions(error_of([&] { b.flatten(x, -4, "fm4"); }), {"flatten 'fm4'"}));
}

TEST(CircuitBuilder, TransposePermutes) {
  CircuitBuilder b;
  const Value x = b.input({2, 3, 4}, 3, false, "x");
  const Value t = b.transpose(x, {2, 0, 1});
  EXPECT_EQ(b.shape(t), (Shape{4, 2, 3}));
  EXPECT_EQ(stored(b.peek().nodes[t.id]), (std::vector<std::int64_t>{2, 0, 1}));
  EXPECT_EQ(b.shape(b.transpose(x, {0, 1, 2})), (Shape{2, 3, 4}));
  EXPECT_EQ(b.range(t), vr(0, 7));
  EXPECT_TRUE(mentions(error_of([&] { b.transpose(x, {0, 0, 1}, "rep"); }), {"transpose 'rep'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.transpose(x, {0, 1}, "short"); }), {"transpose 'short'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.transpose(x, {0, 1, 3}, "far"); }), {"transpose 'far'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.transpose(x, {0, 1, -1}, "neg"); }), {"transpose 'neg'"}));
}

TEST(CircuitBuilder, SliceNormalisesNegativeIndicesAndClampsEnds) {
  CircuitBuilder b;
  const Value x = b.input({10}, 3, false, "x");
  const auto attrs = [&](Value v) { return stored(b.peek().nodes[v.id]); };
  const Value a = b.slice(x, {2}, {8}, {3});  // 2, 5
  EXPECT_EQ(b.shape(a), (Shape{2}));
  EXPECT_EQ(attrs(a), (std::vector<std::int64_t>{2, 8, 3}));
  const Value c = b.slice(x, {-3}, {100});  // 7, 8, 9
  EXPECT_EQ(b.shape(c), (Shape{3}));
  EXPECT_EQ(attrs(c), (std::vector<std::int64_t>{7, 10, 1}));
  const Value d = b.slice(x, {-4}, {-1});  // 6, 7, 8
  EXPECT_EQ(b.shape(d), (Shape{3}));
  EXPECT_EQ(attrs(d), (std::vector<std::int64_t>{6, 9, 1}));
  EXPECT_EQ(b.shape(b.slice(x, {0}, {10}, {4})), (Shape{3}));  // 0, 4, 8
  EXPECT_EQ(b.shape(b.slice(x, {9}, {10})), (Shape{1}));
  EXPECT_EQ(b.range(a), vr(0, 7));
  const Value m = b.input({4, 6}, 3, false, "m");
  EXPECT_EQ(b.shape(b.slice(m, {1, 0}, {3, 6}, {1, 2})), (Shape{2, 3}));
  EXPECT_EQ(b.shape(b.slice(m, {-1, -6}, {4, -5})), (Shape{1, 1}));

  const std::size_t before = b.peek().nodes.size();
  EXPECT_TRUE(mentions(error_of([&] { b.slice(x, {5}, {5}, {}, "empty"); }), {"slice 'empty'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.slice(x, {6}, {2}, {}, "back"); }), {"slice 'back'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.slice(x, {10}, {12}, {}, "past"); }), {"slice 'past'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.slice(x, {-11}, {3}, {}, "before"); }), {"slice 'before'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.slice(x, {0}, {3}, {0}, "step0"); }), {"slice 'step0'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.slice(x, {8}, {2}, {-1}, "stepneg"); }), {"slice 'stepneg'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.slice(m, {0}, {1}, {}, "rank"); }), {"slice 'rank'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.slice(m, {0, 0}, {1, 1}, {1}, "steps"); }), {"slice 'steps'"}));
  EXPECT_EQ(b.peek().nodes.size(), before);
}

TEST(CircuitBuilder, ConcatJoinsAlongOneAxis) {
  CircuitBuilder b;
  const Value a = b.input_range({2, 3}, 0, 3, "a");
  const Value c = b.input_range({2, 5}, -8, 1, "c");
  const Value d = b.input_range({3, 3}, 2, 9, "d");
  const Value e = b.input({3, 4}, 2, false, "e");
  const Value r1 = b.input({3}, 2, false, "r1");
  const Value j = b.concat({a, c}, 1);
  EXPECT_EQ(b.shape(j), (Shape{2, 8}));
  EXPECT_EQ(b.range(j), vr(-8, 3));
  EXPECT_EQ(b.shape(b.concat({a, c}, -1)), (Shape{2, 8}));
  const Value k = b.concat({a, d, a}, 0);
  EXPECT_EQ(b.shape(k), (Shape{7, 3}));
  EXPECT_EQ(b.range(k), vr(0, 9));
  EXPECT_EQ(stored(b.peek().nodes[k.id]), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(b.shape(b.concat({a}, 0)), (Shape{2, 3}));
  EXPECT_TRUE(mentions(error_of([&] { b.concat({a, e}, 0, "cat"); }), {"concat 'cat'", "[3, 4]"}));
  EXPECT_TRUE(mentions(error_of([&] { b.concat({a, c}, 0, "ax0"); }), {"concat 'ax0'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.concat({a, c}, 2, "ax2"); }), {"concat 'ax2'", "axis 2"}));
  EXPECT_TRUE(mentions(error_of([&] { b.concat({a, r1}, 0, "ranks"); }), {"concat 'ranks'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.concat({}, 0, "none"); }), {"concat 'none'"}));
}

TEST(CircuitBuilder, BroadcastFollowsNumpy) {
  CircuitBuilder b;
  const Value v = b.input({3}, 2, false, "v");
  const Value col = b.input({3, 1}, 2, false, "col");
  const Value s = b.input({}, 2, false, "s");
  const Value m = b.input({2, 3}, 2, false, "m");
  EXPECT_EQ(b.shape(b.broadcast(v, {2, 3})), (Shape{2, 3}));
  EXPECT_EQ(b.shape(b.broadcast(v, {4, 2, 3})), (Shape{4, 2, 3}));
  EXPECT_EQ(b.shape(b.broadcast(col, {3, 4})), (Shape{3, 4}));
  EXPECT_EQ(b.shape(b.broadcast(s, {2, 2})), (Shape{2, 2}));
  EXPECT_EQ(b.shape(b.broadcast(v, {3})), (Shape{3}));
  EXPECT_EQ(b.range(b.broadcast(v, {2, 3})), vr(0, 3));
  EXPECT_TRUE(mentions(error_of([&] { b.broadcast(v, {3, 2}, "bc"); }), {"broadcast 'bc'", "[3]", "[3, 2]"}));
  EXPECT_TRUE(mentions(error_of([&] { b.broadcast(m, {3}, "shrink"); }), {"broadcast 'shrink'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.broadcast(col, {3, 0}, "zero"); }), {"broadcast 'zero'"}));
}

// ---------------------------------------------------------------- lookups

TEST(CircuitBuilder, LookupRangeIsThatOfTheReachableEntries) {
  CircuitBuilder b;
  const Value x = b.input_range({4}, 2, 5, "x");
  // Entries 0, 1, 6 and 7 are never read: only {3, 9, -4, 7} count.
  const Value y = b.lookup(x, table(0, 0, {100, -50, 3, 9, -4, 7, 1000, -1000}), "y");
  EXPECT_EQ(b.shape(y), (Shape{4}));
  EXPECT_EQ(b.range(y), vr(-4, 9));
  EXPECT_EQ(b.peek().nodes[y.id].kind, OpKind::kLookup);
  EXPECT_TRUE(b.peek().nodes[y.id].table_index.empty());
  // A table over exactly the input's values.
  EXPECT_EQ(b.range(b.lookup(x, table(2, 0, {5, 6, 7, 8}))), vr(5, 8));
}

TEST(CircuitBuilder, LookupTablesMustCoverTheInput) {
  CircuitBuilder b;
  const Value x = b.input({3}, 4, false, "x");  // [0, 15]
  const Value m = b.mul(b.input({3}, 2, false, "q"), 4);  // {0, 4, 8, 12}
  const std::size_t before = b.peek().nodes.size();
  EXPECT_TRUE(mentions(error_of([&] { b.lookup(x, identity(0, 7), "short"); }), {"lookup 'short'", "table 0"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup(x, identity(1, 15), "late"); }), {"lookup 'late'"}));
  // Steps of 4 read by a table in steps of 4 starting at 0: fine; starting at 1 or in steps
  // of 8: not aligned.
  EXPECT_EQ(b.range(b.lookup(m, table(0, 2, {1, 2, 3, 4}))), vr(1, 4));
  EXPECT_EQ(b.range(b.lookup(m, identity(0, 12))), vr(0, 12));  // a finer table reads too
  EXPECT_EQ(b.range(b.lookup(m, table(-4, 2, {9, 1, 2, 3, 4, 9}))), vr(1, 4));
  const std::size_t after_ok = b.peek().nodes.size();
  EXPECT_TRUE(mentions(error_of([&] { b.lookup(m, table(1, 2, {1, 2, 3, 4}), "misaligned"); }), {"lookup 'misaligned'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup(m, table(0, 3, {1, 2, 3}), "coarse"); }), {"lookup 'coarse'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup(x, table(0, 0, {}), "empty"); }), {"lookup 'empty'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup(x, table(0, 62, {1}), "shift"); }), {"lookup 'shift'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup(x, table(0, 0, std::vector<std::int64_t>((1 << 16) + 1, 0)), "many"); }),
                       {"lookup 'many'"}));
  Table big = identity(0, 15);
  big.values[3] = k2p62 + 1;
  EXPECT_TRUE(mentions(error_of([&] { b.lookup(x, big, "bigvalue"); }), {"lookup 'bigvalue'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup(x, table(-k2p62 - 1, 0, std::vector<std::int64_t>(16, 0)), "lowdom"); }),
                       {"lookup 'lowdom'"}));
  EXPECT_EQ(b.peek().nodes.size(), after_ok);
  EXPECT_EQ(after_ok, before + 3);
  Table edge = identity(0, 15);
  edge.values[0] = k2p62;
  edge.values[1] = -k2p62;
  EXPECT_EQ(b.range(b.lookup(x, edge)), vr(-k2p62, k2p62));
}

TEST(CircuitBuilder, LookupFromAFunctionTabulatesTheInputRange) {
  CircuitBuilder b;
  const Value x = b.input_range({2}, -3, 4, "x");
  const Value y = b.lookup(x, [](std::int64_t v) { return v * v; }, "sq");
  const Node& n = b.peek().nodes[y.id];
  ASSERT_EQ(n.tables.size(), 1u);
  EXPECT_EQ(n.tables[0], table(-3, 0, {9, 4, 1, 0, 1, 4, 9, 16}));
  EXPECT_EQ(b.range(y), vr(0, 16));
  // Known zero bits make the table step.
  const Value m = b.mul(b.input({1}, 2, false, "q"), 4);
  EXPECT_EQ(b.table_for(m, [](std::int64_t v) { return v + 1; }), table(0, 2, {1, 5, 9, 13}));
  // Too many values for a table.
  const Value w = b.input({1}, 20, false, "w");
  EXPECT_TRUE(mentions(error_of([&] { b.lookup(w, [](std::int64_t v) { return v; }, "wide"); }), {"lookup", "round_bits"}));
}

TEST(CircuitBuilder, PerElementLookup) {
  CircuitBuilder b;
  const Value x = b.input({2, 2}, 2, false, "x");  // [0, 3]
  const Table t0 = table(0, 0, {0, 1, 2, 3});
  const Table t1 = table(0, 0, {-5, 10, 20, 30});
  const Value y = b.lookup_per_element(x, {t0, t1}, {0, 1, 1, 0}, "pe");
  EXPECT_EQ(b.shape(y), (Shape{2, 2}));
  EXPECT_EQ(b.range(y), vr(-5, 30));
  EXPECT_EQ(b.peek().nodes[y.id].table_index, (std::vector<std::uint32_t>{0, 1, 1, 0}));
  // Unused tables do not widen the range.
  const Table huge = table(0, 0, {1000, 2000, 3000, 4000});
  EXPECT_EQ(b.range(b.lookup_per_element(x, {t0, huge}, {0, 0, 0, 0})), vr(0, 3));
  // One table and an all-zero index: a plain lookup.
  const Value one = b.lookup_per_element(x, {t1}, {0, 0, 0, 0});
  EXPECT_TRUE(b.peek().nodes[one.id].table_index.empty());

  const std::size_t before = b.peek().nodes.size();
  EXPECT_TRUE(mentions(error_of([&] { b.lookup_per_element(x, {t0, t1}, {0, 1, 1}, "n3"); }), {"lookup 'n3'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup_per_element(x, {t0, t1}, {0, 1, 2, 0}, "idx"); }),
                       {"lookup 'idx'", "table index 2"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup_per_element(x, {t0}, {0, 1, 0, 0}, "idx1"); }), {"lookup 'idx1'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup_per_element(x, {t0, t1}, {}, "noidx"); }), {"lookup 'noidx'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup_per_element(x, {}, {}, "none"); }), {"lookup 'none'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup_per_element(x, {t0, t0, t0, t0, t0}, {0, 1, 2, 3}, "five"); }),
                       {"lookup 'five'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup_per_element(x, {t0, table(0, 0, {1, 2})}, {0, 1, 0, 0}, "cover"); }),
                       {"lookup 'cover'", "table 1"}));
  EXPECT_EQ(b.peek().nodes.size(), before);
}

TEST(CircuitBuilder, PerChannelLookupExpandsToAnIndexPerElement) {
  CircuitBuilder b;
  const Value x = b.input({1, 3, 2, 2}, 2, false, "x");  // [0, 3]
  std::vector<Table> ts = {table(0, 0, {0, 1, 2, 3}), table(0, 0, {10, 11, 12, 13}), table(0, 0, {-3, -2, -1, 0})};
  const Value y = b.lookup_per_channel(x, 1, ts, "pc");
  EXPECT_EQ(b.shape(y), (Shape{1, 3, 2, 2}));
  EXPECT_EQ(b.range(y), vr(-3, 13));
  EXPECT_EQ(b.peek().nodes[y.id].table_index, (std::vector<std::uint32_t>{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}));
  EXPECT_EQ(b.peek().nodes[y.id].tables, ts);
  // The last axis, counted from the end.
  const Value z = b.input({2, 3}, 2, false, "z");
  const Value w = b.lookup_per_channel(z, -1, ts);
  EXPECT_EQ(b.peek().nodes[w.id].table_index, (std::vector<std::uint32_t>{0, 1, 2, 0, 1, 2}));
  // From functions: one table per channel over the input's range.
  const Value f = b.lookup_per_channel(
      z, 0, std::vector<TableFunction>{[](std::int64_t v) { return v; }, [](std::int64_t v) { return 10 * v; }});
  EXPECT_EQ(b.peek().nodes[f.id].tables, (std::vector<Table>{table(0, 0, {0, 1, 2, 3}), table(0, 0, {0, 10, 20, 30})}));
  EXPECT_EQ(b.peek().nodes[f.id].table_index, (std::vector<std::uint32_t>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(b.range(f), vr(0, 30));

  EXPECT_TRUE(mentions(error_of([&] { b.lookup_per_channel(x, 1, {ts[0], ts[1]}, "two"); }), {"lookup 'two'", "3 channels"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup_per_channel(x, 4, ts, "axis"); }), {"lookup 'axis'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup_per_channel(x, -5, ts, "axisneg"); }), {"lookup 'axisneg'"}));
}

// ---------------------------------------------------------------- round_bits

TEST(CircuitBuilder, RoundBitsRangesPerMode) {
  CircuitBuilder b;
  const Value x = b.input({3}, 4, false, "x");  // [0, 15]
  EXPECT_EQ(b.range(b.round_bits(x, 2)), vr(0, 12, 2));                               // floor(15 / 4) * 4
  EXPECT_EQ(b.range(b.round_bits(x, 2, RoundingMode::kNearest)), vr(0, 16, 2));       // floor(17 / 4) * 4
  EXPECT_EQ(b.range(b.round_bits(x, 2, RoundingMode::kApproximate)), vr(0, 16, 2));   // 12 or 12 + 4
  const Value s = b.input_range({3}, -7, 6, "s");
  EXPECT_EQ(b.range(b.round_bits(s, 2)), vr(-8, 4, 2));                               // floor(-7/4) = -2
  EXPECT_EQ(b.range(b.round_bits(s, 2, RoundingMode::kNearest)), vr(-8, 8, 2));       // floor(-5/4), floor(8/4)
  EXPECT_EQ(b.range(b.round_bits(s, 2, RoundingMode::kApproximate)), vr(-8, 8, 2));   // -8 .. 4 + 4
  EXPECT_EQ(b.range(b.round_bits(x, 4)), vr(0, 0, 4));
  EXPECT_EQ(b.range(b.round_bits(x, 4, RoundingMode::kNearest)), vr(0, 16, 4));
  // Bits already known to be zero: nothing changes.
  const Value m = b.mul(x, 4);
  EXPECT_EQ(b.range(b.round_bits(m, 2)), vr(0, 60, 2));
  EXPECT_EQ(b.range(b.round_bits(m, 2, RoundingMode::kNearest)), vr(0, 60, 2));
  EXPECT_EQ(b.range(b.round_bits(m, 3)), vr(0, 56, 3));
  const Value r = b.round_bits(x, 3, RoundingMode::kNearest, "rb");
  EXPECT_EQ(b.shape(r), (Shape{3}));
  EXPECT_EQ(stored(b.peek().nodes[r.id]), (std::vector<std::int64_t>{3, 1}));
  EXPECT_TRUE(mentions(error_of([&] { b.round_bits(x, 0, RoundingMode::kFloor, "zero"); }), {"round_bits 'zero'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.round_bits(x, 62, RoundingMode::kFloor, "far"); }), {"round_bits 'far'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.round_bits(x, 2, static_cast<RoundingMode>(3), "mode"); }), {"round_bits 'mode'"}));
}

TEST(CircuitBuilder, ExactRoundingIsAnOrdinaryValue) {
  CircuitBuilder b;
  const Value x = b.input({3}, 4, false, "x");
  for (RoundingMode mode : {RoundingMode::kFloor, RoundingMode::kNearest}) {
    const Value r = b.round_bits(x, 2, mode);
    EXPECT_NO_THROW(b.add(r, x));
    EXPECT_NO_THROW(b.mul(r, 3));
    EXPECT_NO_THROW(b.round_bits(r, 3));
    EXPECT_NO_THROW(b.output(r));
  }
}

TEST(CircuitBuilder, OnlyLookupsMayReadAnApproximateRounding) {
  CircuitBuilder b;
  const Value x = b.input({2, 2}, 4, false, "x");
  const Value a = b.round_bits(x, 2, RoundingMode::kApproximate, "approx");  // [0, 16] in steps of 4
  const Table t = table(0, 2, {0, 1, 2, 3, 4});
  // Directly, or through any data movement.
  EXPECT_NO_THROW(b.lookup(a, t));
  const Value moved = b.transpose(b.reshape(b.slice(b.broadcast(a, {3, 2, 2}), {0, 0, 0}, {2, 2, 2}), {4, 2}), {1, 0});
  EXPECT_NO_THROW(b.lookup(moved, t));
  const Value mixed = b.concat({b.reshape(a, {4}), b.reshape(b.mul(x, 4), {4})}, 0);
  EXPECT_NO_THROW(b.lookup(mixed, identity(0, 60)));
  EXPECT_NO_THROW(b.lookup_per_channel(a, 0, std::vector<Table>{t, t}));
  // Anything else is refused, naming the reading operation and the approximate value.
  const Value ra = b.reshape(b.reshape(a, {4}), {2, 2});
  const Value image = b.reshape(a, {1, 1, 2, 2});
  const std::size_t before = b.peek().nodes.size();
  EXPECT_TRUE(mentions(error_of([&] { b.add(a, x, "sum"); }), {"add 'sum'", "approx"}));
  EXPECT_TRUE(mentions(error_of([&] { b.sub(x, ra, "d"); }), {"sub 'd'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.add(a, 1, "ac"); }), {"add_constant 'ac'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.mul(a, 2, "mc"); }), {"mul_constant 'mc'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.matmul(a, Tensor({2, 1}, {1, 1}), "mm"); }), {"matmul 'mm'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.sum(a, {0}, false, "s"); }), {"sum 's'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.round_bits(a, 3, RoundingMode::kFloor, "again"); }), {"round_bits 'again'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.conv2d(image, Tensor::filled({1, 1, 1, 1}, 1), {}, "cv"); }), {"conv2d 'cv'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.mul(mixed, 2, "mx"); }), {"mul_constant 'mx'"}));
  EXPECT_EQ(b.peek().nodes.size(), before);
  // Outputs may: the client rounds them when decrypting (directly or through data movement).
  const std::size_t outputs = b.peek().outputs.size();
  EXPECT_NO_THROW(b.output(a, "out"));
  EXPECT_NO_THROW(b.output(moved, "out2"));
  EXPECT_EQ(b.peek().outputs.size(), outputs + 2);
  // A lookup's result is an ordinary value again.
  const Value l = b.lookup(a, t);
  EXPECT_NO_THROW(b.add(l, l));
  EXPECT_NO_THROW(b.output(l));
  EXPECT_NO_THROW(validate_circuit(std::move(b).build()));
}

// ---------------------------------------------------------------- the +-2^62 limit

TEST(CircuitBuilder, ValuesBeyond2To62AreRefused) {
  CircuitBuilder b;
  const Value u = b.input({2}, 62, false, "u");  // [0, 2^62 - 1]
  const Value s = b.input({2}, 62, true, "s");   // [-2^61, 2^61 - 1]
  EXPECT_EQ(b.range(b.add(u, 1)), vr(1, k2p62));  // exactly 2^62 is allowed
  EXPECT_TRUE(mentions(error_of([&] { b.add(u, 2, "over"); }), {"add_constant 'over'", "2^62"}));
  EXPECT_TRUE(mentions(error_of([&] { b.mul(u, 2, "dbl"); }), {"mul_constant 'dbl'", "2^62"}));
  EXPECT_TRUE(mentions(error_of([&] { b.sub(s, u, "under"); }), {"sub 'under'", "2^62"}));
  const Value s2 = b.add(s, s);
  EXPECT_EQ(b.range(s2), vr(-k2p62, k2p62 - 2));
  EXPECT_TRUE(mentions(error_of([&] { b.add(s2, s, "three"); }), {"add 'three'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.sum_all(u, "sum"); }), {"sum 'sum'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.matmul(u, Tensor({2, 1}, {std::int64_t{1} << 40, 1}), "mm"); }), {"matmul 'mm'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.mul(u, INT64_MAX, "max"); }), {"mul_constant 'max'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.add(b.input({1}, 1, false), Tensor::scalar(INT64_MIN), "min"); }),
                       {"add_constant 'min'"}));
  // Weights whose partial products overflow int64 are still bounded exactly.
  const Value w = b.input({2}, 32, false, "w");
  EXPECT_TRUE(mentions(error_of([&] { b.matmul(w, Tensor({2, 1}, {INT64_MAX, INT64_MAX}), "ovf"); }), {"matmul 'ovf'"}));
  const Value img = b.input({1, 1, 2, 2}, 40, false, "img");
  EXPECT_TRUE(mentions(error_of([&] { b.conv2d(img, Tensor::filled({1, 1, 2, 2}, std::int64_t{1} << 21), {}, "cv"); }),
                       {"conv2d 'cv'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.round_bits(b.add(u, 1), 2, RoundingMode::kApproximate, "ra"); }),
                       {"round_bits 'ra'"}));
}

// ---------------------------------------------------------------- errors and recovery

TEST(CircuitBuilder, ErrorsNameTheOperationAndTheNode) {
  CircuitBuilder b;
  const Value x = b.input({2, 3}, 4, false, "x");
  const Value y = b.input({3, 2}, 4, false, "y");
  // Node 2 would be the failing one: its id and name appear.
  EXPECT_TRUE(mentions(error_of([&] { b.add(x, y, "my_add"); }), {"add 'my_add' (node 2)"}));
  EXPECT_TRUE(mentions(error_of([&] { b.matmul(x, Tensor({2, 2}, {1, 2, 3, 4})); }), {"matmul (node 2)"}));
  EXPECT_TRUE(mentions(error_of([&] { b.transpose(x, {1, 1}, "t"); }), {"transpose 't' (node 2)"}));
  EXPECT_TRUE(mentions(error_of([&] { b.lookup(x, identity(0, 3), "act"); }), {"lookup 'act' (node 2)"}));
  EXPECT_TRUE(mentions(error_of([&] { b.round_bits(x, 0, RoundingMode::kFloor, "r"); }), {"round_bits 'r' (node 2)"}));
  EXPECT_TRUE(mentions(error_of([&] { b.broadcast(x, {3, 3}, "bc"); }), {"broadcast 'bc' (node 2)"}));
  EXPECT_TRUE(mentions(error_of([&] { b.concat({x, y}, 1, "c"); }), {"concat 'c' (node 2)"}));
  EXPECT_TRUE(mentions(error_of([&] { b.sum(x, {5}, false, "s"); }), {"sum 's' (node 2)"}));
  EXPECT_TRUE(mentions(error_of([&] { b.slice(x, {0, 3}, {1, 3}, {}, "sl"); }), {"slice 'sl' (node 2)"}));
  EXPECT_TRUE(mentions(error_of([&] { b.conv2d(x, Tensor::filled({1, 1, 1, 1}, 1), {}, "cv"); }), {"conv2d 'cv' (node 2)"}));
  EXPECT_TRUE(mentions(error_of([&] { b.mul(x, Tensor::vector({1, 2}), "m"); }), {"mul_constant 'm' (node 2)"}));
  EXPECT_TRUE(mentions(error_of([&] { b.add(x, Tensor::vector({1, 2}), "a"); }), {"add_constant 'a' (node 2)"}));
  EXPECT_TRUE(mentions(error_of([&] { b.reshape(x, {7}, "rs"); }), {"reshape 'rs'"}));
  EXPECT_TRUE(mentions(error_of([&] { b.input({0}, 4, false, "in"); }), {"input 'in' (node 2)"}));
  EXPECT_TRUE(mentions(error_of([&] { b.output(Value{17}, "o"); }), {"output"}));
  EXPECT_THROW(b.shape(Value{17}), std::invalid_argument);
  EXPECT_THROW(b.range(Value{17}), std::invalid_argument);
}

TEST(CircuitBuilder, StaysUsableAfterAThrow) {
  CircuitBuilder b;
  const Value x = b.input({4}, 4, false, "x");
  const Value y = b.input({3}, 4, false, "y");
  // Failures at each stage: argument checks, shape inference, range inference (the node is
  // already pushed when the range fails) and the approximate-read rule (outputs may read one).
  EXPECT_THROW(b.add(x, y), std::invalid_argument);
  EXPECT_THROW(b.reshape(x, {-1, -1}), std::invalid_argument);
  EXPECT_THROW(b.lookup(x, identity(0, 3)), std::invalid_argument);
  EXPECT_THROW(b.mul(b.input({1}, 62, false), 4), std::invalid_argument);
  const Value a = b.round_bits(x, 1, RoundingMode::kApproximate);
  EXPECT_THROW(b.add(a, 1), std::invalid_argument);
  EXPECT_THROW(b.output(x, std::string(kMaxNameBytes + 1, 'o')), std::invalid_argument);
  ASSERT_EQ(b.peek().nodes.size(), 4u);  // x, y, the 62-bit input, a
  EXPECT_TRUE(b.peek().outputs.empty());
  const Value z = b.mul(x, 3);
  EXPECT_EQ(z.id, 4u);
  EXPECT_EQ(b.range(z), vr(0, 45));  // ranges stay aligned with the nodes
  const Value l = b.lookup(a, table(0, 1, std::vector<std::int64_t>(9, 5)));
  EXPECT_EQ(l.id, 5u);
  EXPECT_EQ(b.range(l), vr(5, 5));
  b.output(z, "z");
  b.output(l, "l");
  const Circuit c = std::move(b).build();
  EXPECT_EQ(c.nodes.size(), 6u);
  EXPECT_EQ(c.outputs, (std::vector<std::uint32_t>{4, 5}));
  EXPECT_EQ(c.output_names, (std::vector<std::string>{"z", "l"}));
  EXPECT_NO_THROW(validate_circuit(c));
}

TEST(CircuitBuilder, BuildNeedsAnOutput) {
  CircuitBuilder b;
  b.input({1}, 1, false);
  EXPECT_THROW(std::move(b).build(), std::logic_error);
}

TEST(CircuitBuilder, DescribeNode) {
  CircuitBuilder b;
  const Value x = b.input({1}, 1, false, "x");
  const Value y = b.add(x, x);
  b.output(y);
  const Circuit c = std::move(b).build();
  EXPECT_EQ(c.describe_node(0), "input 'x' (node 0)");
  EXPECT_EQ(c.describe_node(1), "add (node 1)");
  EXPECT_NE(c.describe_node(7).find("node 7"), std::string::npos);
  EXPECT_STREQ(op_name(OpKind::kRoundBits), "round_bits");
  EXPECT_STREQ(op_name(OpKind::kAddConstant), "add_constant");
}

// ---------------------------------------------------------------- add_node and validate_circuit

TEST(CircuitBuilder, AddNodeChecksTheDeclaredShape) {
  CircuitBuilder b;
  const Value x = b.input({2, 3}, 2, false, "x");
  Node n;
  n.kind = OpKind::kTranspose;
  n.operands = {x.id};
  n.attributes = TransposeAttributes{{1, 0}};
  n.shape = {2, 3};  // should be [3, 2]
  EXPECT_TRUE(mentions(error_of([&] { b.add_node(n); }), {"transpose", "[2, 3]", "[3, 2]"}));
  n.shape = {3, 2};
  const Value t = b.add_node(n);
  EXPECT_EQ(b.shape(t), (Shape{3, 2}));
  // A range hint narrows the inferred range.
  Node m;
  m.kind = OpKind::kMulConstant;
  m.operands = {x.id};
  m.shape = {2, 3};
  m.constant = Tensor::scalar(5);  // [0, 15]
  m.range_hint = vr(3, 9);
  EXPECT_EQ(b.range(b.add_node(m)), vr(3, 9));
  m.range_hint = vr(20, 30);  // disjoint
  EXPECT_THROW(b.add_node(m), std::invalid_argument);
}

// A small circuit with one node of most kinds, to tamper with.
Circuit base_circuit() {
  CircuitBuilder b;
  const Value x = b.input({2, 3}, 4, false, "x");                        // 0
  const Value m = b.matmul(x, Tensor({3, 2}, {1, 2, 0, -1, 1, 1}), "mm");  // 1: [2, 2] in [-15, 45]
  const Value r = b.round_bits(m, 3, RoundingMode::kNearest, "rb");     // 2: [-16, 48] step 8
  const Value l = b.lookup_per_element(r, {b.table_for(r, [](std::int64_t v) { return v / 8; }),
                                           b.table_for(r, [](std::int64_t v) { return v > 0 ? 1 : 0; })},
                                       {0, 1, 1, 0}, "act");  // 3
  const Value s = b.sum(l, {1}, false, "s");                  // 4
  const Value t = b.transpose(x, {1, 0}, "t");                // 5
  const Value sl = b.slice(t, {1, 0}, {3, 2}, {}, "sl");      // 6
  const Value a = b.round_bits(x, 2, RoundingMode::kApproximate, "ap");  // 7
  const Value la = b.lookup(a, [](std::int64_t v) { return v; }, "la");  // 8
  b.output(s, "s");
  b.output(sl, "sl");
  b.output(la, "la");
  return std::move(b).build();
}

TEST(CircuitBuilder, ValidateAcceptsWhatTheBuilderBuilt) {
  const Circuit c = base_circuit();
  ASSERT_EQ(c.nodes.size(), 9u);
  EXPECT_NO_THROW(validate_circuit(c));
}

TEST(CircuitBuilder, ValidateCatchesTamperedCircuits) {
  const Circuit base = base_circuit();
  struct Case {
    const char* what;
    std::function<void(Circuit&)> tamper;
    const char* expect;  // in the message
  };
  const std::vector<Case> cases = {
      {"operand past the end", [](Circuit& c) { c.nodes[1].operands[0] = 7; }, "matmul 'mm' (node 1)"},
      {"operand is the node itself", [](Circuit& c) { c.nodes[4].operands[0] = 4; }, "sum 's' (node 4)"},
      {"operand is a later node", [](Circuit& c) { c.nodes[4].operands[0] = 6; }, "sum 's' (node 4)"},
      {"missing operand", [](Circuit& c) { c.nodes[1].operands.clear(); }, "matmul 'mm' (node 1)"},
      {"extra operand", [](Circuit& c) { c.nodes[1].operands.push_back(0); }, "matmul 'mm' (node 1)"},
      {"wrong shape", [](Circuit& c) { c.nodes[1].shape = {2, 3}; }, "matmul 'mm' (node 1)"},
      {"wrong shape of data movement", [](Circuit& c) { c.nodes[5].shape = {2, 3}; }, "transpose 't' (node 5)"},
      {"wrong input shape downstream", [](Circuit& c) { c.nodes[0].shape = {3, 3}; }, "matmul 'mm' (node 1)"},
      {"table index out of range", [](Circuit& c) { c.nodes[3].table_index[2] = 5; }, "lookup 'act' (node 3)"},
      {"table index too short", [](Circuit& c) { c.nodes[3].table_index.pop_back(); }, "lookup 'act' (node 3)"},
      {"no tables", [](Circuit& c) { c.nodes[3].tables.clear(); }, "lookup 'act' (node 3)"},
      {"table too short for the input", [](Circuit& c) { c.nodes[3].tables[1].values.pop_back(); }, "lookup 'act' (node 3)"},
      {"table on the wrong step", [](Circuit& c) { c.nodes[8].tables[0].domain_shift = 3; }, "lookup 'la' (node 8)"},
      {"tables on a non-lookup", [](Circuit& c) { c.nodes[4].tables = c.nodes[3].tables; }, "sum 's' (node 4)"},
      {"constant on a node without one", [](Circuit& c) { c.nodes[5].constant = Tensor::scalar(3); }, "transpose 't' (node 5)"},
      {"constant data and shape disagree", [](Circuit& c) { c.nodes[1].constant.data.pop_back(); }, "matmul 'mm' (node 1)"},
      {"input width too large", [](Circuit& c) { tamper_attributes(c, 0, [](auto& a) { a[0] = 70; }); }, "input 'x' (node 0)"},
      {"input range beyond its width", [](Circuit& c) { tamper_attributes(c, 0, [](auto& a) { a[3] = 16; }); }, "input 'x' (node 0)"},
      {"input signedness not 0/1", [](Circuit& c) { tamper_attributes(c, 0, [](auto& a) { a[1] = 2; }); }, "input 'x' (node 0)"},
      {"input missing attributes", [](Circuit& c) { tamper_attributes(c, 0, [](auto& a) { a.pop_back(); }); }, "input 'x' (node 0)"},
      {"unknown kind", [](Circuit& c) { c.nodes[4].kind = static_cast<OpKind>(99); }, "(node 4)"},
      {"attributes of another kind", [](Circuit& c) { c.nodes[4].attributes = ConcatAttributes{0}; }, "sum 's' (node 4)"},
      {"round_bits mode", [](Circuit& c) { tamper_attributes(c, 2, [](auto& a) { a[1] = 5; }); }, "round_bits 'rb' (node 2)"},
      {"round_bits bits", [](Circuit& c) { tamper_attributes(c, 2, [](auto& a) { a[0] = 0; }); }, "round_bits 'rb' (node 2)"},
      {"sum axes not ascending", [](Circuit& c) { tamper_attributes(c, 4, [](auto& a) { a = {0, 1, 0}; }); }, "sum 's' (node 4)"},
      {"sum keepdims not 0/1", [](Circuit& c) { tamper_attributes(c, 4, [](auto& a) { a[0] = 2; }); }, "sum 's' (node 4)"},
      {"slice not normalised", [](Circuit& c) { tamper_attributes(c, 6, [](auto& a) { a[0] = -2; }); }, "slice 'sl' (node 6)"},
      {"slice end past the dimension", [](Circuit& c) { tamper_attributes(c, 6, [](auto& a) { a[2] = 4; }); }, "slice 'sl' (node 6)"},
      {"slice attributes of another rank", [](Circuit& c) { tamper_attributes(c, 6, [](auto& a) { a.pop_back(); }); }, "slice 'sl' (node 6)"},
      {"transpose perm", [](Circuit& c) { tamper_attributes(c, 5, [](auto& a) { a = {0, 0}; }); }, "transpose 't' (node 5)"},
      {"range hint disjoint", [](Circuit& c) { c.nodes[1].range_hint = ValueRange{1000, 2000, 0}; }, "matmul 'mm' (node 1)"},
      {"range hint empty", [](Circuit& c) { c.nodes[1].range_hint = ValueRange{5, 4, 0}; }, "matmul 'mm' (node 1)"},
      {"approximate read by a levelled op",
       [](Circuit& c) {
         Node& n = c.nodes[8];  // the lookup reading node 7, turned into a multiplication
         n.kind = OpKind::kMulConstant;
         n.attributes = NoAttributes{};
         n.tables.clear();
         n.constant = Tensor::scalar(2);
       },
       "mul_constant 'la' (node 8)"},
      {"output past the end", [](Circuit& c) { c.outputs[0] = 9; }, "9"},
      {"no outputs", [](Circuit& c) { c.outputs.clear(); c.output_names.clear(); }, "output"},
      {"output names missing", [](Circuit& c) { c.output_names.pop_back(); }, "output"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    Circuit c = base;
    EXPECT_TRUE(mentions(error_of([&] {
                           k.tamper(c);
                           validate_circuit(c);
                         }),
                         {k.expect}));
  }
}

// Lookup attributes, stored {shared, neighbour}: shared 0 or 1; neighbour reads 0 (exact) or
// 1..kMaxNeighbourLog2.
TEST(CircuitBuilder, LookupAttributesAreSharedThenNeighbourReads) {
  CircuitBuilder b;
  const Value x = b.input({2}, 3, false, "x");
  b.output(b.lookup_per_element_shared(x, {Table{0, 0, {0, 1, 1, 0, 0, 1, 1, 0}}}, {}), "y");
  Circuit c = std::move(b).build();
  const auto error = [&](std::vector<std::int64_t> attributes) {
    return test_support::error_of<std::invalid_argument>([&] {
      c.nodes[1].attributes = decode_attributes(OpKind::kLookup, attributes, c.describe_node(1));
      validate_circuit(c);
    });
  };
  EXPECT_TRUE(test_support::has(error({2}), "shared rotations must be 0 or 1"));
  EXPECT_TRUE(test_support::has(error({1, -1}), "neighbour reads must be 0"));
  EXPECT_TRUE(test_support::has(error({1, 61}), "got 61"));
  EXPECT_TRUE(test_support::has(error({1, 8, 0}), "at most 2 attributes"));
  for (const std::vector<std::int64_t>& ok : {std::vector<std::int64_t>{0}, {1}, {1, 0}, {0, 0}, {1, 8}, {1, 60}, {0, 8}}) {
    EXPECT_NO_THROW({
      c.nodes[1].attributes = decode_attributes(OpKind::kLookup, ok, c.describe_node(1));
      validate_circuit(c);
    }) << ok.size();
  }
  CircuitBuilder nb;
  const Value y = nb.input({2}, 3, false, "x");
  EXPECT_THROW(nb.lookup_per_element_shared(y, {Table{0, 0, {0, 1, 1, 0, 0, 1, 1, 0}}}, {}, "z", kMaxNeighbourLog2 + 1),
               std::invalid_argument);
  const Value z = nb.lookup_per_element_shared(y, {Table{0, 0, {0, 1, 1, 0, 0, 1, 1, 0}}}, {}, "z", 8);
  nb.output(z, "z");
  const Circuit built = std::move(nb).build();
  EXPECT_EQ(stored(built.nodes[z.id]), (std::vector<std::int64_t>{1, 8}));
  CircuitBuilder pb;
  const Value w = pb.input({2}, 3, false, "x");
  const Value plain = pb.lookup_per_element(w, {Table{0, 0, {0, 1, 1, 0, 0, 1, 1, 0}}}, {0, 0}, "p", 9);
  pb.output(plain, "p");
  EXPECT_EQ(stored(std::move(pb).build().nodes[plain.id]), (std::vector<std::int64_t>{0, 9}));
}

}  // namespace
}  // namespace veil::circuit
