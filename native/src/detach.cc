// Upgrade: the worker-thread half of detach(ids); see detach.h.
#include "detach.h"

#include <sys/epoll.h>

#include "pipes.h"

namespace l4lb {

namespace {

// Reads what a pipe holds (at most `n` bytes were put in) onto `out`.
void readPipe(int fd, size_t n, std::vector<char>& out) {
  size_t start = out.size();
  out.resize(start + n);
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, out.data() + start + got, n - got);
    if (r > 0) got += static_cast<size_t>(r);
    else if (r < 0 && errno == EINTR) continue;
    else break;
  }
  out.resize(start + got);
}

}  // namespace

void runDetach(Worker* w, Conn* c, const Cmd& cmd) {
  DetachResult& r = cmd.job->results[cmd.index];
  if (c != nullptr && !c->closed && c->state == S_SPLICING && c->deadReason < 0) {
    for (int i = 0; i < 2; i++) epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd[i], nullptr);
    if (c->headOff < c->head.size()) r.data[0].assign(c->head.begin() + static_cast<std::ptrdiff_t>(c->headOff), c->head.end());
    for (int d = 0; d < 2; d++) {
      if (c->pr[d] >= 0 && c->inpipe[d] > 0) readPipe(c->pr[d], c->inpipe[d], r.data[d]);
      releasePipe(c->pr[d], c->pw[d], c->pipecap[d], true);
      r.fd[d] = c->fd[d];
      c->fd[d] = -1;
      r.eof[d] = c->eof[d];
      r.bytes[d] = c->bytes[d];
    }
    r.first_eof = c->first_eof;
    r.ok = true;
    publish(c->slot, 0, c->bytes[0]);
    publish(c->slot, 1, c->bytes[1]);
    c->closed = true;  // events already collected for it are skipped
    w->conns.erase(c->id);
    w->graveyard.push_back(c);
  }
  std::lock_guard<std::mutex> g(cmd.job->mu);
  if (--cmd.job->pending == 0) cmd.job->cv.notify_all();
}

}  // namespace l4lb
