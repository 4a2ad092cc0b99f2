// Veil's own reader of zip archives in memory (PKWARE's APPNOTE, the subset artifacts use:
// one disk, no zip64, no encryption; members stored or deflated), with its own inflate
// (RFC 1951) and CRC-32. One reader for every build: native Veil and the WebAssembly client,
// which has no libzip or zlib. Writing stays with libzip (artifacts.cpp).
//
// Every offset and length is checked against the archive before it is read; a member is
// inflated into at most the size the central directory declares (itself checked against the
// caller's limit first), so a forged archive can neither read out of bounds nor make the
// reader allocate more than the limit. Errors are DeployError naming the archive, the member
// and what is wrong.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "veil/deploy/envelope.hpp"

namespace veil::deploy {

// CRC-32 (ISO 3309, the zip and gzip one) of `bytes`, continuing from `crc` (0 to start).
std::uint32_t crc32(std::span<const std::uint8_t> bytes, std::uint32_t crc = 0);

// Inflates a raw deflate stream that must produce exactly `size` bytes. Throws
// std::invalid_argument naming the defect (the reader wraps it in a DeployError).
Bytes inflate_raw(std::span<const std::uint8_t> deflated, std::uint64_t size);

class ZipReader {
 public:
  // Parses the end record and the central directory of `archive`, which must outlive the
  // reader; `source` names it in errors.
  ZipReader(std::span<const std::uint8_t> archive, std::string source);

  // The member's bytes, checked against its CRC-32. Throws DeployError when it is missing,
  // larger than max_bytes, or corrupted.
  Bytes read(const std::string& member, std::uint64_t max_bytes) const;
  std::vector<std::string> names() const;

 private:
  struct Entry {
    std::string name;
    std::uint16_t flags = 0, method = 0;
    std::uint32_t crc = 0;
    std::uint64_t compressed_size = 0, size = 0, local_offset = 0;
  };
  std::span<const std::uint8_t> archive_;
  std::string source_;
  std::vector<Entry> entries_;
};

}  // namespace veil::deploy
