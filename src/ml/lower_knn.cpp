// k-nearest neighbours (model.hpp, NearestNeighbors) as a circuit: encrypted distances to a
// clear, quantized training set, the k smallest by a selection network of lookups, a vote.
//
//   x [1, F]    codes of one common step (delta) in the preprocessed space for every
//               feature, so that squared code distances rank the points as squared
//               Euclidean distances do; the client clamps feature f to [0, q_max_f]
//   s = y^2     one lookup per feature, y = x - middle (codes centred on their range's
//               middle: the same distances, and the cross term's weights half as large)
//   D [1, n]    D_t = sum_f (x_f - u_tf)^2 = s . 1 - 2 y . w_t + |w_t|^2, levelled (u_t: the
//               training point t quantized by the client's own quantizers, w_t = u_t -
//               middle; the cross term's weights set the noise D is read with); exact, and
//               every value in [0, D_max] (the node's range hint: interval arithmetic
//               would add the terms' bounds independently)
//   D' [1, n]   D, or, when D is wider than knn_distance_bits (and exact distances are not
//               asked for), D / 2^r rounded: an approximate round_bits of 2 D + 1 (odd, so
//               never a tie itself) by r + 1 bits, read as a multiple of 2^(r + 1)
//   v [1, n]    one lookup per point: v_t = min(floor(D'_t / step), B - 1) * C + y_t, p bits,
//               so that smaller v means nearer and, within a bucket, the lower class
//               first (C classes, B = floor(2^p / C) buckets, step chosen on the
//               calibration rows so that their k-th nearest point stays below the last,
//               saturated bucket)
//   top k       blocks of K = bit_ceil(k) values, each sorted by a bitonic network; then
//               pairs of sorted blocks merged, keeping the K smallest (K "min" exchanges,
//               then a bitonic merge of log2 K steps), until one block is left; its first
//               k values are the winners. Depth O(log K^2 + log(n / K) log K) lookups.
//               A compare-exchange of a and b is one lookup, m = relu(a - b), and two
//               levelled ops: min = a - m, max = b + m. Every value stays in [0, 2^p - 1]
//               (range hints on the exchanged tensors; interval arithmetic would widen them
//               at each step), so that every difference is read at p + 1 bits.
//               Positions past n are a clear "infinity": their exchanges are resolved
//               when the circuit is built and cost nothing.
//   votes       per winner and class c < C - 1 one lookup [v mod C == c], summed per class:
//               the counts of the first C - 1 classes; the client divides by k and derives
//               the last class as 1 - the others (Processing::complement), then takes the
//               argmax, the lowest class on a tie (scikit-learn's rule).
// The clear quantized model is exactly this computation (the clear executor runs it, the
// rounding to nearest); multisets of equal v are interchangeable, so the winners' classes do
// not depend on how the network orders equal values. With exact distances FHE equals the
// clear model bit for bit; with rounded ones a distance within the noise of a rounding tie
// may get the neighbouring level. Cost per row: F + n + (exchanges) + k (C - 1) PBS, all at
// one precision, max(width(D'), p + 1) bits (p + 1 = width(D') but for few classes).
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "lowering.hpp"

namespace veil::ml::detail {
namespace {

// Training points a circuit takes: each costs about two PBS per row.
constexpr std::size_t kMaxNeighborPoints = 4096;

// The distance the levels read when `dropped` low bits are rounded away: 2 D + 1 to the
// nearest multiple of 2^(dropped + 1) (never a tie), in units of that multiple.
std::int64_t rounded_distance(std::int64_t d, unsigned dropped) {
  const std::int64_t odd = 2 * d + 1, unit = std::int64_t{1} << (dropped + 1);
  return (odd + unit / 2) / unit;
}

unsigned width_of(std::int64_t max_value) {  // bits to write [0, max_value]
  unsigned w = 1;
  while ((std::int64_t{1} << w) <= max_value) ++w;
  return w;
}

// The k smallest of the values of `state` by compare-exchanges (see the file comment).
class SelectionNetwork {
 public:
  static constexpr std::int64_t kInfinity = -1;  // a slot holding a clear +infinity

  // REQUIRES: every value of `state` ([1, size]) is in [0, vmax].
  SelectionNetwork(circuit::CircuitBuilder& b, circuit::Value state, std::size_t size, std::int64_t vmax)
      : b_(b), state_(state), size_(size), vmax_(vmax) {}

