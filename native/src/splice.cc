// l4lb_splice: moves TCP bytes between two sockets with splice(2), inside the
// kernel, on a small fixed pool of epoll threads. See ../README.md for the
// design (fd ownership, threads, pipes, errors). Linux only.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

// R_CLOSED: FIN both ways, the client's first; R_CLOSED_BACKEND_FIRST: the backend's first.
enum Reason : int { R_CLOSED = 0, R_CLIENT_RESET = 1, R_BACKEND_RESET = 2, R_ABORTED = 3, R_CLOSED_BACKEND_FIRST = 4 };

constexpr int kMaxRounds = 16;        // splice rounds per direction before requeue
constexpr int kWantPipe = 256 * 1024; // F_SETPIPE_SZ target; default kept on failure
constexpr int kMaxEvents = 256;
constexpr size_t kPipePoolMax = 256;  // empty pipes kept for reuse (2 fds each)

struct Worker;

// Thread ownership: the JS thread fills a Conn in add() (id, slot, fd,
// head) and publishes it under its worker's `mu` (adopt()). From then on
// only that worker thread reads or writes any field, until it frees the
// Conn (graveyard) after the completion report; JS refers to it by `id`
// only (abort() posts a command, it never touches the Conn).
struct Conn {
  uint32_t id = 0;
  uint32_t slot = 0;
  int fd[2] = {-1, -1};   // [0] client, [1] backend (our dup()s, owned here)
  int pr[2] = {-1, -1};   // pipe read end, per direction (0: client->backend)
  int pw[2] = {-1, -1};   // pipe write end
  size_t inpipe[2] = {0, 0};
  size_t pipecap[2] = {0, 0};
  bool eof[2] = {false, false};   // EOF read from fd[d]
  int first_eof = -1;             // the direction whose EOF came first (termination in the connection log)
  bool shut[2] = {false, false};  // shutdown(fd[1-d], SHUT_WR) done
  uint64_t bytes[2] = {0, 0};     // delivered to the destination
  uint32_t ev[2] = {0, 0};        // epoll events seen per side since the last service
  bool again[2] = {false, false}; // direction still busy after kMaxRounds: run it again
  // A side that failed (read or write error, or SO_ERROR after EPOLLERR).
  // The connection is not reset at once: what was already read from the
  // other side, and what the failed side had sent before its reset, is
  // delivered first; then both sides are reset (see settle()).
  bool dead[2] = {false, false};
  int deadReason = -1;            // reason of the first failure
  // Bytes the backend gets before any client byte (a PROXY header, a
  // ClientHello JS read to route by SNI), written by the worker: JS hands
  // them over with the sockets instead of writing them first. Not counted
  // in bytes[0] (JS counts them). Owned by the worker after add().
  std::vector<char> head;
  size_t headOff = 0;
  bool closed = false;
  bool pending = false;           // already in this round's service list
};

// ---- pipes: held only while bytes are in flight ----
// A direction takes a pipe when it has something to read and gives it back
// as soon as the pipe is empty again, into a bounded pool of empty pipes
// shared by the worker threads. Creating pipes (pipe2, F_SETPIPE_SZ) and
// closing them was a fifth of a short connection's cost, and an idle
// connection now holds two fds (its sockets), not six.
struct PipePair {
  int r, w;
  size_t cap;
};
std::mutex g_pool_mu;
std::vector<PipePair> g_pool;

struct Report {
  uint32_t id;
  int reason;
  uint64_t bytes0, bytes1;
};

struct DetachJob;  // upgrade: detach.h

struct Cmd {
  uint32_t id;  // abort this connection
  // Upgrade (detach.h): hand the connection back instead of aborting it.
  DetachJob* job = nullptr;
  size_t index = 0;
};

void runDetach(Worker* w, Conn* c, const Cmd& cmd);  // detach.h

