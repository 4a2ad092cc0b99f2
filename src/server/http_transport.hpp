// The connection layer under the HTTP API: cpp-httplib's request parsing and routing, with
// Veil's own per-connection loop (http_transport.cpp) so that the server controls what
// httplib (Debian's compiled 0.11) fixes at build time:
//  - a listen backlog sized for many clients (httplib's is 5);
//  - TCP_NODELAY on every connection (a response is written in two parts: headers, body);
//  - a deadline for receiving a whole request, besides the per-read timeout;
//  - closing a connection whose request body was refused unread (413, 411, 415), after a
//    lingering drain so that the client still reads the refusal;
//  - stop() that does not wait for idle keep-alive connections;
//  - a RequestContext per request, visible to the handlers of the thread serving it, from
//    which one log line and the request metrics are made once the response is written.
// Only http_server.cpp and this file include httplib.h.
// Thread safety: as httplib::Server; request_stop() from any thread.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace veil::server {

struct RequestContext {
  std::chrono::steady_clock::time_point start;
  // Set by handlers: the route template for metrics, the key id for the log, the error
  // code of a refusal, and whether the connection must close (body left unread).
  std::string route = "other";
  std::string key_id;
  std::string error;
  bool close_connection = false;
  // Set once the response is written.
  bool responded = false;
  int status = 0;
  std::string method, path, remote;
  std::uint64_t bytes_in = 0, bytes_out = 0;
};

// The context of the request the calling thread is serving, or null outside one.
RequestContext* current_request();

struct TransportOptions {
  std::chrono::milliseconds read_timeout{30'000};
  std::chrono::milliseconds write_timeout{60'000};
  std::chrono::milliseconds request_read_timeout{600'000};
  std::chrono::milliseconds keep_alive_timeout{5'000};
  std::size_t keep_alive_max_requests = 100;
  std::size_t worker_threads = 32;
  int listen_backlog = 512;
  // After refusing a body unread: read and discard at most this much, for at most this long,
  // before closing (a client that sends its whole body before reading still sees the answer).
  std::uint64_t linger_bytes = std::uint64_t{64} << 20;
  std::chrono::milliseconds linger_time{5'000};
};

class Transport : public httplib::Server {
 public:
  using Completion = std::function<void(const RequestContext&)>;

  Transport(const TransportOptions& options, Completion on_response);

  // Binds and listens (port 0: any free port); returns the port, or -1 with errno set.
  int bind_and_listen(const std::string& host, int port);
  // Closes the listening socket (listen_after_bind() then returns once the connections in
  // progress are done); connections finish the request they are serving and close.
  void request_stop();
  bool stopping() const { return stopping_.load(); }

 private:
  bool process_and_close_socket(socket_t sock) override;

  TransportOptions options_;
  Completion on_response_;
  std::atomic<bool> stopping_{false};
};

}  // namespace veil::server
