// The native TCP engine's N-API calls (JS thread): engineListen,
// engineUnlisten, engineDetach, engineConnect, engineRefuse, and the table
// of engine listeners they manage. Each call only posts a command to a
// worker's queue (or registers a listener with every worker's epoll); the
// worker-thread half is engine_tcp.cc. See ../README.md, "TCP engine".
#include "engine_tcp.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>

#include <string>
#include <vector>

#include "loop.h"
#include "reports.h"

namespace l4lb {

namespace {
std::vector<Listener*> g_listeners;  // JS thread: every listener created (never freed), by id - 1
int g_listening = 0;                  // JS thread: listeners not yet unlistened
}  // namespace

int engineListeners() { return g_listening; }

static Napi::Value Throw(Napi::Env env, const char* msg) {
  Napi::Error::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

// engineListen(fd, boundAddress, boundPort) -> listener id (> 0) or -errno.
// dup()s the listening socket (the caller then closes its own handle), sets
// the options accepted sockets inherit, registers it with every worker.
static Napi::Value EngineListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_workers.empty()) return Throw(env, "l4lb_splice: not initialised");
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsNumber())
    return Throw(env, "l4lb_splice: engineListen(fd, address, port)");
  int src = info[0].As<Napi::Number>().Int32Value();
  if (src < 0) return Napi::Number::New(env, -EBADF);
  int fd = fcntl(src, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return Napi::Number::New(env, -errno);
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK) == 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  setNoDelay(fd);
  setKeepAlive(fd);
  Listener* l = new Listener();
  l->fd = fd;
  l->localAddr = info[1].As<Napi::String>().Utf8Value();
  l->localPort = static_cast<uint16_t>(info[2].As<Napi::Number>().Uint32Value());
  l->wildcard = l->localAddr == "0.0.0.0" || l->localAddr == "::" || l->localAddr.empty();
  g_listeners.push_back(l);
  l->id = static_cast<uint32_t>(g_listeners.size());
  l->refs.store(static_cast<int>(g_workers.size()));
  for (Worker* w : g_workers) {
    if (!registerListener(w, l, true)) {
      int e = errno;
      l->closing.store(true);
      for (Worker* x : g_workers) epoll_ctl(x->ep, EPOLL_CTL_DEL, fd, nullptr);
      close(fd);
      l->fd = -1;
      l->refs.store(0);
      return Napi::Number::New(env, -e);
    }
  }
  g_listening++;
  RefreshRef(env);
  return Napi::Number::New(env, l->id);
}

static Listener* listenerArg(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) return nullptr;
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id == 0 || id > g_listeners.size()) return nullptr;
  Listener* l = g_listeners[id - 1];
  return l->closing.load() ? nullptr : l;
}

static void unlistenNow(Napi::Env env, Listener* l, bool shut);

// engineUnlisten(id): stops accepting at once, as closing node:net's last
// handle of the socket would: the socket leaves the LISTEN state now
// (shutdown), so a new connection is refused rather than queued until the
// workers drop their registration; connections already accepted go on.
static Napi::Value EngineUnlisten(const Napi::CallbackInfo& info) {
  Listener* l = listenerArg(info);
  if (l != nullptr) unlistenNow(info.Env(), l, true);
  return info.Env().Undefined();
}

// engineDetach(id) -> a new fd of the listening socket for node:net (the
// engine stops accepting on it), or -errno.
static Napi::Value EngineDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Listener* l = listenerArg(info);
  if (l == nullptr) return Napi::Number::New(env, -EBADF);
  int fd = fcntl(l->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return Napi::Number::New(env, -errno);
  unlistenNow(env, l, false);
  return Napi::Number::New(env, fd);
}

static void unlistenNow(Napi::Env env, Listener* l, bool shut) {
  l->closing.store(true, std::memory_order_release);
  // Workers close their dup later; the fd is still open here.
  if (shut) shutdown(l->fd, SHUT_RD);
  for (Worker* w : g_workers) {
    Cmd c;
    c.kind = C_UNLISTEN;
    c.listener = l;
    w->post(std::move(c));
  }
  g_listening--;
  RefreshRef(env);
}

// engineConnect(id, host, port, timeoutMs, slot[, head]) -> 0 or -errno.
// host: a numeric IPv4 or IPv6 address.
static Napi::Value EngineConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_workers.empty() || info.Length() < 5 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsNumber() ||
      !info[3].IsNumber() || !info[4].IsNumber())
    return Throw(env, "l4lb_splice: engineConnect(id, host, port, timeoutMs, slot[, head])");
  Cmd c;
  c.kind = C_CONNECT;
  c.id = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
  std::string host = info[1].As<Napi::String>().Utf8Value();
  uint32_t port = info[2].As<Napi::Number>().Uint32Value();
  memset(&c.addr, 0, sizeof c.addr);
  auto* a4 = reinterpret_cast<struct sockaddr_in*>(&c.addr);
  auto* a6 = reinterpret_cast<struct sockaddr_in6*>(&c.addr);
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(static_cast<uint16_t>(port));
    c.addrLen = sizeof *a4;
  } else {
    // "fe80::1%eth0": the zone names the interface.
    std::string h = host;
    size_t pct = h.find('%');
    uint32_t scope = 0;
    if (pct != std::string::npos) {
      scope = if_nametoindex(h.substr(pct + 1).c_str());
      h = h.substr(0, pct);
    }
    if (inet_pton(AF_INET6, h.c_str(), &a6->sin6_addr) != 1) return Napi::Number::New(env, -EINVAL);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(port));
    a6->sin6_scope_id = scope;
    c.addrLen = sizeof *a6;
  }
  c.timeoutMs = info[3].As<Napi::Number>().Uint32Value();
  c.slot = info[4].As<Napi::Number>().Uint32Value();
  if (c.slot >= g_slab_slots) return Napi::Number::New(env, -EINVAL);
  if (info.Length() >= 6 && info[5].IsBuffer()) {
    Napi::Buffer<char> h = info[5].As<Napi::Buffer<char>>();
    c.head.assign(h.Data(), h.Data() + h.Length());
  }
  workerOf(c.id)->post(std::move(c));
  return Napi::Number::New(env, 0);
}

// engineRefuse(id): closes a connection JS will not carry (it is forgotten:
// no report follows).
static Napi::Value EngineRefuse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_workers.empty() || info.Length() < 1 || !info[0].IsNumber()) return env.Undefined();
  Cmd c;
  c.kind = C_REFUSE;
  c.id = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
  workerOf(c.id)->post(std::move(c));
  countConnections(env, -1);  // JS forgot it: one connection fewer
  return env.Undefined();
}

void RegisterTcpEngine(Napi::Env env, Napi::Object exports) {
  exports.Set("engineListen", Napi::Function::New(env, EngineListen, "engineListen"));
  exports.Set("engineUnlisten", Napi::Function::New(env, EngineUnlisten, "engineUnlisten"));
  exports.Set("engineDetach", Napi::Function::New(env, EngineDetach, "engineDetach"));
  exports.Set("engineConnect", Napi::Function::New(env, EngineConnect, "engineConnect"));
  exports.Set("engineRefuse", Napi::Function::New(env, EngineRefuse, "engineRefuse"));
}

}  // namespace l4lb
