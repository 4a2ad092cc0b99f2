// XGBoost's JSON model format (Booster.save_model("m.json"), gbtree boosters).
#include <cmath>

#include "json_util.hpp"
#include "veil/ml/importers.hpp"

namespace veil::ml {

Model parse_xgboost_json(const nlohmann::json& doc, const std::string& source) {
  detail::JsonReader r{source};
  const auto& learner = r.field(doc, "learner", "$");
  const auto& param = r.field(learner, "learner_model_param", "$.learner");
  const std::int64_t num_feature = r.integer(r.field(param, "num_feature", "$.learner.learner_model_param"),
                                             "$.learner.learner_model_param.num_feature");
  if (num_feature < 1 || num_feature > (1 << 20)) r.fail("$.learner.learner_model_param.num_feature", "must be in [1, 2^20]");
  const std::int64_t num_class = r.has(param, "num_class")
                                     ? r.integer(param["num_class"], "$.learner.learner_model_param.num_class")
                                     : 0;
  if (num_class < 0 || num_class > 4096) r.fail("$.learner.learner_model_param.num_class", "must be in [0, 4096]");
  if (r.has(param, "num_target") && r.integer(param["num_target"], "$.learner.learner_model_param.num_target") != 1)
    r.fail("$.learner.learner_model_param.num_target", "multi-target models are not supported");
  const double base_score = r.num(r.field(param, "base_score", "$.learner.learner_model_param"),
                                  "$.learner.learner_model_param.base_score");
  const auto& objective = r.field(learner, "objective", "$.learner");
  const std::string obj = r.str(r.field(objective, "name", "$.learner.objective"), "$.learner.objective.name");

  Model model;
  model.format = "xgboost";
  model.n_features = static_cast<std::size_t>(num_feature);
  TreeEnsemble ens;
  ens.comparison = Comparison::kLess;
  ens.float32 = true;
  ens.aggregation = Aggregation::kSum;
  const std::size_t k = num_class > 1 ? static_cast<std::size_t>(num_class) : 1;
  ens.n_outputs = k;
  double base_margin = base_score;
  if (obj == "binary:logistic" || obj == "reg:logistic") {
    if (!(base_score > 0 && base_score < 1)) r.fail("$.learner.learner_model_param.base_score", "must be in (0, 1) for " + obj);
    base_margin = std::log(base_score / (1.0 - base_score));
    ens.link = Link::kSigmoid;
    model.task = obj == "binary:logistic" ? Task::kClassification : Task::kRegression;
  } else if (obj == "binary:logitraw") {
    ens.link = Link::kIdentity;
    model.task = Task::kClassification;
  } else if (obj == "multi:softprob" || obj == "multi:softmax") {
    if (k < 2) r.fail("$.learner.learner_model_param.num_class", obj + " needs num_class >= 2");
    ens.link = Link::kSoftmax;
    model.task = Task::kClassification;
  } else if (obj == "reg:squarederror" || obj == "reg:linear" || obj == "reg:pseudohubererror" ||
             obj == "reg:absoluteerror" || obj == "reg:squaredlogerror") {
    ens.link = Link::kIdentity;
    model.task = Task::kRegression;
  } else if (obj == "count:poisson" || obj == "reg:gamma" || obj == "reg:tweedie") {
    if (!(base_score > 0)) r.fail("$.learner.learner_model_param.base_score", "must be positive for " + obj);
    base_margin = std::log(base_score);
    ens.link = Link::kExp;
    model.task = Task::kRegression;
  } else {
    r.fail("$.learner.objective.name",
           "objective '" + obj + "' is not supported (binary:logistic, binary:logitraw, reg:logistic, multi:softprob, "
           "multi:softmax, reg:squarederror, reg:linear, reg:pseudohubererror, reg:absoluteerror, reg:squaredlogerror, "
           "count:poisson, reg:gamma, reg:tweedie)");
  }
  if (model.task == Task::kClassification && k == 1 && ens.link == Link::kIdentity) {
    // logitraw: a margin classifier
  }
  ens.base_score.assign(k, base_margin);
  model.estimator = model.task == Task::kClassification ? "XGBClassifier" : "XGBRegressor";

  if (model.task == Task::kClassification) {
    const std::size_t nc = k == 1 ? 2 : k;
    model.classes.clear();
    for (std::size_t c = 0; c < nc; ++c) model.classes.push_back(static_cast<std::int64_t>(c));
    // The scikit-learn wrapper records its labels.
    if (r.has(learner, "attributes") && learner["attributes"].is_object() && learner["attributes"].contains("scikit_learn")) {
      try {
        const auto sk = nlohmann::json::parse(learner["attributes"]["scikit_learn"].get<std::string>());
        if (sk.contains("classes_") && sk["classes_"].is_array() && sk["classes_"].size() == nc) {
          std::vector<std::int64_t> labels;
          for (const auto& c : sk["classes_"])
            if (c.is_number_integer()) labels.push_back(c.get<std::int64_t>());
          if (labels.size() == nc) model.classes = labels;
        }
      } catch (...) {
        // Attributes are informative only; keep 0..k-1.
      }
    }
  }

  const auto& booster = r.field(learner, "gradient_booster", "$.learner");
  const std::string bname = r.str(r.field(booster, "name", "$.learner.gradient_booster"), "$.learner.gradient_booster.name");
  if (bname != "gbtree")
    r.fail("$.learner.gradient_booster.name", "booster '" + bname + "' is not supported (gbtree only)");
  const auto& gm = r.field(booster, "model", "$.learner.gradient_booster");
  const auto& trees = r.array(r.field(gm, "trees", "$.learner.gradient_booster.model"), "$.learner.gradient_booster.model.trees");
  const auto tree_info = r.integers(r.field(gm, "tree_info", "$.learner.gradient_booster.model"),
                                    "$.learner.gradient_booster.model.tree_info");
  if (trees.empty()) r.fail("$.learner.gradient_booster.model.trees", "no trees");
  if (tree_info.size() != trees.size())
    r.fail("$.learner.gradient_booster.model.tree_info", std::to_string(tree_info.size()) + " entries for " +
                                                              std::to_string(trees.size()) + " trees");
  for (std::size_t t = 0; t < trees.size(); ++t) {
    const std::string path = "$.learner.gradient_booster.model.trees[" + std::to_string(t) + "]";
    const auto& jt = trees[t];
    if (tree_info[t] < 0 || tree_info[t] >= static_cast<std::int64_t>(k))
      r.fail("$.learner.gradient_booster.model.tree_info[" + std::to_string(t) + "]",
             "group " + std::to_string(tree_info[t]) + " outside [0, " + std::to_string(k) + ")");
    if (r.has(jt, "split_type")) {
      const auto st = r.integers(jt["split_type"], path + ".split_type");
      for (std::size_t i = 0; i < st.size(); ++i)
        if (st[i] != 0) r.fail(path + ".split_type[" + std::to_string(i) + "]", "categorical splits are not supported");
    }
    DecisionTree tree;
    tree.left = r.integers(r.field(jt, "left_children", path), path + ".left_children");
    tree.right = r.integers(r.field(jt, "right_children", path), path + ".right_children");
    tree.feature = r.integers(r.field(jt, "split_indices", path), path + ".split_indices");
    const auto cond = r.doubles(r.field(jt, "split_conditions", path), path + ".split_conditions");
    const auto dl = r.integers(r.field(jt, "default_left", path), path + ".default_left");
    const std::size_t n = tree.left.size();
    // Every array is checked before the loop below writes through any of them.
    if (tree.right.size() != n || cond.size() != n || dl.size() != n || tree.feature.size() != n)
      r.fail(path, "node arrays have different lengths (left_children " + std::to_string(n) + ", right_children " +
                       std::to_string(tree.right.size()) + ", split_indices " + std::to_string(tree.feature.size()) +
                       ", split_conditions " + std::to_string(cond.size()) + ", default_left " +
                       std::to_string(dl.size()) + ")");
    tree.threshold.resize(n);
    tree.value.resize(n);
    tree.default_left.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      tree.default_left[i] = dl[i] != 0;
      if (tree.left[i] < 0) {
        tree.left[i] = tree.right[i] = -1;
        tree.feature[i] = -1;
        tree.value[i] = {cond[i]};  // a leaf's split_condition is its value
        tree.threshold[i] = 0;
      } else {
        // XGBoost compares in float32: x < float(split).
        tree.threshold[i] = static_cast<double>(static_cast<float>(cond[i]));
      }
    }
    detail::validate_tree(tree, model.n_features, 1, source + ": " + path);
    ens.trees.push_back(std::move(tree));
    ens.tree_output.push_back(tree_info[t]);
  }
  model.body = std::move(ens);
  return model;
}

Model load_xgboost_json(const std::string& path) { return parse_xgboost_json(detail::parse_json_file(path), path); }

}  // namespace veil::ml
