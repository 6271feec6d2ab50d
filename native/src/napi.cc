// N-API glue of the l4lb_splice addon: init (threads, slab, the reports'
// thread-safe function: reports.cc), the splice pump's calls
// (add/abort/stats/socketError/detach), and module init. The TCP engine's
// calls are registered by engine_tcp_napi.cc (RegisterTcpEngine), the UDP
// engine's by udp_napi.cc (RegisterUdpEngine).
#include <napi.h>

#include "udp_engine.h"
#include "detach.h"
#include <fcntl.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>

#include "engine_tcp.h"
#include "loop.h"
#include "pipes.h"
#include "reports.h"

namespace l4lb {

Napi::Value TuneMalloc(const Napi::CallbackInfo& info);  // malloc_tune.cc

double* g_slab = nullptr;
uint32_t g_slab_slots = 0;

namespace {

napi_env g_env = nullptr;  // JS thread: the environment init() ran in (one per process)

Napi::Value Throw(Napi::Env env, const char* msg) {
  Napi::Error::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

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
  stopReports();
  g_env = nullptr;
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
  startReports(env, info[0].As<Napi::Function>());
  for (int i = 0; i < threads; i++) {
    Worker* w = new Worker();
    w->index = i;
    if (!w->init()) {
      delete w;
      stopAll(nullptr);
      return Throw(env, "l4lb_splice: epoll/eventfd setup failed");
    }
    g_workers.push_back(w);
  }
  for (Worker* w : g_workers) w->thr = std::thread([w] { w->run(); });
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
  static size_t rr = 0;  // JS thread
  Worker* w = g_workers[rr++ % g_workers.size()];
  uint64_t id = w->nextId();
  c->id = id;
  c->slot = slot;
  publish(slot, 0, 0);
  publish(slot, 1, 0);
  countConnections(env, 1);
  // An epoll registration that fails (ENOMEM, max_user_watches) resets the
  // connection: the report says 'aborted'.
  if (!w->adopt(c)) {
    Cmd cmd;
    cmd.id = id;
    w->post(std::move(cmd));
  }
  return Napi::Number::New(env, static_cast<double>(id));
}

// abort(id): reset both sides; the completion report says 'aborted' unless
// the connection had already finished. Any connection, spliced or engine.
Napi::Value Abort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_workers.empty() || info.Length() < 1 || !info[0].IsNumber()) return env.Undefined();
  Cmd cmd;
  cmd.kind = C_ABORT;
  cmd.id = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
  workerOf(cmd.id)->post(std::move(cmd));
  return env.Undefined();
}

// stats() -> { active, threads, pooledPipes, listeners } (JS-thread view)
Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("active", Napi::Number::New(env, static_cast<double>(knownConnections())));
  o.Set("threads", Napi::Number::New(env, static_cast<double>(g_workers.size())));
  o.Set("pooledPipes", Napi::Number::New(env, static_cast<double>(pooledPipes())));
  o.Set("listeners", Napi::Number::New(env, engineListeners()));
  return o;
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

// Upgrade: detach(ids: number[]) -> [{ ok, clientFd, backendFd, toBackend,
// toClient, clientEof, backendEof, firstFin, bytesIn, bytesOut }] in the
// order of `ids` (splice-pump and engine connections alike; see detach.h).
// JS thread; waits (bounded, 5 s) for the workers, which never block. No
// completion report follows for a connection detached (`ok`).
Napi::Value Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_env == nullptr || g_workers.empty()) return Throw(env, "l4lb_splice: not initialised");
  if (info.Length() < 1 || !info[0].IsArray()) return Throw(env, "l4lb_splice: detach(ids)");
  Napi::Array ids = info[0].As<Napi::Array>();
  const size_t n = ids.Length();
  DetachJob* job = new DetachJob();
  job->results.resize(n);
  job->pending = n;
  for (size_t i = 0; i < n; i++) {
    Napi::Value v = ids.Get(static_cast<uint32_t>(i));
    Cmd c;
    c.kind = C_DETACH;
    c.id = v.IsNumber() ? static_cast<uint64_t>(v.As<Napi::Number>().Int64Value()) : 0;
    c.job = job;
    c.index = i;
    g_workers[c.id % g_workers.size()]->post(std::move(c));
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
  int64_t detached = 0;
  for (size_t i = 0; i < n; i++) {
    DetachResult& r = job->results[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("ok", Napi::Boolean::New(env, r.ok));
    if (r.ok) {
      detached++;
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
  delete job;
  countConnections(env, -detached);
  return out;
}

void RegisterSplice(Napi::Env env, Napi::Object exports) {
  exports.Set("detach", Napi::Function::New(env, Detach, "detach"));
  exports.Set("socketError", Napi::Function::New(env, SocketError, "socketError"));
  exports.Set("tuneMalloc", Napi::Function::New(env, TuneMalloc, "tuneMalloc"));
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("add", Napi::Function::New(env, Add, "add"));
  exports.Set("abort", Napi::Function::New(env, Abort, "abort"));
  exports.Set("stats", Napi::Function::New(env, Stats, "stats"));
  exports.Set("engineStart", Napi::Function::New(env, EngineStart, "engineStart"));
  Napi::Array a = Napi::Array::New(env, 4);
  a.Set(0u, "closed");
  a.Set(1u, "client_reset");
  a.Set(2u, "backend_reset");
  a.Set(3u, "aborted");
  exports.Set("reasons", a);
}

Napi::Object ModuleInit(Napi::Env env, Napi::Object exports) {
  RegisterSplice(env, exports);
  RegisterTcpEngine(env, exports);
  RegisterUdpEngine(env, exports);
  return exports;
}

}  // namespace
}  // namespace l4lb

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return l4lb::ModuleInit(env, exports); }
NODE_API_MODULE(l4lb_splice, InitModule)