// ---- process-wide state (one Node environment per process may use it) ----
// g_workers, g_tsfn*, g_env, g_active: JS thread only (set in Init, read in
// Add/Abort/Stats and the report callback, which runs on the JS thread).
// g_slab: each slot's two counters are written by the one worker that owns
// the connection (atomic 64-bit stores) and read by JS; JS owns slot
// allocation. g_pool (pipes): any worker, under g_pool_mu.
std::vector<Worker*> g_workers;
double* g_slab = nullptr;     // [slot*2 + dir] live byte counters, written by workers
uint32_t g_slab_slots = 0;
std::atomic<uint32_t> g_next_id{1};
Napi::ThreadSafeFunction g_tsfn;
bool g_tsfn_ok = false;
bool g_tsfn_ref = false;
napi_env g_env = nullptr;
int64_t g_active = 0;         // JS thread only: connections not yet reported

inline void publish(uint32_t slot, int d, uint64_t v) {
  if (slot >= g_slab_slots) return;
  double x = static_cast<double>(v);
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  __atomic_store_n(reinterpret_cast<uint64_t*>(&g_slab[slot * 2 + d]), bits, __ATOMIC_RELAXED);
}

void closeFd(int& fd) {
  if (fd >= 0) {
    close(fd);
    fd = -1;
  }
}

void setLinger0(int fd) {
  struct linger l;
  l.l_onoff = 1;
  l.l_linger = 0;
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

int setupPipe(int& r, int& w, size_t& cap) {
  {
    std::lock_guard<std::mutex> g(g_pool_mu);
    if (!g_pool.empty()) {
      PipePair p = g_pool.back();
      g_pool.pop_back();
      r = p.r;
      w = p.w;
      cap = p.cap;
      return 0;
    }
  }
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return errno;
  r = p[0];
  w = p[1];
  int sz = fcntl(w, F_SETPIPE_SZ, kWantPipe);
  if (sz < 0) sz = fcntl(w, F_GETPIPE_SZ);
  if (sz <= 0) sz = 65536;
  cap = static_cast<size_t>(sz);
  return 0;
}

// Gives a connection's pipe back: into the pool when it is known empty,
// closed otherwise (a reset can leave bytes in it).
void releasePipe(int& r, int& w, size_t cap, bool empty) {
  if (r < 0 || w < 0) {
    closeFd(r);
    closeFd(w);
    return;
  }
  if (empty) {
    std::lock_guard<std::mutex> g(g_pool_mu);
    if (g_pool.size() < kPipePoolMax) {
      g_pool.push_back(PipePair{r, w, cap});
      r = w = -1;
      return;
    }
  }
  closeFd(r);
  closeFd(w);
}

void drainPool() {
  std::lock_guard<std::mutex> g(g_pool_mu);
  for (PipePair& p : g_pool) {
    close(p.r);
    close(p.w);
  }
  g_pool.clear();
}

int sockError(int fd) {
  int e = 0;
  socklen_t len = sizeof e;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) return errno;
  return e;
}

// Thread ownership per field: `ep`, `efd` and `thr` are set by the JS
// thread before the worker starts and only read after; `mu` guards `cmds`
// and `incoming` (JS thread writes, worker takes); `quit` is atomic (set by
// the environment cleanup hook); `conns`, `ready` and `graveyard` belong to
// the worker thread alone. epoll_ctl(ADD) on `ep` is the one call the JS
// thread makes on a worker's epoll (under `mu`, see adopt()).
struct Worker {
  int ep = -1;
  int efd = -1;
  std::thread thr;
  std::mutex mu;
  std::vector<Cmd> cmds;        // [mu] abort requests from the JS thread
  std::vector<Conn*> incoming;  // [mu] added by the JS thread, taken into `conns` by this one
  std::atomic<bool> quit{false};
  std::unordered_map<uint32_t, Conn*> conns;  // [worker] live connections by id
  std::vector<Conn*> ready;     // [worker] busy connections requeued after kMaxRounds
  std::vector<Conn*> graveyard; // [worker] freed at the end of an epoll batch

