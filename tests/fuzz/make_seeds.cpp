// veil_fuzz_seeds FIXTURES_DIR OUT_DIR: writes a seed corpus for every fuzz target into
// OUT_DIR/<target>/, made from real files: a model compiled from the fixtures (client.zip,
// serialized_processing.json, the compiled circuit), frames and envelopes of the fuzz
// parameter set, and the fixture models and data files themselves.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "fuzz_fixture.hpp"
#include "veil/circuit/serialization.hpp"
#include "veil/deploy/model.hpp"
#include "veil/ml/importers.hpp"
#include "veil/tfhe/keys.hpp"
#include "veil/tfhe/packing.hpp"
#include "veil/tfhe/serialization.hpp"

using namespace veil;
namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

namespace {

fs::path g_out;

void put(const std::string& target, const std::string& name, const Bytes& bytes) {
  const fs::path dir = g_out / target;
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}
// A seed for a target and its checksum-fixing variant.
void put_both(const std::string& target, const std::string& name, const Bytes& bytes) {
  put(target, name, bytes);
  put(target + "_fixed", name, bytes);
}

Bytes slurp(const fs::path& p) { return deploy::read_file(p, std::uint64_t{64} << 20); }
Bytes text_bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }
void put_u32(Bytes& out, std::size_t n) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
}
Bytes cat(std::initializer_list<const Bytes*> parts) {
  Bytes out;
  for (const Bytes* p : parts) out.insert(out.end(), p->begin(), p->end());
  return out;
}

// A little-endian float64 .npy of `rows` x `cols`.
Bytes npy(std::size_t rows, std::size_t cols, bool fortran) {
  std::string header = "{'descr': '<f8', 'fortran_order': " + std::string(fortran ? "True" : "False") + ", 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  Bytes out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.push_back(static_cast<std::uint8_t>(header.size() & 0xff));
  out.push_back(static_cast<std::uint8_t>(header.size() >> 8));
  out.insert(out.end(), header.begin(), header.end());
  for (std::size_t i = 0; i < rows * cols; ++i) {
    const double v = 0.25 * static_cast<double>(i);
    std::uint8_t b[8];
    std::memcpy(b, &v, 8);
    out.insert(out.end(), b, b + 8);
  }
  return out;
}

void tfhe_and_envelope_seeds() {
  const tfhe::ParameterSet& p = fuzz::fuzz_params();
  const tfhe::SecretKeys keys = tfhe::generate_secret_keys(p, /*allow_insecure=*/true);
  const tfhe::LweDimension big(p.glwe_dimension.value * p.polynomial_size.value);
  put_both("tfhe_frame", "parameter_set", tfhe::serialize(p));
  put_both("tfhe_frame", "lwe_secret_key", tfhe::serialize(keys.lwe, p));
  put_both("tfhe_frame", "glwe_secret_key", tfhe::serialize(keys.glwe, p));
  put_both("tfhe_frame", "lwe_ciphertext", tfhe::serialize(tfhe::LweCiphertext(p.lwe_dimension), p));
  put_both("tfhe_frame", "lwe_list", tfhe::serialize(tfhe::LweCiphertextList(p.lwe_dimension, 3), p));
  tfhe::SeededLweCiphertextList seeded{big, {}, {}};
  seeded.bodies.assign(4, 0x1234);
  put_both("tfhe_frame", "seeded_lwe_list", tfhe::serialize(seeded, p));
  put_both("tfhe_frame", "glwe_ciphertext", tfhe::serialize(tfhe::GlweCiphertext(p.glwe_dimension, p.polynomial_size), p));
  tfhe::SeededLweKeyswitchKey ksk{tfhe::keyswitch_key_shape(p), {}, {}};
  // Bodies as the key generator leaves them: rounded to their top bits (24 or 32 travel).
  ksk.bodies.assign(ksk.shape.ciphertext_count(), std::uint64_t{7} << 40);
  put_both("tfhe_frame", "seeded_keyswitch_key", tfhe::serialize(ksk, p));
  // A packed answer and evaluation keys with a packing key, under the packing variant of the set.
  const tfhe::ParameterSet& pp = fuzz::fuzz_packing_params();
  const tfhe::SecretKeys packing_keys = tfhe::generate_secret_keys(pp, /*allow_insecure=*/true);
  tfhe::LweCiphertextList outputs(big, 3);
  const tfhe::PackingKey packing = tfhe::expand_packing_key(tfhe::generate_seeded_packing_key(packing_keys));
  put_both("tfhe_frame", "packed_answer", tfhe::serialize(tfhe::pack_answer(packing, outputs, 12), pp));
  put_both("tfhe_frame", "packing_evaluation_keys", tfhe::serialize(tfhe::generate_seeded_evaluation_keys(packing_keys)));

  const deploy::ModelId& id = fuzz::fuzz_model_id();
  put_both("envelope", "secret_keys", deploy::seal_secret_keys(id, keys));
  put_both("envelope", "no_evaluation_keys", deploy::seal_evaluation_keys(id, nullptr));
  put_both("envelope", "input_batch", deploy::seal_input_batch(id, p, {{seeded}, {seeded}}));
  put_both("envelope", "output_batch", deploy::seal_output_batch(id, p, {{tfhe::LweCiphertextList(p.lwe_dimension, 2)}}));
}

