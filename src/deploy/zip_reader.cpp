#include "zip_reader.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>

#include "veil/deploy/model.hpp"
#include "veil/tfhe/coding.hpp"
#include "veil/tfhe/sha256.hpp"

namespace veil::deploy {
namespace {

[[noreturn]] void bad_stream(const std::string& why) { throw std::invalid_argument(why); }

constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t n = 0; n < 256; ++n) {
    std::uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  return table;
}
constexpr auto kCrcTable = make_crc_table();

// ---- inflate (RFC 1951) ----

constexpr int kMaxBits = 15;  // longest code of a deflate Huffman code

class BitReader {
 public:
  explicit BitReader(std::span<const std::uint8_t> in) : in_(in) {}
  // The next `count` bits (count <= 16), least significant first.
  std::uint32_t bits(int count) {
    while (held_ < count) {
      if (pos_ == in_.size()) bad_stream("the deflate stream ends early");
      buffer_ |= std::uint32_t{in_[pos_++]} << held_;
      held_ += 8;
    }
    const std::uint32_t v = buffer_ & ((1u << count) - 1);
    buffer_ >>= count;
    held_ -= count;
    return v;
  }
  // Drops the bits left of the current byte (before a stored block).
  void align() { buffer_ = 0, held_ = 0; }
  std::span<const std::uint8_t> take_bytes(std::size_t count) {
    if (in_.size() - pos_ < count) bad_stream("a stored block runs past the end of the stream");
    auto out = in_.subspan(pos_, count);
    pos_ += count;
    return out;
  }

 private:
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  std::uint32_t buffer_ = 0;
  int held_ = 0;
};

// A canonical Huffman code by its number of codes of each length and its symbols in code
// order; decoded one bit at a time (members are small: specs, circuits, processing).
struct Huffman {
  std::array<std::uint16_t, kMaxBits + 1> count{};
  std::vector<std::uint16_t> symbol;

  // From the code length of each symbol (0: unused). Refuses an over-subscribed set of
  // lengths; an incomplete one is legal (a code then fails only if the stream uses a gap).
  Huffman(const std::uint8_t* lengths, std::size_t n, const char* what) : symbol(n) {
    for (std::size_t s = 0; s < n; ++s) ++count[lengths[s]];
    int left = 1;
    for (int len = 1; len <= kMaxBits; ++len) {
      left = 2 * left - count[static_cast<std::size_t>(len)];
      if (left < 0) bad_stream(std::string("over-subscribed ") + what + " code");
    }
    std::array<std::uint16_t, kMaxBits + 2> offset{};
    for (int len = 1; len <= kMaxBits; ++len)
      offset[static_cast<std::size_t>(len + 1)] = static_cast<std::uint16_t>(offset[static_cast<std::size_t>(len)] + count[static_cast<std::size_t>(len)]);
    for (std::size_t s = 0; s < n; ++s)
      if (lengths[s] != 0) symbol[offset[lengths[s]]++] = static_cast<std::uint16_t>(s);
  }

  int decode(BitReader& in, const char* what) const {
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= kMaxBits; ++len) {
      code |= static_cast<int>(in.bits(1));
      const int n = count[static_cast<std::size_t>(len)];
      if (code - first < n) return symbol[static_cast<std::size_t>(index + code - first)];
      index += n;
      first = (first + n) << 1;
      code <<= 1;
    }
    bad_stream(std::string("a ") + what + " code the block does not define");
  }
};

constexpr std::array<std::uint16_t, 29> kLengthBase = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                                       31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr std::array<std::uint8_t, 29> kLengthExtra = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                                       2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr std::array<std::uint16_t, 30> kDistanceBase = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                                         33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                                         1025, 1537, 2049, 3073, 4097, 6145,  8193,  12289, 16385, 24577};
constexpr std::array<std::uint8_t, 30> kDistanceExtra = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                                         6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

