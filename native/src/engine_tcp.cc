// The native TCP engine, its worker-thread half (the JS calls are
// engine_tcp_napi.cc). A listening socket bound by node:net is dup()ed
// into the engine and registered in every worker's epoll (EPOLLEXCLUSIVE);
// a worker accepts in batches (accept4 SOCK_NONBLOCK|SOCK_CLOEXEC), registers
// the client socket at once (edge-triggered, the events are kept until it
// splices) and reports compact records to JS. JS decides (ACL, limits, pick)
// and answers: refuse, or connect to a backend. The worker connects
// non-blocking, enforces connect_timeout with its timer heap (epoll_wait's
// timeout), reports success or the errno, and on success the connection
// enters the splice loop (loop.cc, splice.cc) with no further handoff.
#include "engine_tcp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include <algorithm>
#include <climits>

#include "loop.h"

namespace l4lb {

constexpr int kAcceptBatch = 64;        // accepts per wake-up per worker
constexpr int kAcceptPauseMs = 100;     // a listener waits this long after EMFILE/ENFILE/ENOBUFS
constexpr int kKeepIdleS = 60;          // as node:net's keepAlive (keepAliveInitialDelay 60 s)
constexpr int kKeepIntvlS = 1;          // libuv's keepalive interval and count
constexpr int kKeepCnt = 10;
// A backend socket gets its keepalive options when its connection is this
// old: a short connection never pays those four setsockopt calls, and the
// first probe of a long one comes at most this much later (60 s idle).
constexpr int kKeepAliveAfterMs = 1000;

// The socket options node:net sets on both sockets of a connection
// (noDelay, keepAlive with a 60 s initial delay; libuv adds interval 1 s,
// 10 probes). Set once on a listening socket, they are inherited by every
// accepted one; a backend socket gets them one by one.
void setNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void setKeepAlive(int fd) {
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  int v = kKeepIdleS;
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof v);
  v = kKeepIntvlS;
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof v);
  v = kKeepCnt;
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof v);
}

static void formatAddr(const struct sockaddr_storage& ss, char* out, uint16_t& port) {
  out[0] = '\0';
  port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const struct sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, out, 46);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const struct sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, out, 46);
    port = ntohs(a->sin6_port);
  }
}

// From the JS thread (`fromJs`), the ADD is made under the worker's `mu`,
// which the worker takes after every epoll_wait (takeIncoming) before it
// handles an event: the Listener's fields, written before, are visible to
// it (the same rule as adopt()).
bool registerListener(Worker* w, Listener* l, bool fromJs) {
  std::unique_lock<std::mutex> g(w->mu, std::defer_lock);
  if (fromJs) g.lock();
  struct epoll_event ev = {};
  // Level-triggered, one waiter woken per connection across every epoll
  // instance that holds the socket (this process's workers and the other
  // l4lb worker processes sharing it).
  ev.events = EPOLLIN | EPOLLEXCLUSIVE;
  ev.data.u64 = reinterpret_cast<uint64_t>(l) | 3u;
  return epoll_ctl(w->ep, EPOLL_CTL_ADD, l->fd, &ev) == 0;
}

// The fd reserve (SPEC §8.6, src/net/fd-budget.ts): the engine accepts on
// its own threads, ahead of the JS budget, so it keeps the reserve itself.
// The kernel hands out the lowest free fd, so an accepted fd at or above
// limit - reserve means every fd below it is open: the process is into the
// reserve that health probes, the admin endpoint and backend connects need.
// Such a connection is closed at once and counted as refused (`resources`),
// exactly as the JS budget refuses. The soft limit (`prlimit` can change it
// at run time) is re-read at most every 100 ms, and always before a
// connection is shed. The reserve is fd-budget.ts's: 1/16 of the limit, at
// least 32, at most 1024.
int Worker::fdCeilingNow(bool fresh) {
  int64_t now = nowMs();
  if (fresh || ceilingAt < 0 || now - ceilingAt >= 100) {
    ceilingAt = now;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > static_cast<rlim_t>(INT_MAX)) {
      fdCeiling = INT_MAX;
    } else {
      int64_t limit = static_cast<int64_t>(rl.rlim_cur);
      int64_t reserve = std::min<int64_t>(1024, std::max<int64_t>(32, limit / 16));
      fdCeiling = static_cast<int>(std::max<int64_t>(0, limit - reserve));
    }
  }
  return fdCeiling;
}

