// ONNX ModelProto files (PyTorch exports, opsets 9 to 17), parsed with libonnx's protobuf
// classes into a Network (model.hpp). Only the ops of supported_onnx_ops() are accepted;
// Constant and Identity are folded away here, a trailing Softmax becomes the client's link.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include <onnx/onnx_pb.h>

#include "veil/ml/data.hpp"
#include "veil/ml/importers.hpp"
#include "network_ops.hpp"

namespace veil::ml {

const std::vector<std::string>& supported_onnx_ops() {
  static const std::vector<std::string> ops = [] {
    // The registry's ops (network_ops.hpp), and what the importer itself resolves: Constant
    // and Identity are folded away, a final Softmax becomes the client's link.
    std::vector<std::string> v = detail::network_op_names();
    for (const char* name : {"Constant", "Identity", "Softmax"}) v.push_back(name);
    std::sort(v.begin(), v.end());
    return v;
  }();
  return ops;
}

namespace {

constexpr std::int64_t kMaxElements = std::int64_t{1} << 26;

std::string supported_list() {
  std::string s;
  for (const auto& op : supported_onnx_ops()) s += (s.empty() ? "" : ", ") + op;
  return s;
}

template <typename T>
void append_raw(const std::string& raw, std::vector<double>& out, std::size_t count, const std::string& where) {
  if (raw.size() != count * sizeof(T))
    throw ModelFormatError(where + ": raw_data holds " + std::to_string(raw.size()) + " bytes, expected " +
                           std::to_string(count * sizeof(T)));
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    T v;
    std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));  // ONNX raw data is little-endian
    out.push_back(static_cast<double>(v));
  }
}

FloatTensor convert_tensor(const onnx::TensorProto& t, const std::string& where) {
  FloatTensor out;
  std::int64_t count = 1;
  for (auto d : t.dims()) {
    if (d < 0 || d > kMaxElements) throw ModelFormatError(where + ": dimension " + std::to_string(d) + " is out of range");
    out.shape.push_back(d);
    count *= d;
    if (count > kMaxElements) throw ModelFormatError(where + ": more than 2^26 elements");
  }
  if (t.has_data_location() && t.data_location() == onnx::TensorProto_DataLocation_EXTERNAL)
    throw ModelFormatError(where + ": external tensor data is not supported");
  const auto n = static_cast<std::size_t>(count);
  const bool raw = t.has_raw_data();
  switch (t.data_type()) {
    case onnx::TensorProto_DataType_FLOAT:
      if (raw) append_raw<float>(t.raw_data(), out.data, n, where);
      else out.data.assign(t.float_data().begin(), t.float_data().end());
      break;
    case onnx::TensorProto_DataType_DOUBLE:
      if (raw) append_raw<double>(t.raw_data(), out.data, n, where);
      else out.data.assign(t.double_data().begin(), t.double_data().end());
      break;
    case onnx::TensorProto_DataType_INT64:
      out.type = ElementType::kInt64;
      if (raw) append_raw<std::int64_t>(t.raw_data(), out.data, n, where);
      else for (auto v : t.int64_data()) out.data.push_back(static_cast<double>(v));
      break;
    case onnx::TensorProto_DataType_INT32:
      out.type = ElementType::kInt32;
      if (raw) append_raw<std::int32_t>(t.raw_data(), out.data, n, where);
      else for (auto v : t.int32_data()) out.data.push_back(v);
      break;
    case onnx::TensorProto_DataType_INT8:
    case onnx::TensorProto_DataType_UINT8: {
      // Zero points and clip bounds of quantized graphs; held in int32_data when not raw.
      const bool is_signed = t.data_type() == onnx::TensorProto_DataType_INT8;
      out.type = is_signed ? ElementType::kInt8 : ElementType::kUint8;
      if (raw) {
        if (is_signed) append_raw<std::int8_t>(t.raw_data(), out.data, n, where);
        else append_raw<std::uint8_t>(t.raw_data(), out.data, n, where);
      } else {
        for (auto v : t.int32_data()) {
          if (v < (is_signed ? -128 : 0) || v > (is_signed ? 127 : 255))
            throw ModelFormatError(where + ": value " + std::to_string(v) + " is outside its 8-bit type");
          out.data.push_back(v);
        }
      }
      break;
    }
    default:
      throw ModelFormatError(where + ": tensor data type " + std::to_string(t.data_type()) +
                             " is not supported (float, double, int64, int32, int8, uint8)");
  }
  if (out.data.size() != n)
    throw ModelFormatError(where + ": " + std::to_string(out.data.size()) + " values for shape " +
                           circuit::shape_string(out.shape));
  return out;
}

