// The deployment workflow through Veil's C++ API, as the README shows it: compile a model
// with calibration rows, make keys on the client, encrypt, run on the server, decrypt, and
// check the answers against the quantized model run in the clear.
//
//   veil_consumer FIXTURES_DIR [WORK_DIR]
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "veil/deploy/model.hpp"
#include "veil/ml/importers.hpp"
#include "veil/version.hpp"

using namespace veil;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: veil_consumer FIXTURES_DIR [WORK_DIR]\n";
    return 2;
  }
  const fs::path fixtures = argv[1];
  const fs::path work = argc > 2 ? fs::path(argv[2]) : fs::temp_directory_path() / "veil_consumer";
  try {
    fs::remove_all(work);
    // development machine: a model and calibration rows (the 30 feature columns)
    const ml::Matrix calibration = ml::load_matrix((fixtures / "data" / "breast_cancer_calib.csv").string()).first_columns(30);
    const ml::Model model = ml::load_model((fixtures / "models" / "logreg_breast_cancer.json").string());
    const auto dev = deploy::ModelDev::compile(model, calibration);
    dev.save(work / "model");

    // client: keys stay in work/keys; the evaluation keys and the query go to the server
    auto client = deploy::ModelClient::load(work / "model");
    client.generate_keys(work / "keys");
    const deploy::Bytes eval_keys = deploy::ModelClient::read_evaluation_keys(work / "keys", client.model_id());
    const ml::Matrix rows = ml::load_matrix((fixtures / "data" / "breast_cancer_test.csv").string()).first_columns(30).first_rows(5);
    const deploy::Bytes query = client.quantize_encrypt_serialize(rows);

    // server
    const auto server = deploy::ModelServer::load(work / "model");
    const auto keys = server.load_evaluation_keys(eval_keys);  // parse + expand once, reuse
    const deploy::Bytes answer = server.run(query, keys.get());

    // client
    const ml::Predictions p = client.deserialize_decrypt_dequantize(answer);
    const ml::Predictions clear = ml::predict_clear(ml::QuantizedModel{dev.compiled().circuit, dev.processing()}, rows);
    std::cout << "veil " << veil::kVersion << ": " << p.labels.size() << " encrypted predictions:";
    for (const auto label : p.labels) std::cout << ' ' << label;
    std::cout << '\n';
    if (p.labels != clear.labels) {
      std::cerr << "veil_consumer: FHE labels differ from the clear run\n";
      return 1;
    }
    fs::remove_all(work);
  } catch (const std::exception& e) {
    std::cerr << "veil_consumer: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
