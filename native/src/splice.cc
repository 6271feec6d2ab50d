// The splice state machine of one connection: moves TCP bytes between its
// two sockets with splice(2) through a pipe per direction, inside the
// kernel, writes the head before any client byte, and passes FINs and
// resets on in order. Called by the connection's worker thread only
// (loop.cc's run(), the engine's connect path); every Conn field it
// touches is [worker] (loop.h). See ../README.md for the design (fd
// ownership, pipes, errors). Linux only.
#include "loop.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "pipes.h"

namespace l4lb {

// Moves bytes fd[d] -> pipe -> fd[1-d] until neither step moves.
// Returns 0 when idle (waits for an epoll edge), 1 when still busy after
// kMaxRounds (requeue), -1 when the connection was finished.
int Worker::pump(Conn* c, int d, bool shortReadDrains) {
  // Nothing can be delivered to a failed side: that direction is over.
  if (c->dead[1 - d]) return 0;
  // Client bytes follow the head: none before it is all written.
  if (d == 0 && c->headOff < c->head.size()) return 0;
  const int src = c->fd[d], dst = c->fd[1 - d];
  if (c->pr[d] < 0 && c->bulk[d]) {
    if (c->eof[d]) return 0;
    if (!takePipe(c, d)) return -1;
  }
  int r = pumpRounds(c, d, src, dst, shortReadDrains);
  if (r == 0 && c->inpipe[d] == 0 && c->pr[d] >= 0) releasePipe(c->pr[d], c->pw[d], c->pipecap[d], true);
  return r;
}

// A pipe for direction d; false (and the connection reset) when none can
// be had (out of fds: EMFILE/ENFILE), then it cannot be carried.
bool Worker::takePipe(Conn* c, int d) {
  if (setupPipe(c->pr[d], c->pw[d], c->pipecap[d]) != 0) {
    reset(c, R_ABORTED);
    return false;
  }
  c->inpipe[d] = 0;
  return true;
}

// The copying step of direction d (nothing in its pipe): one recv into
// copyBuf and one send of what it got. What the destination does not take
// at once goes into the pipe, and the splice path carries it on, in order,
// with everything read after it. Returns 2 when a read shorter than the
// buffer was all sent, 1 when something else happened (bytes, EOF, an
// error), 0 on EAGAIN, -1 when the connection was reset.
int Worker::copyIn(Conn* c, int d, int src, int dst) {
  ssize_t n = recv(src, copyBuf, kCopyBuf, MSG_DONTWAIT);
  if (n == 0) {
    if (c->first_eof < 0) c->first_eof = d;
    c->eof[d] = true;
    return 1;
  }
  if (n < 0) {
    if (errno == EINTR) return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    // The source failed (reset): what it sent before was delivered; reset after.
    c->eof[d] = true;
    markDead(c, d);
    return 1;
  }
  if (static_cast<size_t>(n) == kCopyBuf) c->bulk[d] = true;
  size_t len = static_cast<size_t>(n);
  size_t sent = 0;
  while (sent < len) {
    ssize_t m = send(dst, copyBuf + sent, len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (m > 0) {
      sent += static_cast<size_t>(m);
      continue;
    }
    if (m < 0 && errno == EINTR) continue;
    if (m < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      // The destination failed: these bytes cannot reach it (as when a splice out fails).
      c->bytes[d] += sent;
      markDead(c, 1 - d);
      return 1;
    }
    break;  // full: the rest waits in the pipe for EPOLLOUT
  }
  c->bytes[d] += sent;
  if (sent == len) return len < kCopyBuf ? 2 : 1;
  if (c->pr[d] < 0 && !takePipe(c, d)) return -1;
  // The pipe is empty and holds at least kCopyBuf bytes: one write takes the rest.
  size_t rest = len - sent;
  while (rest > 0) {
    ssize_t w = write(c->pw[d], copyBuf + (len - rest), rest);
    if (w > 0) {
      rest -= static_cast<size_t>(w);
      c->inpipe[d] += static_cast<size_t>(w);
    } else if (!(w < 0 && errno == EINTR)) {
      reset(c, R_ABORTED);  // cannot happen with an empty pipe of kCopyBuf or more
      return -1;
    }
  }
  return 1;
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

// `shortReadDrains`: no hang-up or error was reported with this event, so
// a TCP read shorter than its buffer emptied the socket (recv takes all
// that is queued) and anything arriving later raises a new edge: the
// direction stops there instead of spending a read on EAGAIN.
int Worker::pumpRounds(Conn* c, int d, int src, int dst, bool shortReadDrains) {
  for (int round = 0; round < kMaxRounds; round++) {
    bool moved = false;
    if (!c->eof[d] && !c->bulk[d] && c->inpipe[d] == 0) {
      int r = copyIn(c, d, src, dst);
      if (r < 0) return -1;
      if (r == 2 && shortReadDrains && !c->dead[d]) return 0;
      moved = r > 0;
      if (c->dead[1 - d]) return 0;
      if (c->bulk[d] && c->pr[d] < 0 && !takePipe(c, d)) return -1;
    } else if (!c->eof[d] && c->inpipe[d] < c->pipecap[d]) {
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
  bool hup[2];
  for (int d = 0; d < 2; d++) {
    want[d] = c->again[d] || (c->ev[d] & kIn) != 0 || ((c->ev[1 - d] & kOut) != 0 && c->inpipe[d] > 0);
    err[d] = (c->ev[d] & EPOLLERR) != 0;
    hup[d] = (c->ev[d] & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
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
      // A FIN or reset reported with the bytes must be read now: no later edge brings it.
      int r = pump(c, d, pass == 0 && !hup[d]);
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

}  // namespace l4lb