void Worker::onListenerReady(Listener* l) {
  if (l->closing.load(std::memory_order_acquire)) return;
  int shed = 0;
  int ceiling = fdCeilingNow(false);
  bool fresh = false;
  for (int i = 0; i < kAcceptBatch; i++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(l->fd, reinterpret_cast<struct sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= ceiling && fd >= 0 && !fresh) {
      // Never shed on a limit read earlier (it may have been raised since).
      ceiling = fdCeilingNow(true);
      fresh = true;
    }
    if (fd >= ceiling && fd >= 0) {
      close(fd);
      shed++;
      continue;
    }
    if (fd < 0) {
      int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK) break;
      if (e == EINTR || e == ECONNABORTED || e == EPROTO) continue;
      if (e == EINVAL) {
        // Not listening any more (another l4lb process shut the shared
        // socket down while stopping): stop polling it here.
        epoll_ctl(ep, EPOLL_CTL_DEL, l->fd, nullptr);
        break;
      }
      reportListener(EV_ACCEPT_ERROR, l->id, e);
      if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        // Level-triggered: the queue would wake us again at once. Step
        // aside for a moment; the clients wait in the backlog meanwhile.
        epoll_ctl(ep, EPOLL_CTL_DEL, l->fd, nullptr);
        timers.push(Timer{nowMs() + kAcceptPauseMs, 0, 0, l, T_LISTEN});
      }
      break;
    }
    Conn* c = new Conn();
    c->engine = true;
    c->state = S_PENDING;
    c->listener = l->id;
    c->fd[0] = fd;
    c->id = nextId();
    Event ev = {};
    ev.kind = EV_ACCEPT;
    ev.engine = true;
    ev.listener = l->id;
    ev.id = c->id;
    formatAddr(ss, ev.src, ev.sport);
    if (l->wildcard) {
      struct sockaddr_storage ls;
      socklen_t ll = sizeof ls;
      if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&ls), &ll) == 0) formatAddr(ls, ev.dst, ev.dport);
    }
    // Registered now: the client's events (bytes, FIN, reset) are kept in
    // c->ev until the backend is connected and the splice loop runs.
    struct epoll_event pe = {};
    pe.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    pe.data.u64 = connTag(c->id, 0);
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &pe) != 0) {
      // ENOMEM / max_user_watches: report it as a failed accept.
      int e = errno;
      close(fd);
      delete c;
      reportListener(EV_ACCEPT_ERROR, l->id, e);
      break;
    }
    c->acceptedUs = nowUs();
    conns[c->id] = c;
    outbox.push_back(ev);
  }
  if (shed > 0) reportListener(EV_SHED, l->id, shed);
}

// A listener's report: an accept error (errno) or how many were shed.
void Worker::reportListener(EventKind kind, uint32_t listener, int code) {
  Event ev = {};
  ev.kind = kind;
  ev.engine = true;
  ev.listener = listener;
  ev.code = code;
  outbox.push_back(ev);
}

// An event of a connection that does not splice yet. Pending: the client's
// events are only kept (c->ev[0]). Connecting: the backend side decides.
void Worker::onEngineEvent(Conn* c) {
  if (c->state != S_CONNECTING) return;
  uint32_t e = c->ev[1];
  if (e == 0) return;
  if ((e & (EPOLLERR | EPOLLHUP)) != 0) {
    int err = sockError(c->fd[1]);
    if (err == ECONNRESET || err == EPIPE) {
      // The backend accepted, then reset (perhaps after writing): it is
      // connected; what it wrote reaches the client, then its reset.
      // (SO_ERROR consumed the error: the read then ends in EOF.)
      connected(c);
      if (c->closed) return;
      markDead(c, 1);
      c->ev[1] |= EPOLLIN;
      service(c);
      return;
    }
    connectFailed(c, err != 0 ? err : ECONNREFUSED);
    return;
  }
  if ((e & EPOLLOUT) != 0) {
    connected(c);
    if (!c->closed) service(c);
  }
}

// Reported with its times (µs from accept, µs of this attempt), measured
// here: connect_ms and the connect-time histogram do not include the hop
// to JS.
void Worker::connected(Conn* c) {
  c->state = S_SPLICING;
  c->attempt++;  // its timer is stale now
  int64_t now = nowUs();
  Event ev = {};
  ev.kind = EV_CONNECTED;
  ev.engine = true;
  ev.listener = c->listener;
  ev.id = c->id;
  ev.b0 = static_cast<uint64_t>(now - c->acceptedUs);
  ev.b1 = static_cast<uint64_t>(now - c->attemptUs);
  outbox.push_back(ev);
}

