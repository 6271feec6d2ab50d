// The pipe pool: a direction of a spliced connection holds a pipe only while
// bytes are in flight, then gives it back here (see ../README.md, "pipes").
#pragma once
#include <cstddef>

namespace l4lb {

// Takes an empty pipe from the pool, or creates one (pipe2, F_SETPIPE_SZ).
// Returns 0, or errno (EMFILE/ENFILE) when no pipe can be had. Any thread.
int setupPipe(int& r, int& w, size_t& cap);
// Gives a pipe back: into the pool when known empty, closed otherwise. Any thread.
void releasePipe(int& r, int& w, size_t cap, bool empty);
// Closes every pooled pipe (environment teardown, after the workers stopped).
void drainPool();
// Empty pipes pooled now.
size_t pooledPipes();

}  // namespace l4lb
