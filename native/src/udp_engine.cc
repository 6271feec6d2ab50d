// The native UDP engine: owns UDP listening sockets and the sessions'
// connected upstream sockets on one epoll thread. Datagrams of known
// sessions are forwarded here (recvmmsg/sendmmsg), replies go back from the
// listening socket with the address the client sent to (IP_PKTINFO /
// IPV6_PKTINFO on wildcard binds). A new client's datagrams are held (at
// most 64) while TypeScript decides; TS then calls udpOpen or udpReject.
// Events for TS (new clients, ended sessions) are collected under the lock
// and handed over with one threadsafe call per wake; TS pulls them with
// udpTake. See ../README.md, "UDP engine". Linux only.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
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

namespace {

constexpr uint32_t kNone = 0xffffffffu;
constexpr int kBatch = 32;
constexpr size_t kBuf = 65536;
constexpr size_t kHoldMax = 64;
constexpr size_t kHoldBytesMax = 32u << 20;
constexpr uint32_t kPendingMax = 65536;
constexpr uint32_t kGenMask = 0xfffff;  // id = gen * 2^32 + index stays below 2^53

enum : uint8_t { kFree = 0, kPending = 1, kOpen = 2 };
enum : uint64_t { kTagWake = 0, kTagListener = 1, kTagSession = 2 };
// Same order as `udpReasons` (and src/udp/engine.ts).
enum : uint8_t { R_IDLE, R_RESPONSES, R_REFUSED, R_GONE, R_SHUTDOWN, R_DRAIN, R_ADMIN, R_ERROR, R_COUNT };
const char* const kReasons[R_COUNT] = {"idle_timeout", "responses", "backend_refused", "backend_gone", "shutdown", "drain_timeout", "admin_shutdown", "error"};

union Sa {
  sockaddr sa;
  sockaddr_in v4;
  sockaddr_in6 v6;
};

struct Key {
  uint32_t w[5];  // family and port, then 16 address bytes
  bool operator==(const Key& o) const { return memcmp(w, o.w, sizeof w) == 0; }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (uint32_t x : k.w) {
      h ^= x;
      h *= 0xff51afd7ed558ccdull;
      h ^= h >> 33;
    }
    return static_cast<size_t>(h);
  }
};

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

// One session: a fixed record (sizeof: see udpInfo().sessionBytes).
struct Session {
  Sa client;             // where the client sent from
  uint8_t local[16];     // the address it sent to (wildcard binds)
  uint32_t ifindex;
  uint32_t gen;
  uint32_t backend;      // TS's backend id
  uint32_t responses;    // backend datagrams so far
  uint32_t prev, next;   // the listener's idle list, oldest first
  int fd;                // connected upstream socket, -1 while pending
  uint16_t listener;
  uint8_t state;
  uint8_t hasLocal;
  uint8_t upFam;         // 0: IPv4 upstream socket, 1: IPv6
  int64_t startedMs;     // CLOCK_REALTIME
  int64_t lastMs;        // CLOCK_MONOTONIC_COARSE
  uint64_t bytesIn, bytesOut;
  std::vector<std::string>* held;  // datagrams waiting for TS's decision
};

struct Listener {
  bool used = false;
  bool v6 = false;
  bool wildcard = false;
  bool accepting = true;
  int fd = -1;
  uint32_t gen = 0;
  uint32_t idleMs = 0;
  uint32_t responses = 0;
  uint32_t head = kNone, tail = kNone;
  uint32_t sessions = 0;  // pending and open
  std::unordered_map<Key, uint32_t, KeyHash> map;
  uint64_t dgramsIn = 0, dgramsOut = 0;
  int64_t liveIn = 0, liveOut = 0;
  uint64_t droppedHeld = 0, droppedSend = 0;
  bool paused = false;  // upgrade: the listening socket is not read (udpPause)
};

