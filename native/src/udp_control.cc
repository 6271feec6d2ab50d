// The native UDP engine (see udp_engine.h): N-API calls on sessions and
// listeners (udpOpen, udpReject, udpEnd, udpSessions, udpBackendBytes,
// udpCounters, udpClose, udpInfo). JS thread, under g_mu.
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
bool SessionById(double idd, uint32_t& si) {
  uint64_t id = static_cast<uint64_t>(idd);
  si = static_cast<uint32_t>(id & 0xffffffffu);
  uint32_t gen = static_cast<uint32_t>(id >> 32);
  return si < g_sess.size() && g_sess[si].gen == gen && g_sess[si].state != kFree;
}

}  // namespace

// udpOpen(id, family, host, port, backendId) -> 0 | -errno (the session then stays pending: udpReject it)
Napi::Value UdpOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double id = info[0].As<Napi::Number>().DoubleValue();
  int family = info[1].As<Napi::Number>().Int32Value();
  std::string host = info[2].As<Napi::String>().Utf8Value();
  uint16_t port = static_cast<uint16_t>(info[3].As<Napi::Number>().Uint32Value());
  uint32_t backend = info[4].As<Napi::Number>().Uint32Value();
  Sa to;
  socklen_t tl;
  if (!ParseAddr(family, host, port, to, tl)) return Err(env, EINVAL);
  std::lock_guard<std::mutex> lock(g_mu);
  uint32_t si;
  if (!SessionById(id, si) || g_sess[si].state != kPending) return Err(env, ENOENT);
  Session& s = g_sess[si];
  Listener& L = *g_listeners[s.listener];
  int fam = to.sa.sa_family == AF_INET6 ? 1 : 0;
  int fd = Acquire(fam);
  if (fd < 0) return Err(env, -fd);
  if (connect(fd, &to.sa, tl) != 0) {
    int e = errno;
    Release(fd, fam);
    return Err(env, e);
  }
  SetFdSess(fd, si);
  s.fd = fd;
  s.upFam = static_cast<uint8_t>(fam);
  s.backend = backend;
  s.state = kOpen;
  s.startedMs = RealMs();
  s.lastMs = MonoMs();
  g_pending--;
  g_open++;
  LruPush(L, si);
  if (s.held != nullptr) {
    for (const std::string& d : *s.held) {
      g_heldBytes -= d.size();
      if (s.fd < 0) continue;
      ssize_t r;
      do r = send(s.fd, d.data(), d.size(), MSG_DONTWAIT);
      while (r < 0 && errno == EINTR);
      if (r >= 0) {
        s.bytesIn += d.size();
        L.liveIn += static_cast<int64_t>(d.size());
        L.dgramsIn++;
      } else {
        L.droppedSend++;
      }
    }
    delete s.held;
    s.held = nullptr;
  }
  return Napi::Number::New(env, 0);
}

// udpReject(id) -> datagrams that were held (dropped now), or -1 when unknown
Napi::Value UdpReject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(g_mu);
  uint32_t si;
  if (!SessionById(info[0].As<Napi::Number>().DoubleValue(), si) || g_sess[si].state != kPending) return Napi::Number::New(env, -1);
  size_t n = g_sess[si].held != nullptr ? g_sess[si].held->size() : 0;
  EndLocked(si, R_ERROR);
  return Napi::Number::New(env, static_cast<double>(n));
}

// udpEnd(listener, backendId (-1: all), reason) -> sessions ended (their records wait for udpTake)
Napi::Value UdpEnd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t lid = info[0].As<Napi::Number>().Uint32Value();
  int64_t backend = info[1].As<Napi::Number>().Int64Value();
  uint32_t reason = info[2].As<Napi::Number>().Uint32Value();
  if (reason >= R_COUNT) reason = R_ERROR;
  std::lock_guard<std::mutex> lock(g_mu);
  Listener* L = GetListener(lid);
  if (L == nullptr) return Napi::Number::New(env, 0);
  std::vector<uint32_t> victims;
  for (uint32_t i = L->head; i != kNone; i = g_sess[i].next)
    if (backend < 0 || g_sess[i].backend == static_cast<uint32_t>(backend)) victims.push_back(i);
  for (uint32_t i : victims) EndLocked(i, static_cast<uint8_t>(reason));
  return Napi::Number::New(env, static_cast<double>(victims.size()));
}

