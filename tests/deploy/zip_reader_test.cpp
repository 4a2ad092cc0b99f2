// Veil's own zip reader and inflate (src/deploy/zip_reader.hpp) against zlib and libzip, the
// references they replace on the read side, and against damaged archives.
#include "zip_reader.hpp"

#include <gtest/gtest.h>
#include <zip.h>
#include <zlib.h>

#include <random>
#include <string>

#include "veil/deploy/model.hpp"

namespace veil::deploy {
namespace {

// Text-like bytes (words from a small vocabulary, so that deflate finds matches), or
// uniformly random ones.
Bytes sample(std::size_t size, bool compressible, unsigned seed) {
  std::mt19937 rng(seed);
  Bytes out;
  const char* words[] = {"client", "specs", "lookup ", "table", "0.125,", "-3,", "\"bits\": 4", "\n", "{}"};
  while (out.size() < size) {
    if (compressible) {
      const std::string w = words[rng() % 9];
      out.insert(out.end(), w.begin(), w.end());
    } else {
      out.push_back(static_cast<std::uint8_t>(rng()));
    }
  }
  out.resize(size);
  return out;
}

Bytes zlib_raw_deflate(const Bytes& in, int level, int strategy) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, level, Z_DEFLATED, -15, 8, strategy), Z_OK);
  Bytes out(deflateBound(&z, in.size()) + 16);
  z.next_in = const_cast<Bytes::value_type*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

TEST(Inflate, MatchesZlibAtEveryLevelAndStrategy) {
  for (std::size_t size : {0u, 1u, 100u, 5000u, 70000u, 300000u})
    for (bool compressible : {true, false})
      for (int level : {0, 1, 6, 9})
        for (int strategy : {Z_DEFAULT_STRATEGY, Z_FIXED, Z_HUFFMAN_ONLY, Z_RLE}) {
          const Bytes original = sample(size, compressible, static_cast<unsigned>(size + level));
          const Bytes deflated = zlib_raw_deflate(original, level, strategy);
          ASSERT_EQ(inflate_raw(deflated, original.size()), original)
              << size << " bytes, level " << level << ", strategy " << strategy;
        }
}

TEST(Inflate, RefusesTruncatedStreamsAndWrongSizes) {
  const Bytes original = sample(20000, true, 7);
  const Bytes deflated = zlib_raw_deflate(original, 9, Z_DEFAULT_STRATEGY);
  for (std::size_t cut = 0; cut < deflated.size(); cut += 1 + cut / 8)
    EXPECT_THROW(inflate_raw(std::span(deflated).first(cut), original.size()), std::invalid_argument) << "cut at " << cut;
  EXPECT_THROW(inflate_raw(deflated, original.size() - 1), std::invalid_argument);
  EXPECT_THROW(inflate_raw(deflated, original.size() + 1), std::invalid_argument);
  // Reserved block type 3.
  const Bytes reserved = {0x07, 0x00};
  EXPECT_THROW(inflate_raw(reserved, 0), std::invalid_argument);
}

TEST(Crc32, MatchesZlib) {
  const Bytes data = sample(100000, false, 3);
  EXPECT_EQ(crc32(data), static_cast<std::uint32_t>(::crc32_z(::crc32_z(0, nullptr, 0), data.data(), data.size())));
  EXPECT_EQ(crc32(std::span(data).subspan(500), crc32(std::span(data).first(500))), crc32(data));
}

// An archive made by libzip in memory: each member deflated or stored.
Bytes libzip_archive(const std::vector<std::pair<std::string, Bytes>>& members, bool store) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* buffer = zip_source_buffer_create(nullptr, 0, 0, &error);
  zip_t* z = zip_open_from_source(buffer, ZIP_TRUNCATE, &error);
  EXPECT_NE(z, nullptr);
  zip_source_keep(buffer);
  for (const auto& [name, data] : members) {
    const zip_int64_t index = zip_file_add(z, name.c_str(), zip_source_buffer(z, data.data(), data.size(), 0), 0);
    EXPECT_GE(index, 0);
    zip_set_file_compression(z, static_cast<zip_uint64_t>(index), store ? ZIP_CM_STORE : ZIP_CM_DEFLATE, 9);
  }
  EXPECT_EQ(zip_close(z), 0);
  zip_source_open(buffer);
  zip_source_seek(buffer, 0, SEEK_END);
  Bytes out(static_cast<std::size_t>(zip_source_tell(buffer)));
  zip_source_seek(buffer, 0, SEEK_SET);
  zip_source_read(buffer, out.data(), out.size());
  zip_source_close(buffer);
  zip_source_free(buffer);
  zip_error_fini(&error);
  return out;
}

TEST(ZipReader, ReadsWhatLibzipWritesStoredAndDeflated) {
  const std::vector<std::pair<std::string, Bytes>> members = {
      {"versions.json", sample(80, true, 1)}, {"client.specs.json", sample(40000, true, 2)},
      {"circuit.bin", sample(10000, false, 3)}, {"empty", {}}};
  for (bool store : {false, true}) {
    const Bytes archive = libzip_archive(members, store);
    const ZipReader reader(archive, "test.zip");
    EXPECT_EQ(reader.names().size(), members.size());
    for (const auto& [name, data] : members) EXPECT_EQ(reader.read(name, 1 << 20), data) << name;
    try {
      reader.read("missing", 100);
      ADD_FAILURE() << "a missing member was read";
    } catch (const DeployError& e) {
      EXPECT_NE(std::string(e.what()).find("test.zip: has no member 'missing'"), std::string::npos) << e.what();
    }
    EXPECT_THROW(reader.read("client.specs.json", 39999), DeployError);
  }
}

TEST(ZipReader, EveryDamagedByteIsRefusedOrHarmless) {
  const std::vector<std::pair<std::string, Bytes>> members = {{"a.json", sample(3000, true, 5)},
                                                              {"b.bin", sample(500, false, 6)}};
  for (bool store : {false, true}) {
    const Bytes archive = libzip_archive(members, store);
    for (std::size_t at = 0; at < archive.size(); ++at) {
      Bytes damaged = archive;
      damaged[at] ^= 0x5a;
      try {
        const ZipReader reader(damaged, "damaged.zip");
        for (const auto& [name, data] : members) {
          // Either refused, or exactly the original bytes (a byte of a date, say, changed).
          try {
            EXPECT_EQ(reader.read(name, 1 << 20), data) << "byte " << at;
          } catch (const DeployError&) {
          }
        }
      } catch (const DeployError&) {
      }
    }
    // Every truncation is refused.
    for (std::size_t cut = 0; cut < archive.size(); ++cut) {
      bool refused = false;
      try {
        const ZipReader reader(std::span<const std::uint8_t>(archive).first(cut), "cut.zip");
        for (const auto& [name, data] : members) reader.read(name, 1 << 20);
      } catch (const DeployError&) {
        refused = true;
      }
      EXPECT_TRUE(refused) << "cut at " << cut;
    }
  }
}

}  // namespace
}  // namespace veil::deploy