void inflate_block(BitReader& in, const Huffman& literals, const Huffman& distances, Bytes& out, std::uint64_t size) {
  for (;;) {
    const int symbol = literals.decode(in, "literal/length");
    if (symbol < 256) {
      if (out.size() == size) bad_stream("the stream inflates to more than the declared size");
      out.push_back(static_cast<std::uint8_t>(symbol));
      continue;
    }
    if (symbol == 256) return;
    const auto li = static_cast<std::size_t>(symbol - 257);
    if (li >= kLengthBase.size()) bad_stream("length symbol " + std::to_string(symbol) + " is reserved");
    const std::size_t length = kLengthBase[li] + in.bits(kLengthExtra[li]);
    const auto di = static_cast<std::size_t>(distances.decode(in, "distance"));
    if (di >= kDistanceBase.size()) bad_stream("distance symbol " + std::to_string(di) + " is reserved");
    const std::size_t distance = kDistanceBase[di] + in.bits(kDistanceExtra[di]);
    if (distance > out.size()) bad_stream("a back-reference reaches before the start of the output");
    if (size - out.size() < length) bad_stream("the stream inflates to more than the declared size");
    const std::size_t from = out.size() - distance;
    for (std::size_t i = 0; i < length; ++i) out.push_back(out[from + i]);  // may overlap what it writes
  }
}

void inflate_dynamic(BitReader& in, Bytes& out, std::uint64_t size) {
  const std::size_t n_literals = in.bits(5) + 257, n_distances = in.bits(5) + 1, n_code_lengths = in.bits(4) + 4;
  if (n_literals > 286 || n_distances > 30) bad_stream("a dynamic block declares too many codes");
  static constexpr std::array<std::uint8_t, 19> kOrder = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
  std::array<std::uint8_t, 19> code_lengths{};
  for (std::size_t i = 0; i < n_code_lengths; ++i) code_lengths[kOrder[i]] = static_cast<std::uint8_t>(in.bits(3));
  const Huffman length_code(code_lengths.data(), code_lengths.size(), "code-length");
  std::array<std::uint8_t, 286 + 30> lengths{};
  for (std::size_t i = 0; i < n_literals + n_distances;) {
    const int symbol = length_code.decode(in, "code-length");
    if (symbol < 16) {
      lengths[i++] = static_cast<std::uint8_t>(symbol);
      continue;
    }
    std::uint8_t value = 0;
    std::size_t repeat = 0;
    if (symbol == 16) {
      if (i == 0) bad_stream("a repeat of the previous code length with none before it");
      value = lengths[i - 1];
      repeat = 3 + in.bits(2);
    } else if (symbol == 17) {
      repeat = 3 + in.bits(3);
    } else {
      repeat = 11 + in.bits(7);
    }
    if (i + repeat > n_literals + n_distances) bad_stream("code lengths run past the declared count");
    std::fill_n(lengths.begin() + static_cast<std::ptrdiff_t>(i), repeat, value);
    i += repeat;
  }
  if (lengths[256] == 0) bad_stream("a dynamic block without an end-of-block code");
  const Huffman literals(lengths.data(), n_literals, "literal/length");
  const Huffman distances(lengths.data() + n_literals, n_distances, "distance");
  inflate_block(in, literals, distances, out, size);
}

const Huffman& fixed_literals() {
  static const Huffman code = [] {
    std::array<std::uint8_t, 288> lengths{};
    std::fill(lengths.begin(), lengths.begin() + 144, 8);
    std::fill(lengths.begin() + 144, lengths.begin() + 256, 9);
    std::fill(lengths.begin() + 256, lengths.begin() + 280, 7);
    std::fill(lengths.begin() + 280, lengths.end(), 8);
    return Huffman(lengths.data(), lengths.size(), "literal/length");
  }();
  return code;
}

const Huffman& fixed_distances() {
  static const Huffman code = [] {
    std::array<std::uint8_t, 30> lengths{};
    lengths.fill(5);
    return Huffman(lengths.data(), lengths.size(), "distance");
  }();
  return code;
}

// ---- the archive ----

