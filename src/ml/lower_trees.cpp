// Tree ensembles by the comparison-matrix approach (TFHE_ALGORITHMS.md, "Trees as matrices"),
// with one lookup per group of leaves instead of one per leaf:
//
//   x [1, F] (quantized features)
//   -> matmul with a one-hot [F, U]: the feature of each distinct comparison
//   -> lookup per element: c_u = [dequantized x_f satisfies node u's split] (0/1); nodes whose
//      (feature, table) coincide share one comparison, constant tables are folded away; the
//      comparisons of one feature share one blind rotation (multi-value bootstrapping: each
//      table is a step, read from the rotation of the constant polynomial by two sample
//      extractions)
//   -> matmul with C [U, groups] plus an offset per group: each group (a subtree's leaves, see
//      LeafGroup) packs its ancestors' path count and its subtree's comparison bits into one
//      integer, as wide as the comparisons at most
//   -> lookup per element: the reached leaf's quantized value, 0 when the group's path is
//      not taken (or, one leaf per group, the 0/1 indicator, then a matmul with the values)
//   -> matmul summing each tree's groups: [1, trees * values] (or the margins when the sum
//      over trees is requested in the circuit).
// Exactly one leaf of a tree is reached for every input, so the output's range is known
// exactly: it is set as the node's range hint (interval arithmetic would add all leaves).
// Classifiers whose leaf values sum to one constant skip their last class (the client's
// Processing::complement derives it).
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "lowering.hpp"
#include "veil/circuit/analysis.hpp"

