// The native UDP engine (udp_engine.cc): registers its udp* functions on the
// addon's exports. See ../README.md, "UDP engine".
#pragma once
#include <napi.h>

void RegisterUdpEngine(Napi::Env env, Napi::Object exports);