void artifact_seeds(const fs::path& fixtures) {
  const ml::Model model = ml::load_model((fixtures / "models" / "logreg_breast_cancer.json").string());
  const ml::Matrix calibration = ml::load_matrix((fixtures / "data" / "breast_cancer_calib.csv").string()).first_columns(30);
  const deploy::ModelDev dev = deploy::ModelDev::compile(model, calibration);
  const fs::path dir = g_out / ".model";
  dev.save(dir, {.overwrite = true});
  const Bytes circuit = deploy::read_zip_member(dir / deploy::kServerZip, "circuit.veil", std::uint64_t{64} << 20);
  put_both("circuit_frame", "compiled_circuit", circuit);
  put_both("circuit_frame", "circuit", circuit::serialize_circuit(dev.compiled().circuit));

  const Bytes versions = deploy::read_zip_member(dir / deploy::kClientZip, "versions.json", 1 << 20);
  const Bytes specs = deploy::read_zip_member(dir / deploy::kClientZip, "client.specs.json", 1 << 20);
  const Bytes processing = slurp(dir / deploy::kProcessingJson);
  for (const auto& [selector, name, doc] : {std::tuple{0, "versions", &versions}, std::tuple{1, "client_specs", &specs},
                                            std::tuple{2, "processing", &processing}}) {
    Bytes seed = {static_cast<std::uint8_t>(selector)};
    seed.insert(seed.end(), doc->begin(), doc->end());
    put("artifacts_json", name, seed);
  }
  const Bytes zip = slurp(dir / deploy::kClientZip);
  Bytes zip_seed;
  put_u32(zip_seed, zip.size());
  put("client_zip", "client_dir", cat({&zip_seed, &zip, &processing}));
  // The zip reader alone: the archive (selector 0), and its first member's deflated bytes
  // with their size (selector 1: the local header's sizes and name length say where).
  Bytes archive_seed = {0};
  archive_seed.insert(archive_seed.end(), zip.begin(), zip.end());
  put("zip_reader", "client_zip", archive_seed);
  if (zip.size() >= 30) {
    const auto u16 = [&](std::size_t at) { return static_cast<std::size_t>(zip[at] | (zip[at + 1] << 8)); };
    const auto u32 = [&](std::size_t at) { return static_cast<std::size_t>(u16(at) | (u16(at + 2) << 16)); };
    const std::size_t start = 30 + u16(26) + u16(28), compressed = u32(18), plain = u32(22);
    if (u16(8) == 8 && start + compressed <= zip.size() && plain < 65536) {
      Bytes stream_seed = {1, static_cast<std::uint8_t>(plain), static_cast<std::uint8_t>(plain >> 8)};
      stream_seed.insert(stream_seed.end(), zip.begin() + static_cast<std::ptrdiff_t>(start),
                         zip.begin() + static_cast<std::ptrdiff_t>(start + compressed));
      put("zip_reader", "deflate_stream", stream_seed);
    }
  }
  Bytes members;
  put_u32(members, versions.size());
  members.insert(members.end(), versions.begin(), versions.end());
  members.insert(members.end(), specs.begin(), specs.end());
  Bytes dir_seed;
  put_u32(dir_seed, members.size());
  put("client_dir", "client_dir", cat({&dir_seed, &members, &processing}));

  // Requests to the HTTP server, which serves this same model as "logreg".
  deploy::ModelClient client = deploy::ModelClient::load(dir);
  client.generate_keys(dir / "keys");
  const Bytes keys = deploy::ModelClient::read_evaluation_keys(dir / "keys", client.model_id());
  const Bytes batch = client.quantize_encrypt_serialize(calibration.first_rows(2));
  auto request = [](const std::string& method, const std::string& path, const Bytes& body, const std::string& extra = "") {
    std::string head = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra;
    if (!body.empty() || method == "POST") head += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    head += "\r\n";
    Bytes out = text_bytes(head);
    out.insert(out.end(), body.begin(), body.end());
    return out;
  };
  const Bytes none;
  put("http_request", "models", request("GET", "/v1/models", none));
  Bytes pipelined = request("GET", "/v1/models/logreg/client.zip", none);
  const Bytes health = request("GET", "/healthz", none);
  pipelined.insert(pipelined.end(), health.begin(), health.end());
  put("http_request", "pipelined", pipelined);
  put("http_request", "processing", request("GET", "/v1/models/logreg/serialized_processing.json", none));
  put("http_request", "keys", request("POST", "/v1/models/logreg/keys", keys, "Content-Type: application/octet-stream\r\n"));
  put("http_request", "predict", request("POST", "/v1/models/logreg/predict", batch, "Expect: 100-continue\r\n"));
  put("http_request", "delete",
      request("DELETE", "/v1/keys/00112233445566778899aabbccddeeff", none,
              "Authorization: Bearer 0011223344556677889900112233445566778899001122334455667788990011\r\n"));
  put("http_request", "metrics", request("GET", "/metrics", none));
  fs::remove_all(dir);
}

void file_seeds(const fs::path& fixtures) {
  for (const auto& entry : fs::directory_iterator(fixtures / "models")) {
    const std::string name = entry.path().filename().string();
    const std::string ext = entry.path().extension().string();
    if (ext == ".onnx") put("onnx", name, slurp(entry.path()));
    else if (ext == ".json") put(name.rfind("xgb_", 0) == 0 ? "xgboost_json" : "sklearn_json", name, slurp(entry.path()));
  }
  for (const auto& entry : fs::directory_iterator(fixtures / "data")) {
    std::ifstream in(entry.path());
    std::string line, head;
    for (int i = 0; i < 6 && std::getline(in, line); ++i) head += line + "\n";
    put("csv", entry.path().filename().string(), text_bytes(head));
  }
  put("npy", "c_order.npy", npy(3, 4, false));
  put("npy", "fortran_order.npy", npy(2, 5, true));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: veil_fuzz_seeds FIXTURES_DIR OUT_DIR\n";
    return 2;
  }
  g_out = argv[2];
  try {
    tfhe_and_envelope_seeds();
    artifact_seeds(argv[1]);
    file_seeds(argv[1]);
  } catch (const std::exception& e) {
    std::cerr << "veil_fuzz_seeds: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
