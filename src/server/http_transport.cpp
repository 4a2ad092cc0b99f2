// Veil's connection layer under cpp-httplib's request processing (http_transport.hpp): an
// epoll reactor that receives whole requests, a pool of workers that process them.
#include "http_transport.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace veil::server {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

thread_local RequestContext* tls_request = nullptr;

// Waits until `fd` is ready for `events` or `timeout` passes; retries on EINTR. Returns
// poll()'s result: > 0 ready, 0 timeout, < 0 error.
int poll_for(int fd, short events, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::max<long long>(0, std::min<long long>(left, 1 << 30))));
    if (r < 0 && errno == EINTR) continue;
    if (r > 0 && (p.revents & (POLLERR | POLLNVAL)) != 0 && (p.revents & events) == 0) return -1;
    return r;
  }
}

void address_of(const sockaddr_storage& addr, std::string& ip, int& port) {
  char host[NI_MAXHOST];
  char serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&addr), sizeof addr, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    ip = host;
    port = std::atoi(serv);
  }
}

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string refusal_response(const Refusal& r) {
  const std::string body = "{\"error\":" + json_string(r.code) + ",\"detail\":" + json_string(r.detail) + "}\n";
  std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) +
                     "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                     "\r\nConnection: close\r\n";
  if (r.retry_after > 0) head += "Retry-After: " + std::to_string(r.retry_after) + "\r\n";
  if (r.status == 401) head += "WWW-Authenticate: Bearer realm=\"veil\"\r\n";
  if (!r.allow.empty()) head += "Allow: " + r.allow + "\r\n";
  return head + "\r\n" + body;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoding as httplib applies it to the path ('+' stays).
std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// One connection. Owned by the reactor while it waits for or receives a request, by one
// worker while that request is processed.
struct Conn {
  enum class Phase { kIdle, kHead, kBody, kLinger };
  int fd = -1;
  SSL* ssl = nullptr;
  bool handshaken = true;  // TLS: false until the handshake completes
  bool wants_write = false;
  bool watching_write = false;  // registered with EPOLLOUT
  std::string remote_ip;
  int remote_port = 0;
  std::string buf;  // bytes received and not yet consumed
  Phase phase = Phase::kIdle;
  Clock::time_point phase_deadline;     // of the phase as a whole
  Clock::time_point progress_deadline;  // of the next byte, while receiving
  Clock::time_point request_start;
  std::size_t head_bytes = 0;  // once the head is parsed: its size in buf
  RequestHead head;
  std::uint64_t reserved = 0;  // body bytes counted against the shared budget
  std::size_t served = 0;
  bool continue_sent = false;
  bool eof = false;  // the client has finished sending (FIN): answer what is complete, then close
  std::uint64_t lingered = 0;

  ~Conn() {
    if (ssl != nullptr) SSL_free(ssl);
    if (fd >= 0) ::close(fd);
  }

  // Non-blocking read: > 0 bytes, 0 end of stream, -1 would block, -2 error.
  ssize_t read_some(char* p, std::size_t n) {
    wants_write = false;
    if (ssl == nullptr) {
      for (;;) {
        const ssize_t r = ::recv(fd, p, n, 0);
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
      }
    }
    ERR_clear_error();
    if (!handshaken) {
      const int r = SSL_accept(ssl);
      if (r != 1) return ssl_outcome(r);
      handshaken = true;
    }
    const int r = SSL_read(ssl, p, static_cast<int>(std::min<std::size_t>(n, 1 << 30)));
    return r > 0 ? r : ssl_outcome(r);
  }