  bool init() {
    ep = epoll_create1(EPOLL_CLOEXEC);
    efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ep < 0 || efd < 0) return false;
    struct epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;
    return epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0;
  }

  void post(const Cmd& c) {
    {
      std::lock_guard<std::mutex> g(mu);
      cmds.push_back(c);
    }
    uint64_t one = 1;
    ssize_t r = write(efd, &one, sizeof one);
    (void)r;
  }

  void report(Conn* c, int reason) {
    Report* r = new Report{c->id, reason, c->bytes[0], c->bytes[1]};
    bool sent = false;
    if (g_tsfn_ok) {
      napi_status st = g_tsfn.NonBlockingCall(r, [](Napi::Env env, Napi::Function fn, Report* rep) {
        if (env != nullptr && fn != nullptr) {
          g_active--;
          if (g_active <= 0 && g_tsfn_ref) {
            g_active = 0;
            g_tsfn.Unref(env);
            g_tsfn_ref = false;
          }
          fn.Call({Napi::Number::New(env, rep->id), Napi::Number::New(env, rep->reason),
                   Napi::Number::New(env, static_cast<double>(rep->bytes0)),
                   Napi::Number::New(env, static_cast<double>(rep->bytes1))});
        }
        delete rep;
      });
      sent = st == napi_ok;
    }
    if (!sent) delete r;
  }

  void finish(Conn* c, int reason) {
    if (c->closed) return;
    c->closed = true;
    for (int i = 0; i < 2; i++) {
      // Explicit DEL: close() alone would leave the registration (and this
      // Conn's pointer) alive while a forked child still holds the socket.
      if (c->fd[i] >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd[i], nullptr);
      closeFd(c->fd[i]);
      releasePipe(c->pr[i], c->pw[i], c->pipecap[i], c->inpipe[i] == 0);
    }
    publish(c->slot, 0, c->bytes[0]);
    publish(c->slot, 1, c->bytes[1]);
    conns.erase(c->id);
    report(c, reason);
    graveyard.push_back(c);
  }

  void reset(Conn* c, int reason) {
    if (c->closed) return;
    for (int i = 0; i < 2; i++)
      if (c->fd[i] >= 0) setLinger0(c->fd[i]);
    finish(c, reason);
  }

  // Moves bytes fd[d] -> pipe -> fd[1-d] until neither step moves.
  // Returns 0 when idle (waits for an epoll edge), 1 when still busy after
  // kMaxRounds (requeue), -1 when the connection was finished.
  int pump(Conn* c, int d) {
    // Nothing can be delivered to a failed side: that direction is over.
    if (c->dead[1 - d]) return 0;
    // Client bytes follow the head: none before it is all written.
    if (d == 0 && c->headOff < c->head.size()) return 0;
    const int src = c->fd[d], dst = c->fd[1 - d];
    if (c->pr[d] < 0) {
      if (c->eof[d]) return 0;
      if (setupPipe(c->pr[d], c->pw[d], c->pipecap[d]) != 0) {
        // Out of fds (EMFILE/ENFILE): this connection cannot be carried.
        reset(c, R_ABORTED);
        return -1;
      }
      c->inpipe[d] = 0;
    }
    int r = pumpRounds(c, d, src, dst);
    if (r == 0 && c->inpipe[d] == 0) releasePipe(c->pr[d], c->pw[d], c->pipecap[d], true);
    return r;
  }

  // Side `side` failed. Its reset is passed on once the bytes already read
  // are delivered (settle()). Reading from a side that failed on a write
  // still yields what it sent before its reset (the write consumed the
  // socket error, so the read then ends with EOF): run that direction.
  void markDead(Conn* c, int side) {
    if (c->dead[side]) return;
    c->dead[side] = true;
    if (c->deadReason < 0) c->deadReason = side == 0 ? R_CLIENT_RESET : R_BACKEND_RESET;
    if (!c->eof[side]) c->again[side] = true;
  }

  int pumpRounds(Conn* c, int d, int src, int dst) {
    for (int round = 0; round < kMaxRounds; round++) {
      bool moved = false;
      if (!c->eof[d] && c->inpipe[d] < c->pipecap[d]) {
        ssize_t n = splice(src, nullptr, c->pw[d], nullptr, c->pipecap[d] - c->inpipe[d],
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          c->inpipe[d] += static_cast<size_t>(n);
          moved = true;
        } else if (n == 0) {
          if (c->first_eof < 0) c->first_eof = d;
          c->eof[d] = true;
          moved = true;
        } else if (errno == EINTR) {
          moved = true;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
          // The source failed (reset): its earlier bytes were read in order
          // before the error; deliver what is in the pipe, then reset.
          c->eof[d] = true;
          markDead(c, d);
          moved = true;
        }
        // EAGAIN: socket empty, or the pipe is full (pages, not bytes): the
        // drain below decides; a full destination waits for EPOLLOUT.
      }
      if (c->inpipe[d] > 0) {
        ssize_t n = splice(c->pr[d], nullptr, dst, nullptr, c->inpipe[d], SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          c->inpipe[d] -= static_cast<size_t>(n);
          c->bytes[d] += static_cast<uint64_t>(n);
          moved = true;
        } else if (n < 0 && errno == EINTR) {
          moved = true;
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
          markDead(c, 1 - d);
          return 0;
        }
      }
      if (c->dead[d] && c->inpipe[d] == 0) return 0;  // settle() resets, no FIN
      if (c->eof[d] && c->inpipe[d] == 0 && !c->shut[d]) {
        shutdown(dst, SHUT_WR);
        c->shut[d] = true;
      }
      if (!moved) return 0;
    }
    return 1;
  }

  // Runs the directions that can have work: d when its source reported
  // input (or EOF, hang-up, error), when its destination became writable
  // while bytes wait in the pipe, or when it was still busy last time. A
  // direction whose source read EAGAIN into an empty pipe has nothing until
  // the next edge, so an event on one side no longer costs a splice on the
  // other (a request/response exchange is three splices per message).
  void service(Conn* c) {
    constexpr uint32_t kIn = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
    constexpr uint32_t kOut = EPOLLOUT | EPOLLHUP | EPOLLERR;
    bool want[2];
    bool err[2];
    for (int d = 0; d < 2; d++) {
      want[d] = c->again[d] || (c->ev[d] & kIn) != 0 || ((c->ev[1 - d] & kOut) != 0 && c->inpipe[d] > 0);
      err[d] = (c->ev[d] & EPOLLERR) != 0;
    }
    c->ev[0] = c->ev[1] = 0;
    if (c->headOff < c->head.size() && !c->dead[1]) {
      if (flushHead(c)) want[0] = true;  // the head is out: client bytes may follow
    }
    for (int pass = 0; pass < 2; pass++) {
      for (int d = 0; d < 2; d++) {
        if (!want[d]) continue;
        want[d] = false;
        c->again[d] = false;
        int r = pump(c, d);
        if (r < 0) return;
        if (r > 0) c->again[d] = true;
      }
      // A failure found in the first pass can leave the failed side's last
      // bytes unread (markDead asked for that direction): one more pass.
      for (int d = 0; d < 2; d++) want[d] = c->again[d] && c->dead[d] && !c->eof[d];
    }
    // EPOLLERR on a side whose reads are over (it half-closed earlier) is
    // not surfaced by a read: ask the socket. Only on EPOLLERR, so the
    // common path costs nothing.
    for (int d = 0; d < 2; d++)
      if (err[d] && c->eof[d] && !c->dead[d] && sockError(c->fd[d]) != 0) markDead(c, d);
    publish(c->slot, 0, c->bytes[0]);
    publish(c->slot, 1, c->bytes[1]);
    if (c->deadReason >= 0 && settled(c)) {
      reset(c, c->deadReason);
      return;
    }
    if (c->shut[0] && c->shut[1]) {
      finish(c, c->first_eof == 1 ? R_CLOSED_BACKEND_FIRST : R_CLOSED);
      return;
    }
    if (c->again[0] || c->again[1]) ready.push_back(c);
  }

  // Writes what is left of the head to the backend. Returns true when it
  // is all written (then frees it); false while the backend's buffer is
  // full (EPOLLOUT brings us back) or after a failure (markDead).
  bool flushHead(Conn* c) {
    while (c->headOff < c->head.size()) {
      ssize_t n = send(c->fd[1], c->head.data() + c->headOff, c->head.size() - c->headOff, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c->headOff += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return false;
      } else {
        markDead(c, 1);
        return false;
      }
    }
    std::vector<char>().swap(c->head);
    c->headOff = 0;
    return true;
  }

  // After a failure: true once every direction that can still deliver has
  // delivered all it read up to its source's end (EOF or error). A full
  // destination is woken by EPOLLOUT as usual; an abort (idle timeout,
  // drain deadline) still cuts a destination that never reads.
  static bool settled(const Conn* c) {
    for (int d = 0; d < 2; d++)
      if (!c->dead[1 - d] && !(c->eof[d] && c->inpipe[d] == 0)) return false;
    return true;
  }

  // JS thread: hands `c` to this worker by registering its sockets with the
  // worker's epoll directly; nothing wakes the worker (its first event
  // does). No service is needed at handoff either: EPOLL_CTL_ADD queues an
  // event at once for a socket that is already readable or hung up,
  // edge-triggered or not.
  //
  // Race: the first ADD can make an event of `c` visible to the worker
  // while this thread still has the second ADD to do; had the worker
  // serviced `c` then (a client reset finishes and frees it), this thread
  // would read a freed Conn and register a closed (perhaps reused) fd.
  // `mu` is held from before the first ADD until `c` is on `incoming`, and
  // the worker takes `mu` (takeIncoming) after every epoll_wait before it
  // handles any event: an event of `c` is therefore handled only after
  // both ADDs are done and `c` is in `conns`. Uncontended, the lock costs
  // no syscall. Returns false when an ADD failed (the caller then aborts
  // `c`, which is on `incoming` either way).
  bool adopt(Conn* c) {
    std::lock_guard<std::mutex> g(mu);
    bool ok = true;
    for (int i = 0; i < 2 && ok; i++) {
      struct epoll_event ev = {};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.u64 = reinterpret_cast<uint64_t>(c) | static_cast<uint64_t>(i + 1);
      ok = epoll_ctl(ep, EPOLL_CTL_ADD, c->fd[i], &ev) == 0;
    }
    incoming.push_back(c);
    return ok;
  }

  void takeIncoming() {
    std::lock_guard<std::mutex> g(mu);
    for (Conn* c : incoming) conns[c->id] = c;
    incoming.clear();
  }

  void drainCommands() {
    uint64_t v;
    ssize_t r = read(efd, &v, sizeof v);  // one read resets the counter
    (void)r;
    std::vector<Cmd> local;
    {
      std::lock_guard<std::mutex> g(mu);
      local.swap(cmds);
    }
    for (const Cmd& cmd : local) {
      auto it = conns.find(cmd.id);
      if (cmd.job != nullptr) runDetach(this, it != conns.end() ? it->second : nullptr, cmd);
      else if (it != conns.end()) reset(it->second, R_ABORTED);
    }
  }

  void run() {
    std::vector<struct epoll_event> evs(kMaxEvents);
    std::vector<Conn*> batch;
    while (!quit.load(std::memory_order_acquire)) {
      int n = epoll_wait(ep, evs.data(), kMaxEvents, ready.empty() ? -1 : 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      takeIncoming();
      batch.clear();
      for (Conn* c : ready) {
        if (!c->closed && !c->pending) {
          c->pending = true;
          batch.push_back(c);
        }
      }
      ready.clear();
      for (int i = 0; i < n; i++) {
        uint64_t tag = evs[i].data.u64;
        if (tag == 0) {
          drainCommands();
          continue;
        }
        Conn* c = reinterpret_cast<Conn*>(tag & ~static_cast<uint64_t>(7));
        int side = static_cast<int>(tag & 7) - 1;
        if (c->closed) continue;
        // EPOLLERR is not judged here: SO_ERROR would consume the socket's
        // error, and bytes that arrived before a reset must be read first
        // (a read returns them, then the error). service() handles it.
        c->ev[side] |= evs[i].events;
        if (!c->pending) {
          c->pending = true;
          batch.push_back(c);
        }
      }
      for (Conn* c : batch) {
        c->pending = false;
        if (!c->closed) service(c);
      }
      for (Conn* c : graveyard) delete c;
      graveyard.clear();
    }
    // Shutting down (environment teardown): close what is left.
    takeIncoming();
    drainCommands();
    for (auto& kv : conns) {
      Conn* c = kv.second;
      for (int i = 0; i < 2; i++) {
        closeFd(c->fd[i]);
        closeFd(c->pr[i]);
        closeFd(c->pw[i]);
      }
      delete c;
    }
    conns.clear();
    for (Conn* c : graveyard) delete c;
    graveyard.clear();
  }
};

