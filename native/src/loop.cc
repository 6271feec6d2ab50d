// The epoll worker threads and the splice state machine: moves TCP bytes
// between two sockets with splice(2), inside the kernel. See ../README.md
// for the design (fd ownership, threads, pipes, errors). Linux only.
#include "loop.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>

#include "detach.h"
#include "pipes.h"

namespace l4lb {

std::vector<Worker*> g_workers;

Worker* workerOf(uint64_t id) { return g_workers[id % g_workers.size()]; }

int64_t nowUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

int64_t nowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool Worker::init() {
  ep = epoll_create1(EPOLL_CLOEXEC);
  efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ep < 0 || efd < 0) return false;
  struct epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  return epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0;
}

uint64_t Worker::nextId() {
  return (seq.fetch_add(1, std::memory_order_relaxed) + 1) * g_workers.size() + static_cast<uint64_t>(index);
}

// JS thread: queues a command. The eventfd is written only when the queue
// was empty: the answers JS gives in one callback cost one wake-up.
void Worker::post(Cmd&& c) {
  bool wake;
  {
    std::lock_guard<std::mutex> g(mu);
    wake = cmds.empty();
    cmds.push_back(std::move(c));
  }
  if (wake) {
    uint64_t one = 1;
    ssize_t r = write(efd, &one, sizeof one);
    (void)r;
  }
}

void Worker::report(Conn* c, int reason) {
  Event e = {};
  e.kind = EV_DONE;
  e.engine = c->engine;
  e.listener = c->listener;
  e.id = c->id;
  e.code = reason;
  e.b0 = c->bytes[0];
  e.b1 = c->bytes[1];
  outbox.push_back(e);
}

void Worker::finish(Conn* c, int reason) {
  if (c->closed) return;
  c->closed = true;
  for (int i = 0; i < 2; i++) {
    // No EPOLL_CTL_DEL: close() of the last reference removes the
    // registration; one a forked child keeps alive carries an id that is
    // gone (connTag), so its events are ignored. Two syscalls less.
    closeFd(c->fd[i]);
    releasePipe(c->pr[i], c->pw[i], c->pipecap[i], c->inpipe[i] == 0);
  }
  publish(c->slot, 0, c->bytes[0]);
  publish(c->slot, 1, c->bytes[1]);
  conns.erase(c->id);
  report(c, reason);
  graveyard.push_back(c);
}

void Worker::reset(Conn* c, int reason) {
  if (c->closed) return;
  for (int i = 0; i < 2; i++)
    if (c->fd[i] >= 0) setLinger0(c->fd[i]);
  finish(c, reason);
}

