// The native UDP engine (see udp_engine.h): upgrade (src/upgrade/,
// docs/upgrade.md): handing listeners and open sessions to a new process.
// All on the JS thread, under g_mu like every other call; the engine
// thread only sees the tables before or after.
#include "udp_engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace l4lb_udp {

// udpListenerFd(listener) -> a new fd (dup, CLOEXEC) of its listening socket | -errno. The caller owns it.
Napi::Value UdpListenerFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(g_mu);
  Listener* L = GetListener(info[0].As<Napi::Number>().Uint32Value());
  if (L == nullptr || L->fd < 0) return Err(env, EBADF);
  int fd = fcntl(L->fd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return Err(env, errno);
  return Napi::Number::New(env, fd);
}

// udpPause(listener, paused) -> bool: while paused the engine does not read
// the listening socket (datagrams wait in the kernel for whoever reads
// next); sessions go on.
Napi::Value UdpPause(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(g_mu);
  uint32_t lid = info[0].As<Napi::Number>().Uint32Value();
  Listener* L = GetListener(lid);
  if (L == nullptr || L->fd < 0) return Napi::Boolean::New(env, false);
  bool p = info[1].As<Napi::Boolean>().Value();
  epoll_event ev;
  ev.events = p ? 0 : EPOLLIN;
  ev.data.u64 = Tag(kTagListener, L->gen, lid);
  epoll_ctl(g_ep, EPOLL_CTL_MOD, L->fd, &ev);
  L->paused = p;
  return Napi::Boolean::New(env, true);
}

// udpExport(listener) -> [client, port, backend, startedMs, bytesIn, bytesOut, fd, upstreamFamily(4|6),
//                         responses, local, ifindex, ...] (kExportFields a session):
// its open sessions leave the engine without an end record (out of the
// epoll set and the tables; their bytes leave the listener's live totals);
// `fd` is a dup (CLOEXEC) of each connected upstream socket, the caller's
// now (the engine closed its own). A session whose dup fails stays.
// `responses` counts towards udp_responses; `local` (with `ifindex`) is the
// address the client sent to on a wildcard bind, "" when not known.
Napi::Value UdpExport(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct Row {
    SessionRow row;
    int fd;
    int fam;
    uint32_t responses;
    std::string local;
    uint32_t ifindex;
  };
  std::vector<Row> rows;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    Listener* L = GetListener(info[0].As<Napi::Number>().Uint32Value());
    if (L != nullptr) {
      std::vector<uint32_t> all;
      for (uint32_t i = L->head; i != kNone; i = g_sess[i].next) all.push_back(i);
      for (uint32_t i : all) {
        Session& s = g_sess[i];
        if (s.state != kOpen || s.fd < 0) continue;
        int fd = fcntl(s.fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0) continue;
        std::string local;
        if (s.hasLocal) {
          char b[INET6_ADDRSTRLEN] = {0};
          if (inet_ntop(L->v6 ? AF_INET6 : AF_INET, s.local, b, sizeof b) != nullptr) local = b;
        }
        rows.push_back(Row{RowOf(s), fd, s.upFam == 1 ? 6 : 4, s.responses, local, s.ifindex});
        // The epoll registration belongs to the socket, which the dup keeps open: removed explicitly.
        epoll_ctl(g_ep, EPOLL_CTL_DEL, s.fd, nullptr);
        SetFdSess(s.fd, kNone);
        close(s.fd);
        s.fd = -1;
        auto it = L->map.find(KeyOf(s.client));
        if (it != L->map.end() && it->second == i) L->map.erase(it);
        LruUnlink(*L, i);
        L->liveIn -= static_cast<int64_t>(s.bytesIn);
        L->liveOut -= static_cast<int64_t>(s.bytesOut);
        L->sessions--;
        g_open--;
        s.state = kFree;
        s.gen = (s.gen + 1) & kGenMask;
        g_free.push_back(i);
      }
    }
  }
  Napi::Array a = Napi::Array::New(env, rows.size() * kExportFields);
  uint32_t j = 0;
  for (const Row& r : rows) {
    j = SetRow(a, j, r.row);
    a.Set(j++, Napi::Number::New(env, r.fd));
    a.Set(j++, Napi::Number::New(env, r.fam));
    a.Set(j++, Napi::Number::New(env, r.responses));
    a.Set(j++, Napi::String::New(env, r.local));
    a.Set(j++, Napi::Number::New(env, r.ifindex));
  }
  return a;
}