void stopAll(void*) {
  for (Worker* w : g_workers) {
    w->quit.store(true, std::memory_order_release);
    uint64_t one = 1;
    ssize_t r = write(w->efd, &one, sizeof one);
    (void)r;
  }
  for (Worker* w : g_workers) {
    if (w->thr.joinable()) w->thr.join();
    close(w->ep);
    close(w->efd);
    delete w;
  }
  g_workers.clear();
  drainPool();
  if (g_tsfn_ok) {
    g_tsfn.Abort();
    g_tsfn_ok = false;
  }
  g_env = nullptr;
}

Napi::Value Throw(Napi::Env env, const char* msg) {
  Napi::Error::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

// init(onDone(id, reason, bytesIn, bytesOut), slots, threads) -> { slab: Float64Array, threads }
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_env != nullptr) return Throw(env, "l4lb_splice: already initialised in this process");
  if (info.Length() < 3 || !info[0].IsFunction() || !info[1].IsNumber() || !info[2].IsNumber())
    return Throw(env, "l4lb_splice: init(onDone, slots, threads)");
  uint32_t slots = info[1].As<Napi::Number>().Uint32Value();
  int threads = info[2].As<Napi::Number>().Int32Value();
  if (slots == 0 || slots > (1u << 22)) return Throw(env, "l4lb_splice: slots out of range");
  if (threads <= 0) {
    // CPUs this process may run on (taskset, cgroup cpusets), not the
    // machine's: two threads pinned to one CPU only add context switches.
    int cpus = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
    if (cpus <= 0) cpus = static_cast<int>(std::thread::hardware_concurrency());
    threads = std::min(2, std::max(1, cpus));
  }
  threads = std::min(threads, 64);
  if (g_slab == nullptr || g_slab_slots < slots) {
    // Never freed: the ArrayBuffer handed to JS points into it.
    g_slab = static_cast<double*>(calloc(static_cast<size_t>(slots) * 2, sizeof(double)));
    if (g_slab == nullptr) return Throw(env, "l4lb_splice: out of memory");
    g_slab_slots = slots;
  }
  g_tsfn = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "l4lb_splice", 0, 1);
  g_tsfn.Unref(env);
  g_tsfn_ok = true;
  g_tsfn_ref = false;
  g_active = 0;
  for (int i = 0; i < threads; i++) {
    Worker* w = new Worker();
    if (!w->init()) {
      delete w;
      stopAll(nullptr);
      return Throw(env, "l4lb_splice: epoll/eventfd setup failed");
    }
    g_workers.push_back(w);
    w->thr = std::thread([w] { w->run(); });
  }
  g_env = env;
  napi_add_env_cleanup_hook(env, stopAll, nullptr);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, g_slab, static_cast<size_t>(slots) * 2 * sizeof(double));
  Napi::Object out = Napi::Object::New(env);
  out.Set("slab", Napi::Float64Array::New(env, static_cast<size_t>(slots) * 2, ab, 0));
  out.Set("threads", Napi::Number::New(env, threads));
  return out;
}

