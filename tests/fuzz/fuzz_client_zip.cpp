// A client's artifact directory, loaded as ModelClient::load does: client.zip and
// serialized_processing.json.
//
// Input: u32 (little-endian) n, then n bytes, then the bytes of serialized_processing.json.
// The plain target takes the n bytes as client.zip itself (Veil's zip reader, the CRC checks);
// the "client_dir" variant (VEIL_FUZZ_ZIP_FROM_MEMBERS) takes them as versions.json followed
// by client.specs.json (split by another u32 length) and writes a well-formed zip around
// them, so that the fuzzer works on the documents inside rather than on the container.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "fuzz_common.hpp"
#include "veil/deploy/model.hpp"

using namespace veil;
namespace fs = std::filesystem;

namespace {

bool take(std::span<const std::uint8_t>& in, std::vector<std::uint8_t>& out) {
  if (in.size() < 4) return false;
  const std::uint32_t n = in[0] | (in[1] << 8) | (in[2] << 16) | (static_cast<std::uint32_t>(in[3]) << 24);
  in = in.subspan(4);
  if (n > in.size()) return false;
  out.assign(in.begin(), in.begin() + n);
  in = in.subspan(n);
  return true;
}

void write(const fs::path& p, std::span<const std::uint8_t> b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

const fs::path& work_dir() {
  static const fs::path dir = [] {
    const fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    fs::path d = base / ("veil_fuzz_client_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> in(data, size);
  const fs::path& dir = work_dir();
  std::vector<std::uint8_t> first;
  if (!take(in, first)) return 0;
#ifdef VEIL_FUZZ_ZIP_FROM_MEMBERS
  std::span<const std::uint8_t> members(first);
  std::vector<std::uint8_t> versions, specs;
  if (!take(members, versions)) return 0;
  specs.assign(members.begin(), members.end());
  deploy::write_zip(dir / deploy::kClientZip, {{"versions.json", versions}, {"client.specs.json", specs}});
#else
  write(dir / deploy::kClientZip, first);
#endif
  write(dir / deploy::kProcessingJson, in);
  fuzz::expect_only<deploy::DeployError>("client_zip", [&] { (void)deploy::ModelClient::load(dir); });
  return 0;
}
