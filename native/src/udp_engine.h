// The native UDP engine: owns UDP listening sockets and the sessions'
// connected upstream sockets on one epoll thread. Datagrams of known
// sessions are forwarded here (recvmmsg/sendmmsg), replies go back from the
// listening socket with the address the client sent to (IP_PKTINFO /
// IPV6_PKTINFO on wildcard binds). A new client's datagrams are held (at
// most 64) while TypeScript decides; TS then calls udpOpen or udpReject.
// Events for TS (new clients, ended sessions) are collected under the lock
// and handed over with one threadsafe call per wake; TS pulls them with
// udpTake. See ../README.md, "UDP engine". Linux only.
//
// This header holds what the engine's files share: the records, the tables
// and the functions between them. Files:
//   udp_sessions.cc  the tables (definitions), session slab, idle lists,
//                    upstream socket pool, ending a session, address helpers
//   udp_loop.cc      the epoll thread: recvmmsg/sendmmsg, idle sweep, waking JS
//   udp_napi.cc      udpInit/udpListen/udpConfigure/udpWantClients/udpTake, RegisterUdpEngine
//   udp_control.cc   udpOpen/udpReject/udpEnd/udpSessions/udpBackendBytes/udpCounters/udpClose/udpInfo
//   udp_handover.cc  upgrade: udpListenerFd/udpPause/udpExport/udpImport
//
// Threads: every table and record below is guarded by g_mu unless its
// comment says otherwise (the engine thread holds g_mu while it handles a
// wake; JS calls hold it for their few operations).
#pragma once
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <napi.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

void RegisterUdpEngine(Napi::Env env, Napi::Object exports);

namespace l4lb_udp {

constexpr uint32_t kNone = 0xffffffffu;
constexpr int kBatch = 32;
constexpr size_t kBuf = 65536;
constexpr size_t kHoldMax = 64;
constexpr size_t kHoldBytesMax = 32u << 20;
constexpr uint32_t kPendingMax = 65536;
constexpr uint32_t kGenMask = 0xfffff;  // id = gen * 2^32 + index stays below 2^53

enum : uint8_t { kFree = 0, kPending = 1, kOpen = 2 };
enum : uint64_t { kTagWake = 0, kTagListener = 1, kTagSession = 2 };
// Same order as `udpReasons` (and src/udp/engine.ts).
enum : uint8_t { R_IDLE, R_RESPONSES, R_REFUSED, R_GONE, R_SHUTDOWN, R_DRAIN, R_ADMIN, R_ERROR, R_COUNT };

union Sa {
  sockaddr sa;
  sockaddr_in v4;
  sockaddr_in6 v6;
};

struct Key {
  uint32_t w[5];  // family and port, then 16 address bytes
  bool operator==(const Key& o) const { return memcmp(w, o.w, sizeof w) == 0; }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (uint32_t x : k.w) {
      h ^= x;
      h *= 0xff51afd7ed558ccdull;
      h ^= h >> 33;
    }
    return static_cast<size_t>(h);
  }
};

// One session: a fixed record (sizeof: see udpInfo().sessionBytes).
struct Session {
  Sa client;             // where the client sent from
  uint8_t local[16];     // the address it sent to (wildcard binds)
  uint32_t ifindex;
  uint32_t gen;
  uint32_t backend;      // TS's backend id
  uint32_t responses;    // backend datagrams so far
  uint32_t prev, next;   // the listener's idle list, oldest first
  int fd;                // connected upstream socket, -1 while pending
  uint16_t listener;
  uint8_t state;
  uint8_t hasLocal;
  uint8_t upFam;         // 0: IPv4 upstream socket, 1: IPv6
  int64_t startedMs;     // CLOCK_REALTIME
  int64_t lastMs;        // CLOCK_MONOTONIC_COARSE
  uint64_t bytesIn, bytesOut;
  std::vector<std::string>* held;  // datagrams waiting for TS's decision
};

struct Listener {
  bool used = false;
  bool v6 = false;
  bool wildcard = false;
  bool accepting = true;
  int fd = -1;
  uint32_t gen = 0;
  uint32_t idleMs = 0;
  uint32_t responses = 0;
  uint32_t head = kNone, tail = kNone;
  uint32_t sessions = 0;  // pending and open
  std::unordered_map<Key, uint32_t, KeyHash> map;
  uint64_t dgramsIn = 0, dgramsOut = 0;
  int64_t liveIn = 0, liveOut = 0;
  uint64_t droppedHeld = 0, droppedSend = 0;
  bool paused = false;  // upgrade: the listening socket is not read (udpPause)
};

struct NewRec {
  uint64_t id;
  uint16_t listener;
  bool hasLocal;
  bool localV4;
  Sa client;
  uint8_t local[16];
};
struct EndRec {
  uint16_t listener;
  uint8_t reason;
  uint32_t backend;
  uint64_t bytesIn, bytesOut;
  int64_t durationMs;
  Sa client;
};

