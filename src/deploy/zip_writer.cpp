// write_zip (model.hpp) through libzip: native builds only (the WebAssembly client reads
// archives, zip_reader.hpp, and never writes one).
#include <zip.h>

#include "deploy_internal.hpp"
#include "veil/deploy/model.hpp"

namespace veil::deploy {
namespace {

using internal::fail;
using internal::temp_sibling;

std::string zip_error_text(int code) {
  zip_error_t e;
  zip_error_init_with_code(&e, code);
  std::string s = zip_error_strerror(&e);
  zip_error_fini(&e);
  return s;
}

}  // namespace

void write_zip(const std::filesystem::path& path, const std::vector<std::pair<std::string, Bytes>>& members) {
  const auto tmp = temp_sibling(path);
  int err = 0;
  zip_t* z = zip_open(tmp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  if (!z) fail(path.string() + ": cannot create (" + zip_error_text(err) + ")");
  for (const auto& [name, data] : members) {
    zip_source_t* src = zip_source_buffer(z, data.data(), data.size(), 0);
    if (!src || zip_file_add(z, name.c_str(), src, ZIP_FL_OVERWRITE | ZIP_FL_ENC_UTF_8) < 0) {
      if (src) zip_source_free(src);
      const std::string why = zip_strerror(z);
      zip_discard(z);
      std::filesystem::remove(tmp);
      fail(path.string() + ": cannot add '" + name + "' (" + why + ")");
    }
  }
  if (zip_close(z) != 0) {
    const std::string why = zip_strerror(z);
    zip_discard(z);
    std::filesystem::remove(tmp);
    fail(path.string() + ": cannot write (" + why + ")");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    fail(path.string() + ": cannot move into place (" + ec.message() + ")");
  }
}

}  // namespace veil::deploy