// add(clientFd, backendFd, slot[, head]) -> id (> 0), or -errno when it could not start
// (head: bytes written to the backend before any client byte)
// (nothing was taken over then: the JS sockets are still the caller's).
Napi::Value Add(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_env == nullptr || g_workers.empty()) return Throw(env, "l4lb_splice: not initialised");
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber())
    return Throw(env, "l4lb_splice: add(clientFd, backendFd, slot[, head])");
  int fds[2] = {info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value()};
  uint32_t slot = info[2].As<Napi::Number>().Uint32Value();
  if (fds[0] < 0 || fds[1] < 0 || slot >= g_slab_slots) return Napi::Number::New(env, -EINVAL);
  Conn* c = new Conn();
  if (info.Length() >= 4 && info[3].IsBuffer()) {
    Napi::Buffer<char> h = info[3].As<Napi::Buffer<char>>();
    c->head.assign(h.Data(), h.Data() + h.Length());
  }
  int err = 0;
  for (int i = 0; i < 2 && err == 0; i++) {
    c->fd[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
    if (c->fd[i] < 0) err = errno;
  }
  // No O_NONBLOCK check: the dups share the file status flags of libuv's
  // sockets, which libuv always creates non-blocking (accept4/socket with
  // SOCK_NONBLOCK). JS hands over nothing else.
  if (err != 0) {
    // Pipes are taken later, by the worker: only the dups exist yet.
    for (int i = 0; i < 2; i++) closeFd(c->fd[i]);
    delete c;
    return Napi::Number::New(env, -err);
  }
  uint32_t id = g_next_id.fetch_add(1);
  if (id == 0) id = g_next_id.fetch_add(1);
  c->id = id;
  c->slot = slot;
  publish(slot, 0, 0);
  publish(slot, 1, 0);
  g_active++;
  if (!g_tsfn_ref) {
    g_tsfn.Ref(env);
    g_tsfn_ref = true;
  }
  Worker* w = g_workers[id % g_workers.size()];
  // An epoll registration that fails (ENOMEM, max_user_watches) resets the
  // connection: the report says 'aborted'.
  if (!w->adopt(c)) w->post(Cmd{id});
  return Napi::Number::New(env, id);
}

