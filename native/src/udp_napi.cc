// The native UDP engine (see udp_engine.h): N-API calls that set it up
// and hand records to JS (udpInit, udpListen, udpConfigure,
// udpWantClients, udpTake), and RegisterUdpEngine. JS thread.
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

namespace {
const char* const kReasons[R_COUNT] = {"idle_timeout", "responses", "backend_refused", "backend_gone", "shutdown", "drain_timeout", "admin_shutdown", "error"};
}  // namespace

Napi::Value Err(Napi::Env env, int e) { return Napi::Number::New(env, -e); }

// udpInit(onReady) -> true; onReady() is called (no arguments) when udpTake has records.
Napi::Value UdpInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_started) return Napi::Boolean::New(env, g_env == static_cast<napi_env>(env));
  if (info.Length() < 1 || !info[0].IsFunction()) {
    Napi::TypeError::New(env, "udpInit(onReady)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  g_rbuf = static_cast<char*>(malloc(kBuf * kBatch));
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  g_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (g_rbuf == nullptr || g_ep < 0 || g_efd < 0) return Napi::Boolean::New(env, false);
  epoll_event ev;
  ev.events = EPOLLIN;
  ev.data.u64 = Tag(kTagWake, 0, 0);
  epoll_ctl(g_ep, EPOLL_CTL_ADD, g_efd, &ev);
  g_tsfn = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "l4lb_udp", 0, 1);
  g_tsfn.Unref(env);
  g_env = env;
  g_started = true;
  g_thr = std::thread(Loop);
  napi_add_env_cleanup_hook(env, Stop, nullptr);
  std::atexit(StopAtExit);
  return Napi::Boolean::New(env, true);
}

// udpListen(family 4|6, host, port, fd (-1: bind here), bufferBytes[, dupFd]) -> [id, address, port] | -errno
// With dupFd the engine takes a dup of `fd` (the caller closes its own).
Napi::Value UdpListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int family = info[0].As<Napi::Number>().Int32Value();
  std::string host = info[1].As<Napi::String>().Utf8Value();
  uint16_t port = static_cast<uint16_t>(info[2].As<Napi::Number>().Uint32Value());
  int given = info[3].As<Napi::Number>().Int32Value();
  int buf = info[4].As<Napi::Number>().Int32Value();
  bool dupIt = info.Length() > 5 && info[5].ToBoolean().Value();
  int fd;
  if (given >= 0 && dupIt) {
    given = fcntl(given, F_DUPFD_CLOEXEC, 3);
    if (given < 0) return Err(env, errno);
    dupIt = true;
  }
  if (given >= 0) {
    fd = given;
    int type = 0;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_DGRAM) {
      int e = type != SOCK_DGRAM && errno == 0 ? EINVAL : errno;
      if (dupIt) close(fd);
      return Err(env, e == 0 ? EINVAL : e);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
  } else {
    Sa a;
    socklen_t al;
    if (!ParseAddr(family, host, port, a, al)) return Err(env, EINVAL);
    fd = socket(a.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Err(env, errno);
    if (family == 6) {
      int off = 0;
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    }
    if (buf > 0) {
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    }
    if (bind(fd, &a.sa, al) != 0) {
      int e = errno;
      close(fd);
      return Err(env, e);
    }
  }
  Sa b;
  socklen_t bl = sizeof b;
  memset(&b, 0, sizeof b);
  if (getsockname(fd, &b.sa, &bl) != 0) {
    int e = errno;
    if (given < 0) close(fd);
    return Err(env, e);
  }
  bool v6 = b.sa.sa_family == AF_INET6;
  bool wildcard = v6 ? IN6_IS_ADDR_UNSPECIFIED(&b.v6.sin6_addr) : b.v4.sin_addr.s_addr == htonl(INADDR_ANY);
  if (wildcard) {
    int on = 1;
    if (v6) setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
    else setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
  }
  std::lock_guard<std::mutex> lock(g_mu);
  uint32_t lid = 0;
  while (lid < g_listeners.size() && g_listeners[lid] != nullptr && g_listeners[lid]->used) lid++;
  if (lid >= 0xffff) {
    if (given < 0) close(fd);
    return Err(env, EMFILE);
  }
  if (lid == g_listeners.size()) g_listeners.push_back(nullptr);
  Listener* L = g_listeners[lid];
  uint32_t gen = 0;
  if (L == nullptr) L = g_listeners[lid] = new Listener();
  else gen = L->gen + 1;
  *L = Listener();
  L->gen = gen & kGenMask;
  L->used = true;
  L->v6 = v6;
  L->wildcard = wildcard;
  L->fd = fd;
  epoll_event ev;
  ev.events = EPOLLIN;
  ev.data.u64 = Tag(kTagListener, L->gen, lid);
  if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int e = errno;
    L->used = false;
    if (given < 0) close(fd);
    return Err(env, e);
  }
  g_listenersUsed++;
  if (!g_tsfnRef) {
    g_tsfn.Ref(env);  // open listening sockets keep the process alive, as dgram's do
    g_tsfnRef = true;
  }
  Napi::Array r = Napi::Array::New(env, 3);
  r.Set(0u, Napi::Number::New(env, lid));
  r.Set(1u, Napi::String::New(env, AddrString(b)));
  r.Set(2u, Napi::Number::New(env, PortOf(b)));
  return r;
}

