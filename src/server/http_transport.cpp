// Veil's connection loop under cpp-httplib's request processing (http_transport.hpp).
#include "http_transport.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

namespace veil::server {
namespace {

using Clock = std::chrono::steady_clock;

thread_local RequestContext* tls_request = nullptr;

// Waits until `fd` is ready for `events` or `timeout` passes; retries on EINTR. Returns
// poll()'s result: > 0 ready, 0 timeout, < 0 error.
int poll_for(int fd, short events, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
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

// One accepted connection: buffered reads (httplib reads request lines byte by byte), a
// per-read timeout and a deadline for the whole request, writes that never raise SIGPIPE.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int fd, const TransportOptions& options) : fd_(fd), options_(options) {}

  void begin_request(Clock::time_point deadline) { deadline_ = deadline; }
  bool has_buffered() const { return buffer_begin_ < buffer_end_; }

  // Waits for the first byte of a request: true when there is one to read (or the peer
  // closed: the read then says so), false on timeout or when `stop` becomes true.
  bool wait_for_request(std::chrono::milliseconds timeout, const std::atomic<bool>& stop) const {
    if (has_buffered()) return true;
    const auto deadline = Clock::now() + timeout;
    while (!stop.load()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      const int r = poll_for(fd_, POLLIN, std::min(left, std::chrono::milliseconds(100)));
      if (r > 0) return true;
      if (r < 0) return false;
    }
    return false;
  }

  bool is_readable() const override {
    return has_buffered() || poll_for(fd_, POLLIN, read_wait()) > 0;
  }
  bool is_writable() const override { return poll_for(fd_, POLLOUT, options_.write_timeout) > 0; }

  ssize_t read(char* ptr, size_t size) override {
    if (size == 0) return 0;
    if (has_buffered()) {
      const std::size_t n = std::min(size, buffer_end_ - buffer_begin_);
      std::memcpy(ptr, buffer_ + buffer_begin_, n);
      buffer_begin_ += n;
      return static_cast<ssize_t>(n);
    }
    if (poll_for(fd_, POLLIN, read_wait()) <= 0) return -1;
    if (size >= sizeof buffer_) return receive(ptr, size);
    const ssize_t n = receive(buffer_, sizeof buffer_);
    if (n <= 0) return n;
    buffer_begin_ = 0;
    buffer_end_ = static_cast<std::size_t>(n);
    return read(ptr, size);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (poll_for(fd_, POLLOUT, options_.write_timeout) <= 0) return -1;
    for (;;) {
      const ssize_t n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) address_of(addr, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) address_of(addr, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  // The read timeout, shortened to what is left of the request's deadline.
  std::chrono::milliseconds read_wait() const {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
    return std::max(std::chrono::milliseconds(0), std::min(left, options_.read_timeout));
  }
  ssize_t receive(char* ptr, std::size_t size) {
    for (;;) {
      const ssize_t n = ::recv(fd_, ptr, size, 0);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  int fd_;
  const TransportOptions& options_;
  Clock::time_point deadline_ = Clock::time_point::max();
  char buffer_[16384];
  std::size_t buffer_begin_ = 0, buffer_end_ = 0;
};

// Ends a connection whose last request body was not read: stop sending, then read and drop
// what the client still sends (bounded), so that closing does not reset the connection
// before the client has read the answer.
void linger_close(int fd, const TransportOptions& options) {
  ::shutdown(fd, SHUT_WR);
  const auto deadline = Clock::now() + options.linger_time;
  std::uint64_t drained = 0;
  char sink[16384];
  while (drained < options.linger_bytes) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || poll_for(fd, POLLIN, left) <= 0) break;
    const ssize_t n = ::recv(fd, sink, sizeof sink, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    drained += static_cast<std::uint64_t>(n);
  }
}

}  // namespace

RequestContext* current_request() { return tls_request; }

Transport::Transport(const TransportOptions& options, Completion on_response)
    : options_(options), on_response_(std::move(on_response)) {
  const std::size_t workers = std::max<std::size_t>(1, options_.worker_threads);
  new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  set_keep_alive_max_count(std::max<std::size_t>(1, options_.keep_alive_max_requests));
  set_keep_alive_timeout(std::max<time_t>(1, static_cast<time_t>(options_.keep_alive_timeout.count() / 1000)));
  // httplib's default sets SO_REUSEPORT: a second server on the same port would then start
  // and silently share the connections. SO_REUSEADDR only lets a restart bind at once.
  set_socket_options([](socket_t sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  set_read_timeout(options_.read_timeout);
  set_write_timeout(options_.write_timeout);
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

int Transport::bind_and_listen(const std::string& host, int port) {
  int bound = -1;
  if (port == 0) {
    bound = bind_to_any_port(host);
  } else if (bind_to_port(host, port)) {
    bound = port;
  }
  if (bound < 0) return -1;
  // httplib listens with a backlog of 5: many clients connecting at once would see their
  // connections dropped and retried seconds later. listen() again just resizes the queue.
  if (::listen(svr_sock_.load(), options_.listen_backlog) != 0) return -1;
  return bound;
}

void Transport::request_stop() {
  stopping_.store(true);
  // What httplib::Server::stop() does, also before listen_after_bind() has started.
  const socket_t sock = svr_sock_.exchange(INVALID_SOCKET);
  if (sock != INVALID_SOCKET) {
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
  }
}

bool Transport::process_and_close_socket(socket_t sock) {
  const int one = 1;
  ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ConnectionStream stream(sock, options_);
  std::size_t remaining = std::max<std::size_t>(1, options_.keep_alive_max_requests);
  bool first = true;
  bool refused_body = false;
  while (remaining > 0 && !stopping_.load()) {
    if (!stream.wait_for_request(first ? options_.read_timeout : options_.keep_alive_timeout, stopping_)) break;
    first = false;
    RequestContext ctx;
    ctx.start = Clock::now();
    stream.begin_request(ctx.start + options_.request_read_timeout);
    bool connection_closed = false;
    tls_request = &ctx;
    bool ok = false;
    try {
      ok = process_request(stream, remaining == 1 || stopping_.load(), connection_closed, nullptr);
    } catch (...) {
      ok = false;
    }
    tls_request = nullptr;
    if (ctx.responded && on_response_) {
      try {
        on_response_(ctx);
      } catch (...) {
      }
    }
    if (ctx.close_connection) {
      refused_body = true;
      break;
    }
    if (!ok || connection_closed) break;
    --remaining;
  }
  if (refused_body) linger_close(sock, options_);
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return true;
}

}  // namespace veil::server