// abort(id): reset both sides; the completion report says 'aborted' unless
// the connection had already finished.
Napi::Value Abort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_workers.empty() || info.Length() < 1 || !info[0].IsNumber()) return env.Undefined();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  g_workers[id % g_workers.size()]->post(Cmd{id});
  return env.Undefined();
}

// stats() -> { active, threads, pooledPipes } (JS-thread view)
Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("active", Napi::Number::New(env, static_cast<double>(g_active)));
  o.Set("threads", Napi::Number::New(env, static_cast<double>(g_workers.size())));
  size_t pooled;
  {
    std::lock_guard<std::mutex> g(g_pool_mu);
    pooled = g_pool.size();
  }
  o.Set("pooledPipes", Napi::Number::New(env, static_cast<double>(pooled)));
  return o;
}

// tuneMalloc() -> true when applied. Once the main thread has been moved
// to a secondary glibc arena (V8's background threads contend for the main
// one), every freed 64 KiB read buffer at the top of that arena's heap was
// handed back to the kernel and faulted in again by the next read: the JS
// pump fell from ~9 to ~2 Gbit/s with 4x the CPU per GB, all of it page
// faults. A trim threshold above the 64 MiB arena heap size stops that
// churn. An operator's MALLOC_TRIM_THRESHOLD_ / MALLOC_TOP_PAD_ wins.
Napi::Value TuneMalloc(const Napi::CallbackInfo& info) {
  bool applied = false;
#ifdef __GLIBC__
  if (getenv("MALLOC_TRIM_THRESHOLD_") == nullptr && getenv("MALLOC_TOP_PAD_") == nullptr)
    applied = mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024) == 1;
