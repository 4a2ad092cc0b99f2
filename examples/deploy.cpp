// Private inference with Veil's C++ API, all three roles in one program:
//   deploy MODEL CALIBRATION ROWS [ARTIFACT_DIR]
// MODEL is any model `veil compile` takes (.onnx, XGBoost .json, Veil scikit-learn .json);
// CALIBRATION and ROWS are .csv or .npy files with one sample per row (the model's features
// only). Prints one prediction per line: the label and the class scores for a classifier,
// the value(s) for a regressor.
#include <iostream>
#include <string>

#include "veil/veil.hpp"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: deploy MODEL CALIBRATION ROWS [ARTIFACT_DIR]\n";
    return 2;
  }
  try {
    // Development machine: compile, and save the three artifacts a deployment ships.
    const veil::CompiledModel model = veil::CompiledModel::compile(argv[1], veil::Array::load(argv[2]));
    std::cerr << model.statistics().text;
    const std::string dir = argc > 4 ? argv[4] : "deploy-artifacts";
    model.save(dir, veil::Overwrite::kReplace);

    // Client: keys (the secret key stays here), then the encrypted query.
    veil::Client client = veil::Client::load(dir);
    const veil::ClientKeys keys = client.generate_keys();
    const veil::Bytes query = client.encrypt(veil::Array::load(argv[3]));

    // Server: the client's evaluation keys once, then any number of queries.
    const veil::Server server = veil::Server::load(dir);
    const veil::ServerKeys server_keys = server.load_keys(keys.evaluation_keys());
    const veil::Bytes answer = server.run(query, server_keys);

    // Client: decrypt and post-process.
    const veil::Predictions p = client.decrypt(answer);
    const veil::Array& out = p.task == veil::Task::kClassification ? p.scores : p.values;
    const std::size_t width = out.row_size();
    std::cout.precision(6);
    for (std::size_t r = 0; r < out.rows(); ++r) {
      if (p.task == veil::Task::kClassification) std::cout << p.labels[r];
      for (std::size_t c = 0; c < width; ++c) {
        if (c > 0 || p.task == veil::Task::kClassification) std::cout << ',';
        std::cout << out.values[r * width + c];
      }
      std::cout << '\n';
    }
  } catch (const veil::InputError& e) {  // a file Veil cannot read, bytes of another model
    std::cerr << "deploy: " << e.what() << '\n';
    return 1;
  } catch (const std::exception& e) {  // a model Veil cannot compile, a wrong width
    std::cerr << "deploy: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
