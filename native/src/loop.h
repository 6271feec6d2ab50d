// The epoll worker threads (loop.cc) and the splice state machine
// (splice.cc), plus the state the native TCP engine (engine_tcp.cc) adds to
// a connection before it splices. Every struct field says which thread
// owns it.
#pragma once
#include "common.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace l4lb {

// Engine connection states (legacy add() connections start in S_SPLICING).
enum ConnState : uint8_t {
  S_PENDING = 0,     // accepted by the engine, waiting for JS's decision
  S_CONNECTING = 1,  // non-blocking connect to the backend in progress
  S_SPLICING = 2,    // both sockets connected: the splice loop carries it
};

// Thread ownership: a legacy connection (add()) is filled by the JS thread
// and published under its worker's `mu` (adopt()); an engine connection is
// created by its worker thread in accept. From then on only that worker
// thread reads or writes any field, until it frees the Conn (graveyard)
// after the completion report; JS refers to it by `id` only (commands go
// through the worker's queue, JS never touches a Conn).
struct Conn {
  uint64_t id = 0;               // [worker] id % workers == this worker's index
  uint32_t slot = kNoSlot;       // [worker] byte-counter slot (set at connect for engine connections)
  uint32_t listener = 0;         // [worker] engine listener id (0: a legacy add())
  int fd[2] = {-1, -1};          // [worker] [0] client, [1] backend (owned here)
  int pr[2] = {-1, -1};          // [worker] pipe read end, per direction (0: client->backend)
  int pw[2] = {-1, -1};          // [worker] pipe write end
  size_t inpipe[2] = {0, 0};     // [worker]
  size_t pipecap[2] = {0, 0};    // [worker]
  bool eof[2] = {false, false};  // [worker] EOF read from fd[d]
  int first_eof = -1;            // [worker] the direction whose EOF came first (termination in the connection log)
  bool shut[2] = {false, false}; // [worker] shutdown(fd[1-d], SHUT_WR) done
  uint64_t bytes[2] = {0, 0};    // [worker] delivered to the destination
  uint32_t ev[2] = {0, 0};       // [worker] epoll events seen per side since the last service
  bool again[2] = {false, false};// [worker] direction still busy after kMaxRounds: run it again
  // A direction starts by copying (recv into the worker's buffer, send):
  // for small messages two copies cost less than two splices through a
  // pipe, and a short connection takes no pipe. Once a read fills the
  // buffer the direction carries bulk and splices from then on.
  bool bulk[2] = {false, false}; // [worker]
  // A side that failed (read or write error, or SO_ERROR after EPOLLERR).
  // The connection is not reset at once: what was already read from the
  // other side, and what the failed side had sent before its reset, is
  // delivered first; then both sides are reset (see settled()).
  bool dead[2] = {false, false}; // [worker]
  int deadReason = -1;           // [worker] reason of the first failure
  // Bytes the backend gets before any client byte (a PROXY header, a
  // ClientHello JS read to route by SNI), written by the worker: JS hands
  // them over with the sockets instead of writing them first. Not counted
  // in bytes[0] (JS counts them).
  std::vector<char> head;        // [worker]
  size_t headOff = 0;            // [worker]
  bool closed = false;           // [worker]
  bool pending = false;          // [worker] already in this round's service list
  bool engine = false;           // [worker] accepted by the engine (reports go to the engine callback)
  ConnState state = S_SPLICING;  // [worker]
  uint32_t attempt = 0;          // [worker] connect attempt number (a stale timer names an older one)
  int64_t acceptedUs = 0;        // [worker] CLOCK_MONOTONIC µs at accept (engine connections)
  int64_t attemptUs = 0;         // [worker] CLOCK_MONOTONIC µs at the current connect()
};

// An engine listening socket. Created by the JS thread (engineListen) before
// any worker sees it; registered in every worker's epoll (EPOLLEXCLUSIVE).
// Never freed (a removed listener is a few bytes; a late event in a batch
// may still name it), its fd closed by the last worker to unregister it.
struct Listener {
  uint32_t id = 0;               // [const after creation]
  int fd = -1;                   // [const until closed by the last worker to drop it] our dup of the listening socket
  bool wildcard = false;         // [const] bound to 0.0.0.0/:: : the local address is asked per connection
  std::string localAddr;         // [const] the bound address (text), when not wildcard
  uint16_t localPort = 0;        // [const]
  std::atomic<bool> closing{false};  // set by the JS thread (unlisten); workers stop accepting at once
  std::atomic<int> refs{0};      // workers that still have it registered
};

// The epoll tag of a connection's socket: its id (never reused) and side,
// not its pointer, so an event that outlives the Conn (a socket closed
// without EPOLL_CTL_DEL while a forked child still held it) names an id that
// is no longer in `conns` and is ignored. 0 is the eventfd; a listener's tag
// is its pointer | 3.
inline uint64_t connTag(uint64_t id, int side) { return (id << 2) | static_cast<uint64_t>(side + 1); }

