// The native UDP engine (see udp_engine.h): the tables, the session slab
// and its idle lists, the upstream socket pool, ending a session, address
// helpers. Callers hold g_mu.
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

Key KeyOf(const Sa& a) {
  Key k;
  memset(&k, 0, sizeof k);
  if (a.sa.sa_family == AF_INET) {
    k.w[0] = (4u << 16) | ntohs(a.v4.sin_port);
    memcpy(&k.w[1], &a.v4.sin_addr, 4);
  } else {
    k.w[0] = (6u << 16) | ntohs(a.v6.sin6_port);
    memcpy(&k.w[1], &a.v6.sin6_addr, 16);
  }
  return k;
}

std::mutex g_mu;
std::deque<Session> g_sess;
std::vector<uint32_t> g_free;
std::vector<Listener*> g_listeners;
std::vector<NewRec> g_news;
std::vector<EndRec> g_ends;
size_t g_heldBytes = 0;
uint32_t g_pending = 0;
uint32_t g_open = 0;
uint32_t g_listenersUsed = 0;
bool g_inflight = false;
bool g_wantClients = false;
bool g_stop = false;
std::deque<Pooled> g_pool[2];
std::vector<uint32_t> g_fdSess;
bool g_started = false;
int g_ep = -1;
int g_efd = -1;
std::thread g_thr;
Napi::ThreadSafeFunction g_tsfn;
bool g_tsfnRef = false;
napi_env g_env = nullptr;

int64_t MonoMs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
  return static_cast<int64_t>(t.tv_sec) * 1000 + t.tv_nsec / 1000000;
}
int64_t RealMs() {
  timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return static_cast<int64_t>(t.tv_sec) * 1000 + t.tv_nsec / 1000000;
}

uint64_t Tag(uint64_t kind, uint32_t gen, uint32_t idx) { return (kind << 62) | (static_cast<uint64_t>(gen & kGenMask) << 32) | idx; }

void LruUnlink(Listener& L, uint32_t i) {
  Session& s = g_sess[i];
  if (s.prev != kNone) g_sess[s.prev].next = s.next;
  else L.head = s.next;
  if (s.next != kNone) g_sess[s.next].prev = s.prev;
  else L.tail = s.prev;
  s.prev = s.next = kNone;
}
void LruPush(Listener& L, uint32_t i) {
  Session& s = g_sess[i];
  s.prev = L.tail;
  s.next = kNone;
  if (L.tail != kNone) g_sess[L.tail].next = i;
  else L.head = i;
  L.tail = i;
}
void Touch(Listener& L, uint32_t i, int64_t now) {
  g_sess[i].lastMs = now;
  if (L.tail != i) {
    LruUnlink(L, i);
    LruPush(L, i);
  }
}

uint32_t Alloc() {
  uint32_t i;
  if (!g_free.empty()) {
    i = g_free.back();
    g_free.pop_back();
  } else {
    g_sess.emplace_back();
    i = static_cast<uint32_t>(g_sess.size() - 1);
    g_sess[i].gen = 0;
  }
  Session& s = g_sess[i];
  uint32_t gen = s.gen;
  memset(static_cast<void*>(&s), 0, sizeof s);
  s.gen = gen;
  s.fd = -1;
  s.prev = s.next = kNone;
  return i;
}

void SetFdSess(int fd, uint32_t si) {
  if (fd < 0) return;
  if (static_cast<size_t>(fd) >= g_fdSess.size()) g_fdSess.resize(static_cast<size_t>(fd) + 1024, kNone);
  g_fdSess[static_cast<size_t>(fd)] = si;
}

// An upstream socket of family `fam` (0: IPv4, 1: IPv6), from the pool or new; -errno on failure.
int Acquire(int fam) {
  if (!g_pool[fam].empty()) {
    int fd = g_pool[fam].back().fd;
    g_pool[fam].pop_back();
    return fd;
  }
  int fd = socket(fam == 1 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int r = WatchUpstream(fd);
  if (r != 0) return r;
  SetFdSess(fd, kNone);
  return fd;
}

int WatchUpstream(int fd) {
  epoll_event ev;
  ev.events = EPOLLIN;
  ev.data.u64 = Tag(kTagSession, 0, static_cast<uint32_t>(fd));
  if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) == 0) return 0;
  int e = errno;
  close(fd);
  return -e;
}