  // The positions of the k smallest values in the final state (ascending).
  std::vector<std::int64_t> select(std::size_t k) {
    const std::size_t block = std::bit_ceil(k);
    std::vector<std::vector<std::int64_t>> blocks;
    for (std::size_t start = 0; start < size_; start += block) {
      std::vector<std::int64_t> slots(block, kInfinity);
      for (std::size_t i = 0; i < block && start + i < size_; ++i) slots[i] = static_cast<std::int64_t>(start + i);
      blocks.push_back(std::move(slots));
    }
    // Bitonic sort of every block: for each size s, a flip then half-cleaners.
    for (std::size_t s = 2; s <= block; s *= 2) {
      exchange_layer(blocks, blocks.size(), [&](std::vector<Pair>& pairs) {
        for (std::size_t c = 0; c < block; c += s)
          for (std::size_t i = 0; i < s / 2; ++i) pairs.push_back({c + i, c + s - 1 - i});
      });
      for (std::size_t d = s / 4; d >= 1; d /= 2) half_cleaner(blocks, blocks.size(), block, d);
    }
    // Merge pairs of sorted blocks, keeping the `block` smallest of each pair.
    while (blocks.size() > 1) {
      std::vector<std::pair<std::size_t, std::size_t>> exchanges;
      std::vector<std::vector<std::int64_t>> merged;
      for (std::size_t i = 0; i + 1 < blocks.size(); i += 2) {
        std::vector<std::int64_t> out(block);
        for (std::size_t j = 0; j < block; ++j) {
          const std::int64_t a = blocks[i][j], c = blocks[i + 1][block - 1 - j];
          if (a == kInfinity) out[j] = c;
          else if (c == kInfinity) out[j] = a;
          else {
            exchanges.push_back({static_cast<std::size_t>(a), static_cast<std::size_t>(c)});
            out[j] = a;  // where the exchange leaves the minimum
          }
        }
        merged.push_back(std::move(out));
      }
      const std::size_t merges = merged.size();
      if (blocks.size() % 2 == 1) merged.push_back(blocks.back());  // carried, still sorted
      apply(exchanges);
      blocks = std::move(merged);
      compact(blocks);
      for (std::size_t d = block / 2; d >= 1; d /= 2) half_cleaner(blocks, merges, block, d);
    }
    std::vector<std::int64_t> winners(blocks[0].begin(), blocks[0].begin() + static_cast<std::ptrdiff_t>(k));
    return winners;
  }

  circuit::Value state() const { return state_; }
  std::size_t size() const { return size_; }
  std::int64_t exchanges() const { return exchanges_; }

 private:
  struct Pair {
    std::size_t low, high;  // slot indices within a block: low receives the minimum
  };

  // Applies one exchange step to the first `count` blocks: pairs of slots, resolved
  // statically where one slot is infinity.
  template <typename MakePairs>
  void exchange_layer(std::vector<std::vector<std::int64_t>>& blocks, std::size_t count, MakePairs make_pairs) {
    std::vector<Pair> pairs;
    make_pairs(pairs);
    std::vector<std::pair<std::size_t, std::size_t>> exchanges;
    for (std::size_t bi = 0; bi < count; ++bi)
      for (const Pair& p : pairs) {
        std::int64_t& lo = blocks[bi][p.low];
        std::int64_t& hi = blocks[bi][p.high];
        if (lo == kInfinity) std::swap(lo, hi);  // infinity moves up (or both are)
        else if (hi != kInfinity) exchanges.push_back({static_cast<std::size_t>(lo), static_cast<std::size_t>(hi)});
      }
    apply(exchanges);
  }

  void half_cleaner(std::vector<std::vector<std::int64_t>>& blocks, std::size_t count, std::size_t block, std::size_t d) {
    exchange_layer(blocks, count, [&](std::vector<Pair>& pairs) {
      for (std::size_t c = 0; c < block; c += 2 * d)
        for (std::size_t i = 0; i < d; ++i) pairs.push_back({c + i, c + i + d});
    });
  }

