#include "veil/server/web_assets.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "veil/tfhe/sha256.hpp"

namespace veil::server {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> mime_type_of(const std::string& name) {
  const auto ends = [&](std::string_view suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".mjs") || ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".wasm")) return "application/wasm";
  if (ends(".json")) return "application/json";
  if (ends(".d.ts")) return "text/plain; charset=utf-8";
  if (ends(".png")) return "image/png";
  if (ends(".svg")) return "image/svg+xml";
  return std::nullopt;
}

}  // namespace

WebAssets WebAssets::load(const fs::path& dir) {
  WebAssets assets;
  for (const std::string sub : {"", "page"}) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir / sub, ec)) {
      if (!entry.is_regular_file()) continue;
      const std::string name = (sub.empty() ? "" : sub + "/") + entry.path().filename().string();
      const auto mime = mime_type_of(name);
      if (!mime) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      std::ostringstream content;
      content << in.rdbuf();
      if (!in && !in.eof()) throw std::runtime_error(entry.path().string() + ": cannot read");
      WebAsset asset{content.str(), *mime, {}};
      asset.etag = "\"" +
                   tfhe::to_hex(tfhe::sha256(std::span(reinterpret_cast<const std::uint8_t*>(asset.content.data()),
                                                       asset.content.size()))) +
                   "\"";
      assets.files_.emplace(name, std::move(asset));
    }
    if (ec && sub.empty()) throw std::runtime_error(dir.string() + ": cannot list (" + ec.message() + ")");
  }
  for (const char* required : {"veil-client.mjs", "page/index.html"})
    if (!assets.find(required))
      throw std::runtime_error(dir.string() + " has no " + required + " (scripts/build_web.sh makes build/web)");
  return assets;
}

const WebAsset* WebAssets::find(std::string_view relative) const {
  const auto it = files_.find(relative);
  return it == files_.end() ? nullptr : &it->second;
}

std::optional<fs::path> default_web_dir(const fs::path& binary) {
  const fs::path bin_dir = binary.parent_path();
  for (const fs::path& candidate : {bin_dir / "web", bin_dir / ".." / "share" / "veil" / "web"}) {
    std::error_code ec;
    if (fs::exists(candidate / "veil-client.mjs", ec) && fs::exists(candidate / "page" / "index.html", ec))
      return candidate;
  }
  return std::nullopt;
}

}  // namespace veil::server