// Moves bytes fd[d] -> pipe -> fd[1-d] until neither step moves.
// Returns 0 when idle (waits for an epoll edge), 1 when still busy after
// kMaxRounds (requeue), -1 when the connection was finished.
int Worker::pump(Conn* c, int d) {
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
// are delivered (settled()). Reading from a side that failed on a write
// still yields what it sent before its reset (the write consumed the
// socket error, so the read then ends with EOF): run that direction.
void Worker::markDead(Conn* c, int side) {
  if (c->dead[side]) return;
  c->dead[side] = true;
  if (c->deadReason < 0) c->deadReason = side == 0 ? R_CLIENT_RESET : R_BACKEND_RESET;
  if (!c->eof[side]) c->again[side] = true;
}

int Worker::pumpRounds(Conn* c, int d, int src, int dst) {
  for (int round = 0; round < kMaxRounds; round++) {
    bool moved = false;
    if (!c->eof[d] && c->inpipe[d] < c->pipecap[d]) {
      ssize_t n = splice(src, nullptr, c->pw[d], nullptr, c->pipecap[d] - c->inpipe[d], SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
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
    if (c->dead[d]) {
      // The source failed: settled() resets, no FIN. Its bytes are read to
      // their end first: a side marked failed before its last read (a
      // write to it failed, or its connect completed with the reset
      // already consumed) still yields what it sent, then EOF.
      if (!moved || (c->eof[d] && c->inpipe[d] == 0)) return 0;
      continue;
    }
    if (c->eof[d] && c->inpipe[d] == 0 && !c->shut[d]) {
      // The second FIN is sent by the close() that follows at once (both
      // sources are at EOF, so nothing unread turns it into a reset).
      if (!c->shut[1 - d]) shutdown(dst, SHUT_WR);
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
void Worker::service(Conn* c) {
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
bool Worker::flushHead(Conn* c) {
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
bool Worker::settled(const Conn* c) {
  for (int d = 0; d < 2; d++)
    if (!c->dead[1 - d] && !(c->eof[d] && c->inpipe[d] == 0)) return false;
  return true;
}

// JS thread: hands `c` (a legacy add()) to this worker by registering its
// sockets with the worker's epoll directly; nothing wakes the worker (its
// first event does). No service is needed at handoff either:
// EPOLL_CTL_ADD queues an event at once for a socket that is already
// readable or hung up, edge-triggered or not.
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
bool Worker::adopt(Conn* c) {
  std::lock_guard<std::mutex> g(mu);
  bool ok = true;
  for (int i = 0; i < 2 && ok; i++) {
    struct epoll_event ev = {};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = connTag(c->id, i);
    ok = epoll_ctl(ep, EPOLL_CTL_ADD, c->fd[i], &ev) == 0;
  }
  incoming.push_back(c);
  return ok;
}

void Worker::takeIncoming() {
  std::lock_guard<std::mutex> g(mu);
  for (Conn* c : incoming) conns[c->id] = c;
  incoming.clear();
}

void Worker::drainCommands() {
  uint64_t v;
  ssize_t r = read(efd, &v, sizeof v);  // one read resets the counter
  (void)r;
  std::vector<Cmd> local;
  {
    std::lock_guard<std::mutex> g(mu);
    local.swap(cmds);
  }
  for (Cmd& cmd : local) {
    if (cmd.kind == C_UNLISTEN) {
      unlisten(cmd.listener);
      continue;
    }
    if (cmd.kind == C_DETACH) {
      auto d = conns.find(cmd.id);
      runDetach(this, d == conns.end() ? nullptr : d->second, cmd);
      continue;
    }
    auto it = conns.find(cmd.id);
    if (it == conns.end()) continue;
    Conn* c = it->second;
    if (c->closed) continue;
    switch (cmd.kind) {
      case C_ABORT:
        reset(c, R_ABORTED);
        break;
      case C_CONNECT:
        connectBackend(c, cmd);
        break;
      case C_REFUSE:
        refuse(c);
        break;
      default:
        break;
    }
  }
}

void Worker::flushOutbox() {
  if (outbox.empty()) return;
  std::vector<Event>* batch = new std::vector<Event>();
  batch->swap(outbox);
  sendEvents(batch);
}

void Worker::run() {
  std::vector<struct epoll_event> evs(kMaxEvents);
  std::vector<Conn*> batch;
  while (!quit.load(std::memory_order_acquire)) {
    int n = epoll_wait(ep, evs.data(), kMaxEvents, ready.empty() ? timeoutMs() : 0);
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
      if ((tag & 3) == 3) {
        onListenerReady(reinterpret_cast<Listener*>(tag & ~static_cast<uint64_t>(7)));
        continue;
      }
      auto it = conns.find(tag >> 2);
      if (it == conns.end()) continue;  // an event of a connection that ended
      Conn* c = it->second;
      int side = static_cast<int>(tag & 3) - 1;
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
      if (c->closed) continue;
      if (c->state == S_SPLICING) service(c);
      else onEngineEvent(c);
    }
    if (!timers.empty()) runTimers();
    for (Conn* c : graveyard) delete c;
    graveyard.clear();
    flushOutbox();
  }
  // Shutting down (environment teardown): close what is left.
  takeIncoming();
  {
    std::lock_guard<std::mutex> g(mu);
    cmds.clear();
  }
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
  outbox.clear();
}

}  // namespace l4lb
