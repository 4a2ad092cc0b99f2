// The frame-header codec of coding.hpp (the fixed-width coding and the cursor are inline).
#include "veil/tfhe/coding.hpp"

#include <algorithm>

namespace veil::tfhe {
namespace {

void check_layout(const FrameLayout& layout) {
  if (layout.id_bytes != 8 && layout.id_bytes != 16)
    throw std::invalid_argument("frame layout: an owner id of " + std::to_string(layout.id_bytes) +
                                " bytes (8 or 16 are defined)");
}

}  // namespace

FrameChecksum frame_checksum(std::span<const std::uint8_t> payload) {
  const Sha256Digest digest = sha256(payload);
  FrameChecksum out{};
  std::copy_n(digest.begin(), out.size(), out.begin());
  return out;
}

void encode_frame_header(const FrameLayout& layout, const FrameHeader& header, std::span<std::uint8_t> out) {
  if (out.size() < kFrameHeaderBytes) throw std::invalid_argument("encode_frame_header: fewer than 64 bytes");
  check_layout(layout);
  std::uint8_t* h = out.data();
  std::fill_n(h, kFrameHeaderBytes, std::uint8_t{0});
  std::copy(layout.magic.begin(), layout.magic.end(), h);
  encode_fixed16(h + 8, header.major);
  encode_fixed16(h + 10, header.minor);
  encode_fixed16(h + FrameLayout::kTypeOffset, header.type);
  std::copy_n(header.id.begin(), layout.id_bytes, h + FrameLayout::kIdOffset);
  encode_fixed64(h + layout.length_offset(), header.payload_bytes);
  std::copy(header.checksum.begin(), header.checksum.end(), h + layout.checksum_offset());
}

FrameHeader decode_frame_header(const FrameLayout& layout, std::span<const std::uint8_t> bytes) {
  if (bytes.size() < kFrameHeaderBytes) throw std::invalid_argument("decode_frame_header: fewer than 64 bytes");
  check_layout(layout);
  const std::uint8_t* h = bytes.data();
  FrameHeader header;
  std::copy_n(h, header.magic.size(), header.magic.begin());
  header.major = decode_fixed16(h + 8);
  header.minor = decode_fixed16(h + 10);
  header.type = decode_fixed16(h + FrameLayout::kTypeOffset);
  header.reserved = decode_fixed16(h + 14);
  std::copy_n(h + FrameLayout::kIdOffset, layout.id_bytes, header.id.begin());
  header.payload_bytes = decode_fixed64(h + layout.length_offset());
  std::copy_n(h + layout.checksum_offset(), header.checksum.size(), header.checksum.begin());
  for (std::size_t i = layout.reserved_offset(); i < kFrameHeaderBytes; ++i)
    if (h[i] != 0) {
      header.nonzero_reserved_offset = i;
      break;
    }
  return header;
}

void seal_frame(const FrameLayout& layout, FrameHeader header, std::span<std::uint8_t> frame) {
  if (frame.size() < kFrameHeaderBytes) throw std::invalid_argument("seal_frame: fewer than 64 bytes");
  const std::span<const std::uint8_t> payload = frame.subspan(kFrameHeaderBytes);
  header.payload_bytes = payload.size();
  header.checksum = frame_checksum(payload);
  encode_frame_header(layout, header, frame);
}

}  // namespace veil::tfhe
