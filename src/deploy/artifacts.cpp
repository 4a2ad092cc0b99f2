// Artifact files: zip members, versions.json, client.specs.json, atomic writes, inspection
// (docs/formats/artifacts.md).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "veil/circuit/serialization.hpp"
#include "veil/deploy/model.hpp"
#include "veil/ml/processing.hpp"
#include "veil/tfhe/serialization.hpp"
#include "veil/tfhe/sha256.hpp"
#include "deploy_internal.hpp"
#include "zip_reader.hpp"

namespace veil::deploy {
namespace {

using nlohmann::json;

using internal::fail;
using internal::temp_sibling;

json params_to_json(const tfhe::ParameterSet& p) {
  json j{{"name", p.name},
              {"id", tfhe::to_hex_u64(p.id())},
              {"message_bits", p.message_bits},
              {"lwe_dimension", p.lwe_dimension.value},
              {"glwe_dimension", p.glwe_dimension.value},
              {"polynomial_size", p.polynomial_size.value},
              {"lwe_std_dev", p.lwe_std_dev},
              {"glwe_std_dev", p.glwe_std_dev},
              {"pbs_base_log", p.pbs_base_log.value},
              {"pbs_level_count", p.pbs_level_count.value},
              {"ks_base_log", p.ks_base_log.value},
              {"ks_level_count", p.ks_level_count.value},
              {"grouping", p.grouping.value}};
  if (p.packs_answers()) {  // absent: no packed answers (and artifacts written before them)
    j["answer_polynomial_size"] = p.answer_polynomial_size.value;
    j["answer_base_log"] = p.answer_base_log.value;
    j["answer_level_count"] = p.answer_level_count.value;
    if (p.answer_key_dimension.value != 0 || p.answer_std_dev != 0.0) {  // absent: the big key's length and noise
      j["answer_key_dimension"] = p.answer_key_dimension.value;
      j["answer_std_dev"] = p.answer_std_dev;
    }
  }
  if (p.bsk_body_bits != 0) j["bsk_body_bits"] = p.bsk_body_bits;  // absent: bootstrap_key_body_bits(glwe_std_dev)
  return j;
}

// Typed field access that names the field on error. Integers must be JSON integers within
// T's range (nlohmann's get<unsigned>() would truncate 630.9, wrap 4294967304 and cast 1e300
// with undefined behaviour); doubles must be finite.
template <class T>
T field(const json& j, const char* name, const std::string& where) {
  if (!j.is_object() || !j.contains(name)) fail(where + ": missing field '" + name + "'");
  const json& v = j.at(name);
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) fail(where + ": field '" + name + "' is not a boolean");
    return v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    const std::string bad = where + ": field '" + name + "' must be an integer in [" +
                            std::to_string(std::numeric_limits<T>::min()) + ", " +
                            std::to_string(std::numeric_limits<T>::max()) + "], not " + v.dump().substr(0, 40);
    if (v.is_number_unsigned()) {
      const auto u = v.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) fail(bad);
      return static_cast<T>(u);
    }
    if (v.is_number_integer()) {
      const auto i = v.get<std::int64_t>();
      if (!std::in_range<T>(i)) fail(bad);
      return static_cast<T>(i);
    }
    fail(bad);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number() || !std::isfinite(v.get<double>()))
      fail(where + ": field '" + name + "' must be a finite number, not " + v.dump().substr(0, 40));
    return v.get<T>();
  } else {
    try {
      return v.get<T>();
    } catch (const json::exception&) {
      fail(where + ": field '" + name + "' has the wrong type");
    }
  }
}

circuit::Shape shape_field(const json& j, const char* name, const std::string& where) {
  if (!j.is_object() || !j.contains(name) || !j.at(name).is_array()) fail(where + ": field '" + name + "' is not an array");
  const json& a = j.at(name);
  if (a.size() > circuit::kMaxRank)
    fail(where + ": field '" + name + "' has rank " + std::to_string(a.size()) + ", more than " + std::to_string(circuit::kMaxRank));
  circuit::Shape shape;
  for (std::size_t i = 0; i < a.size(); ++i) {
    json holder{{"d", a[i]}};
    shape.push_back(field<std::int64_t>(holder, "d", where + " " + name + "[" + std::to_string(i) + "]"));
  }
  return shape;
}

