// The native UDP engine (see udp_engine.h): the epoll thread. Datagrams
// of listeners (recvmmsg, new clients held for JS) and of upstream sockets
// (replies, sendmmsg from the listening socket), the idle sweep, waking JS.
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

// The engine thread's buffers (g_rbuf: allocated by udpInit); engine thread only.
char* g_rbuf = nullptr;
namespace {
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
}  // namespace

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

}  // namespace l4lb_udp
