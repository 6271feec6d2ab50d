// ---- pipes: held only while bytes are in flight ----
// A direction takes a pipe when it has something to read and gives it back
// as soon as the pipe is empty again, into a bounded pool of empty pipes
// shared by the worker threads. Creating pipes (pipe2, F_SETPIPE_SZ) and
// closing them was a fifth of a short connection's cost, and an idle
// connection now holds two fds (its sockets), not six.
#include "pipes.h"

#include <fcntl.h>

#include <mutex>
#include <vector>

#include "common.h"

namespace l4lb {
namespace {

struct PipePair {
  int r, w;
  size_t cap;
};
std::mutex g_pool_mu;             // guards g_pool
std::vector<PipePair> g_pool;     // [g_pool_mu] empty pipes, any worker thread

}  // namespace

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

size_t pooledPipes() {
  std::lock_guard<std::mutex> g(g_pool_mu);
  return g_pool.size();
}

}  // namespace l4lb