// Disconnects an upstream socket and keeps it for the next session (or closes it).
void Release(int fd, int fam) {
  SetFdSess(fd, kNone);
  sockaddr un;
  memset(&un, 0, sizeof un);
  un.sa_family = AF_UNSPEC;
  if (fam < 0 || g_pool[fam].size() >= kPoolMax || connect(fd, &un, sizeof un) != 0) {
    close(fd);  // also leaves the epoll set (the only reference)
    return;
  }
  // What the old peer had queued goes; a pending error (ICMP) is cleared.
  char b[1];
  for (int i = 0; i < 256; i++) {
    ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT | MSG_TRUNC);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
  }
  g_pool[fam].push_back(Pooled{fd, MonoMs()});
}

void SweepPool(int64_t now) {
  for (auto& q : g_pool)
    while (!q.empty() && now - q.front().since >= kPoolIdleMs) {
      close(q.front().fd);
      q.pop_front();
    }
}

void EndLocked(uint32_t i, uint8_t reason) {
  Session& s = g_sess[i];
  if (s.state == kFree) return;
  Listener& L = *g_listeners[s.listener];
  if (s.fd >= 0) {
    Release(s.fd, s.upFam);
    s.fd = -1;
  }
  auto it = L.map.find(KeyOf(s.client));
  if (it != L.map.end() && it->second == i) L.map.erase(it);
  if (s.held != nullptr) {
    for (const std::string& d : *s.held) g_heldBytes -= d.size();
    delete s.held;
    s.held = nullptr;
  }
  if (s.state == kOpen) {
    LruUnlink(L, i);
    // liveIn/liveOut keep its bytes until udpTake hands the record to JS,
    // which adds them to the finished totals in the same turn: the sum
    // JS reports never goes down.
    EndRec r;
    r.listener = s.listener;
    r.reason = reason;
    r.backend = s.backend;
    r.bytesIn = s.bytesIn;
    r.bytesOut = s.bytesOut;
    r.durationMs = RealMs() - s.startedMs;
    r.client = s.client;
    g_ends.push_back(r);
    g_open--;
  } else {
    g_pending--;
  }
  L.sessions--;
  s.state = kFree;
  s.gen = (s.gen + 1) & kGenMask;
  g_free.push_back(i);
}

void Hold(Listener& L, Session& s, const char* buf, size_t len) {
  if (s.held == nullptr) s.held = new std::vector<std::string>();
  if (s.held->size() >= kHoldMax || g_heldBytes + len > kHoldBytesMax) {
    L.droppedHeld++;
    return;
  }
  s.held->emplace_back(buf, len);
  g_heldBytes += len;
}

bool ParseAddr(int family, const std::string& host, uint16_t port, Sa& out, socklen_t& len) {
  memset(&out, 0, sizeof out);
  if (family == 6) {
    out.v6.sin6_family = AF_INET6;
    out.v6.sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
    return inet_pton(AF_INET6, host.c_str(), &out.v6.sin6_addr) == 1;
  }
  out.v4.sin_family = AF_INET;
  out.v4.sin_port = htons(port);
  len = sizeof(sockaddr_in);
  return inet_pton(AF_INET, host.c_str(), &out.v4.sin_addr) == 1;
}

std::string AddrString(const Sa& a) {
  char b[INET6_ADDRSTRLEN] = {0};
  if (a.sa.sa_family == AF_INET) inet_ntop(AF_INET, &a.v4.sin_addr, b, sizeof b);
  else inet_ntop(AF_INET6, &a.v6.sin6_addr, b, sizeof b);
  return b;
}
SessionRow RowOf(const Session& s) { return SessionRow{s.client, s.backend, s.startedMs, s.bytesIn, s.bytesOut}; }

uint32_t SetRow(Napi::Array& a, uint32_t j, const SessionRow& r) {
  Napi::Env env = a.Env();
  a.Set(j++, Napi::String::New(env, AddrString(r.client)));
  a.Set(j++, Napi::Number::New(env, PortOf(r.client)));
  a.Set(j++, Napi::Number::New(env, r.backend));
  a.Set(j++, Napi::Number::New(env, static_cast<double>(r.started)));
  a.Set(j++, Napi::Number::New(env, static_cast<double>(r.in)));
  a.Set(j++, Napi::Number::New(env, static_cast<double>(r.out)));
  return j;
}

uint16_t PortOf(const Sa& a) { return ntohs(a.sa.sa_family == AF_INET ? a.v4.sin_port : a.v6.sin6_port); }

Listener* GetListener(uint32_t lid) {
  if (lid >= g_listeners.size()) return nullptr;
  Listener* L = g_listeners[lid];
  return L != nullptr && L->used ? L : nullptr;
}

}  // namespace l4lb_udp