struct NewRec {
  uint64_t id;
  uint16_t listener;
  bool hasLocal;
  bool localV4;
  Sa client;
  uint8_t local[16];
};
struct EndRec {
  uint16_t listener;
  uint8_t reason;
  uint32_t backend;
  uint64_t bytesIn, bytesOut;
  int64_t durationMs;
  Sa client;
};

// Everything below is guarded by g_mu (the engine thread holds it while it
// handles a wake; JS calls hold it for their few operations).
std::mutex g_mu;
std::deque<Session> g_sess;  // stable addresses
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

// Upstream sockets are kept for reuse: a session's socket is disconnected
// (connect AF_UNSPEC: its ephemeral port is released, nothing more can
// arrive for the old 4-tuple), drained of what was queued, and the next
// session connects it again (a new ephemeral port). That saves socket(),
// close() and two epoll_ctl per session. At most kPoolMax per family are
// kept, each closed after kPoolIdleMs unused.
constexpr size_t kPoolMax = 4096;
constexpr int64_t kPoolIdleMs = 2000;
struct Pooled {
  int fd;
  int64_t since;
};
std::deque<Pooled> g_pool[2];  // [0] AF_INET, [1] AF_INET6
std::vector<uint32_t> g_fdSess;  // upstream fd -> session index (kNone: pooled)

// Set once by udpInit (JS thread).
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
  epoll_event ev;
  ev.events = EPOLLIN;
  ev.data.u64 = Tag(kTagSession, 0, static_cast<uint32_t>(fd));
  if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  SetFdSess(fd, kNone);
  return fd;
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

// Engine thread buffers.
char* g_rbuf = nullptr;
mmsghdr g_rhdr[kBatch];
iovec g_riov[kBatch];
Sa g_raddr[kBatch];
alignas(cmsghdr) char g_rctl[kBatch][64];
mmsghdr g_shdr[kBatch];
iovec g_siov[kBatch];
alignas(cmsghdr) char g_sctl[64];
struct Out {
  uint32_t si, gen, buf, len;
};
Out g_out[kBatch];

size_t BuildPktinfo(const Listener& L, const Session& s, char* buf) {
  if (!L.wildcard || !s.hasLocal) return 0;
  memset(buf, 0, 64);
  cmsghdr* c = reinterpret_cast<cmsghdr*>(buf);
  if (!L.v6) {
    in_pktinfo pi;
    memset(&pi, 0, sizeof pi);
    memcpy(&pi.ipi_spec_dst, s.local, 4);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof pi);
    memcpy(CMSG_DATA(c), &pi, sizeof pi);
    return CMSG_SPACE(sizeof pi);
  }
  in6_pktinfo pi;
  memset(&pi, 0, sizeof pi);
  memcpy(&pi.ipi6_addr, s.local, 16);
  if (IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr)) pi.ipi6_ifindex = s.ifindex;
  c->cmsg_level = IPPROTO_IPV6;
  c->cmsg_type = IPV6_PKTINFO;
  c->cmsg_len = CMSG_LEN(sizeof pi);
  memcpy(CMSG_DATA(c), &pi, sizeof pi);
  return CMSG_SPACE(sizeof pi);
}

void ReadPktinfo(msghdr& h, Session& s) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      memcpy(s.local, &pi.ipi_addr, 4);
      s.ifindex = static_cast<uint32_t>(pi.ipi_ifindex);
      s.hasLocal = 1;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      memcpy(s.local, &pi.ipi6_addr, 16);
      s.ifindex = pi.ipi6_ifindex;
      s.hasLocal = 1;
    }
  }
}