// What a worker reports to JS (batched: one thread-safe call per loop turn).
enum EventKind : uint8_t { EV_ACCEPT = 1, EV_CONNECTED = 2, EV_CONNECT_FAILED = 3, EV_DONE = 4, EV_ACCEPT_ERROR = 5, EV_SHED = 6 };
struct Event {
  uint8_t kind;
  bool engine;                   // false: a legacy add() connection (onDone callback)
  uint32_t listener;
  uint64_t id;
  int32_t code;                  // reason (EV_DONE), errno, or how many were shed (EV_SHED)
  uint16_t sport, dport;
  uint64_t b0, b1;               // bytes (EV_DONE)
  char src[46];                  // EV_ACCEPT: peer address text
  char dst[46];                  // EV_ACCEPT: local address text ("" = the listener's)
};

struct DetachJob;  // detach.h

enum CmdKind : uint8_t { C_ABORT = 0, C_CONNECT = 1, C_REFUSE = 2, C_UNLISTEN = 3, C_DETACH = 4 };
struct Cmd {
  CmdKind kind = C_ABORT;
  uint64_t id = 0;
  Listener* listener = nullptr;  // C_UNLISTEN
  struct sockaddr_storage addr;  // C_CONNECT
  socklen_t addrLen = 0;
  uint32_t timeoutMs = 0;
  uint32_t slot = kNoSlot;
  std::vector<char> head;
  DetachJob* job = nullptr;      // C_DETACH (upgrade): where the parts go
  size_t index = 0;              // C_DETACH: this connection's entry in job->results
};

// A connect deadline (T_CONNECT), the moment a backend socket gets its
// keepalive options (T_KEEPALIVE), or a paused listener's retry (T_LISTEN).
enum TimerKind : uint8_t { T_CONNECT = 0, T_KEEPALIVE = 1, T_LISTEN = 2 };
struct Timer {
  int64_t at;                    // CLOCK_MONOTONIC ms
  uint64_t id;
  uint32_t attempt;
  Listener* listener;
  TimerKind kind;
  bool operator>(const Timer& o) const { return at > o.at; }
};

// Thread ownership per field: `ep`, `efd`, `index` and `thr` are set by the
// JS thread before the worker starts and only read after; `mu` guards `cmds`
// and `incoming` (JS thread writes, worker takes); `quit` is atomic (set by
// the environment cleanup hook); `seq` is atomic (ids, any thread); the rest
// belongs to the worker thread alone. epoll_ctl(ADD) on `ep` is the only
// call the JS thread makes on a worker's epoll (adopt(), engineListen()).
struct Worker {
  int ep = -1;
  int efd = -1;
  int index = 0;
  std::thread thr;
  std::mutex mu;
  std::vector<Cmd> cmds;         // [mu] requests from the JS thread
  std::vector<Conn*> incoming;   // [mu] added by the JS thread, taken into `conns` by this one
  std::atomic<bool> quit{false};
  std::atomic<uint64_t> seq{0};  // id generator: id = (seq+1) * workers + index
  std::unordered_map<uint64_t, Conn*> conns;  // [worker] live connections by id
  std::vector<Conn*> ready;      // [worker] busy connections requeued after kMaxRounds
  std::vector<Conn*> graveyard;  // [worker] freed at the end of an epoll batch
  std::vector<Event> outbox;     // [worker] reports of this turn, sent at its end
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers;  // [worker]
  char copyBuf[kCopyBuf];        // [worker] the copying step's buffer (never holds bytes between calls)
  int fdCeiling = 0;             // [worker] an accepted fd at or above it is shed (see fdCeilingNow)
  int64_t ceilingAt = -1;        // [worker] when fdCeiling was computed (ms), -1 = never

  bool init();
  uint64_t nextId();
  void post(Cmd&& c);
  // loop.cc: the loop, commands, a connection's end
  void report(Conn* c, int reason);
  void finish(Conn* c, int reason);
  void reset(Conn* c, int reason);
  bool adopt(Conn* c);
  void takeIncoming();
  void drainCommands();
  void flushOutbox();
  void run();
  // splice.cc: one connection's byte transfer
  int pump(Conn* c, int d, bool shortReadDrains);
  void markDead(Conn* c, int side);
  int pumpRounds(Conn* c, int d, int src, int dst, bool shortReadDrains);
  int copyIn(Conn* c, int d, int src, int dst);
  bool takePipe(Conn* c, int d);
  void service(Conn* c);
  bool flushHead(Conn* c);
  static bool settled(const Conn* c);
  // engine_tcp.cc: accept, connect, timers
  void onListenerReady(Listener* l);
  int fdCeilingNow(bool fresh);
  void reportListener(EventKind kind, uint32_t listener, int code);
  void onEngineEvent(Conn* c);
  void connectBackend(Conn* c, Cmd& cmd);
  void connectFailed(Conn* c, int err);
  void connected(Conn* c);
  void refuse(Conn* c);
  void unlisten(Listener* l);
  bool staleTimer(const Timer& t);
  int timeoutMs();
  void runTimers();
};

// ---- process-wide state (one Node environment per process may use it) ----
extern std::vector<Worker*> g_workers;  // JS thread (Init/stopAll); workers only read their own
Worker* workerOf(uint64_t id);          // JS thread
int64_t nowMs();                        // CLOCK_MONOTONIC, any thread
int64_t nowUs();                        // CLOCK_MONOTONIC µs, any thread
// Hands a worker's reports to the JS thread (one NonBlockingCall). Worker thread.
void sendEvents(std::vector<Event>* batch);

}  // namespace l4lb