  // Non-blocking write of a short message; true when all of it went out.
  bool write_now(std::string_view s) {
    if (ssl == nullptr) return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL | MSG_DONTWAIT) == static_cast<ssize_t>(s.size());
    if (!handshaken) return false;
    ERR_clear_error();
    return SSL_write(ssl, s.data(), static_cast<int>(s.size())) == static_cast<int>(s.size());
  }

  // Blocking write (the socket is non-blocking: waits with poll); the bytes written or -1.
  ssize_t write_all(const char* p, std::size_t n, milliseconds timeout) {
    std::size_t done = 0;
    while (done < n) {
      if (ssl == nullptr) {
        const ssize_t r = ::send(fd, p + done, n - done, MSG_NOSIGNAL);
        if (r > 0) {
          done += static_cast<std::size_t>(r);
          continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && poll_for(fd, POLLOUT, timeout) > 0) continue;
        return -1;
      }
      ERR_clear_error();
      const int r = SSL_write(ssl, p + done, static_cast<int>(std::min<std::size_t>(n - done, 1 << 20)));
      if (r > 0) {
        done += static_cast<std::size_t>(r);
        continue;
      }
      const int e = SSL_get_error(ssl, r);
      const short want = e == SSL_ERROR_WANT_WRITE ? POLLOUT : e == SSL_ERROR_WANT_READ ? POLLIN : 0;
      if (want == 0 || poll_for(fd, want, timeout) <= 0) return -1;
    }
    return static_cast<ssize_t>(n);
  }

  // Whether the peer has closed its side or reset the connection (bytes it sent and we have
  // not read yet, such as a pipelined request, do not count as gone).
  bool peer_gone() const {
    char c;
    const ssize_t r = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0) return true;
    return r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
  }

  // Stops sending: TLS close_notify, then FIN.
  void shutdown_write() {
    if (ssl != nullptr && handshaken) SSL_shutdown(ssl);
    ::shutdown(fd, SHUT_WR);
  }

 private:
  ssize_t ssl_outcome(int r) {
    const int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ) return -1;
    if (e == SSL_ERROR_WANT_WRITE) {
      wants_write = true;
      return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    return -2;
  }
};

// httplib's view of a complete request in memory; responses go to the socket.
class BufferedStream final : public httplib::Stream {
 public:
  BufferedStream(Conn& conn, const TransportOptions& options) : conn_(conn), options_(options) {}

  bool is_readable() const override { return pos_ < conn_.buf.size(); }
  bool is_writable() const override { return poll_for(conn_.fd, POLLOUT, options_.write_timeout) > 0; }

  ssize_t read(char* ptr, size_t size) override {
    const std::size_t n = std::min(size, conn_.buf.size() - pos_);
    std::memcpy(ptr, conn_.buf.data() + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    // httplib answers "Expect: 100-continue" itself; the reactor has already done so.
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    if (conn_.continue_sent && !wrote_ && std::string_view(ptr, size) == kContinue) return static_cast<ssize_t>(size);
    wrote_ = true;
    const ssize_t n = conn_.write_all(ptr, size, options_.write_timeout);
    if (n < 0) write_failed_ = true;
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = conn_.remote_ip;
    port = conn_.remote_port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(conn_.fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) address_of(addr, ip, port);
  }
  socket_t socket() const override { return conn_.fd; }

  std::size_t consumed() const { return pos_; }
  bool write_failed() const { return write_failed_; }

 private:
  Conn& conn_;
  const TransportOptions& options_;
  std::size_t pos_ = 0;
  bool wrote_ = false;
  bool write_failed_ = false;
};

}  // namespace

RequestContext* current_request() { return tls_request; }