// Forwards g_out[0..n) (datagrams of open sessions, in arrival order) to
// their upstream sockets; consecutive datagrams of one session go in one
// sendmmsg.
void FlushForwards(Listener& L, int n) {
  int a = 0;
  while (a < n) {
    uint32_t si = g_out[a].si;
    uint32_t gen = g_out[a].gen;
    int b = a + 1;
    while (b < n && g_out[b].si == si && g_out[b].gen == gen) b++;
    Session& s = g_sess[si];
    if (s.state != kOpen || s.gen != gen) {
      a = b;
      continue;
    }
    for (int k = a; k < b; k++) {
      g_siov[k].iov_base = g_rbuf + static_cast<size_t>(g_out[k].buf) * kBuf;
      g_siov[k].iov_len = g_out[k].len;
      memset(&g_shdr[k], 0, sizeof g_shdr[k]);
      g_shdr[k].msg_hdr.msg_iov = &g_siov[k];
      g_shdr[k].msg_hdr.msg_iovlen = 1;
    }
    int k = a;
    while (k < b) {
      int r = sendmmsg(s.fd, &g_shdr[k], static_cast<unsigned>(b - k), MSG_DONTWAIT);
      if (r > 0) {
        for (int j = k; j < k + r; j++) {
          s.bytesIn += g_out[j].len;
          L.liveIn += g_out[j].len;
          L.dgramsIn++;
        }
        k += r;
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == ECONNREFUSED) {
        EndLocked(si, R_REFUSED);
        break;
      }
      L.droppedSend++;  // EAGAIN/ENOBUFS: no room in the kernel
      k++;
    }
    a = b;
  }
}

void OnListener(uint16_t lid) {
  Listener& L = *g_listeners[lid];
  for (int round = 0; round < 8; round++) {
    for (int i = 0; i < kBatch; i++) {
      g_riov[i].iov_base = g_rbuf + static_cast<size_t>(i) * kBuf;
      g_riov[i].iov_len = kBuf;
      msghdr& h = g_rhdr[i].msg_hdr;
      h.msg_name = &g_raddr[i];
      h.msg_namelen = sizeof(Sa);
      h.msg_iov = &g_riov[i];
      h.msg_iovlen = 1;
      h.msg_control = L.wildcard ? g_rctl[i] : nullptr;
      h.msg_controllen = L.wildcard ? sizeof g_rctl[i] : 0;
      h.msg_flags = 0;
      g_rhdr[i].msg_len = 0;
    }
    int n = recvmmsg(L.fd, g_rhdr, kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) break;
    int64_t now = MonoMs();
    int64_t real = 0;
    int ns = 0;
    for (int i = 0; i < n; i++) {
      uint32_t len = g_rhdr[i].msg_len;
      const char* buf = g_rbuf + static_cast<size_t>(i) * kBuf;
      const Sa& from = g_raddr[i];
      if (from.sa.sa_family != AF_INET && from.sa.sa_family != AF_INET6) continue;
      Key k = KeyOf(from);
      auto it = L.map.find(k);
      if (it != L.map.end()) {
        uint32_t si = it->second;
        Session& s = g_sess[si];
        if (s.state == kOpen) {
          g_out[ns++] = Out{si, s.gen, static_cast<uint32_t>(i), len};
          Touch(L, si, now);
        } else {
          Hold(L, s, buf, len);
        }
        continue;
      }
      if (!L.accepting) continue;  // draining: new clients are not taken
      if (g_pending >= kPendingMax) {
        L.droppedHeld++;
        continue;
      }
      uint32_t si = Alloc();
      Session& s = g_sess[si];
      s.client = from;
      s.listener = lid;
      s.state = kPending;
      if (L.wildcard) ReadPktinfo(g_rhdr[i].msg_hdr, s);
      if (real == 0) real = RealMs();
      s.startedMs = real;
      s.lastMs = now;
      L.map.emplace(k, si);
      L.sessions++;
      g_pending++;
      Hold(L, s, buf, len);
      NewRec r;
      r.id = (static_cast<uint64_t>(s.gen) << 32) | si;
      r.listener = lid;
      r.hasLocal = s.hasLocal != 0;
      r.localV4 = !L.v6;
      r.client = from;
      memcpy(r.local, s.local, 16);
      g_news.push_back(r);
    }
    if (ns > 0) FlushForwards(L, ns);
    if (n < kBatch) break;
  }
}

