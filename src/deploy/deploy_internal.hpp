// Helpers the deploy layer's files share (not installed).
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <span>
#include <string>

#include "veil/deploy/model.hpp"
#include "veil/tfhe/sha256.hpp"

namespace veil::deploy::internal {

// client.specs.json and serialized_processing.json are read up to this size.
inline constexpr std::uint64_t kMaxSpecsBytes = 64 << 20;

[[noreturn]] inline void fail(const std::string& what) { throw DeployError(what); }

inline Bytes to_bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }
inline std::string to_string(std::span<const std::uint8_t> b) { return std::string(b.begin(), b.end()); }
inline std::string sha256_hex(std::span<const std::uint8_t> bytes) { return tfhe::to_hex(tfhe::sha256(bytes)); }

inline bool file_exists(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::exists(p, ec);
}

// A hidden temporary name beside `path`, for writes that rename into place.
inline std::filesystem::path temp_sibling(const std::filesystem::path& path) {
  std::random_device rd;
  return path.parent_path() / ("." + path.filename().string() + ".tmp" + std::to_string(rd()));
}

}  // namespace veil::deploy::internal
