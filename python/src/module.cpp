// veil._veil: the Python binding of Veil's public API (veil/veil.hpp). The Python package
// (python/veil/) wraps it in scikit-learn and Concrete ML conventions; this module only
// converts: numpy arrays to and from veil::Array, bytes to and from veil::Bytes, C++ errors to
// Python exceptions (veil::InputError and std::invalid_argument -> ValueError, the rest ->
// RuntimeError). The GIL is released while the C++ side works (key generation, encryption,
// runs, compilation), so other Python threads keep running.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <string>

#include "veil/veil.hpp"

namespace py = pybind11;

namespace {

using FloatArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

// Any numpy array of numbers (float32/64, ints, C or Fortran order) as a veil::Array: forcecast
// converts the type and c_style the order, copying only when the array is not already so.
veil::Array to_array(const FloatArray& a) {
  if (a.ndim() == 0) throw std::invalid_argument("expected an array of samples, got a scalar");
  veil::Array out;
  out.shape.assign(a.shape(), a.shape() + a.ndim());
  out.values.assign(a.data(), a.data() + a.size());
  return out;
}

py::array_t<double> to_numpy(const veil::Array& a) {
  std::vector<py::ssize_t> shape(a.shape.begin(), a.shape.end());
  py::array_t<double> out(shape);
  if (!a.values.empty()) std::memcpy(out.mutable_data(), a.values.data(), a.values.size() * sizeof(double));
  return out;
}

py::bytes to_bytes(const veil::Bytes& b) { return py::bytes(reinterpret_cast<const char*>(b.data()), b.size()); }

// Bytes-like arguments (bytes, bytearray, memoryview) as a span over their buffer, valid while
// the Python object lives: the bindings hold it for the call's duration.
std::span<const std::uint8_t> view(const py::buffer& b, py::buffer_info& info) {
  info = b.request();
  if (info.ndim != 1 || info.itemsize != 1) throw std::invalid_argument("expected bytes");
  return {static_cast<const std::uint8_t*>(info.ptr), static_cast<std::size_t>(info.size)};
}

py::dict to_dict(const veil::Predictions& p) {
  py::dict d;
  d["task"] = p.task == veil::Task::kClassification ? "classification" : "regression";
  d["labels"] = py::array_t<std::int64_t>(static_cast<py::ssize_t>(p.labels.size()), p.labels.data());
  d["scores"] = to_numpy(p.scores);
  d["values"] = to_numpy(p.values);
  return d;
}

py::dict to_dict(const veil::Statistics& s) {
  py::dict d;
  d["total_pbs"] = s.total_pbs;
  py::dict by_precision;
  for (const auto& l : s.pbs_by_precision) by_precision[py::int_(l.precision)] = l.pbs;
  d["pbs_by_precision"] = by_precision;
  d["levelled_ops"] = s.levelled_ops;
  d["pbs_depth"] = s.pbs_depth;
  d["predicted_p_error"] = s.predicted_p_error;
  d["parameters"] = s.parameters;
  d["evaluation_key_bytes"] = s.evaluation_key_bytes;
  d["warnings"] = s.warnings;
  d["text"] = s.text;
  return d;
}

veil::Fhe fhe_mode(const std::string& fhe) {
  if (fhe == "disable") return veil::Fhe::kDisable;
  if (fhe == "simulate") return veil::Fhe::kSimulate;
  if (fhe == "execute") return veil::Fhe::kExecute;
  throw std::invalid_argument("fhe must be 'disable', 'simulate' or 'execute', not '" + fhe + "'");
}

// Key-generation progress to a Python callable, taking the GIL for each call (the generation
// itself runs without it). An exception in the callable stops nothing: it is reported once
// to the interpreter as unraisable and the generation goes on.
class PythonProgress final : public veil::ProgressListener {
 public:
  explicit PythonProgress(py::object callback) : callback_(std::move(callback)) {}
  void on_progress(const char* step, double fraction) override {
    py::gil_scoped_acquire gil;
    if (failed_) return;
    try {
      callback_(step, fraction);
    } catch (py::error_already_set& e) {
      failed_ = true;
      e.discard_as_unraisable("veil: key-generation progress callback");
    }
  }