void OnUpstream(uint32_t fd, uint32_t events) {
  if (fd >= g_fdSess.size()) return;
  uint32_t si = g_fdSess[fd];
  if (si == kNone) {
    // A pooled socket: a late ICMP error; read and cleared.
    char b[1];
    ssize_t r = recv(static_cast<int>(fd), b, sizeof b, MSG_DONTWAIT | MSG_TRUNC);
    (void)r;
    return;
  }
  Session& s = g_sess[si];
  if (s.state != kOpen || s.fd != static_cast<int>(fd)) return;
  Listener& L = *g_listeners[s.listener];
  if (events & EPOLLERR) {
    int e = 0;
    socklen_t el = sizeof e;
    getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &e, &el);
    if (e == ECONNREFUSED) return EndLocked(si, R_REFUSED);
    if (e != 0) return EndLocked(si, R_ERROR);
  }
  socklen_t namelen = s.client.sa.sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  size_t ctl = BuildPktinfo(L, s, g_sctl);
  for (int round = 0; round < 8; round++) {
    unsigned want = kBatch;
    if (L.responses > 0) {
      if (s.responses >= L.responses) return EndLocked(si, R_RESPONSES);
      uint32_t left = L.responses - s.responses;
      if (left < want) want = left;
    }
    for (unsigned i = 0; i < want; i++) {
      g_riov[i].iov_base = g_rbuf + static_cast<size_t>(i) * kBuf;
      g_riov[i].iov_len = kBuf;
      msghdr& h = g_rhdr[i].msg_hdr;
      memset(&h, 0, sizeof h);
      h.msg_iov = &g_riov[i];
      h.msg_iovlen = 1;
      g_rhdr[i].msg_len = 0;
    }
    int n = recvmmsg(s.fd, g_rhdr, want, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      return EndLocked(si, errno == ECONNREFUSED ? R_REFUSED : R_ERROR);
    }
    if (n == 0) return;
    for (int i = 0; i < n; i++) {
      g_siov[i].iov_base = g_riov[i].iov_base;
      g_siov[i].iov_len = g_rhdr[i].msg_len;
      msghdr& h = g_shdr[i].msg_hdr;
      h.msg_name = &s.client;
      h.msg_namelen = namelen;
      h.msg_iov = &g_siov[i];
      h.msg_iovlen = 1;
      h.msg_control = ctl > 0 ? g_sctl : nullptr;
      h.msg_controllen = ctl;
      h.msg_flags = 0;
    }
    int k = 0;
    while (k < n) {
      int r = sendmmsg(L.fd, &g_shdr[k], static_cast<unsigned>(n - k), MSG_DONTWAIT);
      if (r > 0) {
        for (int j = k; j < k + r; j++) {
          s.bytesOut += g_siov[j].iov_len;
          L.liveOut += static_cast<int64_t>(g_siov[j].iov_len);
          L.dgramsOut++;
        }
        k += r;
        continue;
      }
      if (errno == EINTR) continue;
      L.droppedSend++;
      k++;
    }
    s.responses += static_cast<uint32_t>(n);
    Touch(L, si, MonoMs());
    if (L.responses > 0 && s.responses >= L.responses) return EndLocked(si, R_RESPONSES);
    if (static_cast<unsigned>(n) < want) return;
  }
}

void Sweep(int64_t now) {
  for (Listener* L : g_listeners) {
    if (L == nullptr || !L->used || L->idleMs == 0) continue;
    while (L->head != kNone && now - g_sess[L->head].lastMs >= static_cast<int64_t>(L->idleMs)) EndLocked(L->head, R_IDLE);
  }
}