tfhe::ParameterSet params_from_json(const json& j, const std::string& where) {
  tfhe::ParameterSet p;
  p.name = field<std::string>(j, "name", where);
  p.message_bits = field<unsigned>(j, "message_bits", where);
  p.lwe_dimension = tfhe::LweDimension(field<std::size_t>(j, "lwe_dimension", where));
  p.glwe_dimension = tfhe::GlweDimension(field<std::size_t>(j, "glwe_dimension", where));
  p.polynomial_size = tfhe::PolynomialSize(field<std::size_t>(j, "polynomial_size", where));
  p.lwe_std_dev = field<double>(j, "lwe_std_dev", where);
  p.glwe_std_dev = field<double>(j, "glwe_std_dev", where);
  p.pbs_base_log = tfhe::DecompositionBaseLog(field<std::size_t>(j, "pbs_base_log", where));
  p.pbs_level_count = tfhe::DecompositionLevelCount(field<std::size_t>(j, "pbs_level_count", where));
  p.ks_base_log = tfhe::DecompositionBaseLog(field<std::size_t>(j, "ks_base_log", where));
  p.ks_level_count = tfhe::DecompositionLevelCount(field<std::size_t>(j, "ks_level_count", where));
  // Absent in artifacts written before multi-bit blind rotation: classical.
  if (j.contains("grouping")) p.grouping = tfhe::GroupingFactor(field<std::size_t>(j, "grouping", where));
  if (j.contains("answer_polynomial_size")) {
    p.answer_polynomial_size = tfhe::PolynomialSize(field<std::size_t>(j, "answer_polynomial_size", where));
    p.answer_base_log = tfhe::DecompositionBaseLog(field<std::size_t>(j, "answer_base_log", where));
    p.answer_level_count = tfhe::DecompositionLevelCount(field<std::size_t>(j, "answer_level_count", where));
    if (j.contains("answer_key_dimension") || j.contains("answer_std_dev")) {
      p.answer_key_dimension = tfhe::GlweDimension(field<std::size_t>(j, "answer_key_dimension", where));
      p.answer_std_dev = field<double>(j, "answer_std_dev", where);
    }
  }
  // Absent in artifacts written before format 1.5 and for sets whose bodies keep the old rule's bits.
  if (j.contains("bsk_body_bits")) p.bsk_body_bits = field<unsigned>(j, "bsk_body_bits", where);
  try {
    p.validate();
  } catch (const std::invalid_argument& e) {
    fail(where + ": invalid parameter set: " + e.what());
  }
  const std::string id = field<std::string>(j, "id", where);
  if (id != tfhe::to_hex_u64(p.id()))
    fail(where + ": parameter set id " + id + " does not match its fields (" + tfhe::to_hex_u64(p.id()) + "): the file was edited or corrupted");
  return p;
}

json tensor_sig_to_json(const circuit::TensorSignature& t) {
  json j{{"name", t.name}, {"shape", t.shape}, {"lo", t.lo}, {"hi", t.hi}, {"width", t.width}};
  if (t.step_bits != 0) j["step_bits"] = t.step_bits;
  return j;
}

circuit::TensorSignature tensor_sig_from_json(const json& j, const std::string& where) {
  circuit::TensorSignature t;
  t.name = field<std::string>(j, "name", where);
  t.shape = shape_field(j, "shape", where);
  t.lo = field<std::int64_t>(j, "lo", where);
  t.hi = field<std::int64_t>(j, "hi", where);
  t.width = field<unsigned>(j, "width", where);
  if (t.width < 1 || t.width > 60) fail(where + ": width " + std::to_string(t.width) + " outside [1, 60]");
  // Absent in artifacts written before outputs could be read at a step (and for inputs).
  if (j.contains("step_bits")) t.step_bits = field<unsigned>(j, "step_bits", where);
  if (t.step_bits >= t.width)
    fail(where + ": step_bits " + std::to_string(t.step_bits) + " must be below the width " + std::to_string(t.width));
  try {
    (void)circuit::element_count(t.shape, where);
  } catch (const std::invalid_argument& e) {
    fail(e.what());
  }
  if (t.lo > t.hi) fail(where + ": empty range [" + std::to_string(t.lo) + ", " + std::to_string(t.hi) + "]");
  return t;
}

json parse_json(const std::string& text, const std::string& source) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    fail(source + ": not valid JSON (" + e.what() + ")");
  }
}


}  // namespace

