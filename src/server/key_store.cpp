// The parts of the key store shared by both implementations: hashing, spec parsing and
// redaction, option checks, and the checks on what get() reassembles.
#include "veil/server/key_store.hpp"


#include <algorithm>
#include <cctype>

#include "key_store_internal.hpp"

namespace veil::server {

namespace {

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

bool is_postgres_url(const std::string& spec) {
  return starts_with(spec, "postgresql://") || starts_with(spec, "postgres://");
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

std::string redact_key_store_spec(const std::string& spec) {
  if (starts_with(spec, "sqlite:")) return spec;
  const std::size_t scheme_end = spec.find("://");
  if (scheme_end == std::string::npos) {
    // keyword=value connection strings ("host=... password=...") are not shown at all.
    if (spec.find('=') != std::string::npos || lower(spec).find("password") != std::string::npos)
      return "(connection string not shown: it may hold a password)";
    return spec;
  }
  const std::size_t authority_begin = scheme_end + 3;
  std::size_t authority_end = spec.find_first_of("/?", authority_begin);
  if (authority_end == std::string::npos) authority_end = spec.size();
  std::string authority = spec.substr(authority_begin, authority_end - authority_begin);
  // The user info ends at the last '@' of the authority (a password may contain '@').
  if (const std::size_t at = authority.rfind('@'); at != std::string::npos) {
    std::string user_info = authority.substr(0, at);
    if (const std::size_t colon = user_info.find(':'); colon != std::string::npos) user_info.resize(colon);
    authority = user_info + "@" + authority.substr(at + 1);
  }
  std::string out = spec.substr(0, authority_begin) + authority;
  std::string rest = spec.substr(authority_end);
  const std::size_t query = rest.find('?');
  out += rest.substr(0, query);
  if (query != std::string::npos) {
    std::string kept;
    std::size_t pos = query + 1;
    while (pos <= rest.size()) {
      std::size_t amp = rest.find('&', pos);
      if (amp == std::string::npos) amp = rest.size();
      const std::string param = rest.substr(pos, amp - pos);
      const std::string name = lower(param.substr(0, param.find('=')));
      if (!param.empty() && name != "password" && name.find("%") == std::string::npos)
        kept += (kept.empty() ? "" : "&") + param;
      pos = amp + 1;
    }
    if (!kept.empty()) out += "?" + kept;
  }
  return out;
}

std::unique_ptr<KeyStore> open_key_store(const std::string& spec, const KeyStoreOptions& options) {
  if (starts_with(spec, "sqlite:")) {
    std::string path = spec.substr(7);
    if (path.empty()) throw std::invalid_argument("key store \"sqlite:\" needs a file path, e.g. sqlite:keys.db");
    return open_sqlite_key_store(path, options);
  }
  if (is_postgres_url(spec)) return open_postgres_key_store(spec, options);
  throw std::invalid_argument("key store \"" + redact_key_store_spec(spec) +
                              "\" is neither sqlite:PATH nor a postgresql://... connection URL");
}

namespace detail {

void check_options(const KeyStoreOptions& options) {
  if (options.chunk_bytes == 0 || options.chunk_bytes > kMaxChunkBytes)
    throw std::invalid_argument("key store chunk_bytes " + std::to_string(options.chunk_bytes) + " is outside [1, " +
                                std::to_string(kMaxChunkBytes) + "]");
  if (options.max_connections == 0) throw std::invalid_argument("key store max_connections must be at least 1");
}

void prepare_put(KeyRecordInfo& info, std::span<const std::uint8_t> keys) {
  if (info.key_id.empty()) throw std::invalid_argument("key store put: the key id is empty");
  if (keys.empty()) throw std::invalid_argument("key store put: no key bytes for key id " + info.key_id);
  if (keys.size() > kMaxKeyBytes)
    throw std::invalid_argument("key store put: " + std::to_string(keys.size()) + " key bytes for key id " +
                                info.key_id + " exceed the limit of " + std::to_string(kMaxKeyBytes));
  info.size = keys.size();
  info.keys_sha256 = tfhe::sha256(keys);
}

void ChunkAssembler::add(std::int64_t index, std::span<const std::uint8_t> bytes) {
  if (index != static_cast<std::int64_t>(next_index_))
    throw KeyStoreError(where_ + ": stored keys of key id " + info_.key_id + " are corrupt: chunk " +
                        std::to_string(index) + " found where chunk " + std::to_string(next_index_) + " was expected");
  if (bytes.size() > info_.size - std::min<std::uint64_t>(info_.size, keys_.size()))
    throw KeyStoreError(where_ + ": stored keys of key id " + info_.key_id +
                        " are corrupt: the chunks hold more than the " + std::to_string(info_.size) +
                        " bytes recorded");
  if (keys_.empty()) keys_.reserve(info_.size);  // bounded by kMaxKeyBytes in the constructor
  keys_.insert(keys_.end(), bytes.begin(), bytes.end());
  ++next_index_;
}

ChunkAssembler::ChunkAssembler(KeyRecordInfo info, std::string where)
    : info_(std::move(info)), where_(std::move(where)) {
  if (info_.size > kMaxKeyBytes)
    throw KeyStoreError(where_ + ": stored keys of key id " + info_.key_id + " are corrupt: recorded size " +
                        std::to_string(info_.size) + " exceeds " + std::to_string(kMaxKeyBytes));
}

KeyRecord ChunkAssembler::finish() && {
  if (keys_.size() != info_.size)
    throw KeyStoreError(where_ + ": stored keys of key id " + info_.key_id +
                        " are corrupt: " + std::to_string(keys_.size()) + " bytes in " + std::to_string(next_index_) +
                        " chunks, " + std::to_string(info_.size) + " recorded");
  if (tfhe::sha256(keys_) != info_.keys_sha256)
    throw KeyStoreError(where_ + ": stored keys of key id " + info_.key_id +
                        " are corrupt: their SHA-256 differs from the one recorded at upload");
  return KeyRecord{std::move(info_), std::move(keys_)};
}

}  // namespace detail
}  // namespace veil::server