constexpr std::uint32_t kEndRecord = 0x06054b50, kCentralHeader = 0x02014b50, kLocalHeader = 0x04034b50;
constexpr std::size_t kEndRecordBytes = 22;

// Little-endian fields of the archive through the formats' shared cursor; a short read
// throws DeployError naming the archive and the field.
auto field_reader(std::span<const std::uint8_t> bytes, const std::string& source) {
  return tfhe::ByteReader(bytes, [&source](const std::string& why) {
    throw DeployError(source + ": not a readable zip archive (" + why + ")");
  });
}

}  // namespace

std::uint32_t crc32(std::span<const std::uint8_t> bytes, std::uint32_t crc) {
  crc = ~crc;
  for (const std::uint8_t b : bytes) crc = kCrcTable[(crc ^ b) & 0xff] ^ (crc >> 8);
  return ~crc;
}

Bytes inflate_raw(std::span<const std::uint8_t> deflated, std::uint64_t size) {
  Bytes out;
  out.reserve(static_cast<std::size_t>(size));
  BitReader in(deflated);
  for (bool last = false; !last;) {
    last = in.bits(1) == 1;
    switch (in.bits(2)) {
      case 0: {
        in.align();
        const auto header = in.take_bytes(4);
        const std::uint16_t length = tfhe::decode_fixed16(header.data());
        const std::uint16_t check = tfhe::decode_fixed16(header.data() + 2);
        if (static_cast<std::uint16_t>(~check) != length) bad_stream("a stored block's length check fails");
        if (size - out.size() < length) bad_stream("the stream inflates to more than the declared size");
        const auto data = in.take_bytes(length);
        out.insert(out.end(), data.begin(), data.end());
        break;
      }
      case 1:
        inflate_block(in, fixed_literals(), fixed_distances(), out, size);
        break;
      case 2:
        inflate_dynamic(in, out, size);
        break;
      default:
        bad_stream("a block of the reserved type 3");
    }
  }
  if (out.size() != size)
    bad_stream("the stream inflates to " + std::to_string(out.size()) + " bytes, not the declared " + std::to_string(size));
  return out;
}

ZipReader::ZipReader(std::span<const std::uint8_t> archive, std::string source)
    : archive_(archive), source_(std::move(source)) {
  const auto fail = [&](const std::string& why) { throw DeployError(source_ + ": not a readable zip archive (" + why + ")"); };
  // The end record: the last signature within the final 22 + 65535 (comment) bytes whose
  // comment length reaches exactly the end.
  if (archive.size() < kEndRecordBytes) fail("only " + std::to_string(archive.size()) + " bytes");
  const std::size_t lowest = archive.size() > kEndRecordBytes + 0xffff ? archive.size() - kEndRecordBytes - 0xffff : 0;
  std::size_t end = archive.size() - kEndRecordBytes;
  for (;; --end) {
    auto r = field_reader(archive.subspan(end), source_);
    const bool signature = r.uint(4, "end record signature") == kEndRecord;
    r.take(16, "end record");
    if (signature && end + kEndRecordBytes + r.uint(2, "comment length") == archive.size()) break;
    if (end == lowest) fail("no end-of-central-directory record");
  }
  auto record = field_reader(archive.subspan(end + 4), source_);
  const std::uint64_t this_disk = record.uint(2, "disk number"), directory_disk = record.uint(2, "directory disk");
  const std::uint64_t count_here = record.uint(2, "entries on this disk"), count = record.uint(2, "entries");
  const std::uint64_t directory_bytes = record.uint(4, "directory size"), directory_offset = record.uint(4, "directory offset");
  if (this_disk != 0 || directory_disk != 0) fail("spans several disks");
  if (count == 0xffff || directory_bytes == 0xffffffff || directory_offset == 0xffffffff) fail("zip64, not supported");
  if (count_here != count) fail("the end record's entry counts disagree");
  if (directory_offset > end || directory_bytes > end - directory_offset) fail("the central directory lies outside the archive");
  auto directory = field_reader(archive.subspan(directory_offset, directory_bytes), source_);
  for (std::uint64_t i = 0; i < count; ++i) {
    if (directory.uint(4, "central directory signature") != kCentralHeader)
      fail("central directory entry " + std::to_string(i) + " is damaged");
    Entry e;
    directory.take(4, "versions");
    e.flags = static_cast<std::uint16_t>(directory.uint(2, "flags"));
    e.method = static_cast<std::uint16_t>(directory.uint(2, "method"));
    directory.take(4, "time and date");
    e.crc = static_cast<std::uint32_t>(directory.uint(4, "CRC-32"));
    e.compressed_size = directory.uint(4, "compressed size");
    e.size = directory.uint(4, "size");
    const std::size_t name_bytes = directory.uint(2, "name length"), extra_bytes = directory.uint(2, "extra length"),
                      comment_bytes = directory.uint(2, "comment length");
    directory.take(8, "disk and attributes");
    e.local_offset = directory.uint(4, "local header offset");
    if (e.compressed_size == 0xffffffff || e.size == 0xffffffff || e.local_offset == 0xffffffff) fail("zip64, not supported");
    const std::uint8_t* name = directory.take(name_bytes, "name");
    e.name.assign(reinterpret_cast<const char*>(name), name_bytes);
    directory.take(extra_bytes + comment_bytes, "extra field and comment");
    for (const Entry& seen : entries_)
      if (seen.name == e.name) fail("member '" + e.name + "' appears twice");
    entries_.push_back(std::move(e));
  }
}

