// Shared by every file of the l4lb_splice addon: reasons, limits, small
// socket helpers, and the byte-counter slab. See ../README.md for the design.
#pragma once
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

namespace l4lb {

// R_CLOSED: FIN both ways, the client's first; R_CLOSED_BACKEND_FIRST: the backend's first.
enum Reason : int { R_CLOSED = 0, R_CLIENT_RESET = 1, R_BACKEND_RESET = 2, R_ABORTED = 3, R_CLOSED_BACKEND_FIRST = 4 };

constexpr int kMaxRounds = 16;        // splice rounds per direction before requeue
constexpr size_t kCopyBuf = 16384;    // a read this size or more makes a direction bulk (spliced)
constexpr int kWantPipe = 256 * 1024; // F_SETPIPE_SZ target; default kept on failure
constexpr int kMaxEvents = 256;
constexpr size_t kPipePoolMax = 256;  // empty pipes kept for reuse (2 fds each)
constexpr uint32_t kNoSlot = 0xffffffffu;

// The live byte counters shared with JS: [slot*2 + dir]. Allocated once by
// init() on the JS thread (never freed: JS holds an ArrayBuffer on it); each
// slot's two counters are written only by the worker thread that owns the
// connection holding the slot (atomic 64-bit stores), read by JS. JS owns
// slot allocation and reuses a slot only after the connection's completion
// report (or its refusal, before any write).
extern double* g_slab;
extern uint32_t g_slab_slots;  // JS thread writes once in init(), before any worker runs

inline void publish(uint32_t slot, int d, uint64_t v) {
  if (slot >= g_slab_slots) return;
  double x = static_cast<double>(v);
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  __atomic_store_n(reinterpret_cast<uint64_t*>(&g_slab[slot * 2 + d]), bits, __ATOMIC_RELAXED);
}

inline void closeFd(int& fd) {
  if (fd >= 0) {
    close(fd);
    fd = -1;
  }
}

inline void setLinger0(int fd) {
  struct linger l;
  l.l_onoff = 1;
  l.l_linger = 0;
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

// The socket's pending error, read and cleared (SO_ERROR); errno when it cannot be asked.
inline int sockError(int fd) {
  int e = 0;
  socklen_t len = sizeof e;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) return errno;
  return e;
}

}  // namespace l4lb