  // One lookup for all the (min position, max position) exchanges.
  void apply(const std::vector<std::pair<std::size_t, std::size_t>>& exchanges) {
    if (exchanges.empty()) return;
    const auto n = static_cast<std::int64_t>(size_), e = static_cast<std::int64_t>(exchanges.size());
    circuit::Tensor gather({n, e}, std::vector<std::int64_t>(static_cast<std::size_t>(n * e), 0));
    circuit::Tensor scatter({e, n}, std::vector<std::int64_t>(static_cast<std::size_t>(e * n), 0));
    for (std::int64_t j = 0; j < e; ++j) {
      const auto [lo, hi] = exchanges[static_cast<std::size_t>(j)];
      gather.data[lo * static_cast<std::size_t>(e) + static_cast<std::size_t>(j)] = 1;
      gather.data[hi * static_cast<std::size_t>(e) + static_cast<std::size_t>(j)] = -1;
      scatter.data[static_cast<std::size_t>(j * n) + lo] = -1;
      scatter.data[static_cast<std::size_t>(j * n) + hi] = 1;
    }
    // The state is in [0, vmax], so the differences are in [-vmax, vmax] and m in [0, vmax].
    const circuit::Value diff = b_.matmul(state_, gather, "knn_differences");
    const circuit::Value m = b_.lookup(diff, [](std::int64_t v) { return std::max<std::int64_t>(v, 0); }, "knn_exchange");
    const circuit::Value moves = b_.matmul(m, scatter, "knn_moves");
    // min(a, b) and max(a, b) are in [0, vmax] again; interval arithmetic would give
    // [-vmax, 2 vmax] and triple the width at every step, so the sum carries its range.
    circuit::Node sum;
    sum.kind = circuit::OpKind::kAdd;
    sum.operands = {state_.id, moves.id};
    sum.shape = b_.shape(state_);
    sum.range_hint = circuit::ValueRange{0, vmax_, 0};
    sum.name = "knn_exchanged";
    state_ = b_.add_node(std::move(sum));
    exchanges_ += e;
  }

  // Keeps only the positions the blocks hold, renumbered.
  void compact(std::vector<std::vector<std::int64_t>>& blocks) {
    std::vector<std::int64_t> live;
    for (const auto& slots : blocks)
      for (std::int64_t s : slots)
        if (s != kInfinity) live.push_back(s);
    if (live.size() == size_) return;
    const auto n = static_cast<std::int64_t>(size_), m = static_cast<std::int64_t>(live.size());
    circuit::Tensor pick({n, m}, std::vector<std::int64_t>(static_cast<std::size_t>(n * m), 0));
    std::vector<std::int64_t> renumber(size_, kInfinity);
    for (std::int64_t j = 0; j < m; ++j) {
      pick.data[static_cast<std::size_t>(live[static_cast<std::size_t>(j)] * m + j)] = 1;
      renumber[static_cast<std::size_t>(live[static_cast<std::size_t>(j)])] = j;
    }
    for (auto& slots : blocks)
      for (std::int64_t& s : slots)
        if (s != kInfinity) s = renumber[static_cast<std::size_t>(s)];
    state_ = b_.matmul(state_, pick, "knn_kept");
    size_ = live.size();
  }