Attribute convert_attribute(const onnx::AttributeProto& a, const std::string& where) {
  Attribute out;
  switch (a.type()) {
    case onnx::AttributeProto_AttributeType_INT: out.type = Attribute::Type::kInt; out.i = a.i(); break;
    case onnx::AttributeProto_AttributeType_FLOAT: out.type = Attribute::Type::kFloat; out.f = a.f(); break;
    case onnx::AttributeProto_AttributeType_INTS:
      out.type = Attribute::Type::kInts;
      out.ints.assign(a.ints().begin(), a.ints().end());
      break;
    case onnx::AttributeProto_AttributeType_FLOATS:
      out.type = Attribute::Type::kFloats;
      out.floats.assign(a.floats().begin(), a.floats().end());
      break;
    case onnx::AttributeProto_AttributeType_STRING: out.type = Attribute::Type::kString; out.s = a.s(); break;
    case onnx::AttributeProto_AttributeType_TENSOR:
      out.type = Attribute::Type::kTensor;
      out.t = convert_tensor(a.t(), where + ", attribute '" + a.name() + "'");
      break;
    default:
      throw ModelFormatError(where + ": attribute '" + a.name() + "' has an unsupported type " + std::to_string(a.type()));
  }
  return out;
}

// Evaluates every node whose inputs are all constants (quantization-aware training's weight
// path: initializer -> QuantizeLinear -> Clip -> DequantizeLinear) into an initializer, and
// records the grid of what a DequantizeLinear produced (Network::weight_steps).
void fold_constants(Network& net, const std::string& source) {
  std::vector<GraphNode> kept;
  for (auto& n : net.nodes) {
    bool constant = !n.inputs.empty();
    for (const auto& in : n.inputs)
      if (!in.empty() && !net.initializers.count(in)) constant = false;
    if (!constant) {
      kept.push_back(std::move(n));
      continue;
    }
    try {
      detail::evaluate_node(net, n, net.initializers);
      if (n.op_type == "DequantizeLinear") {
        const FloatTensor& y = net.initializers.at(n.outputs[0]);
        const FloatTensor* zp = n.inputs.size() > 2 && !n.inputs[2].empty() ? &net.initializers.at(n.inputs[2]) : nullptr;
        const auto p = detail::quant_params(n, y.shape, net.initializers.at(n.inputs.at(1)), zp);
        net.weight_steps[n.outputs[0]] = FloatTensor{y.shape, p.scale, ElementType::kFloat};
      }
    } catch (const std::invalid_argument& e) {
      throw ModelFormatError(source + ": " + e.what());
    } catch (const std::out_of_range& e) {
      throw ModelFormatError(source + ": node '" + n.name + "' (" + n.op_type + "): " + e.what());
    } catch (const std::length_error& e) {
      throw ModelFormatError(source + ": node '" + n.name + "' (" + n.op_type + "): " + e.what());
    }
  }
  net.nodes = std::move(kept);
}

}  // namespace