ModelId check_versions_json(const std::string& text, const std::string& source) {
  const json j = parse_json(text, source);
  const std::string format = field<std::string>(j, "artifact_format", source);
  int major = -1, minor = -1;
  if (std::sscanf(format.c_str(), "%d.%d", &major, &minor) != 2) fail(source + ": artifact_format '" + format + "' is not MAJOR.MINOR");
  if (major != kArtifactFormatMajor || minor > kArtifactFormatMinor)
    fail(source + ": artifact format " + format + " (written by Veil " + field<std::string>(j, "veil", source) +
         ") cannot be read by this Veil " + kVeilVersion + ", which reads " + std::to_string(kArtifactFormatMajor) +
         ".0 to " + std::to_string(kArtifactFormatMajor) + "." + std::to_string(kArtifactFormatMinor));
  try {
    return parse_model_id(field<std::string>(j, "model_id", source));
  } catch (const std::invalid_argument& e) {
    fail(source + ": " + e.what());
  }
}

std::string make_versions_json(const ModelId& model) {
  return json{{"veil", kVeilVersion},
              {"artifact_format", std::to_string(kArtifactFormatMajor) + "." + std::to_string(kArtifactFormatMinor)},
              {"circuit_format", std::to_string(circuit::kCircuitFormatMajor) + "." + std::to_string(circuit::kCircuitFormatMinor)},
              {"envelope_format", std::to_string(kEnvelopeMajor) + "." + std::to_string(kEnvelopeMinor)},
              {"model_id", model_id_hex(model)}}
      .dump(2);
}

std::string client_specs_to_json(const ClientSpecs& s) {
  json inputs = json::array(), outputs = json::array();
  for (const auto& t : s.signature.inputs) inputs.push_back(tensor_sig_to_json(t));
  for (const auto& t : s.signature.outputs) outputs.push_back(tensor_sig_to_json(t));
  const auto& p = s.signature.params;
  const auto& st = s.statistics;
  json lookups = json::object();
  for (const auto& [bits, n] : st.lookups_by_precision) lookups[std::to_string(bits)] = n;
  json j{{"format", "veil-client-specs"},
         {"format_version", std::to_string(kArtifactFormatMajor) + "." + std::to_string(kArtifactFormatMinor)},
         {"model_id", model_id_hex(s.model_id)},
         {"security_bits", s.security_bits},
         {"parameters", params_to_json(p)},
         {"encoding_width", s.signature.encoding_width},
         {"uses_bootstrapping", s.signature.uses_bootstrapping},
         {"processing_sha256", s.processing_sha256},
         {"inputs", inputs},
         {"outputs", outputs},
         {"key_layout",
          {{"secret_keys", {{"lwe_dimension", p.lwe_dimension.value}, {"glwe_dimension", p.glwe_dimension.value},
                            {"polynomial_size", p.polynomial_size.value}, {"distribution", "uniform binary"}}},
           {"evaluation_keys", s.signature.uses_bootstrapping
                                   ? json{{"bootstrap_key", "seeded, GGSW of the small key under the GLWE key"},
                                          {"keyswitch_key", "seeded, big LWE key to small LWE key"}}
                                   : json{{"none", "levelled-only circuit: no evaluation keys are needed"}}}}},
         {"statistics",
          {{"total_pbs", st.total_pbs}, {"lookups_by_precision", lookups}, {"levelled_ops", st.levelled_ops},
           {"encrypted_inputs", st.encrypted_inputs}, {"encrypted_outputs", st.encrypted_outputs},
           {"pbs_depth", st.pbs_depth},
           {"log2_predicted_p_error", st.log2_predicted_p_error ? json(*st.log2_predicted_p_error) : json(nullptr)}}}};
  return j.dump(2);
}