// udpSessions(listener) -> [client, port, backend, startedMs, bytesIn, bytesOut, ...] (open sessions)
Napi::Value UdpSessions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<SessionRow> rows;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    Listener* L = GetListener(info[0].As<Napi::Number>().Uint32Value());
    if (L != nullptr)
      for (uint32_t i = L->head; i != kNone; i = g_sess[i].next) {
        rows.push_back(RowOf(g_sess[i]));
      }
  }
  Napi::Array a = Napi::Array::New(env, rows.size() * kRowFields);
  uint32_t j = 0;
  for (const SessionRow& r : rows) j = SetRow(a, j, r);
  return a;
}

// udpBackendBytes(listener) -> [backend, bytesIn, bytesOut, ...] of open sessions
Napi::Value UdpBackendBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::unordered_map<uint32_t, std::pair<uint64_t, uint64_t>> by;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    Listener* L = GetListener(info[0].As<Napi::Number>().Uint32Value());
    if (L != nullptr) {
      for (uint32_t i = L->head; i != kNone; i = g_sess[i].next) {
        auto& e = by[g_sess[i].backend];
        e.first += g_sess[i].bytesIn;
        e.second += g_sess[i].bytesOut;
      }
      // Ended, not yet taken by JS: still live for the counters.
      uint32_t lid = info[0].As<Napi::Number>().Uint32Value();
      for (const EndRec& r : g_ends) {
        if (r.listener != lid) continue;
        auto& e = by[r.backend];
        e.first += r.bytesIn;
        e.second += r.bytesOut;
      }
    }
  }
  Napi::Float64Array f = Napi::Float64Array::New(env, by.size() * 3);
  size_t j = 0;
  for (const auto& kv : by) {
    f[j++] = kv.first;
    f[j++] = static_cast<double>(kv.second.first);
    f[j++] = static_cast<double>(kv.second.second);
  }
  return f;
}

// udpCounters(listener) -> Float64Array [datagramsIn, datagramsOut, liveBytesIn, liveBytesOut, droppedHeld, droppedSend, sessions]
Napi::Value UdpCounters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float64Array f = Napi::Float64Array::New(env, 7);
  std::lock_guard<std::mutex> lock(g_mu);
  Listener* L = GetListener(info[0].As<Napi::Number>().Uint32Value());
  if (L == nullptr) return f;
  f[0] = static_cast<double>(L->dgramsIn);
  f[1] = static_cast<double>(L->dgramsOut);
  f[2] = static_cast<double>(L->liveIn);
  f[3] = static_cast<double>(L->liveOut);
  f[4] = static_cast<double>(L->droppedHeld);
  f[5] = static_cast<double>(L->droppedSend);
  f[6] = L->sessions;
  return f;
}

// udpClose(listener): ends its sessions (reason `shutdown`, records wait for udpTake) and closes the socket.
Napi::Value UdpClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(g_mu);
  uint32_t lid = info[0].As<Napi::Number>().Uint32Value();
  Listener* L = GetListener(lid);
  if (L == nullptr) return Napi::Boolean::New(env, false);
  std::vector<uint32_t> all;
  for (const auto& kv : L->map) all.push_back(kv.second);
  for (uint32_t i : all) EndLocked(i, R_SHUTDOWN);
  epoll_ctl(g_ep, EPOLL_CTL_DEL, L->fd, nullptr);
  close(L->fd);
  L->fd = -1;
  L->used = false;
  L->map.clear();
  g_listenersUsed--;
  if (g_listenersUsed == 0 && g_tsfnRef) {
    g_tsfn.Unref(env);
    g_tsfnRef = false;
  }
  return Napi::Boolean::New(env, true);
}

// udpInfo() -> { sessionBytes, open, pending, slots, listeners, heldBytes }
Napi::Value UdpInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  std::lock_guard<std::mutex> lock(g_mu);
  o.Set("sessionBytes", Napi::Number::New(env, sizeof(Session)));
  o.Set("open", Napi::Number::New(env, g_open));
  o.Set("pending", Napi::Number::New(env, g_pending));
  o.Set("slots", Napi::Number::New(env, static_cast<double>(g_sess.size())));
  o.Set("listeners", Napi::Number::New(env, g_listenersUsed));
  o.Set("heldBytes", Napi::Number::New(env, static_cast<double>(g_heldBytes)));
  o.Set("pooledSockets", Napi::Number::New(env, static_cast<double>(g_pool[0].size() + g_pool[1].size())));
  return o;
}

}  // namespace l4lb_udp
