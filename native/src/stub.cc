// Non-Linux placeholder: splice(2) does not exist there. The TypeScript side
// checks the platform before loading, so this is only here to let the build
// succeed; init() reports that the platform is unsupported.
#include <napi.h>
static Napi::Value Unsupported(const Napi::CallbackInfo& info) {
  Napi::Error::New(info.Env(), "l4lb_splice: splice(2) needs Linux").ThrowAsJavaScriptException();
  return info.Env().Undefined();
}
static Napi::Object ModuleInit(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Unsupported, "init"));
  exports.Set("unsupported", Napi::Boolean::New(env, true));
  return exports;
}
NODE_API_MODULE(l4lb_splice, ModuleInit)