std::optional<RequestHead> parse_request_head(std::string_view head, std::string& error, int& status) {
  status = 400;
  RequestHead out;
  std::size_t line_end = head.find("\r\n");
  if (line_end == std::string_view::npos) {
    error = "the request has no request line";
    return std::nullopt;
  }
  const std::string_view line = head.substr(0, line_end);
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == 0 || sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    error = "the request line is not 'METHOD TARGET HTTP/1.x'";
    return std::nullopt;
  }
  out.method = std::string(line.substr(0, sp1));
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    error = "HTTP version '" + std::string(version.substr(0, 16)) + "' is not supported (HTTP/1.0 or HTTP/1.1)";
    status = version.rfind("HTTP/", 0) == 0 ? 505 : 400;
    return std::nullopt;
  }
  if (target.empty() || target.front() != '/') {
    error = "the request target must be a path starting with '/'";
    return std::nullopt;
  }
  out.path = percent_decode(target.substr(0, target.find('?')));
  bool have_length = false;
  std::size_t pos = line_end + 2;
  while (pos < head.size()) {
    const std::size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos || end == pos) break;  // the blank line ends the head
    const std::string_view field = head.substr(pos, end - pos);
    pos = end + 2;
    const std::size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0 || field.front() == ' ' || field.front() == '\t') {
      error = "a header field is not 'Name: value'";
      return std::nullopt;
    }
    const std::string_view name = field.substr(0, colon);
    const std::string_view value = trim(field.substr(colon + 1));
    if (iequals(name, "Content-Length")) {
      std::uint64_t length = 0;
      bool ok = !value.empty() && value.size() <= 19;
      for (const char c : value) {
        if (c < '0' || c > '9') {
          ok = false;
          break;
        }
        length = length * 10 + static_cast<std::uint64_t>(c - '0');
      }
      if (!ok || (have_length && length != out.content_length)) {
        error = "Content-Length '" + std::string(value.substr(0, 32)) + "' is not one byte count";
        return std::nullopt;
      }
      have_length = true;
      out.content_length = length;
    } else if (iequals(name, "Transfer-Encoding")) {
      error = "send the body with a Content-Length header, not chunked";
      status = 411;
      return std::nullopt;
    } else if (iequals(name, "Expect")) {
      out.expect_continue = iequals(value, "100-continue");
    } else if (iequals(name, "Authorization")) {
      out.authorization = std::string(value);
    } else if (iequals(name, "Content-Encoding")) {
      out.content_encoding = std::string(value);
    }
  }
  return out;
}

// ---------------------------------------------------------------- the reactor

struct Transport::Reactor {
  Transport& t;
  const TransportOptions& o;
  int listen_fd = -1;
  int epoll_fd = -1;
  int wake_fd = -1;
  SSL_CTX* ssl_ctx = nullptr;

  std::unordered_map<int, std::unique_ptr<Conn>> conns;  // the reactor's
  std::uint64_t buffered = 0;                            // reserved body bytes (reactor thread only)
  std::size_t in_flight = 0;                             // conns with the workers (reactor thread only)

  std::mutex work_mutex;
  std::condition_variable work_cv;
  std::deque<std::unique_ptr<Conn>> work;  // complete requests for the workers
  bool workers_stop = false;
  std::vector<std::unique_ptr<Conn>> back;  // conns the workers are done with (under work_mutex)
  std::vector<std::thread> workers;
  std::atomic<bool> hard_stop{false};  // the drain ran out: running jobs should give up

  Reactor(Transport& transport, const TransportOptions& options) : t(transport), o(options) {
    epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd < 0 || wake_fd < 0) throw std::runtime_error(std::string("epoll: ") + std::strerror(errno));
    if (o.tls_cert_file.empty() != o.tls_key_file.empty())
      throw std::runtime_error("TLS needs both a certificate and a key file");
    if (!o.tls_cert_file.empty()) {
      ssl_ctx = SSL_CTX_new(TLS_server_method());
      if (ssl_ctx == nullptr) throw std::runtime_error("TLS: " + openssl_error());
      SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
      SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
      if (SSL_CTX_use_certificate_chain_file(ssl_ctx, o.tls_cert_file.c_str()) != 1) {
        const std::string why = openssl_error();
        SSL_CTX_free(ssl_ctx);
        throw std::runtime_error("TLS certificate " + o.tls_cert_file + " cannot be loaded: " + why);
      }
      if (SSL_CTX_use_PrivateKey_file(ssl_ctx, o.tls_key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
          SSL_CTX_check_private_key(ssl_ctx) != 1) {
        const std::string why = openssl_error();
        SSL_CTX_free(ssl_ctx);
        throw std::runtime_error("TLS key " + o.tls_key_file + " cannot be loaded or does not match the certificate: " + why);
      }
    }
  }

  ~Reactor() {
    if (listen_fd >= 0) ::close(listen_fd);
    if (epoll_fd >= 0) ::close(epoll_fd);
    if (wake_fd >= 0) ::close(wake_fd);
    conns.clear();
    if (ssl_ctx != nullptr) SSL_CTX_free(ssl_ctx);
  }