  circuit::CircuitBuilder& b_;
  circuit::Value state_;
  std::size_t size_;
  std::int64_t vmax_;
  std::int64_t exchanges_ = 0;
};

// Quantization of the features for distances: every feature gets the same step in the
// preprocessed space, so that code distances are Euclidean distances scaled by delta^2.
struct DistanceCodes {
  std::vector<InputQuantizer> quantizers;
  std::vector<std::vector<std::int64_t>> train;  // u_tf
  std::int64_t d_max = 0;                         // the largest squared code distance
};

DistanceCodes distance_codes(const Model& model, const NearestNeighbors& knn, const Matrix& calibration, unsigned bits) {
  const std::size_t nf = model.n_features;
  // x' = a x + c per feature, the preprocessing composed.
  std::vector<double> a(nf, 1.0), c(nf, 0.0);
  for (const auto& t : model.preprocessing)
    for (std::size_t f = 0; f < nf; ++f) {
      a[f] *= t.mul[f];
      c[f] = c[f] * t.mul[f] + t.add[f];
    }
  std::vector<double> lo(nf, std::numeric_limits<double>::infinity()), hi(nf, -std::numeric_limits<double>::infinity());
  for (std::size_t f = 0; f < nf; ++f) {
    if (!(a[f] > 0))
      throw std::invalid_argument("compile_model: k-nearest neighbours: the preprocessing multiplies feature " +
                                  std::to_string(f) + " by " + std::to_string(a[f]) + " (must be positive)");
    for (std::size_t r = 0; r < calibration.rows; ++r) {
      const double v = calibration.at(r, f) * a[f] + c[f];
      if (std::isnan(v)) continue;
      lo[f] = std::min(lo[f], v), hi[f] = std::max(hi[f], v);
    }
    for (const auto& t : knn.train_x) lo[f] = std::min(lo[f], t[f]), hi[f] = std::max(hi[f], t[f]);
  }
  double span = 0;
  for (std::size_t f = 0; f < nf; ++f) span = std::max(span, hi[f] - lo[f]);
  const std::int64_t top = (std::int64_t{1} << bits) - 1;
  const double delta = span > 0 ? span / static_cast<double>(top) : 1.0;
  DistanceCodes out;
  for (std::size_t f = 0; f < nf; ++f) {
    InputQuantizer q;
    q.n_bits = bits;
    q.is_signed = false;
    q.q_min = 0;
    // q = round(x / scale) + zero_point = round((x' - lo) / delta) (up to the zero point's
    // rounding), x' = a x + c.
    q.scale = delta / a[f];
    q.zero_point = static_cast<std::int64_t>(std::nearbyint((c[f] - lo[f]) / delta));
    q.q_max = std::clamp<std::int64_t>(static_cast<std::int64_t>(std::ceil((hi[f] - lo[f]) / delta - 1e-9)), 0, top);
    out.quantizers.push_back(q);
  }
  for (std::size_t t = 0; t < knn.train_x.size(); ++t) {
    std::vector<std::int64_t> u(nf);
    std::int64_t worst = 0;
    for (std::size_t f = 0; f < nf; ++f) {
      u[f] = out.quantizers[f].quantize((knn.train_x[t][f] - c[f]) / a[f], "training point " + std::to_string(t));
      const std::int64_t far = std::max(u[f], out.quantizers[f].q_max - u[f]);
      worst += far * far;
    }
    out.d_max = std::max(out.d_max, worst);
    out.train.push_back(std::move(u));
  }
  return out;
}

}  // namespace

QuantizedModel lower_knn(const Model& model, const NearestNeighbors& knn, const Matrix& calibration,
                         const QuantizationOptions& options) {
  const std::size_t nf = model.n_features, n = knn.train_x.size(), k = knn.k, classes = model.classes.size();
  if (model.task != Task::kClassification || classes < 2)
    throw std::invalid_argument("compile_model: k-nearest neighbours: only classification is supported");
  if (k < 1 || k > n)
    throw std::invalid_argument("compile_model: k-nearest neighbours: k = " + std::to_string(k) + " with " +
                                std::to_string(n) + " training points");
  if (n > kMaxNeighborPoints)
    throw std::invalid_argument("compile_model: k-nearest neighbours: " + std::to_string(n) +
                                " training points, at most " + std::to_string(kMaxNeighborPoints) +
                                " (each costs about two PBS per row)");

  // Input bits: as asked, or the most up to knn_max_input_bits whose squared distances a
  // lookup reads exactly (8 bits), or, rounded, with at most two bits dropped (more blurs the
  // nearest distances, which are the small ones: 30 features at 4 bits lose 19 points of
  // accuracy on breast_cancer).
  const bool exact = options.knn_exact_distances;
  DistanceCodes codes;
  unsigned bits = options.knn_input_bits;
  if (bits != 0) {
    codes = distance_codes(model, knn, calibration, bits);
  } else {
    const unsigned widest = exact ? circuit::kMaxLookupPrecision : options.knn_distance_bits + 2;
    for (bits = options.knn_max_input_bits; bits >= 1; --bits) {
      codes = distance_codes(model, knn, calibration, bits);
      if (width_of(codes.d_max) <= widest || bits == 1) break;
    }
  }
  // Dropped low bits of the distances (approximate rounding), so that the levels read
  // knn_distance_bits.
  // The rounded distances take values in [0, (D_max >> dropped) + 1], and the analysis
  // adds one more step for the approximate rounding's multiple above.
  unsigned dropped = 0;
  if (!exact)
    while (width_of(codes.d_max) > options.knn_distance_bits && width_of((codes.d_max >> dropped) + 2) > options.knn_distance_bits)
      ++dropped;
  const unsigned d_bits = width_of(dropped ? (codes.d_max >> dropped) + 2 : codes.d_max);
  if (d_bits > circuit::kMaxLookupPrecision)
    throw std::invalid_argument("compile_model: k-nearest neighbours: squared distances over " + std::to_string(nf) +
                                " features at " + std::to_string(bits) + "-bit inputs reach " +
                                std::to_string(codes.d_max) + ", more than a lookup reads (" +
                                std::to_string(circuit::kMaxLookupPrecision) +
                                " bits): use fewer input bits or fewer features");

  // Values v: p bits, the exchanges read p + 1; at least four buckets.
  unsigned p = std::max(d_bits, 2u) - 1;
  while ((std::int64_t{1} << p) < 4 * static_cast<std::int64_t>(classes) && p < circuit::kMaxLookupPrecision - 1) ++p;
  const std::int64_t buckets = (std::int64_t{1} << p) / static_cast<std::int64_t>(classes);
  if (buckets < 2)
    throw std::invalid_argument("compile_model: k-nearest neighbours: " + std::to_string(classes) +
                                " classes leave fewer than two distance levels in " + std::to_string(p) + " bits");
  const auto cls = static_cast<std::int64_t>(classes);
  const std::int64_t vmax = buckets * cls - 1;

  // Distance step: the calibration rows' k-th nearest point (98th percentile) below the last
  // bucket, which saturates.
  std::int64_t step = 1;
  {
    std::vector<std::int64_t> kth;
    std::vector<std::int64_t> d(n);
    for (std::size_t r = 0; r < calibration.rows; ++r) {
      std::vector<std::int64_t> q(nf);
      bool missing = false;
      for (std::size_t f = 0; f < nf; ++f) {
        if (std::isnan(calibration.at(r, f))) missing = true;
        else q[f] = codes.quantizers[f].quantize(calibration.at(r, f));
      }
      if (missing) continue;
      for (std::size_t t = 0; t < n; ++t) {
        std::int64_t s = 0;
        for (std::size_t f = 0; f < nf; ++f) s += (q[f] - codes.train[t][f]) * (q[f] - codes.train[t][f]);
        d[t] = dropped ? rounded_distance(s, dropped) : s;
      }
      std::nth_element(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(k - 1), d.end());
      kth.push_back(d[k - 1]);
    }
    if (!kth.empty()) {
      std::sort(kth.begin(), kth.end());
      const std::int64_t reach = kth[std::min(kth.size() - 1, kth.size() * 98 / 100)];
      step = reach / (buckets - 1) + 1;
    }
  }

  QuantizedModel out;
  Processing& pr = out.processing;
  pr.model_kind = "knn";
  pr.input_shape = {1, static_cast<std::int64_t>(nf)};
  pr.input_quantizers = codes.quantizers;

  circuit::CircuitBuilder b;
  const circuit::Value x = b.input(pr.input_shape, bits, false, "x");
  // Codes centred on the middle of each feature's range: the same distances, with the cross
  // term's weights -2 (u - middle) half as large, a quarter of the noise.
  circuit::Tensor middle({1, static_cast<std::int64_t>(nf)}, std::vector<std::int64_t>(nf, 0));
  for (std::size_t f = 0; f < nf; ++f) middle.data[f] = -(codes.quantizers[f].q_max / 2);
  const circuit::Value xc = b.add(x, middle, "knn_centred");
  const circuit::Value sq = b.lookup(xc, [](std::int64_t v) { return v * v; }, "knn_squares");
  const auto nn = static_cast<std::int64_t>(n);
  circuit::Tensor ones({static_cast<std::int64_t>(nf), nn}, std::vector<std::int64_t>(nf * n, 1));
  circuit::Tensor cross({static_cast<std::int64_t>(nf), nn}, std::vector<std::int64_t>(nf * n, 0));
  circuit::Tensor norms({1, nn}, std::vector<std::int64_t>(n, 0));
  for (std::size_t t = 0; t < n; ++t)
    for (std::size_t f = 0; f < nf; ++f) {
      const std::int64_t u = codes.train[t][f] + middle.data[f];
      cross.data[f * n + t] = -2 * u;
      norms.data[t] += u * u;
    }
  const circuit::Value dist =
      b.add(b.add(b.matmul(sq, ones), b.matmul(xc, cross)), norms, "knn_distances");

  // Rounded: r = round_bits(2 D + 1, dropped + 1), approximate. 2 D + 1 is odd, never a tie
  // itself: the nearest multiple is well defined in the clear, and under encryption the
  // other one is read only within the noise of a tie (one unit of 2 D + 1 from it at
  // closest). The levels then read r / 2^(dropped + 1), D / 2^dropped rounded.
  circuit::Value read = dist;
  const unsigned read_shift = dropped ? dropped + 1 : 0;
  if (dropped) {
    const circuit::Value odd = b.add(b.mul(dist, 2), 1, "knn_odd_distances");
    read = b.round_bits(odd, dropped + 1, circuit::RoundingMode::kApproximate, "knn_rounded_distances");
  }
  // v_t = min(floor(D' / step), B - 1) * C + y_t (D' = D, or D rounded): one table per class
  // present.
  std::vector<circuit::Table> tables;
  std::vector<std::int64_t> table_of(classes, -1);
  std::vector<std::uint32_t> index(n);
  for (std::size_t t = 0; t < n; ++t) {
    const auto c = static_cast<std::size_t>(knn.train_y[t]);
    if (table_of[c] < 0) {
      table_of[c] = static_cast<std::int64_t>(tables.size());
      tables.push_back(b.table_for(read, [=](std::int64_t v) {
        return std::min((std::max<std::int64_t>(v, 0) >> read_shift) / step, buckets - 1) * cls + static_cast<std::int64_t>(c);
      }));
    }
    index[t] = static_cast<std::uint32_t>(table_of[c]);
  }
  const circuit::Value v = b.lookup_per_element(read, std::move(tables), std::move(index), "knn_levels");

  SelectionNetwork net(b, v, n, vmax);
  const std::vector<std::int64_t> winners = net.select(k);

  // Votes: winner i and class c < C - 1 -> [v mod C == c], summed per class.
  const std::int64_t voted = cls - 1, kk = static_cast<std::int64_t>(k);
  const auto size = static_cast<std::int64_t>(net.size());
  circuit::Tensor pick({size, kk * voted}, std::vector<std::int64_t>(static_cast<std::size_t>(size * kk * voted), 0));
  circuit::Tensor sum({kk * voted, voted}, std::vector<std::int64_t>(static_cast<std::size_t>(kk * voted * voted), 0));
  std::vector<circuit::Table> vote_tables;
  std::vector<std::uint32_t> vote_index;
  for (std::int64_t i = 0; i < kk; ++i)
    for (std::int64_t c = 0; c < voted; ++c) {
      const std::int64_t col = i * voted + c;
      pick.data[static_cast<std::size_t>(winners[static_cast<std::size_t>(i)] * kk * voted + col)] = 1;
      sum.data[static_cast<std::size_t>(col * voted + c)] = 1;
      vote_index.push_back(static_cast<std::uint32_t>(c));
    }
  const circuit::Value chosen = b.matmul(net.state(), pick, "knn_winners");
  for (std::int64_t c = 0; c < voted; ++c)
    vote_tables.push_back(b.table_for(chosen, [=](std::int64_t w) {
      return ((w % cls) + cls) % cls == c ? std::int64_t{1} : std::int64_t{0};
    }));
  const circuit::Value votes = b.lookup_per_element(chosen, std::move(vote_tables), std::move(vote_index), "knn_votes");
  const circuit::Value counts = b.matmul(votes, sum, "knn_counts");
  b.output(counts, "votes");
  out.circuit = std::move(b).build();

  // Every distance is in [0, D_max] (exact, not calibrated); interval arithmetic adds the
  // three terms' bounds independently. The levels' tables cover the wider range. (Hints
  // set here reach the nodes after `dist` through the analysis, which re-infers them.)
  out.circuit.nodes[dist.id].range_hint = circuit::ValueRange{0, codes.d_max, 0};

  OutputDequantizer dq;
  dq.shape = {1, voted};
  dq.scale.assign(static_cast<std::size_t>(voted), 1.0 / static_cast<double>(k));
  dq.offset.assign(static_cast<std::size_t>(voted), 0.0);
  pr.outputs.push_back(std::move(dq));
  pr.complement = 1.0;
  pr.aggregation = OutputAggregation::kNone;
  pr.n_outputs = classes;
  pr.link = Link::kIdentity;
  out.knn_input_bits = bits;
  return out;
}

}  // namespace veil::ml::detail