#endif
  return Napi::Boolean::New(info.Env(), applied);
}

// socketError(fd) -> the socket's pending error (errno, 0 for none), read
// and cleared with SO_ERROR; -errno when the fd cannot be asked. The JS
// pump asks once, at a peer's EOF: libuv reports a reset that arrives with
// the last bytes as EOF (a short read plus EPOLLHUP), and a reset must be
// passed on as a reset.
Napi::Value SocketError(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return Napi::Number::New(env, -EINVAL);
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd < 0) return Napi::Number::New(env, -EBADF);
  int e = 0;
  socklen_t len = sizeof e;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) return Napi::Number::New(env, -errno);
  return Napi::Number::New(env, e);
}

#include "detach.h"

Napi::Object ModuleInit(Napi::Env env, Napi::Object exports) {
  exports.Set("detach", Napi::Function::New(env, Detach, "detach"));
  exports.Set("socketError", Napi::Function::New(env, SocketError, "socketError"));
  exports.Set("tuneMalloc", Napi::Function::New(env, TuneMalloc, "tuneMalloc"));
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("add", Napi::Function::New(env, Add, "add"));
  exports.Set("abort", Napi::Function::New(env, Abort, "abort"));
  exports.Set("stats", Napi::Function::New(env, Stats, "stats"));
  exports.Set("reasons", [&] {
    Napi::Array a = Napi::Array::New(env, 4);
    a.Set(0u, "closed");
    a.Set(1u, "client_reset");
    a.Set(2u, "backend_reset");
    a.Set(3u, "aborted");
    return a;
  }());
  return exports;
}

}  // namespace

NODE_API_MODULE(l4lb_splice, ModuleInit)