ClientSpecs client_specs_from_json(const std::string& text, const std::string& source) {
  const json j = parse_json(text, source);
  if (field<std::string>(j, "format", source) != "veil-client-specs") fail(source + ": not a Veil client.specs.json");
  ClientSpecs s;
  try {
    s.model_id = parse_model_id(field<std::string>(j, "model_id", source));
  } catch (const std::invalid_argument& e) {
    fail(source + ": " + e.what());
  }
  s.security_bits = field<unsigned>(j, "security_bits", source);
  if (s.security_bits != 128 && s.security_bits != 132)  // the security curves Veil has
    fail(source + ": security_bits " + std::to_string(s.security_bits) + " is not 128 or 132");
  s.signature.params = params_from_json(field<json>(j, "parameters", source), source + " parameters");
  s.signature.encoding_width = field<unsigned>(j, "encoding_width", source);
  if (s.signature.encoding_width < 1 || s.signature.encoding_width > 60)
    fail(source + ": encoding_width " + std::to_string(s.signature.encoding_width) + " outside [1, 60]");
  s.signature.uses_bootstrapping = field<bool>(j, "uses_bootstrapping", source);
  for (const auto& t : field<json>(j, "inputs", source)) s.signature.inputs.push_back(tensor_sig_from_json(t, source + " input"));
  for (const auto& t : field<json>(j, "outputs", source)) s.signature.outputs.push_back(tensor_sig_from_json(t, source + " output"));
  if (s.signature.inputs.empty() || s.signature.outputs.empty()) fail(source + ": no inputs or no outputs");
  // From format 1.1 on, the digest of serialized_processing.json is required.
  const std::string version = field<std::string>(j, "format_version", source);
  int major = -1, minor = -1;
  if (std::sscanf(version.c_str(), "%d.%d", &major, &minor) != 2 || major != kArtifactFormatMajor || minor < 0 ||
      minor > kArtifactFormatMinor)
    fail(source + ": format_version '" + version.substr(0, 20) + "' is not one this Veil reads (" +
         std::to_string(kArtifactFormatMajor) + ".0 to " + std::to_string(kArtifactFormatMajor) + "." +
         std::to_string(kArtifactFormatMinor) + ")");
  if (minor >= 1 || j.contains("processing_sha256")) {
    s.processing_sha256 = field<std::string>(j, "processing_sha256", source);
    const bool hex = s.processing_sha256.size() == 64 &&
                     s.processing_sha256.find_first_not_of("0123456789abcdef") == std::string::npos;
    if (!hex) fail(source + ": processing_sha256 is not 64 lowercase hex digits");
  }
  const json st = field<json>(j, "statistics", source);
  s.statistics.total_pbs = field<std::int64_t>(st, "total_pbs", source + " statistics");
  s.statistics.encrypted_inputs = field<std::int64_t>(st, "encrypted_inputs", source + " statistics");
  s.statistics.encrypted_outputs = field<std::int64_t>(st, "encrypted_outputs", source + " statistics");
  return s;
}

Bytes read_zip_member(const std::filesystem::path& path, const std::string& member, std::uint64_t max_bytes) {
  const Bytes archive = read_file(path, kMaxZipFileBytes);
  return ZipReader(archive, path.string()).read(member, max_bytes);
}

Bytes read_zip_member(std::span<const std::uint8_t> zip, const std::string& source, const std::string& member,
                      std::uint64_t max_bytes) {
  return ZipReader(zip, source).read(member, max_bytes);
}

Bytes read_file(const std::filesystem::path& path, std::uint64_t max_bytes) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) fail(path.string() + ": cannot read (" + ec.message() + ")");
  if (size > max_bytes)
    fail(path.string() + ": " + std::to_string(size) + " bytes, more than the limit of " + std::to_string(max_bytes));
  std::ifstream in(path, std::ios::binary);
  Bytes out(static_cast<std::size_t>(size));
  if (!in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size())))
    fail(path.string() + ": read failed");
  return out;
}

void write_file_atomic(const std::filesystem::path& path, std::span<const std::uint8_t> bytes, unsigned mode) {
  const auto tmp = temp_sibling(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) fail(path.string() + ": cannot create (" + std::strerror(errno) + ")");
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      fail(path.string() + ": write failed (" + why + ")");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0 || ::fsync(fd) != 0 || ::close(fd) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    fail(path.string() + ": write failed (" + why + ")");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    fail(path.string() + ": cannot move into place (" + why + ")");
  }
}