// udpImport(listener, clientFamily, clientAddr, clientPort, backendId, fd, startedMs, bytesIn, bytesOut,
//           responses, local, ifindex) -> 0 | -errno
// The engine serves on a session whose connected upstream socket is `fd`
// (it takes a dup; the caller closes its own). A client already waiting
// for a decision (pending) gets this session and its held datagrams go to
// the backend; EEXIST when the client has an open session.
Napi::Value UdpImport(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t lid = info[0].As<Napi::Number>().Uint32Value();
  int family = info[1].As<Napi::Number>().Int32Value();
  std::string host = info[2].As<Napi::String>().Utf8Value();
  uint16_t port = static_cast<uint16_t>(info[3].As<Napi::Number>().Uint32Value());
  uint32_t backend = info[4].As<Napi::Number>().Uint32Value();
  int given = info[5].As<Napi::Number>().Int32Value();
  int64_t started = info[6].As<Napi::Number>().Int64Value();
  uint64_t in = static_cast<uint64_t>(info[7].As<Napi::Number>().DoubleValue());
  uint64_t out = static_cast<uint64_t>(info[8].As<Napi::Number>().DoubleValue());
  uint32_t responses = info.Length() > 9 ? info[9].As<Napi::Number>().Uint32Value() : 0;
  std::string local = info.Length() > 10 ? info[10].As<Napi::String>().Utf8Value() : std::string();
  uint32_t ifindex = info.Length() > 11 ? info[11].As<Napi::Number>().Uint32Value() : 0;
  Sa client;
  socklen_t cl;
  if (!ParseAddr(family, host, port, client, cl)) return Err(env, EINVAL);
  int dom = 0;
  socklen_t dl = sizeof dom;
  if (given < 0 || getsockopt(given, SOL_SOCKET, SO_DOMAIN, &dom, &dl) != 0) return Err(env, EBADF);
  int fam = dom == AF_INET6 ? 1 : 0;
  std::lock_guard<std::mutex> lock(g_mu);
  Listener* L = GetListener(lid);
  if (L == nullptr) return Err(env, ENOENT);
  Key k = KeyOf(client);
  uint32_t si = kNone;
  auto it = L->map.find(k);
  if (it != L->map.end()) {
    if (g_sess[it->second].state != kPending) return Err(env, EEXIST);
    si = it->second;
  }
  int fd = fcntl(given, F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return Err(env, errno);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  int watched = WatchUpstream(fd);
  if (watched != 0) return Err(env, -watched);
  if (si == kNone) {
    si = Alloc();
    Session& s = g_sess[si];
    s.client = client;
    s.listener = static_cast<uint16_t>(lid);
    L->map.emplace(k, si);
    L->sessions++;
  } else {
    g_pending--;
  }
  Session& s = g_sess[si];
  SetFdSess(fd, si);
  s.fd = fd;
  s.upFam = static_cast<uint8_t>(fam);
  s.backend = backend;
  s.state = kOpen;
  s.startedMs = started;
  s.lastMs = MonoMs();
  s.bytesIn = in;
  s.bytesOut = out;
  s.responses = responses;
  // Replies keep leaving from the address the client sent to (wildcard
  // binds); a client already pending here keeps what its datagrams said.
  uint8_t addr[16] = {0};
  if (!local.empty() && inet_pton(L->v6 ? AF_INET6 : AF_INET, local.c_str(), addr) == 1) {
    memcpy(s.local, addr, sizeof addr);
    s.ifindex = ifindex;
    s.hasLocal = 1;
  }
  L->liveIn += static_cast<int64_t>(in);
  L->liveOut += static_cast<int64_t>(out);
  g_open++;
  LruPush(*L, si);
  if (s.held != nullptr) {
    for (const std::string& d : *s.held) {
      g_heldBytes -= d.size();
      ssize_t r;
      do r = send(s.fd, d.data(), d.size(), MSG_DONTWAIT);
      while (r < 0 && errno == EINTR);
      if (r >= 0) {
        s.bytesIn += d.size();
        L->liveIn += static_cast<int64_t>(d.size());
        L->dgramsIn++;
      } else {
        L->droppedSend++;
      }
    }
    delete s.held;
    s.held = nullptr;
  }
  Wake();  // the idle sweep deadline may have moved
  return Napi::Number::New(env, 0);
}

}  // namespace l4lb_udp