  int bind_and_listen(const std::string& host, int port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* result = nullptr;
    const std::string service = std::to_string(port);
    if (::getaddrinfo(host.c_str(), service.c_str(), &hints, &result) != 0 || result == nullptr) {
      errno = EADDRNOTAVAIL;
      return -1;
    }
    int fd = -1;
    int saved = 0;
    for (addrinfo* a = result; a != nullptr; a = a->ai_next) {
      fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      // SO_REUSEADDR only lets a restart bind at once; no SO_REUSEPORT: a second server on
      // the same port fails instead of silently sharing the connections.
      const int yes = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, o.listen_backlog) == 0) break;
      saved = errno;
      ::close(fd);
      fd = -1;
    }
    ::freeaddrinfo(result);
    if (fd < 0) {
      errno = saved;
      return -1;
    }
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    std::string ip;
    int bound = port;
    address_of(addr, ip, bound);
    listen_fd = fd;
    return bound;
  }

  void watch(int fd, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST) ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev);
  }
  void unwatch(int fd) { ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr); }
  void wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd, &one, sizeof one);
  }

  // One log line and metrics for a request the reactor answered itself.
  void report(const Conn& c, const Refusal& r) {
    if (!t.on_response_) return;
    RequestContext ctx;
    ctx.start = c.request_start;
    ctx.route = r.route;
    ctx.error = r.code;
    ctx.responded = true;
    ctx.status = r.status;
    ctx.method = c.head.method.empty() ? "-" : c.head.method;
    ctx.path = c.head.path;
    ctx.remote = c.remote_ip;
    try {
      t.on_response_(ctx);
    } catch (...) {
    }
  }

  void close_conn(int fd) {
    auto it = conns.find(fd);
    if (it == conns.end()) return;
    unwatch(fd);
    release(*it->second);
    conns.erase(it);
  }

  void release(Conn& c) {
    buffered -= std::min(buffered, c.reserved);
    c.reserved = 0;
  }

  // Answers from the head alone and closes after a bounded drain of what the client sends.
  void refuse(Conn& c, const Refusal& r) {
    (void)c.write_now(refusal_response(r));
    report(c, r);
    release(c);
    c.shutdown_write();
    c.phase = Conn::Phase::kLinger;
    c.lingered = 0;
    c.phase_deadline = Clock::now() + o.linger_time;
    c.buf.clear();
  }

  void accept_all() {
    for (;;) {
      sockaddr_storage addr{};
      socklen_t len = sizeof addr;
      const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // EAGAIN, or out of descriptors: the kernel keeps the rest queued
      }
      auto c = std::make_unique<Conn>();
      c->fd = fd;
      address_of(addr, c->remote_ip, c->remote_port);
      if (conns.size() + in_flight >= o.max_connections) {
        if (ssl_ctx == nullptr) {
          Refusal r{503, "overloaded", "the server holds " + std::to_string(o.max_connections) + " connections: retry later",
                    "other", 1, {}};
          (void)c->write_now(refusal_response(r));
          report(*c, r);
        }
        continue;  // closed by ~Conn
      }
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (ssl_ctx != nullptr) {
        c->ssl = SSL_new(ssl_ctx);
        if (c->ssl == nullptr || SSL_set_fd(c->ssl, fd) != 1) continue;
        SSL_set_accept_state(c->ssl);
        c->handshaken = false;
      }
      const auto now = Clock::now();
      c->phase = Conn::Phase::kIdle;
      c->phase_deadline = now + o.header_timeout;
      c->request_start = now;
      watch(fd, EPOLLIN | EPOLLRDHUP);
      conns.emplace(fd, std::move(c));
    }
  }

  // Reads what the socket has; false when the connection is unusable (an error, or the end
  // of a lingering one). At the end of the stream c.eof is set: a request received whole
  // before it is still answered.
  bool receive(Conn& c) {
    char chunk[65536];
    for (int rounds = 0; rounds < 64; ++rounds) {
      const ssize_t n = c.read_some(chunk, sizeof chunk);
      if (n == -1) break;
      if (n == 0 && c.phase != Conn::Phase::kLinger) {
        c.eof = true;
        break;
      }
      if (n <= 0) return false;
      const auto now = Clock::now();
      if (c.phase == Conn::Phase::kLinger) {
        c.lingered += static_cast<std::uint64_t>(n);
        if (c.lingered >= o.linger_bytes) return false;
        continue;
      }
      if (c.phase == Conn::Phase::kIdle) {
        c.phase = Conn::Phase::kHead;
        c.request_start = now;
        c.phase_deadline = now + o.header_timeout;
      }
      c.progress_deadline = now + o.read_timeout;
      c.buf.append(chunk, static_cast<std::size_t>(n));
      // Bounded: the head limit, or the admitted body plus room for a pipelined head.
      const std::uint64_t cap = c.phase == Conn::Phase::kBody
                                    ? c.head_bytes + c.head.content_length + o.max_header_bytes
                                    : o.max_header_bytes + 4;
      if (c.buf.size() >= cap) break;
    }
    // TLS may need the socket writable to go on reading; ask epoll only when that changes.
    if (c.wants_write != c.watching_write) {
      c.watching_write = c.wants_write;
      watch(c.fd, EPOLLIN | EPOLLRDHUP | (c.wants_write ? EPOLLOUT : 0u));
    }
    return true;
  }

  // Moves a connection along with the bytes it has: head parsed and admitted, body complete
  // and handed to a worker.
  void advance(int fd) {
    Conn& c = *conns.at(fd);
    const auto now = Clock::now();
    if (c.phase == Conn::Phase::kIdle && !c.buf.empty()) {
      c.phase = Conn::Phase::kHead;
      c.request_start = now;
      c.phase_deadline = now + o.header_timeout;
      c.progress_deadline = now + o.read_timeout;
    }
    if (c.phase == Conn::Phase::kHead) {
      const std::size_t end = c.buf.find("\r\n\r\n");
      if (end == std::string::npos || end + 4 > o.max_header_bytes) {
        if (c.buf.size() > o.max_header_bytes || (end != std::string::npos && end + 4 > o.max_header_bytes))
          refuse(c, {431, "headers_too_large",
                     "the request head exceeds " + std::to_string(o.max_header_bytes) + " bytes", "other", 0, {}});
        return;
      }
      std::string error;
      int status = 400;
      const auto head = parse_request_head(std::string_view(c.buf).substr(0, end + 4), error, status);
      if (!head) {
        c.head = RequestHead{};
        refuse(c, {status, status == 411 ? "length_required" : "bad_request", error, "other", 0, {}});
        return;
      }
      c.head = *head;
      c.head_bytes = end + 4;
      if (t.admission_) {
        std::optional<Refusal> verdict;
        try {
          verdict = t.admission_(c.head);
        } catch (const std::exception& e) {
          verdict = Refusal{500, "internal", e.what(), "other", 0, {}};
        }
        if (verdict) {
          refuse(c, *verdict);
          return;
        }
      }
      if (c.head.content_length > 0) {
        if (buffered + c.head.content_length > o.max_buffered_body_bytes) {
          refuse(c, {503, "overloaded",
                     "the server holds as many request bodies as its memory budget allows: retry later", "other", 1, {}});
          return;
        }
        buffered += c.head.content_length;
        c.reserved = c.head.content_length;
        // Counted in the budget already; reserving avoids copies as the body grows (pages
        // a slow client never fills are never touched).
        c.buf.reserve(c.head_bytes + c.head.content_length);
      }
      c.phase = Conn::Phase::kBody;
      c.phase_deadline = c.request_start + o.request_read_timeout;
      // Answered here once admitted (unless the body is in already); httplib's own answer
      // is then swallowed by the worker's stream.
      c.continue_sent = c.head.expect_continue;
      if (c.head.expect_continue && c.buf.size() < c.head_bytes + c.head.content_length)
        (void)c.write_now("HTTP/1.1 100 Continue\r\n\r\n");
    }
    if (c.phase == Conn::Phase::kBody && c.buf.size() >= c.head_bytes + c.head.content_length) dispatch(fd);
  }

  void dispatch(int fd) {
    auto it = conns.find(fd);
    unwatch(fd);
    std::unique_ptr<Conn> c = std::move(it->second);
    conns.erase(it);
    ++in_flight;
    {
      std::lock_guard lock(work_mutex);
      work.push_back(std::move(c));
    }
    work_cv.notify_one();
  }

  // Connections the workers are done with: back to waiting for a request, or lingering.
  void take_back() {
    std::vector<std::unique_ptr<Conn>> done;
    {
      std::lock_guard lock(work_mutex);
      done.swap(back);
    }
    for (auto& c : done) {
      --in_flight;
      release(*c);
      if (c->fd < 0) continue;  // closed by the worker
      const int fd = c->fd;
      const bool lingering = c->phase == Conn::Phase::kLinger;
      if (t.stopping_.load() && !lingering) continue;  // draining: no new requests on old connections
      c->watching_write = false;
      watch(fd, EPOLLIN | EPOLLRDHUP);
      Conn& conn = *c;
      conns.emplace(fd, std::move(c));
      if (lingering) continue;
      // TLS may hold decrypted bytes the socket no longer signals.
      if (conn.ssl != nullptr && SSL_pending(conn.ssl) > 0 && !receive(conn)) {
        close_conn(fd);
        continue;
      }
      advance(fd);  // a pipelined request may be complete already
    }
  }

  void sweep(Clock::time_point now) {
    std::vector<int> expired;
    for (auto& [fd, c] : conns) {
      switch (c->phase) {
        case Conn::Phase::kIdle:
        case Conn::Phase::kLinger:
          if (now >= c->phase_deadline) expired.push_back(fd);
          break;
        case Conn::Phase::kHead:
        case Conn::Phase::kBody:
          if (now >= c->phase_deadline || now >= c->progress_deadline) {
            Refusal r{408, "request_timeout",
                      c->phase == Conn::Phase::kHead ? "the request head did not arrive in time"
                                                     : "the request body did not arrive in time",
                      "other", 0, {}};
            (void)c->write_now(refusal_response(r));
            report(*c, r);
            expired.push_back(fd);
          }
          break;
      }
    }
    for (int fd : expired) close_conn(fd);
  }

  void worker_loop() {
    for (;;) {
      std::unique_ptr<Conn> c;
      {
        std::unique_lock lock(work_mutex);
        work_cv.wait(lock, [&] { return workers_stop || !work.empty(); });
        if (work.empty()) return;
        c = std::move(work.front());
        work.pop_front();
      }
      serve(*c);
      {
        std::lock_guard lock(work_mutex);
        back.push_back(std::move(c));
      }
      wake();
    }
  }

  // Runs httplib's processing of the connection's complete request.
  void serve(Conn& c) {
    BufferedStream stream(c, o);
    RequestContext ctx;
    ctx.start = c.request_start;
    Conn* conn = &c;
    ctx.client_gone = [this, conn] { return hard_stop.load() || conn->peer_gone(); };
    ctx.body = std::string_view(c.buf).substr(std::min(c.head_bytes, c.buf.size()), c.head.content_length);
    const bool last = ++c.served >= std::max<std::size_t>(1, o.keep_alive_max_requests) || t.stopping_.load();
    tls_request = &ctx;
    bool ok = false;
    try {
      ok = t.process(stream, last);
    } catch (...) {
      ok = false;
    }
    tls_request = nullptr;
    ctx.bytes_in = std::max<std::uint64_t>(ctx.bytes_in, ctx.body.size());
    if (stream.write_failed()) {  // the client left before reading its answer
      ctx.status = 499;
      ctx.error = "client_closed";
    }
    if (ctx.responded && t.on_response_) {
      try {
        t.on_response_(ctx);
      } catch (...) {
      }
    }
    // The request ends where the reactor's parse says, whatever httplib read of it.
    const std::size_t used = std::max<std::size_t>(stream.consumed(), c.head_bytes + c.head.content_length);
    c.buf.erase(0, std::min(used, c.buf.size()));
    c.head_bytes = 0;
    c.head = RequestHead{};
    c.continue_sent = false;
    const auto now = Clock::now();
    if (ctx.close_connection) {  // a refusal from the handlers: the body may be unread
      c.shutdown_write();
      c.phase = Conn::Phase::kLinger;
      c.lingered = 0;
      c.phase_deadline = now + o.linger_time;
      c.buf.clear();
      return;
    }
    if (!ok || last || stream.write_failed() || c.eof) {
      c.shutdown_write();
      ::close(c.fd);
      c.fd = -1;
      return;
    }
    c.phase = Conn::Phase::kIdle;
    c.phase_deadline = now + o.keep_alive_timeout;
    c.request_start = now;
  }

  void run() {
    // Many idle connections need many descriptors: raise the soft limit to the hard one.
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
      lim.rlim_cur = lim.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &lim);
    }
    watch(listen_fd, EPOLLIN);
    watch(wake_fd, EPOLLIN);
    const std::size_t n_workers = std::max<std::size_t>(1, o.worker_threads);
    for (std::size_t i = 0; i < n_workers; ++i) workers.emplace_back([this] { worker_loop(); });

    std::optional<Clock::time_point> drain_start;
    auto next_sweep = Clock::now();
    std::vector<epoll_event> events(256);
    for (;;) {
      const int n = ::epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()), 100);
      const auto now = Clock::now();
      for (int i = 0; i < n; ++i) {
        const int fd = events[static_cast<std::size_t>(i)].data.fd;
        const std::uint32_t ev = events[static_cast<std::size_t>(i)].events;
        if (fd == listen_fd) {
          accept_all();
        } else if (fd == wake_fd) {
          std::uint64_t v;
          [[maybe_unused]] const ssize_t r = ::read(wake_fd, &v, sizeof v);
        } else {
          auto it = conns.find(fd);
          if (it == conns.end()) continue;
          Conn& c = *it->second;
          if (!receive(c)) {
            close_conn(fd);
            continue;
          }
          if (c.phase == Conn::Phase::kLinger) continue;
          const bool ended = c.eof || (ev & (EPOLLHUP | EPOLLERR)) != 0;
          advance(fd);
          // Still here (not handed to a worker) and nothing more will come: done.
          if (ended && conns.count(fd) != 0) close_conn(fd);
        }
      }
      take_back();
      if (t.stopping_.load() && !drain_start) {
        drain_start = now;
        // Idle keep-alive connections are closed. Requests still arriving go on (a health
        // check during the drain is answered); they do not hold the drain, which waits only
        // for requests with the workers, and are closed when it ends.
        std::vector<int> idle;
        for (const auto& [fd, c] : conns)
          if (c->phase == Conn::Phase::kIdle && c->served > 0) idle.push_back(fd);
        for (int fd : idle) close_conn(fd);
      }
      if (now >= next_sweep) {
        sweep(now);
        next_sweep = now + milliseconds(100);
      }
      if (drain_start) {
        const bool idle = in_flight == 0;
        if ((idle && now >= *drain_start + o.drain_grace) || now >= *drain_start + o.drain_timeout) break;
        if (now >= *drain_start + o.drain_timeout) hard_stop.store(true);
      }
    }
    hard_stop.store(true);
    ::close(listen_fd);
    listen_fd = -1;
    {
      std::lock_guard lock(work_mutex);
      workers_stop = true;
    }
    work_cv.notify_all();
    for (auto& w : workers) w.join();
    workers.clear();
    conns.clear();
    std::lock_guard lock(work_mutex);
    work.clear();
    back.clear();
  }
};

