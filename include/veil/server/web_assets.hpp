// The browser client's files for `veil serve` (web/, assembled into build/web by
// scripts/build_web.sh): read once at start and served from memory at /web/{file}, with the
// page (page/index.html) at / and /models/{name}/. Only the files the directory held at start
// are served, by exact name: a request path never reaches the file system.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace veil::server {

struct WebAsset {
  std::string content;
  std::string mime_type;
  std::string etag;  // "\"<sha256 hex>\""
};

class WebAssets {
 public:
  // Every regular file of DIR and DIR/page with a known type (.html .mjs .js .css .wasm .json
  // .d.ts .png .svg). Throws std::runtime_error when DIR has no veil-client.mjs or
  // page/index.html, or a file cannot be read.
  static WebAssets load(const std::filesystem::path& dir);

  // The file at `relative` under /web/ ("veil-client.mjs", "page/page.mjs"); null if none.
  const WebAsset* find(std::string_view relative) const;
  const WebAsset& page() const { return files_.at("page/index.html"); }
  std::size_t size() const { return files_.size(); }

 private:
  std::map<std::string, WebAsset, std::less<>> files_;
};

// The Content-Security-Policy of the page and its files: scripts, workers, WebAssembly and
// requests from this origin only; no inline script or style, no frames, no plugins.
inline constexpr const char* kWebContentSecurityPolicy =
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; "
    "style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// Where `veil serve` looks for the files when --web is not given, beside the binary:
// BIN_DIR/web (a build tree: build/veil and build/web) and BIN_DIR/../share/veil/web (an
// install). Empty when neither holds them.
std::optional<std::filesystem::path> default_web_dir(const std::filesystem::path& binary);

}  // namespace veil::server
