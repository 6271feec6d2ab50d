// How the TCP workers' reports reach JavaScript: the one thread-safe
// function every batch travels by (sendEvents, loop.h), its delivery to the
// splice pump's onDone and the engine's onEvents, and the count of
// connections JS knows of, which decides whether the thread-safe function
// keeps the process alive. reports.cc; JS thread unless said otherwise.
#pragma once
#include <napi.h>

#include <cstdint>

namespace l4lb {

// init(): creates the thread-safe function (unreferenced) with `onDone`
// and zeroes the count. Before any worker starts.
void startReports(Napi::Env env, Napi::Function onDone);
// Environment teardown, after the workers are joined: nothing is sent any more.
void stopReports();
// Adds `delta` to the connections JS knows of (add(), detach(), a refused
// engine connection), then RefreshRef().
void countConnections(Napi::Env env, int64_t delta);
// Connections JS knows of that are not reported done yet (stats()).
int64_t knownConnections();
// References the thread-safe function while connections are open or
// engine listeners accept, unreferences it otherwise.
void RefreshRef(Napi::Env env);
// engineStart(onEvents(records)): where the TCP engine's reports go.
Napi::Value EngineStart(const Napi::CallbackInfo& info);

}  // namespace l4lb
