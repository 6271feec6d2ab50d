// Upgrade: detach(ids) hands spliced connections back to JavaScript so that
// a new l4lb process can take them over (src/upgrade/). detach.cc holds the
// worker-thread half; napi.cc the JS call. The only hook on the data path is
// a C_DETACH command in Worker::drainCommands.
#pragma once
#include "loop.h"

#include <condition_variable>
#include <mutex>
#include <vector>

namespace l4lb {

// One connection's parts, filled by its worker thread.
struct DetachResult {
  bool ok = false;
  int fd[2] = {-1, -1};
  std::vector<char> data[2];  // [0] to the backend, [1] to the client
  bool eof[2] = {false, false};
  int first_eof = -1;
  uint64_t bytes[2] = {0, 0};
};

// Shared by the JS thread (waits) and the workers (fill one result each).
struct DetachJob {
  std::mutex mu;
  std::condition_variable cv;
  size_t pending = 0;                // [mu]
  std::vector<DetachResult> results; // sized by the JS thread before posting; entry i written by one worker
};

// Worker thread, between two epoll batches. A connection that is not
// splicing yet (engine: still connecting), already finished, or settling
// after a failure (its reset is being passed on) is not detached (ok =
// false): it ends here as it would have. Otherwise its sockets leave the
// epoll set, what sits in its pipes (read from one side, not yet written to
// the other) is read out after the unwritten rest of its head, and the two
// socket fds are returned open; nothing is shut down or reset. The Conn is
// freed without a completion report.
void runDetach(Worker* w, Conn* c, const Cmd& cmd);

}  // namespace l4lb
