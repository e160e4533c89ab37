{
  "targets": [
    {
      "target_name": "weft_udp",
      "sources": ["native/weft_udp.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
