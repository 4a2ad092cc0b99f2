// The HTTP server end to end: each input is the bytes one client sends on one connection
// (then half-closes), to a server running in this process on a loopback port with one
// compiled model and a SQLite key store. The reactor's head parser, the admission checks,
// httplib's parsing and routing and every handler see the bytes. ASan and UBSan watch the
// server's threads as well; strict mode also fails on a 500 answer, which the server gives
// only for an exception no handler expected.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "fuzz_common.hpp"
#include "veil/deploy/model.hpp"
#include "veil/ml/importers.hpp"
#include "veil/server/http_server.hpp"

using namespace veil;
namespace fs = std::filesystem;

namespace {

struct FuzzServer {
  fs::path dir;
  std::unique_ptr<server::HttpServer> http;
  int port = 0;

  FuzzServer() {
    const fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    dir = base / ("veil_fuzz_http_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    const fs::path fixtures = VEIL_FIXTURES_DIR;
    const ml::Model model = ml::load_model((fixtures / "models" / "logreg_breast_cancer.json").string());
    const ml::Matrix calibration =
        ml::load_matrix((fixtures / "data" / "breast_cancer_calib.csv").string()).first_columns(30);
    deploy::ModelDev::compile(model, calibration).save(dir / "models" / "logreg");
    server::HttpServerOptions o;
    o.models_dir = dir / "models";
    o.log_requests = false;
    o.log = [](std::string_view) {};
    o.header_timeout = std::chrono::milliseconds(1000);
    o.read_timeout = std::chrono::milliseconds(1000);
    o.max_key_bytes = 1 << 20;
    o.max_input_bytes = 1 << 20;
    o.max_buffered_body_bytes = 64 << 20;
    http = std::make_unique<server::HttpServer>(o, server::open_key_store("sqlite:" + (dir / "keys.db").string()));
    port = http->start("127.0.0.1", 0);
  }
};

FuzzServer& fuzz_server() {
  static FuzzServer* s = new FuzzServer();  // never destroyed: threads keep running until exit
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzServer& s = fuzz_server();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  // Each connection from its own loopback address (127.x.y.z): tens of thousands of
  // connections a minute, each leaving a TIME_WAIT behind, would exhaust one address's ports.
  static std::uint32_t next_source = 0;
  next_source = next_source % 0xfffffd + 1;
  sockaddr_in source{};
  source.sin_family = AF_INET;
  source.sin_addr.s_addr = htonl((127u << 24) | next_source);
  (void)::bind(fd, reinterpret_cast<sockaddr*>(&source), sizeof source);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(s.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // libFuzzer's timer signal may interrupt connect(), which then goes on by itself.
  bool connected = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  if (!connected && fd >= 0 && errno == EINTR) {
    pollfd p{fd, POLLOUT, 0};
    int error = 0;
    socklen_t len = sizeof error;
    connected = ::poll(&p, 1, 5000) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0;
  }
  if (!connected) {
    std::fprintf(stderr, "veil fuzz http_request: cannot connect to the server: %s\n", std::strerror(errno));
    std::abort();
  }
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::send(fd, data + done, size - done, MSG_NOSIGNAL);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string answer;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 3000) <= 0) break;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    if (answer.size() < 1 << 16) answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  // Every answer on the connection, pipelined ones included, read one after another (a body
  // may echo the client's text: only status lines count).
  std::size_t pos = 0;
  while (pos < answer.size() && answer.compare(pos, 9, "HTTP/1.1 ") == 0) {
    const int status = std::atoi(answer.c_str() + pos + 9);
    if (status == 500 && !fuzz::lenient()) {
      std::fprintf(stderr, "veil fuzz http_request: the server answered 500:\n%s\n", answer.substr(pos, 600).c_str());
      std::abort();
    }
    const std::size_t head_end = answer.find("\r\n\r\n", pos);
    if (head_end == std::string::npos) break;
    std::size_t length = 0;
    const std::size_t field = answer.find("Content-Length: ", pos);
    if (status != 100 && field != std::string::npos && field < head_end) length = std::strtoull(answer.c_str() + field + 16, nullptr, 10);
    pos = head_end + 4 + length;
  }
  return 0;
}