Transport::Transport(const TransportOptions& options, Completion on_response, Admission admission)
    : options_(options), on_response_(std::move(on_response)), admission_(std::move(admission)) {
  reactor_ = std::make_unique<Reactor>(*this, options_);
  set_keep_alive_max_count(std::max<std::size_t>(1, options_.keep_alive_max_requests));
  // Called by httplib once a response is written (and for requests it refused itself).
  set_logger([](const httplib::Request& req, const httplib::Response& res) {
    RequestContext* ctx = current_request();
    if (ctx == nullptr) return;
    ctx->responded = true;
    ctx->status = res.status;
    ctx->method = req.method;
    ctx->path = req.path;
    ctx->remote = req.remote_addr;
    ctx->bytes_in = req.body.size();
    ctx->bytes_out = res.body.size();
  });
}

Transport::~Transport() = default;

int Transport::bind_and_listen(const std::string& host, int port) { return reactor_->bind_and_listen(host, port); }

void Transport::run() {
  if (reactor_->listen_fd < 0) throw std::logic_error("Transport::run: not bound");
  reactor_->run();
}

void Transport::request_stop() {
  stopping_.store(true);
  reactor_->wake();
}

bool Transport::process(httplib::Stream& stream, bool close_connection) {
  bool connection_closed = false;
  const bool ok = process_request(stream, close_connection, connection_closed, nullptr);
  return ok && !connection_closed;
}

}  // namespace veil::server
