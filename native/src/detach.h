// l4lb_splice, upgrade: detach(ids) hands spliced connections back to
// JavaScript so that a new l4lb process can take them over (src/upgrade/).
// Included by splice.cc inside its anonymous namespace, after Worker: it
// uses Worker, Conn and the pipe helpers, and adds nothing to the data path
// (a Cmd with `job` set is the only hook, in Worker::drainCommands).
//
// Each connection is stopped on its own worker thread, between two epoll
// batches: its sockets leave the epoll set, whatever sits in its pipes (read
// from one side, not yet written to the other) is read out, and the
// unwritten rest of its head goes first. The two socket fds (the addon's
// dups) are returned open; nothing is shut down or reset. The Conn is freed
// without a completion report.
// (<chrono> and <condition_variable> are included by splice.cc, at file scope.)

struct DetachResult {
  bool ok = false;
  int fd[2] = {-1, -1};
  std::vector<char> data[2];  // [0] to the backend, [1] to the client
  bool eof[2] = {false, false};
  int first_eof = -1;
  uint64_t bytes[2] = {0, 0};
};

struct DetachJob {
  std::mutex mu;
  std::condition_variable cv;
  size_t pending = 0;
  std::vector<DetachResult> results;
};

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

// Worker thread. A connection that already finished, or is settling after a
// failure (its reset is being passed on), is not detached (ok = false): it
// ends here as it would have.
void runDetach(Worker* w, Conn* c, const Cmd& cmd) {
  DetachResult& r = cmd.job->results[cmd.index];
  if (c != nullptr && !c->closed && c->deadReason < 0) {
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

// detach(ids: number[]) -> [{ ok, clientFd, backendFd, toBackend, toClient,
//   clientEof, backendEof, firstFin, bytesIn, bytesOut }] in the order of
// `ids`. JS thread; waits (bounded, 5 s) for the workers, which never block.
Napi::Value Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_env == nullptr || g_workers.empty()) return Throw(env, "l4lb_splice: not initialised");
  if (info.Length() < 1 || !info[0].IsArray()) return Throw(env, "l4lb_splice: detach(ids)");
  Napi::Array ids = info[0].As<Napi::Array>();
  const size_t n = ids.Length();
  DetachJob* job = new DetachJob();
  job->results.resize(n);
  job->pending = n;
  std::vector<uint32_t> idv(n);
  for (size_t i = 0; i < n; i++) {
    Napi::Value v = ids.Get(static_cast<uint32_t>(i));
    idv[i] = v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : 0;
  }
  for (size_t i = 0; i < n; i++) {
    Cmd c{idv[i]};
    c.job = job;
    c.index = i;
    g_workers[idv[i] % g_workers.size()]->post(c);
  }
  bool done;
  {
    std::unique_lock<std::mutex> lk(job->mu);
    done = job->cv.wait_for(lk, std::chrono::seconds(5), [job] { return job->pending == 0; });
  }
  // Not done in time (a stalled worker): the job stays allocated, since a
  // worker may still write to it; nothing was handed back.
  if (!done) return Throw(env, "l4lb_splice: detach timed out");
  Napi::Array out = Napi::Array::New(env, n);
  for (size_t i = 0; i < n; i++) {
    DetachResult& r = job->results[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("ok", Napi::Boolean::New(env, r.ok));
    if (r.ok) {
      g_active--;
      o.Set("clientFd", Napi::Number::New(env, r.fd[0]));
      o.Set("backendFd", Napi::Number::New(env, r.fd[1]));
      o.Set("toBackend", Napi::Buffer<char>::Copy(env, r.data[0].data(), r.data[0].size()));
      o.Set("toClient", Napi::Buffer<char>::Copy(env, r.data[1].data(), r.data[1].size()));
      o.Set("clientEof", Napi::Boolean::New(env, r.eof[0]));
      o.Set("backendEof", Napi::Boolean::New(env, r.eof[1]));
      o.Set("firstFin", r.first_eof == 0 ? Napi::String::New(env, "client") : r.first_eof == 1 ? Napi::String::New(env, "backend") : env.Null());
      o.Set("bytesIn", Napi::Number::New(env, static_cast<double>(r.bytes[0])));
      o.Set("bytesOut", Napi::Number::New(env, static_cast<double>(r.bytes[1])));
    }
    out.Set(static_cast<uint32_t>(i), o);
  }
  if (g_active <= 0 && g_tsfn_ref) {
    g_active = 0;
    g_tsfn.Unref(env);
    g_tsfn_ref = false;
  }
  delete job;
  return out;
}
