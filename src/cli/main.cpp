// `veil`: compile a model into the three artifacts, make keys, encrypt, run, decrypt,
// inspect; serve and predict over HTTP when the server layer is built. Every error ends
// the process with status 1 and one line on stderr; usage errors with CLI11's status.
#include <CLI/CLI.hpp>
#include <iostream>

#include "commands.hpp"
#include "veil/version.hpp"

#ifdef VEIL_HAVE_SERVER
#include "serve_commands.hpp"
#endif

int main(int argc, char** argv) {
  using namespace veil::cli;
  CLI::App app{"Veil: machine-learning inference on encrypted data (TFHE)", "veil"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("veil ") + veil::kVersion);

  CompileArgs compile_args;
  auto* c = app.add_subcommand("compile", "Quantize and compile a model into client.zip, server.zip, serialized_processing.json");
  c->add_option("--model", compile_args.model, "Model file: .onnx, XGBoost .json or Veil scikit-learn .json")->required()->check(CLI::ExistingFile);
  c->add_option("--calibration", compile_args.calibration, "Calibration rows: .csv (header allowed) or .npy")->required()->check(CLI::ExistingFile);
  c->add_option("--out", compile_args.out, "Output directory")->required();
  c->add_option("--n-bits", compile_args.n_bits, "Bit width of inputs, weights and activations (default: per model family; k-nearest neighbours: the most, up to 4, whose squared distances fit 8 bits)")->check(CLI::Range(2u, 8u));
  c->add_flag("--auto-tree-bits", compile_args.auto_tree_bits,
              "Trees: the fewest input bits (at most 6) whose predictions on the calibration rows stay within 2 points of 6 bits (default: 6 bits)")
      ->excludes("--n-bits");
  c->add_flag("--exact-tree-comparisons", compile_args.exact_tree_comparisons,
              "Trees: comparisons read their feature exactly, FHE = clear bit for bit, on a parameter set as wide as the inputs "
              "(default: a comparison may read a neighbouring code with probability at most 2^-10, so the set follows the "
              "narrower leaf lookups)");
  c->add_flag("--exact-network-reads", compile_args.exact_network_reads,
              "Networks: every lookup reads its rounded accumulator exactly, up to approximate rounding's ties (default: a "
              "lookup may also read a neighbouring step with probability at most 2^-10 where that makes the circuit "
              "cheaper, so the parameter set needs no 2^-40 reads at the lookups' precision)");
  c->add_option("--lookup-bits", compile_args.lookup_bits, "Networks: bits a lookup reads after rounding, 2 to 8 (default: the fewest, at most 6, whose predictions on the calibration rows stay within 1 point of 6 bits)")->check(CLI::Range(2u, 8u));
  c->add_option("--p-error", compile_args.p_error, "Error probability per PBS (default 2^-40)")->check(CLI::Range(1e-300, 0.5));
  c->add_option("--global-p-error", compile_args.global_p_error, "Error probability of the whole circuit, instead of --p-error")->check(CLI::Range(1e-300, 0.5));
  c->add_option("--max-key-mb", compile_args.max_key_mb,
                "Budget for the client's evaluation keys in MB: the cheapest parameter set whose seeded keys fit (default: no limit)")
      ->check(CLI::Range(0.1, 1e6));
  c->add_option("--answer-packing", compile_args.answer_packing,
                "Pack a row's outputs into one GLWE answer: auto (when the packing key, part of the evaluation keys, is repaid "
                "within 64 rows of smaller answers), on (whenever answers get smaller), off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  c->add_flag("--force", compile_args.force, "Overwrite existing artifacts");
  c->callback([&] { std::exit(compile(compile_args)); });

  KeygenArgs keygen_args;
  auto* k = app.add_subcommand("keygen", "Generate the secret key and the evaluation keys of a model");
  k->add_option("--client", keygen_args.client, "Directory with client.zip and serialized_processing.json")->required()->check(CLI::ExistingDirectory);
  k->add_option("--keys", keygen_args.keys, "Key directory (created; secret.key stays here)")->required();
  k->add_flag("--force", keygen_args.force, "Replace existing keys");
  k->callback([&] { std::exit(keygen(keygen_args)); });

  EncryptArgs encrypt_args;
  auto* e = app.add_subcommand("encrypt", "Quantize and encrypt input rows");
  e->add_option("--client", encrypt_args.client, "Directory with client.zip and serialized_processing.json")->required()->check(CLI::ExistingDirectory);
  e->add_option("--keys", encrypt_args.keys, "Key directory")->required()->check(CLI::ExistingDirectory);
  e->add_option("--input", encrypt_args.input, "Rows to encrypt: .csv or .npy, one column per feature")->required()->check(CLI::ExistingFile);
  e->add_option("--out", encrypt_args.out, "Encrypted batch to write")->required();
  e->callback([&] { std::exit(encrypt(encrypt_args)); });

  RunArgs run_args;
  auto* r = app.add_subcommand("run", "Run the model on an encrypted batch (server side: no secret key)");
  r->add_option("--server", run_args.server, "Directory with server.zip, or the zip itself")->required()->check(CLI::ExistingPath);
  r->add_option("--evaluation-keys", run_args.evaluation_keys, "The client's evaluation.keys")->required()->check(CLI::ExistingFile);
  r->add_option("--input", run_args.input, "Encrypted batch")->required()->check(CLI::ExistingFile);
  r->add_option("--out", run_args.out, "Encrypted result to write")->required();
  r->callback([&] { std::exit(run(run_args)); });

  DecryptArgs decrypt_args;
  auto* d = app.add_subcommand("decrypt", "Decrypt, dequantize and post-process an encrypted result");
  d->add_option("--client", decrypt_args.client, "Directory with client.zip and serialized_processing.json")->required()->check(CLI::ExistingDirectory);
  d->add_option("--keys", decrypt_args.keys, "Key directory")->required()->check(CLI::ExistingDirectory);
  d->add_option("--input", decrypt_args.input, "Encrypted result")->required()->check(CLI::ExistingFile);
  d->add_option("--out", decrypt_args.out, "Predictions CSV to write")->required();
  d->callback([&] { std::exit(decrypt(decrypt_args)); });

  SimulateArgs simulate_args;
  auto* s = app.add_subcommand("simulate", "Predict in the clear with the quantized circuit: what FHE will return, no keys");
  s->add_option("--artifacts", simulate_args.artifacts, "Directory with the three artifacts")->required()->check(CLI::ExistingDirectory);
  s->add_option("--input", simulate_args.input, "Rows: .csv or .npy, one column per feature")->required()->check(CLI::ExistingFile);
  s->add_option("--out", simulate_args.out, "Predictions CSV to write")->required();
  s->add_flag("--fhe-noise", simulate_args.fhe_noise,
              "Draw every approximate rounding read as FHE makes it near a tie (networks): an estimate of the "
              "FHE accuracy, not the exact clear value");
  s->add_option("--seed", simulate_args.seed, "Seed of the --fhe-noise draws (default 1)")->needs("--fhe-noise");
  s->callback([&] { std::exit(simulate(simulate_args)); });

  InspectArgs inspect_args;
  auto* i = app.add_subcommand("inspect", "Say what a Veil file is: artifact, keys, ciphertexts; its parameters and sizes");
  i->add_option("file", inspect_args.file, "The file")->required()->check(CLI::ExistingFile);
  i->add_option("--artifacts", inspect_args.artifacts, "Artifact directory to check the file against")->check(CLI::ExistingDirectory);
  i->callback([&] { std::exit(inspect(inspect_args)); });

#ifdef VEIL_HAVE_SERVER
  add_serve_commands(app);
#endif

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& err) {
    return app.exit(err);
  } catch (const CLI::CallForAllHelp& err) {
    return app.exit(err);
  } catch (const CLI::CallForVersion& err) {
    return app.exit(err);
  } catch (const CLI::ParseError& err) {
    std::cerr << "veil: error: " << err.what() << " (see veil --help)\n";
    return err.get_exit_code() != 0 ? err.get_exit_code() : 2;
  } catch (const std::exception& err) {
    std::cerr << "veil: error: " << err.what() << "\n";
    return 1;
  }
  return 0;
}
