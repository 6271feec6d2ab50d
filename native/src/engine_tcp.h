// The native TCP engine: accept and connect inside the addon (see
// engine_tcp.cc and ../README.md, "TCP engine"). JS keeps every decision.
#pragma once
#include <napi.h>

namespace l4lb {

// Adds engineStart, engineListen, engineUnlisten, engineDetach, engineConnect,
// engineRefuse to `exports`.
void RegisterTcpEngine(Napi::Env env, Napi::Object exports);
// JS thread: engine listeners still registered (the thread-safe function
// stays referenced while there are any).
int engineListeners();

}  // namespace l4lb