 private:
  py::object callback_;
  bool failed_ = false;
};

}  // namespace

PYBIND11_MODULE(_veil, m) {
  m.doc() = "Veil's C++ core: compile models into TFHE circuits, make keys, encrypt, run, decrypt.";
  m.attr("__version__") = veil::kVersion;

  // InputError (untrusted input) is a ValueError for Python, like std::invalid_argument
  // (pybind11's own translation); std::logic_error and other runtime errors stay RuntimeError.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const veil::InputError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  py::class_<veil::CompiledModel>(m, "CompiledModel")
      .def_static(
          "compile_file",
          [](const std::string& path, const FloatArray& x, const veil::CompileOptions& options) {
            const veil::Array calibration = to_array(x);
            py::gil_scoped_release release;
            return veil::CompiledModel::compile(path, calibration, options);
          },
          py::arg("path"), py::arg("calibration"), py::arg("options"))
      .def_static(
          "compile_bytes",
          [](const py::bytes& model, const FloatArray& x, const veil::CompileOptions& options) {
            const veil::Array calibration = to_array(x);
            const std::string bytes = model;
            py::gil_scoped_release release;
            return veil::CompiledModel::compile(
                std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()), calibration, options);
          },
          py::arg("model"), py::arg("calibration"), py::arg("options"))
      .def(
          "save",
          [](const veil::CompiledModel& c, const std::string& dir, bool overwrite) {
            py::gil_scoped_release release;
            c.save(dir, overwrite ? veil::Overwrite::kReplace : veil::Overwrite::kRefuse);
          },
          py::arg("path_dir"), py::arg("overwrite"))
      .def(
          "predict",
          [](const veil::CompiledModel& c, const FloatArray& x, const std::string& fhe) {
            const veil::Array rows = to_array(x);
            const veil::Fhe mode = fhe_mode(fhe);
            veil::Predictions p;
            {
              py::gil_scoped_release release;
              p = c.predict(rows, mode);
            }
            return to_dict(p);
          },
          py::arg("X"), py::arg("fhe"))
      .def_property_readonly("statistics", [](const veil::CompiledModel& c) { return to_dict(c.statistics()); })
      .def_property_readonly("model_id", &veil::CompiledModel::model_id)
      .def_property_readonly("n_features", &veil::CompiledModel::n_features)
      .def_property_readonly("is_classifier",
                             [](const veil::CompiledModel& c) { return c.task() == veil::Task::kClassification; });

  py::class_<veil::CompileOptions>(m, "CompileOptions")
      .def(py::init<>())
      .def_readwrite("n_bits", &veil::CompileOptions::n_bits)
      .def_readwrite("lookup_bits", &veil::CompileOptions::lookup_bits)
      .def_readwrite("p_error", &veil::CompileOptions::p_error)
      .def_readwrite("global_p_error", &veil::CompileOptions::global_p_error)
      .def_readwrite("exact_tree_comparisons", &veil::CompileOptions::exact_tree_comparisons)
      .def_readwrite("exact_network_reads", &veil::CompileOptions::exact_network_reads);

  py::class_<veil::ClientKeys>(m, "ClientKeys")
      .def_property_readonly("evaluation_keys", [](const veil::ClientKeys& k) { return to_bytes(k.evaluation_keys()); })
      .def("export_secret_key", [](const veil::ClientKeys& k) { return to_bytes(k.export_secret_key()); })
      .def_property_readonly("model_id", &veil::ClientKeys::model_id);

  py::class_<veil::Client>(m, "Client")
      .def_static("load", [](const std::string& dir) {
        py::gil_scoped_release release;
        return veil::Client::load(dir);
      })
      .def_static("from_bytes",
                  [](const py::buffer& zip, const py::buffer& processing) {
                    py::buffer_info zi, pi;
                    const auto z = view(zip, zi);
                    const auto p = view(processing, pi);
                    py::gil_scoped_release release;
                    return veil::Client::from_bytes(z, p);
                  })
      .def(
          "generate_keys",
          [](veil::Client& c, py::object progress) {
            if (progress.is_none()) {
              py::gil_scoped_release release;
              return c.generate_keys();
            }
            PythonProgress listener(std::move(progress));
            py::gil_scoped_release release;
            return c.generate_keys(listener);
          },
          py::arg("progress") = py::none())
      .def("use_keys", &veil::Client::use_keys)
      .def("import_keys",
           [](const veil::Client& c, const py::buffer& secret, const py::buffer& evaluation) {
             py::buffer_info si, ei;
             const auto s = view(secret, si);
             const auto e = view(evaluation, ei);
             return c.import_keys(s, e);
           })
      .def(
          "save_keys",
          [](const veil::Client& c, const std::string& dir, bool overwrite) {
            c.save_keys(dir, overwrite ? veil::Overwrite::kReplace : veil::Overwrite::kRefuse);
          },
          py::arg("key_dir"), py::arg("overwrite"))
      .def("load_keys", &veil::Client::load_keys, py::arg("key_dir"))
      .def("encrypt",
           [](const veil::Client& c, const FloatArray& x) {
             const veil::Array rows = to_array(x);
             veil::Bytes out;
             {
               py::gil_scoped_release release;
               out = c.encrypt(rows);
             }
             return to_bytes(out);
           })
      .def("decrypt",
           [](const veil::Client& c, const py::buffer& output) {
             py::buffer_info info;
             const auto bytes = view(output, info);
             veil::Predictions p;
             {
               py::gil_scoped_release release;
               p = c.decrypt(bytes);
             }
             return to_dict(p);
           })
      .def_property_readonly("has_keys", &veil::Client::has_keys)
      .def_property_readonly("model_id", &veil::Client::model_id)
      .def_property_readonly("n_features", &veil::Client::n_features)
      .def_property_readonly("input_shape", &veil::Client::input_shape)
      .def_property_readonly("is_classifier", [](const veil::Client& c) { return c.task() == veil::Task::kClassification; })
      .def_property_readonly("classes", &veil::Client::classes)
      .def_property_readonly("statistics", [](const veil::Client& c) { return to_dict(c.statistics()); });

  // For bench/python_overhead.py: the same round trip as a Python loop over this module,
  // done by C++ alone (encrypt, run, decrypt), so that the two can alternate in one process.
  m.def("_time_cpp_round_trip", [](const veil::Client& client, const veil::Server& server, const veil::ServerKeys& keys,
                                   const FloatArray& x) {
    const veil::Array rows = to_array(x);
    py::gil_scoped_release release;
    const auto t0 = std::chrono::steady_clock::now();
    const veil::Predictions p = client.decrypt(server.run(client.encrypt(rows), keys));
    (void)p;
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  });

  py::class_<veil::ServerKeys>(m, "ServerKeys").def_property_readonly("model_id", &veil::ServerKeys::model_id);

  py::class_<veil::Server>(m, "Server")
      .def_static("load", [](const std::string& dir) {
        py::gil_scoped_release release;
        return veil::Server::load(dir);
      })
      .def_static("from_bytes",
                  [](const py::buffer& zip) {
                    py::buffer_info info;
                    const auto z = view(zip, info);
                    py::gil_scoped_release release;
                    return veil::Server::from_bytes(z);
                  })
      .def("load_keys",
           [](const veil::Server& s, const py::buffer& keys) {
             py::buffer_info info;
             const auto k = view(keys, info);
             py::gil_scoped_release release;
             return s.load_keys(k);
           })
      .def("run",
           [](const veil::Server& s, const py::buffer& input, const veil::ServerKeys& keys) {
             py::buffer_info info;
             const auto in = view(input, info);
             veil::Bytes out;
             {
               py::gil_scoped_release release;
               out = s.run(in, keys);
             }
             return to_bytes(out);
           })
      .def_property_readonly("model_id", &veil::Server::model_id)
      .def_property_readonly("needs_evaluation_keys", &veil::Server::needs_evaluation_keys);
}
