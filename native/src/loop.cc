// The epoll worker threads: the loop (events, the ready list, timers, the
// graveyard), the command queue from the JS thread, handing a legacy add()
// connection to a worker, and a connection's end (close, report, free).
// What moves a connection's bytes is splice.cc; accept and connect are
// engine_tcp.cc. See ../README.md for the design. Linux only.
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
