// The native TCP engine: accept and connect inside the addon (see
// ../README.md, "TCP engine"). JS keeps every decision. engine_tcp.cc is
// its worker-thread half (accept, connect, deadlines), engine_tcp_napi.cc
// its JS calls and listener table.
#pragma once
#include <napi.h>

namespace l4lb {

// Adds engineStart, engineListen, engineUnlisten, engineDetach, engineConnect,
// engineRefuse to `exports`.
void RegisterTcpEngine(Napi::Env env, Napi::Object exports);
// JS thread: engine listeners still registered (the thread-safe function
// stays referenced while there are any).
int engineListeners();

struct Worker;    // loop.h
struct Listener;  // loop.h

// Between the two halves (engine_tcp.cc defines them).
// The socket options node:net sets (noDelay; keepAlive 60 s, 1 s, 10 probes). Any thread.
void setNoDelay(int fd);
void setKeepAlive(int fd);
// Adds `l` to `w`'s epoll (EPOLLEXCLUSIVE). `fromJs`: called on the JS
// thread (engineListen), so made under `w->mu`; else by `w`'s own thread.
bool registerListener(Worker* w, Listener* l, bool fromJs);

}  // namespace l4lb