std::string inspect_file(const std::filesystem::path& path, const std::optional<std::filesystem::path>& artifact_dir) {
  std::ostringstream out;
  std::optional<ModelId> id;
  const std::string name = path.filename().string();
  const Bytes head = [&] {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path.string() + ": cannot open");
    Bytes b(64);
    in.read(reinterpret_cast<char*>(b.data()), 64);
    b.resize(static_cast<std::size_t>(in.gcount()));
    return b;
  }();
  const auto size = std::filesystem::file_size(path);
  if (head.size() >= 4 && head[0] == 'P' && head[1] == 'K') {
    // An artifact zip: versions.json says which model; specs or circuit say the rest.
    const Bytes versions = read_zip_member(path, "versions.json", 1 << 20);
    id = check_versions_json(std::string(versions.begin(), versions.end()), path.string() + " versions.json");
    out << path.string() << ": Veil artifact, " << size << " bytes, model " << model_id_hex(*id) << "\n";
    try {
      const Bytes specs = read_zip_member(path, "client.specs.json", 16 << 20);
      const ClientSpecs s = client_specs_from_json(std::string(specs.begin(), specs.end()), "client.specs.json");
      out << "  client.zip: parameters " << s.signature.params.describe() << "\n  encoding width "
          << s.signature.encoding_width << " bits, " << s.signature.inputs.size() << " input(s), "
          << s.signature.outputs.size() << " output(s), " << s.statistics.total_pbs << " PBS per row"
          << (s.signature.uses_bootstrapping ? "" : " (levelled only: no evaluation keys)") << "\n";
    } catch (const DeployError&) {
      const Bytes circuit_bytes = read_zip_member(path, "circuit.veil", std::uint64_t{1} << 30);
      const auto cc = circuit::deserialize_compiled_circuit(circuit_bytes);
      out << "  server.zip: compiled circuit of " << cc.circuit.nodes.size() << " nodes, parameters "
          << cc.params.describe() << "\n" << cc.analysis.statistics.to_string();
    }
  } else if (looks_like_envelope(head)) {
    const Bytes all = read_file(path, kMaxKeyEnvelopeBytes);
    const EnvelopeInfo info = inspect_envelope(all);
    id = info.model_id;
    out << path.string() << ": Veil " << envelope_kind_name(info.kind) << ", " << size << " bytes, format "
        << info.major << "." << info.minor << ", model " << model_id_hex(info.model_id) << "\n";
    if (info.kind == EnvelopeKind::kSecretKeys) out << "  SECRET: keep it on the client; never send this file\n";
  } else if (head.size() >= 8 && std::string(head.begin(), head.begin() + 8) == "VEILCIRC") {
    const Bytes all = read_file(path, std::uint64_t{1} << 30);
    out << path.string() << ": Veil circuit, " << size << " bytes\n";
    try {
      const auto cc = circuit::deserialize_compiled_circuit(all);
      out << "  compiled, parameters " << cc.params.describe() << "\n" << cc.analysis.statistics.to_string();
    } catch (const circuit::CircuitFormatError&) {
      const auto c = circuit::deserialize_circuit(all);
      out << "  " << c.nodes.size() << " nodes, " << c.outputs.size() << " outputs\n";
    }
  } else if (head.size() >= 8 && std::string(head.begin(), head.begin() + 8) == "VEILTFHE") {
    const Bytes all = read_file(path, tfhe::kDefaultMaxBytes);
    const auto info = tfhe::inspect_frame(all);
    out << path.string() << ": Veil TFHE object (" << tfhe::object_type_name(info.type) << "), " << size
        << " bytes, parameter id " << tfhe::to_hex_u64(info.parameter_id) << "\n";
  } else if (!head.empty() && head[0] == '{') {
    const Bytes all = read_file(path, 64 << 20);
    const json j = parse_json(std::string(all.begin(), all.end()), path.string());
    if (j.contains("model_id") && j.contains("input_quantizers")) {
      id = parse_model_id(j.at("model_id").get<std::string>());
      out << path.string() << ": Veil serialized_processing.json, model " << model_id_hex(*id) << "\n";
    } else {
      fail(path.string() + ": JSON, but not a Veil file");
    }
  } else {
    fail(path.string() + ": not a Veil file (unknown format)");
  }
  if (artifact_dir && id) {
    const Bytes versions = read_zip_member(*artifact_dir / kClientZip, "versions.json", 1 << 20);
    const ModelId dir_id = check_versions_json(std::string(versions.begin(), versions.end()),
                                               (*artifact_dir / kClientZip).string());
    out << (dir_id == *id ? "  belongs with the model in " : "  does NOT belong with the model in ")
        << artifact_dir->string() << " (model " << model_id_hex(dir_id) << ")\n";
  }
  return out.str();
}

}  // namespace veil::deploy
