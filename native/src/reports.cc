// The one thread-safe function of the TCP workers (see reports.h): batches
// of Events from a worker turn, delivered on the JS thread to the splice
// pump's onDone (one call per completion) and the engine's onEvents (one
// call per batch), and the reference that keeps the process alive while
// JS has connections or engine listeners.
#include "reports.h"

#include "engine_tcp.h"
#include "loop.h"

namespace l4lb {

namespace {

// JS thread only, except g_tsfn_ok/g_tsfn, which workers read to send
// reports (set before any worker starts, cleared after they are joined).
Napi::ThreadSafeFunction g_tsfn;
bool g_tsfn_ok = false;
bool g_tsfn_ref = false;
int64_t g_active = 0;               // connections JS knows of that are not reported done yet
Napi::FunctionReference g_engine_cb;  // engineStart(onEvents)

// Delivers one worker turn's reports: legacy completions to onDone (one
// call each, as before), engine records to onEvents in one call: a
// Float64Array, 6 numbers per record [kind, id, listener, a, b, c], and
// the accepted connections' addresses, 2 strings per accept record in
// order (src, dst; "" = the listener's). Numbers cost no N-API call each.
void deliver(Napi::Env env, Napi::Function onDone, const std::vector<Event>& evs) {
  size_t engine = 0;
  for (const Event& e : evs) {
    if (e.engine) {
      engine++;
      continue;
    }
    g_active--;
    onDone.Call({Napi::Number::New(env, static_cast<double>(e.id)), Napi::Number::New(env, e.code),
                 Napi::Number::New(env, static_cast<double>(e.b0)), Napi::Number::New(env, static_cast<double>(e.b1))});
  }
  if (engine > 0 && !g_engine_cb.IsEmpty()) {
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, engine * 6 * sizeof(double));
    double* f = static_cast<double*>(ab.Data());
    Napi::Float64Array nums = Napi::Float64Array::New(env, engine * 6, ab, 0);
    Napi::Array strs = Napi::Array::New(env);
    Napi::String empty = Napi::String::New(env, "");
    size_t k = 0;
    uint32_t si = 0;
    for (const Event& e : evs) {
      if (!e.engine) continue;
      double x = 0, y = 0, z = 0;
      switch (e.kind) {
        case EV_ACCEPT:
          g_active++;
          x = e.sport;
          y = e.dport;
          break;
        case EV_DONE:
          g_active--;
          x = e.code;
          y = static_cast<double>(e.b0);
          z = static_cast<double>(e.b1);
          break;
        case EV_CONNECTED:
          y = static_cast<double>(e.b0);  // µs from accept
          z = static_cast<double>(e.b1);  // µs of this connect attempt
          break;
        default:
          x = e.code;
          break;
      }
      f[k++] = e.kind;
      f[k++] = static_cast<double>(e.id);
      f[k++] = e.listener;
      f[k++] = x;
      f[k++] = y;
      f[k++] = z;
      if (e.kind == EV_ACCEPT) {
        strs.Set(si++, Napi::String::New(env, e.src));
        strs.Set(si++, e.dst[0] != '\0' ? Napi::String::New(env, e.dst) : empty);
      }
    }
    g_engine_cb.Call({nums, strs});
  }
}

}  // namespace

void startReports(Napi::Env env, Napi::Function onDone) {
  g_tsfn = Napi::ThreadSafeFunction::New(env, onDone, "l4lb_splice", 0, 1);
  g_tsfn.Unref(env);
  g_tsfn_ok = true;
  g_tsfn_ref = false;
  g_active = 0;
}

void stopReports() {
  if (g_tsfn_ok) {
    g_tsfn.Abort();
    g_tsfn_ok = false;
  }
  g_engine_cb.Reset();
}

void countConnections(Napi::Env env, int64_t delta) {
  g_active += delta;
  RefreshRef(env);
}

int64_t knownConnections() { return g_active; }

// node:net's own handle of an engine listener is closed, so nothing else
// would keep the process alive while the engine accepts on it.
void RefreshRef(Napi::Env env) {
  if (!g_tsfn_ok) return;
  bool want = g_active > 0 || engineListeners() > 0;
  if (want && !g_tsfn_ref) {
    g_tsfn.Ref(env);
    g_tsfn_ref = true;
  } else if (!want && g_tsfn_ref) {
    if (g_active < 0) g_active = 0;
    g_tsfn.Unref(env);
    g_tsfn_ref = false;
  }
}

// Worker thread: a batch the JS thread cannot take any more (teardown) is freed here.
void sendEvents(std::vector<Event>* batch) {
  bool sent = false;
  if (g_tsfn_ok) {
    napi_status st = g_tsfn.NonBlockingCall(batch, [](Napi::Env env, Napi::Function fn, std::vector<Event>* b) {
      if (env != nullptr && fn != nullptr) {
        deliver(env, fn, *b);
        RefreshRef(env);
      }
      delete b;
    });
    sent = st == napi_ok;
  }
  if (!sent) delete batch;
}

Napi::Value EngineStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!g_tsfn_ok) {
    Napi::Error::New(env, "l4lb_splice: not initialised").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info.Length() < 1 || !info[0].IsFunction()) {
    Napi::Error::New(env, "l4lb_splice: engineStart(onEvents)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  g_engine_cb = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

}  // namespace l4lb