namespace veil::ml::detail {
namespace {

struct PathStep {
  std::size_t node;
  bool left;
};

// The leaves under `root`, reached through the ancestor steps `path`, read by one lookup:
//   v = 2^m (s + R) + sum_j 2^j c_j
// where c_j is the comparison bit of the j-th non-constant internal node of the subtree
// (preorder), s the sum over the path's non-constant comparisons of +c (left turns) and -c
// (right turns), L and R their numbers of left and right turns. Every step is taken exactly
// when s == L, and v lies in [0, span - 1] with span = 2^m (L + R + 1).
struct LeafGroup {
  std::size_t tree = 0;
  std::size_t root = 0;
  std::vector<PathStep> path;
  std::vector<std::size_t> bit_nodes;
  std::int64_t left_turns = 0, right_turns = 0;
  std::int64_t span() const { return (left_turns + right_turns + 1) << bit_nodes.size(); }
};

unsigned bits_for(std::int64_t count) {
  unsigned b = 0;
  while ((std::int64_t{1} << b) < count) ++b;
  return b;
}

// node_comp: per node, the comparison index, or -1 / -2 for a constant right / left turn.
void subtree_bit_nodes(const DecisionTree& t, const std::vector<std::int64_t>& node_comp, std::size_t i,
                       std::vector<std::size_t>& out) {
  if (t.is_leaf(i)) return;
  if (node_comp[i] >= 0) out.push_back(i);
  if (node_comp[i] != -1) subtree_bit_nodes(t, node_comp, static_cast<std::size_t>(t.left[i]), out);
  if (node_comp[i] != -2) subtree_bit_nodes(t, node_comp, static_cast<std::size_t>(t.right[i]), out);
}

// Splits the reachable leaves under node i into groups whose lookups read at most `budget`
// bits, largest subtrees first; a leaf is a group whatever its width, and budget 0 makes
// every leaf its own group.
void form_groups(const DecisionTree& t, std::size_t tree, const std::vector<std::int64_t>& node_comp, std::size_t i,
                 std::vector<PathStep>& path, std::int64_t left_turns, std::int64_t right_turns, unsigned budget,
                 std::vector<LeafGroup>& out) {
  LeafGroup g{tree, i, path, {}, left_turns, right_turns};
  subtree_bit_nodes(t, node_comp, i, g.bit_nodes);
  if (t.is_leaf(i) || (budget > 0 && bits_for(g.span()) <= budget)) {
    out.push_back(std::move(g));
    return;
  }
  const std::int64_t ci = node_comp[i];
  const std::int64_t dynamic = ci >= 0 ? 1 : 0;
  if (ci != -1) {  // the left branch is reachable
    path.push_back({i, true});
    form_groups(t, tree, node_comp, static_cast<std::size_t>(t.left[i]), path, left_turns + dynamic, right_turns, budget, out);
    path.pop_back();
  }
  if (ci != -2) {
    path.push_back({i, false});
    form_groups(t, tree, node_comp, static_cast<std::size_t>(t.right[i]), path, left_turns, right_turns + dynamic, budget, out);
    path.pop_back();
  }
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

  // Leaves (reachable or not: their values bound the outputs).
  const std::size_t vpl = ens.values_per_leaf();
  struct Leaf {
    std::size_t tree;
    std::vector<double> value;
  };
  std::vector<Leaf> leaves;
  for (std::size_t t = 0; t < ens.trees.size(); ++t)
    for (std::size_t i = 0; i < ens.trees[t].node_count(); ++i)
      if (ens.trees[t].is_leaf(i)) leaves.push_back({t, ens.trees[t].value[i]});

  // The last class is the complement of the others when every leaf's values sum to one
  // constant: it is not computed.
  std::optional<double> leaf_total;
  if (options.tree_complement_class && model.task == Task::kClassification && ens.tree_output.empty() && vpl >= 2) {
    auto total = [](const Leaf& l) {
      double s = 0;
      for (double v : l.value) s += v;
      return s;
    };
    leaf_total = total(leaves.front());
    for (const auto& l : leaves)
      if (std::fabs(total(l) - *leaf_total) > 1e-9 * std::max(1.0, std::fabs(*leaf_total))) leaf_total.reset();
  }
  const std::size_t vc = leaf_total ? vpl - 1 : vpl;  // values computed per leaf

  // Leaf values: one scale for the ensemble.
  double vmin = 0, vmax = 0;
  for (const auto& l : leaves)
    for (std::size_t k = 0; k < vc; ++k) vmin = std::min(vmin, l.value[k]), vmax = std::max(vmax, l.value[k]);
  const unsigned lb = options.tree_leaf_bits;
  double scale = 1.0;
  if (vmin >= 0) scale = vmax > 0 ? vmax / static_cast<double>((std::int64_t{1} << lb) - 1) : 1.0;
  else scale = std::max(-vmin, vmax) / static_cast<double>((std::int64_t{1} << (lb - 1)) - 1);
  auto qval = [&](double v) { return static_cast<std::int64_t>(std::nearbyint(v / scale)); };

  const bool in_circuit = options.sum_trees_in_circuit;
  const std::size_t n_trees = ens.trees.size();
  const std::size_t out_cols = in_circuit ? (ens.tree_output.empty() ? vc : ens.n_outputs) : n_trees * vc;
  auto out_col = [&](std::size_t tree, std::size_t k) -> std::size_t {
    if (!in_circuit) return tree * vc + k;
    return ens.tree_output.empty() ? k : static_cast<std::size_t>(ens.tree_output[tree]);
  };
  TreeLeafMode mode = options.tree_leaf_mode;
  if (mode == TreeLeafMode::kAuto) mode = vc <= 4 ? TreeLeafMode::kValueLookup : TreeLeafMode::kIndicator;

  // Leaf groups, one lookup each (per value). Value lookups merge the leaves of a subtree
  // while the lookup's input stays within the group budget; indicators need one per leaf.
  const unsigned budget = mode == TreeLeafMode::kValueLookup
                              ? (options.tree_group_bits ? options.tree_group_bits : bits)
                              : 0;
  std::vector<LeafGroup> groups;
  for (std::size_t t = 0; t < n_trees; ++t) {
    std::vector<PathStep> path;
    form_groups(ens.trees[t], t, node_comp[t], 0, path, 0, 0, budget, groups);
  }
  const std::size_t n_groups = groups.size();
  std::int64_t group_span = 1;  // the widest group's input takes values in [0, group_span - 1]
  for (const auto& g : groups) group_span = std::max(group_span, g.span());

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
  // One rotation per compared feature (multi-value), whose reads may be approximate.
  const circuit::Value c =
      options.tree_shared_comparisons
          ? b.lookup_per_element_shared(xs, std::move(comp_tables), std::move(comp_index_of), "tree_comparisons",
                                        options.tree_comparison_neighbour_log2)
          : b.lookup_per_element(xs, std::move(comp_tables), std::move(comp_index_of), "tree_comparisons");

  // One column per (group, value): the group's input before its offset.
  const std::size_t per_group = mode == TreeLeafMode::kValueLookup ? vc : 1;
  const std::size_t cols = n_groups * per_group;
  circuit::Tensor cm({static_cast<std::int64_t>(u_count), static_cast<std::int64_t>(cols)},
                     std::vector<std::int64_t>(u_count * cols, 0));
  circuit::Tensor offsets({1, static_cast<std::int64_t>(cols)}, std::vector<std::int64_t>(cols, 0));
  for (std::size_t g = 0; g < n_groups; ++g) {
    const LeafGroup& grp = groups[g];
    const std::int64_t high = std::int64_t{1} << grp.bit_nodes.size();
    std::vector<std::int64_t> coef(u_count, 0);
    for (const auto& step : grp.path) {
      const std::int64_t ci = node_comp[grp.tree][step.node];
      if (ci >= 0) coef[static_cast<std::size_t>(ci)] += step.left ? high : -high;
    }
    for (std::size_t j = 0; j < grp.bit_nodes.size(); ++j)
      coef[static_cast<std::size_t>(node_comp[grp.tree][grp.bit_nodes[j]])] += std::int64_t{1} << j;
    for (std::size_t k = 0; k < per_group; ++k) {
      const std::size_t col = g * per_group + k;
      offsets.data[col] = high * grp.right_turns;
      for (std::size_t u = 0; u < u_count; ++u) cm.data[u * cols + col] = coef[u];
    }
  }
  const circuit::Value s = b.add(b.matmul(c, cm, "tree_paths"), offsets, "tree_group_inputs");

  // Exact output range: one reached leaf per tree.
  std::vector<std::int64_t> col_lo(out_cols, 0), col_hi(out_cols, 0);
  {
    std::vector<std::int64_t> tmin(n_trees * vc, INT64_MAX), tmax(n_trees * vc, INT64_MIN);
    for (const auto& l : leaves)
      for (std::size_t k = 0; k < vc; ++k) {
        const std::int64_t q = qval(l.value[k]);
        tmin[l.tree * vc + k] = std::min(tmin[l.tree * vc + k], q);
        tmax[l.tree * vc + k] = std::max(tmax[l.tree * vc + k], q);
      }
    for (std::size_t t = 0; t < n_trees; ++t)
      for (std::size_t k = 0; k < vc; ++k) {
        col_lo[out_col(t, k)] += tmin[t * vc + k];
        col_hi[out_col(t, k)] += tmax[t * vc + k];
      }
  }

  // The leaf a group's input selects, or none when its path is not taken.
  auto group_leaf = [&](const LeafGroup& grp, std::int64_t v) -> std::optional<std::size_t> {
    const std::size_t m = grp.bit_nodes.size();
    if (v < 0 || v >= grp.span() || (v >> m) - grp.right_turns != grp.left_turns) return std::nullopt;
    const DecisionTree& tree = ens.trees[grp.tree];
    std::size_t i = grp.root;
    while (!tree.is_leaf(i)) {
      const std::int64_t ci = node_comp[grp.tree][i];
      bool left = ci == -2;
      if (ci >= 0) {
        const auto j = static_cast<std::size_t>(std::find(grp.bit_nodes.begin(), grp.bit_nodes.end(), i) - grp.bit_nodes.begin());
        left = (v >> j) & 1;
      }
      i = static_cast<std::size_t>(left ? tree.left[i] : tree.right[i]);
    }
    return i;
  };

  std::vector<circuit::Table> tables;
  std::vector<std::uint32_t> index;
  circuit::Tensor g({static_cast<std::int64_t>(cols), static_cast<std::int64_t>(out_cols)},
                    std::vector<std::int64_t>(cols * out_cols, 0));
  for (std::size_t gi = 0; gi < n_groups; ++gi) {
    const LeafGroup& grp = groups[gi];
    const DecisionTree& tree = ens.trees[grp.tree];
    for (std::size_t k = 0; k < per_group; ++k) {
      const std::size_t col = gi * per_group + k;
      if (mode == TreeLeafMode::kValueLookup) {
        // The reached leaf's quantized value k, or 0.
        tables.push_back(b.table_for(s, [&, k](std::int64_t v) {
          const auto leaf = group_leaf(grp, v);
          return leaf ? qval(tree.value[*leaf][k]) : std::int64_t{0};
        }));
        g.data[col * out_cols + out_col(grp.tree, k)] = 1;
      } else {
        // A group is one leaf here: its 0/1 indicator, then a matmul with its values.
        tables.push_back(b.table_for(s, [&](std::int64_t v) { return group_leaf(grp, v) ? std::int64_t{1} : 0; }));
        for (std::size_t kk = 0; kk < vc; ++kk) g.data[col * out_cols + out_col(grp.tree, kk)] += qval(tree.value[grp.root][kk]);
      }
      index.push_back(static_cast<std::uint32_t>(col));
    }
  }
  const circuit::Value lv = b.lookup_per_element(
      s, std::move(tables), std::move(index), mode == TreeLeafMode::kValueLookup ? "tree_leaf_values" : "tree_leaf_indicators");
  const circuit::Value result = b.matmul(lv, g, "tree_outputs");
  b.output(result, "tree_values");
  out.circuit = std::move(b).build();
  // Every group's input lies in [0, its span - 1]; interval arithmetic over the whole matmul
  // would take the union of the groups' signed ranges instead.
  out.circuit.nodes[s.id].range_hint = circuit::ValueRange{0, group_span - 1, 0};
  out.circuit.nodes[result.id].range_hint =
      circuit::ValueRange{*std::min_element(col_lo.begin(), col_lo.end()), *std::max_element(col_hi.begin(), col_hi.end()), 0};

  OutputDequantizer dq;
  dq.shape = {1, static_cast<std::int64_t>(out_cols)};
  const double out_scale = in_circuit && ens.aggregation == Aggregation::kMean ? scale / static_cast<double>(n_trees) : scale;
  dq.scale.assign(out_cols, out_scale);
  dq.offset.assign(out_cols, 0.0);
  p.outputs.push_back(std::move(dq));
  if (leaf_total)
    p.complement = *leaf_total * (ens.aggregation == Aggregation::kSum ? static_cast<double>(n_trees) : 1.0);
  p.aggregation = in_circuit ? OutputAggregation::kNone
                             : (ens.aggregation == Aggregation::kMean ? OutputAggregation::kMean : OutputAggregation::kSum);
  if (!in_circuit) p.tree_output = ens.tree_output;
  p.n_outputs = ens.n_outputs;
  p.base_score = ens.base_score;
  p.link = ens.link;
  return out;
}

}  // namespace veil::ml::detail