Model parse_onnx(std::span<const std::uint8_t> bytes, const std::string& source) {
  onnx::ModelProto proto;
  if (bytes.size() > static_cast<std::size_t>(INT32_MAX) || !proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    throw ModelFormatError(source + ": not a valid ONNX model (protobuf parse failed)");
  std::int64_t opset = 0;
  for (const auto& o : proto.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") opset = o.version();
  if (opset == 0) throw ModelFormatError(source + ": no opset import for the default ONNX domain");
  if (opset < 7 || opset > 18)
    throw ModelFormatError(source + ": opset " + std::to_string(opset) + " is not supported (9 to 17 are tested)");
  const auto& g = proto.graph();

  Network net;
  net.opset = opset;
  for (const auto& init : g.initializer())
    net.initializers[init.name()] = convert_tensor(init, source + ": initializer '" + init.name() + "'");

  std::vector<const onnx::ValueInfoProto*> inputs;
  for (const auto& in : g.input())
    if (!net.initializers.count(in.name())) inputs.push_back(&in);
  if (inputs.size() != 1)
    throw ModelFormatError(source + ": the graph has " + std::to_string(inputs.size()) +
                           " non-initializer inputs; exactly one is supported");
  if (g.output_size() != 1)
    throw ModelFormatError(source + ": the graph has " + std::to_string(g.output_size()) + " outputs; exactly one is supported");
  net.input_name = inputs[0]->name();
  const auto& tt = inputs[0]->type().tensor_type();
  if (!tt.has_shape()) throw ModelFormatError(source + ": input '" + net.input_name + "' has no shape");
  if (tt.shape().dim_size() > static_cast<int>(circuit::kMaxRank))
    throw ModelFormatError(source + ": input '" + net.input_name + "' has rank " + std::to_string(tt.shape().dim_size()) +
                           "; at most " + std::to_string(circuit::kMaxRank) + " is supported");
  for (int d = 0; d < tt.shape().dim_size(); ++d) {
    const auto& dim = tt.shape().dim(d);
    if (d == 0) {
      net.input_shape.push_back(1);  // whatever the batch, the circuit runs one sample
      continue;
    }
    if (!dim.has_dim_value() || dim.dim_value() < 1)
      throw ModelFormatError(source + ": input '" + net.input_name + "' dimension " + std::to_string(d) +
                             " is not a fixed size");
    net.input_shape.push_back(dim.dim_value());
  }
  if (net.input_shape.size() < 2)
    throw ModelFormatError(source + ": input '" + net.input_name + "' must have a batch dimension and features");
  std::int64_t input_elements = 0;
  try {
    input_elements = circuit::element_count(net.input_shape, "input '" + net.input_name + "'");
  } catch (const std::invalid_argument& e) {
    throw ModelFormatError(source + ": " + e.what());
  }
  net.output_name = g.output(0).name();

  std::map<std::string, std::string> alias;  // Identity outputs
  auto resolve = [&](const std::string& n) {
    auto it = alias.find(n);
    return it == alias.end() ? n : it->second;
  };
  const auto& supported = supported_onnx_ops();
  for (int i = 0; i < g.node_size(); ++i) {
    const auto& n = g.node(i);
    const std::string where = source + ": node '" + n.name() + "' (" + n.op_type() + ")";
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      throw ModelFormatError(where + ": domain '" + n.domain() + "' is not supported");
    if (std::find(supported.begin(), supported.end(), n.op_type()) == supported.end())
      throw ModelFormatError(source + ": op '" + n.op_type() + "' (node '" + n.name() +
                             "') is not supported; supported ops: " + supported_list());
    GraphNode node;
    node.op_type = n.op_type();
    node.name = n.name().empty() ? n.op_type() + "_" + std::to_string(i) : n.name();
    for (const auto& in : n.input()) node.inputs.push_back(in.empty() ? in : resolve(in));
    node.outputs.assign(n.output().begin(), n.output().end());
    if (node.outputs.empty()) throw ModelFormatError(where + ": no output");
    for (const auto& a : n.attribute()) node.attributes[a.name()] = convert_attribute(a, where);
    if (node.op_type == "Constant") {
      FloatTensor t;
      const auto& at = node.attributes;
      if (at.count("value")) t = at.at("value").t;
      else if (at.count("value_float")) t = FloatTensor{{}, {at.at("value_float").f}};
      else if (at.count("value_floats")) t = FloatTensor{{static_cast<std::int64_t>(at.at("value_floats").floats.size())}, at.at("value_floats").floats};
      else if (at.count("value_int")) t = FloatTensor{{}, {static_cast<double>(at.at("value_int").i)}};
      else if (at.count("value_ints")) {
        for (auto v : at.at("value_ints").ints) t.data.push_back(static_cast<double>(v));
        t.shape = {static_cast<std::int64_t>(t.data.size())};
      } else {
        throw ModelFormatError(where + ": Constant without a supported value attribute");
      }
      net.initializers[node.outputs[0]] = std::move(t);
      continue;
    }
    if (node.op_type == "Identity") {
      if (node.inputs.empty()) throw ModelFormatError(where + ": no input");
      if (net.initializers.count(node.inputs[0])) net.initializers[node.outputs[0]] = net.initializers[node.inputs[0]];
      else alias[node.outputs[0]] = node.inputs[0];
      continue;
    }
    net.nodes.push_back(std::move(node));
  }
  net.output_name = resolve(net.output_name);
  fold_constants(net, source);

  // A trailing Softmax is the client's post-processing.
  if (!net.nodes.empty() && net.nodes.back().op_type == "Softmax" && net.nodes.back().outputs[0] == net.output_name) {
    const auto& sm = net.nodes.back();
    const std::int64_t rank = static_cast<std::int64_t>(net.input_shape.size());
    (void)rank;
    std::int64_t axis = opset >= 13 ? -1 : 1;
    if (sm.attributes.count("axis")) axis = sm.attributes.at("axis").i;
    if (axis != 1 && axis != -1)
      throw ModelFormatError(source + ": node '" + sm.name + "' (Softmax): only a softmax over the class axis (1) is supported");
    if (sm.inputs.empty() || sm.inputs[0].empty())
      throw ModelFormatError(source + ": node '" + sm.name + "' (Softmax): no input");
    net.output_name = sm.inputs[0];
    net.link = Link::kSoftmax;
    net.nodes.pop_back();
  }
  for (const auto& n : net.nodes)
    if (n.op_type == "Softmax")
      throw ModelFormatError(source + ": node '" + n.name + "' (Softmax): Softmax is supported only as the graph's last op "
                             "(it runs on the client)");

  // Every node input must be produced before it is read.
  std::set<std::string> known{net.input_name};
  for (const auto& [name, t] : net.initializers) known.insert(name);
  for (const auto& n : net.nodes) {
    for (const auto& in : n.inputs)
      if (!in.empty() && !known.count(in))
        throw ModelFormatError(source + ": node '" + n.name + "' (" + n.op_type + ") reads '" + in +
                               "', which no earlier node produces");
    for (const auto& out : n.outputs) known.insert(out);
  }
  if (!known.count(net.output_name)) throw ModelFormatError(source + ": graph output '" + net.output_name + "' is never produced");

  Model model;
  model.format = "onnx";
  model.estimator = "onnx";
  model.task = Task::kClassification;
  model.n_features = static_cast<std::size_t>(input_elements);
  // The class count is the output size: evaluate once on zeros. The evaluator checks shapes
  // and attributes with std::invalid_argument; an index past a short list (std::out_of_range)
  // or a size beyond what a vector holds (std::length_error) is a malformed file as well.
  FloatTensor zero{net.input_shape, std::vector<double>(model.n_features, 0.0)};
  std::map<std::string, FloatTensor> values;
  try {
    values = evaluate_network(net, zero);
  } catch (const std::invalid_argument& e) {
    throw ModelFormatError(source + ": " + e.what());
  } catch (const std::out_of_range& e) {
    throw ModelFormatError(source + ": " + e.what());
  } catch (const std::length_error& e) {
    throw ModelFormatError(source + ": " + e.what());
  }
  const auto& y = values.at(net.output_name);
  if (y.shape.size() != 2 || y.shape[0] != 1)
    throw ModelFormatError(source + ": output '" + net.output_name + "' has shape " + circuit::shape_string(y.shape) +
                           "; expected [batch, classes]");
  const std::int64_t classes = y.shape[1];
  if (classes == 1) {
    model.task = Task::kRegression;
  } else {
    for (std::int64_t c = 0; c < classes; ++c) model.classes.push_back(c);
  }
  model.body = std::move(net);
  return model;
}

Model load_onnx(const std::string& path) {
  std::vector<std::uint8_t> bytes;
  try {
    bytes = read_file_bytes(path, kMaxModelFileBytes);
  } catch (const DataError& e) {
    throw ModelFormatError(e.what());
  }
  return parse_onnx(bytes, path);
}

}  // namespace veil::ml