// udpConfigure(id, idleMs, responses, accepting)
Napi::Value UdpConfigure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  {
    std::lock_guard<std::mutex> lock(g_mu);
    Listener* L = GetListener(info[0].As<Napi::Number>().Uint32Value());
    if (L == nullptr) return Napi::Boolean::New(env, false);
    L->idleMs = info[1].As<Napi::Number>().Uint32Value();
    L->responses = info[2].As<Napi::Number>().Uint32Value();
    L->accepting = info[3].As<Napi::Boolean>().Value();
  }
  Wake();  // the sweep deadline may have moved
  return Napi::Boolean::New(env, true);
}

// udpWantClients(bool): ended-session records carry the client's address (connection log).
Napi::Value UdpWantClients(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_wantClients = info[0].As<Napi::Boolean>().Value();
  return info.Env().Undefined();
}

// udpTake() -> undefined | [news: [id, listener, client, port, local, ...], ends: Float64Array
//   [listener, backend, reason, bytesIn, bytesOut, durationMs, clientPort, ...] | null, clients: string[] | null]
Napi::Value UdpTake(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<NewRec> news;
  std::vector<EndRec> ends;
  bool want;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    news.swap(g_news);
    ends.swap(g_ends);
    g_endsSince = -1;
    for (const EndRec& r : ends) {
      Listener* L = r.listener < g_listeners.size() ? g_listeners[r.listener] : nullptr;
      if (L == nullptr) continue;
      L->liveIn -= static_cast<int64_t>(r.bytesIn);
      L->liveOut -= static_cast<int64_t>(r.bytesOut);
    }
    want = g_wantClients;
  }
  if (news.empty() && ends.empty()) return env.Undefined();
  Napi::Array out = Napi::Array::New(env, 3);
  if (!news.empty()) {
    Napi::Array a = Napi::Array::New(env, news.size() * 5);
    uint32_t j = 0;
    for (const NewRec& r : news) {
      a.Set(j++, Napi::Number::New(env, static_cast<double>(r.id)));
      a.Set(j++, Napi::Number::New(env, r.listener));
      a.Set(j++, Napi::String::New(env, AddrString(r.client)));
      a.Set(j++, Napi::Number::New(env, PortOf(r.client)));
      std::string local;
      if (r.hasLocal) {
        char b[INET6_ADDRSTRLEN] = {0};
        inet_ntop(r.localV4 ? AF_INET : AF_INET6, r.local, b, sizeof b);
        local = b;
      }
      a.Set(j++, Napi::String::New(env, local));
    }
    out.Set(0u, a);
  } else {
    out.Set(0u, env.Null());
  }
  if (!ends.empty()) {
    Napi::Float64Array f = Napi::Float64Array::New(env, ends.size() * 7);
    size_t j = 0;
    for (const EndRec& r : ends) {
      f[j++] = r.listener;
      f[j++] = r.backend;
      f[j++] = r.reason;
      f[j++] = static_cast<double>(r.bytesIn);
      f[j++] = static_cast<double>(r.bytesOut);
      f[j++] = static_cast<double>(r.durationMs);
      f[j++] = PortOf(r.client);
    }
    out.Set(1u, f);
    if (want) {
      Napi::Array c = Napi::Array::New(env, ends.size());
      uint32_t k = 0;
      for (const EndRec& r : ends) c.Set(k++, Napi::String::New(env, AddrString(r.client)));
      out.Set(2u, c);
    } else {
      out.Set(2u, env.Null());
    }
  } else {
    out.Set(1u, env.Null());
    out.Set(2u, env.Null());
  }
  return out;
}

}  // namespace l4lb_udp

void RegisterUdpEngine(Napi::Env env, Napi::Object exports) {
  using namespace l4lb_udp;
  exports.Set("udpInit", Napi::Function::New(env, UdpInit, "udpInit"));
  exports.Set("udpListen", Napi::Function::New(env, UdpListen, "udpListen"));
  exports.Set("udpConfigure", Napi::Function::New(env, UdpConfigure, "udpConfigure"));
  exports.Set("udpWantClients", Napi::Function::New(env, UdpWantClients, "udpWantClients"));
  exports.Set("udpTake", Napi::Function::New(env, UdpTake, "udpTake"));
  exports.Set("udpOpen", Napi::Function::New(env, UdpOpen, "udpOpen"));
  exports.Set("udpReject", Napi::Function::New(env, UdpReject, "udpReject"));
  exports.Set("udpEnd", Napi::Function::New(env, UdpEnd, "udpEnd"));
  exports.Set("udpSessions", Napi::Function::New(env, UdpSessions, "udpSessions"));
  exports.Set("udpBackendBytes", Napi::Function::New(env, UdpBackendBytes, "udpBackendBytes"));
  exports.Set("udpCounters", Napi::Function::New(env, UdpCounters, "udpCounters"));
  exports.Set("udpClose", Napi::Function::New(env, UdpClose, "udpClose"));
  exports.Set("udpInfo", Napi::Function::New(env, UdpInfo, "udpInfo"));
  exports.Set("udpListenerFd", Napi::Function::New(env, UdpListenerFd, "udpListenerFd"));
  exports.Set("udpPause", Napi::Function::New(env, UdpPause, "udpPause"));
  exports.Set("udpExport", Napi::Function::New(env, UdpExport, "udpExport"));
  exports.Set("udpImport", Napi::Function::New(env, UdpImport, "udpImport"));
  Napi::Array reasons = Napi::Array::New(env, R_COUNT);
  for (uint32_t i = 0; i < R_COUNT; i++) reasons.Set(i, kReasons[i]);
  exports.Set("udpReasons", reasons);
}