int NextTimeout(int64_t now) {
  int64_t t = 1000;
  for (Listener* L : g_listeners) {
    if (L == nullptr || !L->used || L->idleMs == 0 || L->head == kNone) continue;
    int64_t due = g_sess[L->head].lastMs + L->idleMs - now;
    if (due < t) t = due;
  }
  // +1: the coarse clock must have passed the deadline when we wake.
  return t < 0 ? 0 : static_cast<int>(t) + 1;
}

// Ended sessions alone wake JS at most every kEndsDelayMs (or once
// kEndsBatch are waiting): they only settle counters and log lines, and a
// wake of the JS thread costs more than the records. New clients wake it at
// once (their datagrams wait for the decision), and take the ends along.
constexpr int64_t kEndsDelayMs = 10;
constexpr size_t kEndsBatch = 512;
int64_t g_endsSince = -1;  // MonoMs of the oldest record in g_ends, -1 when empty

// Engine thread, g_mu held: asks JS to pull what is waiting (one call in
// flight at most). Returns how long the loop may sleep before asking again.
int Notify(int64_t now) {
  if (g_ends.empty()) g_endsSince = -1;
  else if (g_endsSince < 0) g_endsSince = now;
  if (g_inflight || (g_news.empty() && g_ends.empty())) return 1000;
  if (g_news.empty() && g_ends.size() < kEndsBatch && now - g_endsSince < kEndsDelayMs) return static_cast<int>(g_endsSince + kEndsDelayMs - now) + 1;
  g_inflight = true;
  napi_status st = g_tsfn.NonBlockingCall([](Napi::Env env, Napi::Function fn) {
    {
      std::lock_guard<std::mutex> lock(g_mu);
      g_inflight = false;
    }
    if (env != nullptr && fn != nullptr) fn.Call({});
  });
  if (st != napi_ok) g_inflight = false;
  return 1000;
}

void Loop() {
  epoll_event evs[256];
  int timeout = 1000;
  for (;;) {
    int n = epoll_wait(g_ep, evs, 256, timeout);
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_stop) return;
    for (int i = 0; i < n; i++) {
      uint64_t tag = evs[i].data.u64;
      uint64_t kind = tag >> 62;
      uint32_t gen = static_cast<uint32_t>((tag >> 32) & kGenMask);
      uint32_t idx = static_cast<uint32_t>(tag & 0xffffffffu);
      if (kind == kTagWake) {
        uint64_t v;
        ssize_t r = read(g_efd, &v, sizeof v);
        (void)r;
      } else if (kind == kTagListener) {
        if (idx < g_listeners.size() && g_listeners[idx] != nullptr && g_listeners[idx]->used && !g_listeners[idx]->paused && g_listeners[idx]->gen == gen) OnListener(static_cast<uint16_t>(idx));
      } else {
        OnUpstream(idx, evs[i].events);
      }
    }
    int64_t now = MonoMs();
    Sweep(now);
    SweepPool(now);
    int wait = Notify(now);
    timeout = NextTimeout(now);
    if (wait < timeout) timeout = wait;
  }
}

void Wake() {
  if (g_efd < 0) return;
  uint64_t one = 1;
  ssize_t r = write(g_efd, &one, sizeof one);
  (void)r;
}

void Stop(void*) {
  if (!g_started || g_stop) return;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_stop = true;
  }
  Wake();
  if (g_thr.joinable()) g_thr.join();
  if (g_env != nullptr) g_tsfn.Abort();
  g_env = nullptr;
}

// process.exit() runs no env cleanup hook: the thread must be gone before
// the static containers it uses are destroyed.
void StopAtExit() {
  if (!g_started || g_stop) return;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_stop = true;
  }
  Wake();
  if (g_thr.joinable()) g_thr.join();
}

Napi::Value Err(Napi::Env env, int e) { return Napi::Number::New(env, -e); }

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
uint16_t PortOf(const Sa& a) { return ntohs(a.sa.sa_family == AF_INET ? a.v4.sin_port : a.v6.sin6_port); }

