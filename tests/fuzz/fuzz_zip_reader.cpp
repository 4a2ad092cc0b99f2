// Veil's zip reader and inflate (src/deploy/zip_reader.hpp) on their own, where the
// client_zip target reaches them only through ModelClient::load.
//
// Input: one selector byte, then the bytes. Selector even: the bytes are an archive; every
// member it lists is read (limit 1 MiB). Odd: the bytes are a raw deflate stream that must
// inflate to exactly N bytes, N the next two bytes (little-endian).
#include "fuzz_common.hpp"
#include "veil/deploy/model.hpp"
#include "zip_reader.hpp"

using namespace veil;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::span<const std::uint8_t> in(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    fuzz::expect_only<deploy::DeployError>("zip_reader", [&] {
      const deploy::ZipReader reader(in, "fuzz.zip");
      for (const std::string& name : reader.names()) {
        try {
          (void)reader.read(name, 1 << 20);
        } catch (const deploy::DeployError&) {
        }
      }
    });
  } else {
    if (in.size() < 2) return 0;
    const std::size_t expected = in[0] | (in[1] << 8);
    fuzz::expect_only<std::invalid_argument>("inflate", [&] {
      const deploy::Bytes out = deploy::inflate_raw(in.subspan(2), expected);
      if (out.size() != expected) std::abort();  // inflate_raw promises exactly `expected` bytes
    });
  }
  return 0;
}
