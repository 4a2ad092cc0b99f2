// The connection layer under the HTTP API. cpp-httplib parses and routes requests; Veil owns
// the sockets, so that no client can hold a thread by being slow:
//
//  - one reactor thread (epoll) receives every request whole -- head, then body -- before any
//    worker sees it; an idle, slow or half-sent connection costs a file descriptor and its
//    buffered bytes, never a thread. Each phase has its deadline: the head (header_timeout
//    from its first byte), the body (request_read_timeout, and read_timeout without progress),
//    an idle keep-alive connection (keep_alive_timeout).
//  - limits are enforced while reading: the head's size (431 beyond max_header_bytes), and,
//    from the head alone, before one byte of body is read: the route's body limit (413), the
//    admission callback's verdict (503 when the FHE queue is full or the server is draining,
//    401 for an upload without the operator's token, 404 for no route), and a budget on the
//    body bytes all connections may hold at once (503 beyond it). "Expect: 100-continue" is
//    answered only once the body is admitted.
//  - worker_threads threads run httplib's request processing on complete requests from
//    memory and write the responses; keep-alive connections then go back to the reactor.
//  - stop() drains: the listener stays open, /healthz answers 503 "stopping" (the server
//    asks stopping()), FHE routes are refused, requests in flight finish; connections still
//    sending are dropped; run() returns when no request is left in flight and drain_grace
//    has passed, or after drain_timeout at most.
//  - TLS (tls_cert_file and tls_key_file set): the handshake and reads run in the reactor on
//    non-blocking sockets, writes in the worker.
//
// A RequestContext per request, visible to the handlers of the worker serving it, yields one
// log line and the request metrics once the response is written (refusals made by the
// reactor produce one too). Only http_server.cpp and this file include httplib.h.
// Thread safety: stop() and stopping() from any thread; run() on one thread.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace veil::server {

struct RequestContext {
  std::chrono::steady_clock::time_point start;
  // Set by handlers: the route template for metrics, the key id for the log, the error
  // code of a refusal, and whether the connection must close.
  std::string route = "other";
  std::string key_id;
  std::string error;
  // The client's X-Request-Id (checked), echoed in the answer and the log line.
  std::string request_id;
  bool close_connection = false;
  // Set once the response is written.
  bool responded = false;
  int status = 0;
  std::string method, path, remote;
  std::uint64_t bytes_in = 0, bytes_out = 0;
  // The request's body, in the connection's buffer: routes that take large bodies read it
  // here instead of letting httplib copy it (registered with a content reader they ignore),
  // so that a body is held once.
  std::string_view body;
  // Whether the client has closed its side or reset the connection (a long job checks it
  // to stop work whose answer nobody will read). Set by the transport.
  std::function<bool()> client_gone;
};

// The context of the request the calling thread is serving, or null outside one.
RequestContext* current_request();

// What the reactor knows of a request when its head is in: enough to refuse it unread.
struct RequestHead {
  std::string method;
  std::string path;  // percent-decoded, without the query
  std::uint64_t content_length = 0;
  bool expect_continue = false;
  std::string authorization;     // the Authorization header, as sent
  std::string content_encoding;  // the Content-Encoding header, as sent
};

// A refusal decided from the head alone; the connection is closed after it.
struct Refusal {
  int status = 503;
  std::string code;    // the JSON error code
  std::string detail;  // the explanation
  std::string route = "other";
  unsigned retry_after = 0;  // seconds; 0: no Retry-After header
  std::string allow;         // for 405: the Allow header
};

struct TransportOptions {
  // No progress while receiving a request (a read waiting this long closes the connection).
  std::chrono::milliseconds read_timeout{30'000};
  // A response write making no progress.
  std::chrono::milliseconds write_timeout{60'000};
  // The whole head, from its first byte (and a new connection's first byte, from accept).
  std::chrono::milliseconds header_timeout{10'000};
  // The whole request, head and body.
  std::chrono::milliseconds request_read_timeout{600'000};
  std::chrono::milliseconds keep_alive_timeout{5'000};
  std::size_t keep_alive_max_requests = 100;
  std::size_t worker_threads = 8;
  // Connections held at once; more are answered 503 and closed at accept.
  std::size_t max_connections = 10'000;
  std::size_t max_header_bytes = 64 << 10;
  // Request bodies held in memory at once, all connections together (counted at their
  // declared length, from admission until the request is answered).
  std::uint64_t max_buffered_body_bytes = std::uint64_t{2} << 30;
  int listen_backlog = 4096;
  // After a refusal of an unread body: read and discard at most this much, for at most this
  // long, before closing (a client that sends its whole body first still reads the answer).
  std::uint64_t linger_bytes = std::uint64_t{64} << 20;
  std::chrono::milliseconds linger_time{2'000};
  // Drain on stop(): at least drain_grace, at most drain_timeout.
  std::chrono::milliseconds drain_grace{0};
  std::chrono::milliseconds drain_timeout{30'000};
  // PEM files: serve HTTPS when both are set.
  std::string tls_cert_file, tls_key_file;
};

class Transport : public httplib::Server {
 public:
  using Completion = std::function<void(const RequestContext&)>;
  // Returns a refusal, or nullopt to read the body and process the request.
  using Admission = std::function<std::optional<Refusal>(const RequestHead&)>;

  // Throws std::runtime_error when the TLS certificate or key cannot be loaded.
  Transport(const TransportOptions& options, Completion on_response, Admission admission);
  ~Transport() override;

  // Binds and listens (port 0: any free port); returns the port, or -1 with errno set.
  int bind_and_listen(const std::string& host, int port);
  // Serves until stop() and the drain after it. REQUIRES: bound.
  void run();
  // Starts draining; returns at once. Idempotent.
  void request_stop();
  bool stopping() const { return stopping_.load(); }

 private:
  struct Reactor;
  friend struct Reactor;
  // httplib's processing of one complete request held in memory.
  bool process(httplib::Stream& stream, bool close_connection);

  TransportOptions options_;
  Completion on_response_;
  Admission admission_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<Reactor> reactor_;
};

// Parses a request head (request line and header fields, up to and including the blank
// line) as the reactor does. Returns nullopt and sets `error` when it is malformed:
// a bad request line, a field without a colon, a Content-Length that is not one decimal
// byte count, or a Transfer-Encoding (bodies must come with a Content-Length).
std::optional<RequestHead> parse_request_head(std::string_view head, std::string& error, int& status);

}  // namespace veil::server