Listener* GetListener(uint32_t lid) {
  if (lid >= g_listeners.size()) return nullptr;
  Listener* L = g_listeners[lid];
  return L != nullptr && L->used ? L : nullptr;
}

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

bool SessionById(double idd, uint32_t& si) {
  uint64_t id = static_cast<uint64_t>(idd);
  si = static_cast<uint32_t>(id & 0xffffffffu);
  uint32_t gen = static_cast<uint32_t>(id >> 32);
  return si < g_sess.size() && g_sess[si].gen == gen && g_sess[si].state != kFree;
}

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
  struct Row {
    Sa client;
    uint32_t backend;
    int64_t started;
    uint64_t in, out;
  };
  std::vector<Row> rows;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    Listener* L = GetListener(info[0].As<Napi::Number>().Uint32Value());
    if (L != nullptr)
      for (uint32_t i = L->head; i != kNone; i = g_sess[i].next) {
        const Session& s = g_sess[i];
        rows.push_back(Row{s.client, s.backend, s.startedMs, s.bytesIn, s.bytesOut});
      }
  }
  Napi::Array a = Napi::Array::New(env, rows.size() * 6);
  uint32_t j = 0;
  for (const Row& r : rows) {
    a.Set(j++, Napi::String::New(env, AddrString(r.client)));
    a.Set(j++, Napi::Number::New(env, PortOf(r.client)));
    a.Set(j++, Napi::Number::New(env, r.backend));
    a.Set(j++, Napi::Number::New(env, static_cast<double>(r.started)));
    a.Set(j++, Napi::Number::New(env, static_cast<double>(r.in)));
    a.Set(j++, Napi::Number::New(env, static_cast<double>(r.out)));
  }
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

// ---- Upgrade (src/upgrade/, docs/upgrade.md): handing listeners and open
// sessions to a new process. All on the JS thread, under g_mu like every
// other call; the engine thread only sees the tables before or after.

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

// udpExport(listener) -> [client, port, backend, startedMs, bytesIn, bytesOut, fd, upstreamFamily(4|6), ...]:
// its open sessions leave the engine without an end record (out of the
// epoll set and the tables; their bytes leave the listener's live totals);
// `fd` is a dup (CLOEXEC) of each connected upstream socket, the caller's
// now (the engine closed its own). A session whose dup fails stays.
Napi::Value UdpExport(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct Row {
    Sa client;
    uint32_t backend;
    int64_t started;
    uint64_t in, out;
    int fd;
    int fam;
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
        rows.push_back(Row{s.client, s.backend, s.startedMs, s.bytesIn, s.bytesOut, fd, s.upFam == 1 ? 6 : 4});
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
  Napi::Array a = Napi::Array::New(env, rows.size() * 8);
  uint32_t j = 0;
  for (const Row& r : rows) {
    a.Set(j++, Napi::String::New(env, AddrString(r.client)));
    a.Set(j++, Napi::Number::New(env, PortOf(r.client)));
    a.Set(j++, Napi::Number::New(env, r.backend));
    a.Set(j++, Napi::Number::New(env, static_cast<double>(r.started)));
    a.Set(j++, Napi::Number::New(env, static_cast<double>(r.in)));
    a.Set(j++, Napi::Number::New(env, static_cast<double>(r.out)));
    a.Set(j++, Napi::Number::New(env, r.fd));
    a.Set(j++, Napi::Number::New(env, r.fam));
  }
  return a;
}

// udpImport(listener, clientFamily, clientAddr, clientPort, backendId, fd, startedMs, bytesIn, bytesOut) -> 0 | -errno
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
  epoll_event ev;
  ev.events = EPOLLIN;
  ev.data.u64 = Tag(kTagSession, 0, static_cast<uint32_t>(fd));
  if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int e = errno;
    close(fd);
    return Err(env, e);
  }
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

}  // namespace

void RegisterUdpEngine(Napi::Env env, Napi::Object exports) {
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
