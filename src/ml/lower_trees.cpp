// Tree ensembles by the comparison-matrix approach (TFHE_ALGORITHMS.md, "Trees as matrices").
//
//   x [1, F] (quantized features)
//   -> matmul with a one-hot [F, U]: the feature of each distinct comparison
//   -> lookup per element: c_u = [dequantized x_f satisfies node u's split] (0/1); nodes whose
//      (feature, table) coincide share one comparison, constant tables are folded away
//   -> matmul with C [U, leaves]: s_l = sum over the leaf's path of +c (left turns) and
//      -c (right turns); the leaf is reached iff s_l equals its number of left turns
//      (minus what constant comparisons contribute)
//   -> lookup per element: the leaf's quantized value when s_l == D_l, else 0
//      (or the 0/1 indicator, then a matmul with the leaf values)
//   -> matmul summing each tree's leaves: [1, trees * values] (or the margins when the sum
//      over trees is requested in the circuit).
// Exactly one leaf of a tree is reached for every input, so the output's range is known
// exactly: it is set as the node's range hint (interval arithmetic would add all leaves).
#include <algorithm>
#include <cmath>
#include <map>

#include "lowering.hpp"

namespace veil::ml::detail {
namespace {

struct PathStep {
  std::size_t node;
  bool left;
};

void collect_leaves(const DecisionTree& t, std::size_t i, std::vector<PathStep>& path,
                    std::vector<std::pair<std::size_t, std::vector<PathStep>>>& leaves) {
  if (t.is_leaf(i)) {
    leaves.emplace_back(i, path);
    return;
  }
  path.push_back({i, true});
  collect_leaves(t, static_cast<std::size_t>(t.left[i]), path, leaves);
  path.back().left = false;
  collect_leaves(t, static_cast<std::size_t>(t.right[i]), path, leaves);
  path.pop_back();
}

}  // namespace

QuantizedModel lower_trees(const Model& model, const TreeEnsemble& ens, const Matrix& calibration,
                           const QuantizationOptions& options) {
  const std::size_t nf = model.n_features;
  const unsigned bits = options.tree_input_bits;
  const bool missing = options.tree_missing_values && model.format == "xgboost";
  if (missing && bits < 2) throw std::invalid_argument("compile_model: tree_input_bits must be >= 2 to route missing values");
  std::vector<double> lo, hi;
  column_ranges(calibration, lo, hi);

  QuantizedModel out;
  Processing& p = out.processing;
  p.model_kind = "tree_ensemble";
  p.input_shape = {1, static_cast<std::int64_t>(nf)};
  for (std::size_t f = 0; f < nf; ++f) p.input_quantizers.push_back(affine_quantizer(lo[f], hi[f], bits, missing));
  const std::int64_t codes = std::int64_t{1} << bits;

  // The float value the model's split sees for code v of feature f.
  auto feature_value = [&](std::size_t f, std::int64_t v) {
    double x = p.input_quantizers[f].dequantize(v);
    for (const auto& t : model.preprocessing) x = x * t.mul[f] + t.add[f];
    if (ens.float32) x = static_cast<double>(static_cast<float>(x));
    return x;
  };

  // Distinct comparisons.
  struct Split {
    std::size_t feature;
    std::vector<std::int64_t> table;
  };
  std::vector<Split> comps;
  std::map<std::pair<std::size_t, std::vector<std::int64_t>>, std::size_t> comp_index;
  // Per tree and node: comparison index, or -1 / -2 for a constant 0 / 1.
  std::vector<std::vector<std::int64_t>> node_comp(ens.trees.size());
  for (std::size_t t = 0; t < ens.trees.size(); ++t) {
    const auto& tree = ens.trees[t];
    node_comp[t].assign(tree.node_count(), 0);
    for (std::size_t i = 0; i < tree.node_count(); ++i) {
      if (tree.is_leaf(i)) continue;
      const auto f = static_cast<std::size_t>(tree.feature[i]);
      std::vector<std::int64_t> table(static_cast<std::size_t>(codes));
      for (std::int64_t v = 0; v < codes; ++v) {
        if (missing && p.input_quantizers[f].missing_code && v == *p.input_quantizers[f].missing_code) {
          table[static_cast<std::size_t>(v)] = tree.default_left[i] ? 1 : 0;
          continue;
        }
        const double x = feature_value(f, v);
        const bool left = ens.comparison == Comparison::kLessEqual ? x <= tree.threshold[i] : x < tree.threshold[i];
        table[static_cast<std::size_t>(v)] = left ? 1 : 0;
      }
      const bool all0 = std::all_of(table.begin(), table.end(), [](std::int64_t b) { return b == 0; });
      const bool all1 = std::all_of(table.begin(), table.end(), [](std::int64_t b) { return b == 1; });
      if (all0 || all1) {
        node_comp[t][i] = all1 ? -2 : -1;
        continue;
      }
      auto key = std::make_pair(f, table);
      auto it = comp_index.find(key);
      if (it == comp_index.end()) {
        it = comp_index.emplace(key, comps.size()).first;
        comps.push_back({f, std::move(table)});
      }
      node_comp[t][i] = static_cast<std::int64_t>(it->second);
    }
  }
  if (comps.empty()) comps.push_back({0, std::vector<std::int64_t>(static_cast<std::size_t>(codes), 0)});
  const std::size_t u_count = comps.size();

  // Leaves: path coefficients and targets.
  const std::size_t vpl = ens.values_per_leaf();
  struct Leaf {
    std::size_t tree;
    std::int64_t target;
    std::vector<double> value;
  };
  std::vector<Leaf> leaves;
  std::vector<std::vector<std::int64_t>> leaf_coef;
  for (std::size_t t = 0; t < ens.trees.size(); ++t) {
    std::vector<PathStep> path;
    std::vector<std::pair<std::size_t, std::vector<PathStep>>> found;
    collect_leaves(ens.trees[t], 0, path, found);
    for (const auto& [leaf, steps] : found) {
      std::vector<std::int64_t> coef(u_count, 0);
      std::int64_t target = 0;
      for (const auto& s : steps) {
        const std::int64_t sign = s.left ? 1 : -1;
        if (s.left) ++target;
        const std::int64_t ci = node_comp[t][s.node];
        if (ci >= 0) coef[static_cast<std::size_t>(ci)] += sign;
        else target -= sign * (ci == -2 ? 1 : 0);
      }
      leaves.push_back({t, target, ens.trees[t].value[leaf]});
      leaf_coef.push_back(std::move(coef));
    }
  }
  const std::size_t n_leaves = leaves.size();

  // Leaf values: one scale for the ensemble.
  double vmin = 0, vmax = 0;
  for (const auto& l : leaves)
    for (double v : l.value) vmin = std::min(vmin, v), vmax = std::max(vmax, v);
  const unsigned lb = options.tree_leaf_bits;
  double scale = 1.0;
  if (vmin >= 0) scale = vmax > 0 ? vmax / static_cast<double>((std::int64_t{1} << lb) - 1) : 1.0;
  else scale = std::max(-vmin, vmax) / static_cast<double>((std::int64_t{1} << (lb - 1)) - 1);
  auto qval = [&](double v) { return static_cast<std::int64_t>(std::nearbyint(v / scale)); };

  const bool in_circuit = options.sum_trees_in_circuit;
  const std::size_t n_trees = ens.trees.size();
  const std::size_t out_cols = in_circuit ? ens.n_outputs : n_trees * vpl;
  auto out_col = [&](std::size_t tree, std::size_t k) -> std::size_t {
    if (!in_circuit) return tree * vpl + k;
    return ens.tree_output.empty() ? k : static_cast<std::size_t>(ens.tree_output[tree]);
  };
  TreeLeafMode mode = options.tree_leaf_mode;
  if (mode == TreeLeafMode::kAuto) mode = vpl <= 4 ? TreeLeafMode::kValueLookup : TreeLeafMode::kIndicator;

  circuit::CircuitBuilder b;
  const circuit::Value x = b.input(p.input_shape, bits, false, "x");
  circuit::Tensor select({static_cast<std::int64_t>(nf), static_cast<std::int64_t>(u_count)},
                         std::vector<std::int64_t>(nf * u_count, 0));
  std::vector<circuit::Table> comp_tables;
  std::vector<std::uint32_t> comp_index_of(u_count);
  for (std::size_t u = 0; u < u_count; ++u) {
    select.data[comps[u].feature * u_count + u] = 1;
    comp_tables.push_back(circuit::Table{0, 0, comps[u].table});
    comp_index_of[u] = static_cast<std::uint32_t>(u);
  }
  const circuit::Value xs = b.matmul(x, select, "tree_features");
  const circuit::Value c = b.lookup_per_element(xs, std::move(comp_tables), std::move(comp_index_of), "tree_comparisons");
  circuit::Tensor cm({static_cast<std::int64_t>(u_count), static_cast<std::int64_t>(n_leaves)},
                     std::vector<std::int64_t>(u_count * n_leaves, 0));
  for (std::size_t l = 0; l < n_leaves; ++l)
    for (std::size_t u = 0; u < u_count; ++u) cm.data[u * n_leaves + l] = leaf_coef[l][u];
  const circuit::Value s = b.matmul(c, cm, "tree_paths");

  // Exact output range: one reached leaf per tree.
  std::vector<std::int64_t> col_lo(out_cols, 0), col_hi(out_cols, 0);
  {
    std::vector<std::int64_t> tmin(n_trees * vpl, INT64_MAX), tmax(n_trees * vpl, INT64_MIN);
    for (const auto& l : leaves)
      for (std::size_t k = 0; k < vpl; ++k) {
        const std::int64_t q = qval(l.value[k]);
        tmin[l.tree * vpl + k] = std::min(tmin[l.tree * vpl + k], q);
        tmax[l.tree * vpl + k] = std::max(tmax[l.tree * vpl + k], q);
      }
    for (std::size_t t = 0; t < n_trees; ++t)
      for (std::size_t k = 0; k < vpl; ++k) {
        col_lo[out_col(t, k)] += tmin[t * vpl + k];
        col_hi[out_col(t, k)] += tmax[t * vpl + k];
      }
  }

  circuit::Value result;
  if (mode == TreeLeafMode::kValueLookup) {
    circuit::Value sv = s;
    if (vpl > 1) {
      sv = b.reshape(s, {static_cast<std::int64_t>(n_leaves), 1}, "tree_paths_column");
      sv = b.broadcast(sv, {static_cast<std::int64_t>(n_leaves), static_cast<std::int64_t>(vpl)}, "tree_paths_values");
      sv = b.reshape(sv, {1, static_cast<std::int64_t>(n_leaves * vpl)}, "tree_paths_flat");
    }
    std::vector<circuit::Table> tables;
    std::vector<std::uint32_t> index;
    for (std::size_t l = 0; l < n_leaves; ++l)
      for (std::size_t k = 0; k < vpl; ++k) {
        const std::int64_t target = leaves[l].target, q = qval(leaves[l].value[k]);
        tables.push_back(b.table_for(sv, [target, q](std::int64_t v) { return v == target ? q : 0; }));
        index.push_back(static_cast<std::uint32_t>(index.size()));
      }
    const circuit::Value lv = b.lookup_per_element(sv, std::move(tables), std::move(index), "tree_leaf_values");
    circuit::Tensor g({static_cast<std::int64_t>(n_leaves * vpl), static_cast<std::int64_t>(out_cols)},
                      std::vector<std::int64_t>(n_leaves * vpl * out_cols, 0));
    for (std::size_t l = 0; l < n_leaves; ++l)
      for (std::size_t k = 0; k < vpl; ++k) g.data[(l * vpl + k) * out_cols + out_col(leaves[l].tree, k)] = 1;
    result = b.matmul(lv, g, "tree_outputs");
  } else {
    std::vector<circuit::Table> tables;
    std::vector<std::uint32_t> index;
    for (std::size_t l = 0; l < n_leaves; ++l) {
      const std::int64_t target = leaves[l].target;
      tables.push_back(b.table_for(s, [target](std::int64_t v) { return v == target ? 1 : 0; }));
      index.push_back(static_cast<std::uint32_t>(l));
    }
    const circuit::Value ind = b.lookup_per_element(s, std::move(tables), std::move(index), "tree_leaf_indicators");
    circuit::Tensor e({static_cast<std::int64_t>(n_leaves), static_cast<std::int64_t>(out_cols)},
                      std::vector<std::int64_t>(n_leaves * out_cols, 0));
    for (std::size_t l = 0; l < n_leaves; ++l)
      for (std::size_t k = 0; k < vpl; ++k) e.data[l * out_cols + out_col(leaves[l].tree, k)] += qval(leaves[l].value[k]);
    result = b.matmul(ind, e, "tree_outputs");
  }
  b.output(result, "tree_values");
  out.circuit = std::move(b).build();
  out.circuit.nodes[result.id].range_hint =
      circuit::ValueRange{*std::min_element(col_lo.begin(), col_lo.end()), *std::max_element(col_hi.begin(), col_hi.end()), 0};

  OutputDequantizer dq;
  dq.shape = {1, static_cast<std::int64_t>(out_cols)};
  const double out_scale = in_circuit && ens.aggregation == Aggregation::kMean ? scale / static_cast<double>(n_trees) : scale;
  dq.scale.assign(out_cols, out_scale);
  dq.offset.assign(out_cols, 0.0);
  p.outputs.push_back(std::move(dq));
  p.aggregation = in_circuit ? OutputAggregation::kNone
                             : (ens.aggregation == Aggregation::kMean ? OutputAggregation::kMean : OutputAggregation::kSum);
  if (!in_circuit) p.tree_output = ens.tree_output;
  p.n_outputs = ens.n_outputs;
  p.base_score = ens.base_score;
  p.link = ens.link;
  return out;
}

}  // namespace veil::ml::detail
