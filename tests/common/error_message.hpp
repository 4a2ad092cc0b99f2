// Reading the error a call refuses its input with, for tests that assert what the message
// names.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <typeinfo>

namespace veil::test_support {

// The message of the `Error` that `f` throws ("" and a test failure when it throws nothing
// or another exception).
template <class Error = std::invalid_argument>
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected " << typeid(Error).name() << ", got another exception: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected " << typeid(Error).name() << ", nothing was thrown";
  return {};
}

inline bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace veil::test_support
