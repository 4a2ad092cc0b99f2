// The one base class of every error that untrusted input causes: a file, a byte string, an
// HTTP body or answer that is missing, truncated, corrupted, of another model or version, or
// otherwise not what Veil reads. A boundary (a request handler, a binding, a CLI command)
// catches veil::InputError and reports its message, which names what is wrong; the layers'
// own classes (deploy::DeployError, deploy::EnvelopeError, ml::DataError,
// ml::ModelFormatError, ml::ProcessingFormatError, circuit::CircuitFormatError,
// tfhe::FormatError, server::HttpError) derive from it.
//
// A contract broken by the calling code (a row of the wrong width, keys not generated yet, an
// option out of range) is std::invalid_argument or std::logic_error instead: a bug to fix in
// the caller, not input to refuse.
#pragma once

#include <stdexcept>

namespace veil {

class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace veil
