// tuneMalloc() -> true when applied. Once the main thread has been moved
// to a secondary glibc arena (V8's background threads contend for the main
// one), every freed 64 KiB read buffer at the top of that arena's heap was
// handed back to the kernel and faulted in again by the next read: the JS
// pump fell from ~9 to ~2 Gbit/s with 4x the CPU per GB, all of it page
// faults. A trim threshold above the 64 MiB arena heap size stops that
// churn. An operator's MALLOC_TRIM_THRESHOLD_ / MALLOC_TOP_PAD_ wins.
#include <malloc.h>
#include <napi.h>

#include <cstdlib>

namespace l4lb {

Napi::Value TuneMalloc(const Napi::CallbackInfo& info) {
  bool applied = false;
#ifdef __GLIBC__
  if (getenv("MALLOC_TRIM_THRESHOLD_") == nullptr && getenv("MALLOC_TOP_PAD_") == nullptr)
    applied = mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024) == 1;
#endif
  return Napi::Boolean::New(info.Env(), applied);
}

}  // namespace l4lb