std::vector<std::string> ZipReader::names() const {
  std::vector<std::string> out;
  for (const Entry& e : entries_) out.push_back(e.name);
  return out;
}

Bytes ZipReader::read(const std::string& member, std::uint64_t max_bytes) const {
  const auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.name == member; });
  if (it == entries_.end()) throw DeployError(source_ + ": has no member '" + member + "' (is it a Veil artifact?)");
  const Entry& e = *it;
  const auto fail = [&](const std::string& why) {
    throw DeployError(source_ + ": member '" + member + "' is corrupted (" + why + ")");
  };
  if (e.size > max_bytes)
    throw DeployError(source_ + ": member '" + member + "' is " + std::to_string(e.size) +
                      " bytes, more than the limit of " + std::to_string(max_bytes));
  if ((e.flags & 1) != 0) throw DeployError(source_ + ": member '" + member + "' is encrypted, which Veil never writes");
  if (e.method != 0 && e.method != 8)
    throw DeployError(source_ + ": member '" + member + "' uses compression method " + std::to_string(e.method) +
                      "; Veil reads stored (0) and deflated (8) members");
  if (e.local_offset > archive_.size()) fail("its local header lies outside the archive");
  auto local = tfhe::ByteReader(archive_.subspan(static_cast<std::size_t>(e.local_offset)),
                                [&](const std::string& why) { fail(why); });
  if (local.uint(4, "local header signature") != kLocalHeader) fail("its local header is missing");
  local.take(22, "local header");
  const std::size_t skip = local.uint(2, "name length") + local.uint(2, "extra length");
  local.take(skip, "local name and extra field");
  const std::span<const std::uint8_t> stored(local.take(static_cast<std::size_t>(e.compressed_size), "member data"),
                                             static_cast<std::size_t>(e.compressed_size));
  Bytes out;
  if (e.method == 0) {
    if (e.compressed_size != e.size) fail("a stored member whose two sizes differ");
    out.assign(stored.begin(), stored.end());
  } else {
    try {
      out = inflate_raw(stored, e.size);
    } catch (const std::invalid_argument& error) {
      fail(error.what());
    }
  }
  const std::uint32_t crc = crc32(out);
  if (crc != e.crc) {
    const auto hex = [](std::uint32_t v) {
      std::array<std::uint8_t, 4> big_endian{};
      tfhe::encode_big_endian(big_endian.data(), v, 4);
      return tfhe::to_hex(big_endian);
    };
    fail("CRC-32 " + hex(crc) + " does not match the stored " + hex(e.crc));
  }
  return out;
}

}  // namespace veil::deploy
