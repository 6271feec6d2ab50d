{
  "targets": [
    {
      "target_name": "l4lb_splice",
      "sources": ["src/loop.cc", "src/splice.cc", "src/pipes.cc", "src/engine_tcp.cc", "src/engine_tcp_napi.cc", "src/napi.cc", "src/reports.cc", "src/malloc_tune.cc", "src/udp_sessions.cc", "src/udp_loop.cc", "src/udp_napi.cc", "src/udp_control.cc", "src/udp_handover.cc", "src/detach.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "conditions": [
        ["OS!='linux'", { "sources!": ["src/loop.cc", "src/splice.cc", "src/pipes.cc", "src/engine_tcp.cc", "src/engine_tcp_napi.cc", "src/napi.cc", "src/reports.cc", "src/malloc_tune.cc", "src/udp_sessions.cc", "src/udp_loop.cc", "src/udp_napi.cc", "src/udp_control.cc", "src/udp_handover.cc", "src/detach.cc"], "sources": ["src/stub.cc"] }]
      ]
    }
  ]
}
