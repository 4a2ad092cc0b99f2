// Reading the error a call refuses its input with, for tests that assert what the message
// names.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <stdexcept>
#include <string>

namespace veil::test_support {

// The message of the std::invalid_argument that `f` throws ("" and a test failure when it
// throws nothing or another exception).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected std::invalid_argument, got another exception: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected std::invalid_argument, nothing was thrown";
  return {};
}

inline bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace veil::test_support
