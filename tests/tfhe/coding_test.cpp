#include "veil/tfhe/coding.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "toy_parameters.hpp"
#include "veil/tfhe/serialization.hpp"

namespace veil::tfhe {
namespace {

using ::testing::HasSubstr;
using Buffer = std::vector<std::uint8_t>;

struct TestError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ThrowTestError {
  [[noreturn]] void operator()(const std::string& what) const { throw TestError(what); }
};

TEST(Coding, FixedWidthIsLittleEndian) {
  std::array<std::uint8_t, 8> b{};
  encode_fixed64(b.data(), 0x0102030405060708ull);
  EXPECT_EQ(b, (std::array<std::uint8_t, 8>{8, 7, 6, 5, 4, 3, 2, 1}));
  EXPECT_EQ(decode_fixed64(b.data()), 0x0102030405060708ull);
  EXPECT_EQ(decode_fixed32(b.data()), 0x05060708u);
  EXPECT_EQ(decode_fixed16(b.data()), 0x0708u);
  encode_fixed16(b.data(), 0xBEEF);
  EXPECT_EQ(b[0], 0xEF);
  EXPECT_EQ(b[1], 0xBE);
  encode_fixed32(b.data(), 0xFFFFFFFFu);
  EXPECT_EQ(decode_fixed(b.data(), 3), 0xFFFFFFu);
}

TEST(Coding, BigEndianIsNetworkOrder) {
  std::array<std::uint8_t, 8> b{};
  encode_big_endian(b.data(), 0x0102030405060708ull, 8);
  EXPECT_EQ(b, (std::array<std::uint8_t, 8>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(decode_big_endian(b.data(), 8), 0x0102030405060708ull);
  EXPECT_EQ(decode_big_endian(b.data(), 4), 0x01020304u);
}

TEST(Coding, WriterAndReaderRoundTripEveryField) {
  ByteWriter w;
  w.u8(0xAB);
  w.u16(0x1234);
  w.u32(0xDEADBEEF);
  w.u64(std::numeric_limits<std::uint64_t>::max() - 1);
  w.i64(-5);
  w.f64(-0.375);
  w.uint(0x0A0B0C, 3);
  w.raw(Buffer{9, 8, 7});
  w.zeros(2);
  w.words(std::vector<std::uint64_t>{1, 0x8000000000000000ull});
  EXPECT_EQ(w.size(), 1 + 2 + 4 + 8 + 8 + 8 + 3 + 3 + 2 + 16u);
  const Buffer bytes = std::move(w).finish();
  EXPECT_EQ(bytes[1], 0x34);  // little-endian
  EXPECT_EQ(bytes[2], 0x12);

  ByteReader r(bytes, ThrowTestError{});
  EXPECT_EQ(r.u8("a"), 0xAB);
  EXPECT_EQ(r.u16("b"), 0x1234);
  EXPECT_EQ(r.u32("c"), 0xDEADBEEFu);
  EXPECT_EQ(r.u64("d"), std::numeric_limits<std::uint64_t>::max() - 1);
  EXPECT_EQ(r.i64("e"), -5);
  EXPECT_EQ(r.f64("f"), -0.375);
  EXPECT_EQ(r.uint(3, "g"), 0x0A0B0Cu);
  const std::uint8_t* raw = r.take(3, "h");
  EXPECT_EQ(raw[0], 9);
  EXPECT_EQ(r.u16("zeros"), 0);
  EXPECT_EQ(r.u64("w0"), 1u);
  EXPECT_EQ(r.u64("w1"), 0x8000000000000000ull);
  EXPECT_EQ(r.position(), bytes.size());
  r.expect_end();
}

TEST(Coding, ReaderNamesTheFieldAndOffsetOfAShortPayload) {
  const Buffer bytes{1, 2, 3};
  ByteReader r(bytes, ThrowTestError{});
  r.u16("first");
  try {
    r.u32("second");
    FAIL() << "read past the end";
  } catch (const TestError& e) {
    EXPECT_THAT(e.what(), HasSubstr("'second' at offset 2 (1 bytes left, 4 needed)"));
  }
}

TEST(Coding, ReaderRefusesTrailingBytes) {
  const Buffer bytes{1, 2, 3};
  ByteReader r(bytes, ThrowTestError{});
  r.u8("only");
  EXPECT_THROW(r.expect_end(), TestError);
}

TEST(Coding, ExactSizeWriterRefusesMoreAndFewerBytesAndNeverMoves) {
  ByteWriter w = ByteWriter::exact_size(12);
  w.u32(1);
  const std::uint8_t* first = w.written().data();
  w.u64(2);
  EXPECT_EQ(w.written().data(), first);  // allocated once
  EXPECT_THROW(w.u8(3), std::logic_error);

  ByteWriter short_writer = ByteWriter::exact_size(4);
  short_writer.u16(1);
  EXPECT_THROW(std::move(short_writer).finish(), std::logic_error);
}

constexpr FrameLayout kEightByteId{{'T', 'E', 'S', 'T', 'F', 'R', 'M', '8'}, 8};
constexpr FrameLayout kSixteenByteId{{'T', 'E', 'S', 'T', 'F', 'R', 'M', 'G'}, 16};

TEST(Coding, FrameHeaderWithAnEightByteIdHasTheTfheOffsets) {
  ByteWriter w;
  w.zeros(kFrameHeaderBytes);
  w.raw(Buffer{1, 2, 3, 4, 5});
  FrameHeader h;
  h.major = 1;
  h.minor = 2;
  h.type = 7;
  h.set_id_u64(0x1122334455667788ull);
  seal_frame(kEightByteId, h, w.written());
  const Buffer frame = std::move(w).finish();

  EXPECT_TRUE(std::equal(kEightByteId.magic.begin(), kEightByteId.magic.end(), frame.begin()));
  EXPECT_EQ(decode_fixed16(&frame[8]), 1);
  EXPECT_EQ(decode_fixed16(&frame[10]), 2);
  EXPECT_EQ(decode_fixed16(&frame[12]), 7);
  EXPECT_EQ(decode_fixed64(&frame[16]), 0x1122334455667788ull);
  EXPECT_EQ(decode_fixed64(&frame[24]), 5u);
  const Sha256Digest digest = sha256(std::span(frame).subspan(64));
  EXPECT_TRUE(std::equal(digest.begin(), digest.begin() + 16, frame.begin() + 32));
  for (std::size_t i = 48; i < 64; ++i) EXPECT_EQ(frame[i], 0) << i;

  const FrameHeader d = decode_frame_header(kEightByteId, frame);
  EXPECT_EQ(d.magic, kEightByteId.magic);
  EXPECT_EQ(d.type, 7);
  EXPECT_EQ(d.id_u64(), 0x1122334455667788ull);
  EXPECT_EQ(d.payload_bytes, 5u);
  EXPECT_EQ(d.checksum, frame_checksum(std::span(frame).subspan(64)));
  EXPECT_EQ(d.nonzero_reserved_offset, 0u);
}

TEST(Coding, FrameHeaderWithASixteenByteIdHasTheEnvelopeOffsets) {
  Buffer frame(kFrameHeaderBytes + 3, 0xEE);
  FrameHeader h;
  h.type = 4;
  for (std::size_t i = 0; i < 16; ++i) h.id[i] = static_cast<std::uint8_t>(0xA0 + i);
  seal_frame(kSixteenByteId, h, frame);
  EXPECT_EQ(frame[16], 0xA0);
  EXPECT_EQ(frame[31], 0xAF);
  EXPECT_EQ(decode_fixed64(&frame[32]), 3u);
  const Sha256Digest digest = sha256(std::span(frame).subspan(64));
  EXPECT_TRUE(std::equal(digest.begin(), digest.begin() + 16, frame.begin() + 40));
  for (std::size_t i = 56; i < 64; ++i) EXPECT_EQ(frame[i], 0) << i;
  EXPECT_EQ(decode_frame_header(kSixteenByteId, frame).id, h.id);
}

TEST(Coding, FrameHeaderDecodeReportsReservedBytes) {
  Buffer frame(kFrameHeaderBytes, 0);
  seal_frame(kEightByteId, FrameHeader{}, frame);
  frame[14] = 1;
  frame[50] = 9;
  const FrameHeader d = decode_frame_header(kEightByteId, frame);
  EXPECT_EQ(d.reserved, 1);
  EXPECT_EQ(d.nonzero_reserved_offset, 50u);
  EXPECT_THROW(decode_frame_header(kEightByteId, std::span(frame).first(63)), std::invalid_argument);
  EXPECT_THROW(decode_frame_header(FrameLayout{{}, 12}, frame), std::invalid_argument);
}

TEST(Coding, TfheFramesDecodeWithTheEightByteLayout) {
  // A real tfhe frame, written by serialization.cpp, reads back through the codec.
  const ParameterSet params = toy::exact_set(2);
  const Bytes frame = serialize(params);
  const FrameHeader d = decode_frame_header(FrameLayout{{'V', 'E', 'I', 'L', 'T', 'F', 'H', 'E'}, 8}, frame);
  EXPECT_EQ(d.magic, (FrameMagic{'V', 'E', 'I', 'L', 'T', 'F', 'H', 'E'}));
  EXPECT_EQ(d.type, static_cast<std::uint16_t>(ObjectType::kParameterSet));
  EXPECT_EQ(d.id_u64(), params.id());
  EXPECT_EQ(d.payload_bytes, frame.size() - kFrameHeaderBytes);
  EXPECT_EQ(d.checksum, frame_checksum(std::span(frame).subspan(kFrameHeaderBytes)));
}

TEST(Coding, HexRoundTripsAndRefusesMalformedText) {
  const Buffer bytes{0x00, 0x7f, 0xA5, 0xff};
  EXPECT_EQ(to_hex(bytes), "007fa5ff");
  std::array<std::uint8_t, 4> back{};
  ASSERT_TRUE(from_hex("007FA5ff", back));
  EXPECT_TRUE(std::equal(back.begin(), back.end(), bytes.begin()));
  EXPECT_FALSE(from_hex("007fa5f", back));    // odd length
  EXPECT_FALSE(from_hex("007fa5ff00", back));  // too long
  EXPECT_FALSE(from_hex("007fa5fg", back));    // not a digit
  EXPECT_EQ(hex_digit_value('b'), 11);
  EXPECT_EQ(hex_digit_value('G'), -1);
  EXPECT_EQ(to_hex_u64(0x00ab0000000000cdull), "00ab0000000000cd");
}

TEST(Coding, Sha256AndHexMatchKnownVectors) {
  EXPECT_EQ(to_hex(sha256(std::string_view("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(to_hex(sha256(std::span<const std::uint8_t>{})),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace veil::tfhe
