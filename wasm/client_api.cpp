// The C API of Veil's WebAssembly client, which web/veil-core.mjs wraps. One model client per
// handle (a ModelClient: client.zip and serialized_processing.json, the secret key). Every
// call returns 1 on success, its result (bytes or JSON text) held until the next call and
// read through veil_result_data / veil_result_size; or 0, with veil_error() naming what is
// wrong. No exception crosses into JavaScript. Single-threaded, like the module.
#include <emscripten.h>

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "veil/deploy/model.hpp"

namespace {

using nlohmann::json;
using veil::deploy::Bytes;
using veil::deploy::ModelClient;

struct Session {
  ModelClient client;
};

std::map<int, std::unique_ptr<Session>> sessions;
int next_handle = 1;
Bytes result;
std::string error;

// clang-format off
EM_JS(void, veil_report_progress, (double fraction), {
  if (typeof Module["onVeilProgress"] === "function") Module["onVeilProgress"](fraction);
});
// clang-format on

void set_result(const std::string& text) { result.assign(text.begin(), text.end()); }

template <class Body>
int guarded(Body&& body) {
  error.clear();
  std::fill(result.begin(), result.end(), 0);
  result.clear();
  try {
    body();
    return 1;
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "unknown error";
  }
  result.clear();
  return 0;
}

Session& session(int handle) {
  const auto it = sessions.find(handle);
  if (it == sessions.end()) throw std::invalid_argument("no client with handle " + std::to_string(handle) + " (closed?)");
  return *it->second;
}

std::span<const std::uint8_t> bytes(const std::uint8_t* data, std::size_t size) { return {data, size}; }

json shape_json(const veil::circuit::Shape& shape) {
  json out = json::array();
  for (auto d : shape) out.push_back(d);
  return out;
}

}  // namespace

extern "C" {

// A client for one model from its client.zip and serialized_processing.json. Result: none;
// returns the handle (> 0), or 0 on error.
EMSCRIPTEN_KEEPALIVE int veil_open(const std::uint8_t* zip, std::size_t zip_size, const std::uint8_t* processing,
                                   std::size_t processing_size) {
  int handle = 0;
  guarded([&] {
    auto s = std::make_unique<Session>(
        Session{ModelClient::from_bytes(bytes(zip, zip_size), bytes(processing, processing_size))});
    handle = next_handle++;
    sessions.emplace(handle, std::move(s));
  });
  return handle;
}

// Forgets a client and its secret key.
EMSCRIPTEN_KEEPALIVE void veil_close(int handle) { sessions.erase(handle); }

// Result: JSON describing the model (what a page needs to build its form and estimate sizes).
EMSCRIPTEN_KEEPALIVE int veil_info(int handle) {
  return guarded([&] {
    const ModelClient& c = session(handle).client;
    const auto& p = c.processing();
    const auto& sig = c.specs().signature;
    json classes = json::array();
    for (auto k : p.classes) classes.push_back(k);
    set_result(json{{"model_id", veil::deploy::model_id_hex(c.model_id())},
                    {"task", veil::ml::task_name(p.task)},
                    {"model_kind", p.model_kind},
                    {"n_features", p.n_features},
                    {"input_shape", shape_json(p.input_shape)},
                    {"classes", classes},
                    {"n_outputs", p.n_outputs},
                    {"keys_required", sig.uses_bootstrapping},
                    {"security_bits", c.specs().security_bits},
                    {"parameter_set", sig.params.describe()},
                    {"evaluation_key_bytes",
                     veil::deploy::evaluation_keys_envelope_bytes(sig.params, sig.uses_bootstrapping)},
                    {"has_keys", c.has_keys()}}
                   .dump());
  });
}

// Makes a fresh key set (the secret key stays in the client). Result: the evaluation-keys
// envelope for the server. Module.onVeilProgress(fraction) is called as it goes.
EMSCRIPTEN_KEEPALIVE int veil_generate_keys(int handle) {
  return guarded([&] {
    ModelClient& c = session(handle).client;
    veil::deploy::KeySet keys = c.make_keys([](const std::string&, double fraction) { veil_report_progress(fraction); });
    c.use_keys(keys.secret);
    result = std::move(keys.evaluation_keys);
  });
}

// Result: the secret-keys envelope (for the page to keep, never for the server).
EMSCRIPTEN_KEEPALIVE int veil_export_secret(int handle) {
  return guarded([&] {
    const ModelClient& c = session(handle).client;
    if (!c.has_keys()) throw std::logic_error("no keys: generate or import them first");
    result = c.seal_secret(*c.secret_keys());
  });
}

// Takes a secret-keys envelope of this model as the client's key.
EMSCRIPTEN_KEEPALIVE int veil_import_secret(int handle, const std::uint8_t* envelope, std::size_t size) {
  return guarded([&] {
    ModelClient& c = session(handle).client;
    c.use_keys(c.open_secret(bytes(envelope, size)));
  });
}

// Quantizes and encrypts `rows` rows of `cols` values (row-major doubles; NaN for a missing
// value). Result: the input-batch envelope.
EMSCRIPTEN_KEEPALIVE int veil_encrypt(int handle, const double* values, std::size_t rows, std::size_t cols) {
  return guarded([&] {
    const ModelClient& c = session(handle).client;
    veil::ml::Matrix m(rows, cols);
    std::copy(values, values + rows * cols, m.data.begin());
    result = c.quantize_encrypt_serialize(m);
  });
}

// Decrypts an output-batch envelope and post-processes it. Result: a JSON array, one entry
// per row: {"label", "scores"} for a classifier, {"value"} for a regressor ("value" is an
// array for one with several targets) -- what `veil decrypt` writes as CSV.
EMSCRIPTEN_KEEPALIVE int veil_decrypt(int handle, const std::uint8_t* envelope, std::size_t size) {
  return guarded([&] {
    const ModelClient& c = session(handle).client;
    const veil::ml::Predictions p = c.deserialize_decrypt_dequantize(bytes(envelope, size));
    const bool classification = c.processing().task == veil::ml::Task::kClassification;
    const std::size_t rows = classification ? p.labels.size() : p.values.size();
    json out = json::array();
    for (std::size_t r = 0; r < rows; ++r) {
      const auto scores = r < p.scores.rows ? p.scores.row(r) : std::span<const double>{};
      if (classification) {
        out.push_back({{"label", p.labels[r]}, {"scores", std::vector<double>(scores.begin(), scores.end())}});
      } else if (scores.size() > 1) {
        out.push_back({{"value", std::vector<double>(scores.begin(), scores.end())}});
      } else {
        out.push_back({{"value", p.values[r]}});
      }
    }
    set_result(out.dump());
  });
}

EMSCRIPTEN_KEEPALIVE const std::uint8_t* veil_result_data() { return result.data(); }
EMSCRIPTEN_KEEPALIVE std::size_t veil_result_size() { return result.size(); }
EMSCRIPTEN_KEEPALIVE const char* veil_error() { return error.c_str(); }

}  // extern "C"