// Everything below is guarded by g_mu (the engine thread holds it while it
// handles a wake; JS calls hold it for their few operations).
extern std::mutex g_mu;
extern std::deque<Session> g_sess;  // stable addresses
extern std::vector<uint32_t> g_free;
extern std::vector<Listener*> g_listeners;
extern std::vector<NewRec> g_news;  // for udpTake
extern std::vector<EndRec> g_ends;  // for udpTake
extern size_t g_heldBytes;
extern uint32_t g_pending;
extern uint32_t g_open;
extern uint32_t g_listenersUsed;
extern bool g_inflight;     // a threadsafe call to JS is queued
extern bool g_wantClients;
extern bool g_stop;
extern int64_t g_endsSince;  // MonoMs of the oldest record in g_ends, -1 when empty

// Upstream sockets are kept for reuse: a session's socket is disconnected
// (connect AF_UNSPEC: its ephemeral port is released, nothing more can
// arrive for the old 4-tuple), drained of what was queued, and the next
// session connects it again (a new ephemeral port). That saves socket(),
// close() and two epoll_ctl per session. At most kPoolMax per family are
// kept, each closed after kPoolIdleMs unused.
constexpr size_t kPoolMax = 4096;
constexpr int64_t kPoolIdleMs = 2000;
struct Pooled {
  int fd;
  int64_t since;
};
extern std::deque<Pooled> g_pool[2];  // [0] AF_INET, [1] AF_INET6 (g_mu)
extern std::vector<uint32_t> g_fdSess;  // upstream fd -> session index (kNone: pooled) (g_mu)

// Set once by udpInit (JS thread), read-only afterwards (g_tsfn's
// Ref/Unref: JS thread only).
extern bool g_started;
extern int g_ep;
extern int g_efd;
extern std::thread g_thr;
extern Napi::ThreadSafeFunction g_tsfn;
extern bool g_tsfnRef;  // JS thread only
extern napi_env g_env;
// The engine thread's receive buffers (kBatch x kBuf): allocated by
// udpInit, then used by the engine thread only.
extern char* g_rbuf;

// udp_sessions.cc (callers hold g_mu, except the clock and address helpers)
Key KeyOf(const Sa& a);
int64_t MonoMs();
int64_t RealMs();
uint64_t Tag(uint64_t kind, uint32_t gen, uint32_t idx);
void LruUnlink(Listener& L, uint32_t i);
void LruPush(Listener& L, uint32_t i);
void Touch(Listener& L, uint32_t i, int64_t now);
uint32_t Alloc();
void SetFdSess(int fd, uint32_t si);
int Acquire(int fam);
void Release(int fd, int fam);
void SweepPool(int64_t now);
void EndLocked(uint32_t i, uint8_t reason);
void Hold(Listener& L, Session& s, const char* buf, size_t len);
bool ParseAddr(int family, const std::string& host, uint16_t port, Sa& out, socklen_t& len);
std::string AddrString(const Sa& a);
// A session as udpSessions and udpExport list it (copied under g_mu, turned
// into JS values after): client, port, backend, startedMs, bytesIn, bytesOut.
struct SessionRow {
  Sa client;
  uint32_t backend;
  int64_t started;
  uint64_t in, out;
};
constexpr uint32_t kRowFields = 6;
SessionRow RowOf(const Session& s);
// Registers a session's upstream socket with the engine's epoll (g_ep, under
// g_mu): 0, or -errno with `fd` closed.
int WatchUpstream(int fd);
// Writes a row's kRowFields values into `a` from index j; returns the next index.
uint32_t SetRow(Napi::Array& a, uint32_t j, const SessionRow& r);
// Fields per session in udpExport's flat array (a row, then five more).
constexpr uint32_t kExportFields = kRowFields + 5;
uint16_t PortOf(const Sa& a);
Listener* GetListener(uint32_t lid);

// udp_loop.cc
void Loop();          // the engine thread's body
void Wake();          // any thread: wakes the engine thread (eventfd)
void Stop(void*);     // JS thread: env cleanup hook
void StopAtExit();    // atexit

// udp_napi.cc
Napi::Value Err(Napi::Env env, int e);
Napi::Value UdpInit(const Napi::CallbackInfo& info);
Napi::Value UdpListen(const Napi::CallbackInfo& info);
Napi::Value UdpConfigure(const Napi::CallbackInfo& info);
Napi::Value UdpWantClients(const Napi::CallbackInfo& info);
Napi::Value UdpTake(const Napi::CallbackInfo& info);
// udp_control.cc
Napi::Value UdpOpen(const Napi::CallbackInfo& info);
Napi::Value UdpReject(const Napi::CallbackInfo& info);
Napi::Value UdpEnd(const Napi::CallbackInfo& info);
Napi::Value UdpSessions(const Napi::CallbackInfo& info);
Napi::Value UdpBackendBytes(const Napi::CallbackInfo& info);
Napi::Value UdpCounters(const Napi::CallbackInfo& info);
Napi::Value UdpClose(const Napi::CallbackInfo& info);
Napi::Value UdpInfo(const Napi::CallbackInfo& info);
// udp_handover.cc
Napi::Value UdpListenerFd(const Napi::CallbackInfo& info);
Napi::Value UdpPause(const Napi::CallbackInfo& info);
Napi::Value UdpExport(const Napi::CallbackInfo& info);
Napi::Value UdpImport(const Napi::CallbackInfo& info);

}  // namespace l4lb_udp
