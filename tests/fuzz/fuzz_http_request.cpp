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
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(s.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::fprintf(stderr, "veil fuzz http_request: cannot connect to the server\n");
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
  // Reset rather than close: tens of thousands of connections a minute would otherwise leave
  // as many ports in TIME_WAIT and run out of them.
  const linger reset{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  ::close(fd);
  // Every answer on the connection, pipelined ones included.
  for (std::size_t at = answer.find("HTTP/1.1 500"); at != std::string::npos; at = answer.find("HTTP/1.1 500", at + 1)) {
    if (fuzz::lenient()) break;
    std::fprintf(stderr, "veil fuzz http_request: the server answered 500:\n%s\n", answer.substr(at, 600).c_str());
    std::abort();
  }
  return 0;
}