void Worker::connectFailed(Conn* c, int err) {
  if (c->fd[1] >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd[1], nullptr);
  closeFd(c->fd[1]);
  c->state = S_PENDING;
  c->attempt++;
  c->ev[1] = 0;
  std::vector<char>().swap(c->head);
  c->headOff = 0;
  Event ev = {};
  ev.kind = EV_CONNECT_FAILED;
  ev.engine = true;
  ev.listener = c->listener;
  ev.id = c->id;
  ev.code = err;
  outbox.push_back(ev);
}

void Worker::connectBackend(Conn* c, Cmd& cmd) {
  if (c->state != S_PENDING) return;
  // The client reset (or failed) while JS decided: no backend connection
  // is made for it; reported as a client reset.
  if ((c->ev[0] & (EPOLLERR | EPOLLHUP)) != 0) {
    reset(c, R_CLIENT_RESET);
    return;
  }
  int fd = socket(cmd.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    connectFailed(c, errno);
    return;
  }
  setNoDelay(fd);  // before any byte; keepalive follows (T_KEEPALIVE)
  c->attemptUs = nowUs();
  int r = connect(fd, reinterpret_cast<struct sockaddr*>(&cmd.addr), cmd.addrLen);
  if (r != 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    connectFailed(c, e);
    return;
  }
  c->fd[1] = fd;
  c->slot = cmd.slot;
  publish(c->slot, 0, 0);
  publish(c->slot, 1, 0);
  c->head.swap(cmd.head);
  c->headOff = 0;
  c->state = S_CONNECTING;
  c->attempt++;
  struct epoll_event pe = {};
  pe.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  pe.data.u64 = connTag(c->id, 1);
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &pe) != 0) {
    int e = errno;
    connectFailed(c, e);  // closes fd[1]; ENOMEM is local, never the backend's fault
    return;
  }
  int64_t now = nowMs();
  if (cmd.timeoutMs > 0) timers.push(Timer{now + cmd.timeoutMs, c->id, c->attempt, nullptr, T_CONNECT});
  timers.push(Timer{now + kKeepAliveAfterMs, c->id, c->attempt, nullptr, T_KEEPALIVE});
  // r == 0 (connected at once) still gets its EPOLLOUT edge from the ADD.
}

void Worker::refuse(Conn* c) {
  if (c->closed) return;
  c->closed = true;
  for (int i = 0; i < 2; i++) closeFd(c->fd[i]);  // no DEL needed (see finish())
  conns.erase(c->id);
  graveyard.push_back(c);  // no report: JS already forgot it
}

void Worker::unlisten(Listener* l) {
  epoll_ctl(ep, EPOLL_CTL_DEL, l->fd, nullptr);  // ENOENT when paused: fine
  if (l->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    close(l->fd);
    l->fd = -1;
  }
}

// A connect deadline whose connection connected, failed or ended is stale:
// dropped as soon as it is at the top, so it never wakes the loop (with
// one connect_timeout per listener, deadlines come in order and nearly all
// are stale by the time they reach the top).
bool Worker::staleTimer(const Timer& t) {
  if (t.kind == T_LISTEN) return false;
  auto it = conns.find(t.id);
  if (it == conns.end() || it->second->closed) return true;
  const Conn* c = it->second;
  if (t.kind == T_KEEPALIVE) return c->fd[1] < 0;  // any backend socket it has now
  return c->state != S_CONNECTING || c->attempt != t.attempt;
}

int Worker::timeoutMs() {
  while (!timers.empty() && staleTimer(timers.top())) timers.pop();
  if (timers.empty()) return -1;
  int64_t d = timers.top().at - nowMs();
  if (d <= 0) return 0;
  return d > 60000 ? 60000 : static_cast<int>(d);
}

void Worker::runTimers() {
  int64_t now = nowMs();
  while (!timers.empty() && timers.top().at <= now) {
    Timer t = timers.top();
    timers.pop();
    if (t.kind == T_LISTEN) {
      // A paused listener: accept again (unless it was removed meanwhile;
      // `closing` is set before any worker can close its fd).
      if (!t.listener->closing.load(std::memory_order_acquire)) registerListener(this, t.listener, false);
      continue;
    }
    if (staleTimer(t)) continue;
    if (t.kind == T_KEEPALIVE) setKeepAlive(conns[t.id]->fd[1]);
    else connectFailed(conns[t.id], ETIMEDOUT);
  }
}

}  // namespace l4lb
