/*
 * weft_native: the system calls weft needs and neither Node nor its npm dependencies offer.
 *
 * For the userspace data path (agent/userspace/udp-native.ts):
 *   - sendmsg(2) with a UDP_SEGMENT control message (UDP GSO, Linux >= 4.18): one call hands the kernel
 *     up to 64 datagrams of equal size laid end to end, and they cross the host's stack as one packet.
 *   - recvmmsg(2) on a socket with UDP_GRO on (Linux >= 5.0): one call takes up to `slots` datagrams, and
 *     a GSO/GRO train of equal datagrams from one sender arrives as one, with its segment size.
 *   - getsockopt(PACKET_STATISTICS) on libpcap's packet socket: the frames the kernel dropped because the
 *     capture ring was full, which `cap` does not report.
 *   - send(2) of an Ethernet frame on that packet socket: the receive path's delivery into the capture end.
 *
 * For the kernel monitor (agent/kernel/monitor-native.ts): an rtnetlink socket joined to notification
 * groups, read with the same recvmmsg receiver. `netlink` 0.3.0 aborts the process when such a socket
 * overruns; here an overrun is just ENOBUFS from recvmmsg, handed to JavaScript like any other errno.
 *
 * For systemd's notification protocol (agent/host/systemd-notify.ts): one datagram sent from the calling
 * process to an AF_UNIX datagram socket, by path or in the abstract namespace.
 *
 * Everything else (addresses, framing, decoding, checks, counters) stays in TypeScript.
 * Functions return a negative errno instead of throwing; only wrong argument types throw.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define CHECK(call) do { if ((call) != napi_ok) { napi_throw_type_error(env, NULL, "weft_native: bad argument"); return NULL; } } while (0)

static napi_value int_value(napi_env env, int64_t value) {
  napi_value out;
  napi_create_int64(env, value, &out);
  return out;
}

static int get_args(napi_env env, napi_callback_info info, size_t expected, napi_value *argv) {
  size_t argc = expected;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < expected) return -1;
  return 0;
}

/* The one argument of a call that takes only a file descriptor; throws (message `what`) and returns -1 if bad. */
static int get_fd_only(napi_env env, napi_callback_info info, const char *what, int32_t *fd) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv) || napi_get_value_int32(env, argv[0], fd) != napi_ok) {
    napi_throw_type_error(env, NULL, what);
    return -1;
  }
  return 0;
}

static int get_u32(napi_env env, napi_value value, uint32_t *out) {
  return napi_get_value_uint32(env, value, out) == napi_ok ? 0 : -1;
}

/* The two arguments of a call that takes a file descriptor and a u32; throws (message `what`) and returns -1 if bad. */
static int get_fd_u32(napi_env env, napi_callback_info info, const char *what, int32_t *fd, uint32_t *value) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) || napi_get_value_int32(env, argv[0], fd) != napi_ok || get_u32(env, argv[1], value)) {
    napi_throw_type_error(env, NULL, what);
    return -1;
  }
  return 0;
}

/* open(address: u32 host order, port, sndbuf, rcvbuf, gro: 0|1) -> fd | -errno */
static napi_value udp_open(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  uint32_t address, port, sndbuf, rcvbuf, gro;
  if (get_args(env, info, 5, argv) || get_u32(env, argv[0], &address) || get_u32(env, argv[1], &port) ||
      get_u32(env, argv[2], &sndbuf) || get_u32(env, argv[3], &rcvbuf) || get_u32(env, argv[4], &gro)) {
    napi_throw_type_error(env, NULL, "weft_native.open: bad arguments");
    return NULL;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return int_value(env, -errno);
  int one = 1, size;
  if (sndbuf > 0) { size = (int)sndbuf; setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size); }
  if (rcvbuf > 0) { size = (int)rcvbuf; setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size); }
  if (port != 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) < 0) {
    int err = errno;
    close(fd);
    return int_value(env, -err);
  }
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)port);
  sin.sin_addr.s_addr = htonl(address);
  if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
    int err = errno;
    close(fd);
    return int_value(env, -err);
  }
  return int_value(env, fd);
}

/* close(fd) -> 0 | -errno */
static napi_value udp_close(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (get_fd_only(env, info, "weft_native.close: bad arguments", &fd)) return NULL;
  return int_value(env, close(fd) < 0 ? -errno : 0);
}

/*
 * send(fd, buffer, offset, length, segment, address: u32 host order, port) -> bytes sent | -errno.
 * segment > 0 and length > segment: UDP GSO, datagrams of `segment` bytes (the last may be shorter).
 */
static napi_value udp_send(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  int32_t fd;
  uint32_t offset, length, segment, address, port;
  void *data;
  size_t size;
  if (get_args(env, info, 7, argv) || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &data, &size) != napi_ok || get_u32(env, argv[2], &offset) ||
      get_u32(env, argv[3], &length) || get_u32(env, argv[4], &segment) || get_u32(env, argv[5], &address) ||
      get_u32(env, argv[6], &port) || (size_t)offset + length > size) {
    napi_throw_type_error(env, NULL, "weft_native.send: bad arguments");
    return NULL;
  }
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)port);
  sin.sin_addr.s_addr = htonl(address);
  struct iovec iov = { (char *)data + offset, length };
  union { char buf[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } control;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_name = &sin;
  msg.msg_namelen = sizeof sin;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (segment > 0 && length > segment) {
    memset(&control, 0, sizeof control);
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t gso = (uint16_t)segment;
    memcpy(CMSG_DATA(cm), &gso, sizeof gso);
  }
  ssize_t sent = sendmsg(fd, &msg, MSG_DONTWAIT);
  return int_value(env, sent < 0 ? -errno : sent);
}

/* A receiver: recvmmsg into `slots` slots of `slot_size` bytes of a JS Buffer whenever the socket polls readable. */
typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref buffer_ref, meta_ref, callback_ref;
  napi_async_context context;
  int fd;
  unsigned slots;
  struct mmsghdr *messages;
  struct iovec *iovecs;
  struct sockaddr_in *sources;
  char *controls;
  int32_t *meta;
  unsigned batches_per_event;
  int stopped;
  /* Holders of this struct: the poll handle until its close callback, the JS handle until it is collected.
     The last one frees it, so stop() and unref() on a stopped receiver read live memory. */
  int holders;
} receiver_t;

#define CONTROL_SPACE CMSG_SPACE(sizeof(int))

static void receiver_release_holder(receiver_t *r) {
  if (--r->holders > 0) return;
  free(r->messages);
  free(r->iovecs);
  free(r->sources);
  free(r->controls);
  free(r);
}

/* The poll handle's close callback, and the way out of a receiver that never got a handle. */
static void receiver_free(uv_handle_t *handle) {
  receiver_release_holder((receiver_t *)handle->data);
}

static void receiver_release(receiver_t *r) {
  napi_delete_reference(r->env, r->buffer_ref);
  napi_delete_reference(r->env, r->meta_ref);
  napi_delete_reference(r->env, r->callback_ref);
  napi_async_destroy(r->env, r->context);
}

static void receiver_call(receiver_t *r, int64_t value) {
  napi_env env = r->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value callback, recv, arg, result;
  napi_get_reference_value(env, r->callback_ref, &callback);
  napi_get_global(env, &recv);
  napi_create_int64(env, value, &arg);
  napi_make_callback(env, r->context, recv, callback, 1, &arg, &result);
  napi_close_handle_scope(env, scope);
}

static void receiver_poll(uv_poll_t *handle, int status, int events) {
  receiver_t *r = (receiver_t *)handle->data;
  (void)events;
  if (status < 0) {
    /* libuv stops the handle on POLLERR and reports UV_EBADF. A pending socket error (a netlink socket's
       ENOBUFS after an overrun) is read, which clears it, and reported; the socket itself is still good. */
    int err = 0;
    socklen_t length = sizeof err;
    if (status == UV_EBADF && getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &length) == 0) {
      if (err != 0) receiver_call(r, -err);
      if (!r->stopped) uv_poll_start(&r->poll, UV_READABLE, receiver_poll);
      return;
    }
    receiver_call(r, status);
    return;
  }
  for (unsigned batch = 0; batch < r->batches_per_event && !r->stopped; batch++) {
    for (unsigned i = 0; i < r->slots; i++) {
      r->messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
      r->messages[i].msg_hdr.msg_controllen = CONTROL_SPACE;
      r->messages[i].msg_hdr.msg_flags = 0;
    }
    int n = recvmmsg(r->fd, r->messages, r->slots, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) receiver_call(r, -errno);
      return;
    }
    for (int i = 0; i < n; i++) {
      struct msghdr *h = &r->messages[i].msg_hdr;
      int32_t segment = 0;
      for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm != NULL; cm = CMSG_NXTHDR(h, cm)) {
        if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) memcpy(&segment, CMSG_DATA(cm), sizeof segment);
      }
      r->meta[i * 4] = (int32_t)r->messages[i].msg_len;
      r->meta[i * 4 + 1] = (int32_t)ntohl(r->sources[i].sin_addr.s_addr);
      r->meta[i * 4 + 2] = segment;
      r->meta[i * 4 + 3] = (h->msg_flags & MSG_TRUNC) ? 1 : 0;
    }
    receiver_call(r, n);
    if ((unsigned)n < r->slots) return;
  }
}

static void receiver_finalize_handle(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  receiver_release_holder((receiver_t *)data);
}

/*
 * receive(fd, buffer, slotSize, slots, meta: Int32Array(slots * 4), callback(count | -errno), batchesPerEvent)
 * -> handle. At most batchesPerEvent recvmmsg calls per readiness event, then the loop serves other handles.
 * Per datagram i: meta[4i] length, meta[4i+1] source address (u32 as i32; on a netlink socket the sender's
 * port id, 0 for the kernel), meta[4i+2] GRO segment size (0: one datagram), meta[4i+3] 1 when cut short by
 * the slot. Its bytes are at buffer[i * slotSize...].
 */
static napi_value udp_receive(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  int32_t fd;
  uint32_t slot_size, slots, batches_per_event;
  void *data, *meta;
  size_t size, meta_length;
  napi_typedarray_type type;
  napi_value arraybuffer;
  size_t byte_offset;
  napi_valuetype callback_type;
  if (get_args(env, info, 7, argv) || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &data, &size) != napi_ok || get_u32(env, argv[2], &slot_size) ||
      get_u32(env, argv[3], &slots) || slots == 0 || slots > 1024 || (size_t)slot_size * slots > size ||
      napi_get_typedarray_info(env, argv[4], &type, &meta_length, &meta, &arraybuffer, &byte_offset) != napi_ok ||
      type != napi_int32_array || meta_length < (size_t)slots * 4 ||
      napi_typeof(env, argv[5], &callback_type) != napi_ok || callback_type != napi_function ||
      get_u32(env, argv[6], &batches_per_event) || batches_per_event == 0) {
    napi_throw_type_error(env, NULL, "weft_native.receive: bad arguments");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  receiver_t *r = calloc(1, sizeof *r);
  if (r == NULL) return int_value(env, -ENOMEM);
  r->env = env;
  r->holders = 1;
  r->fd = fd;
  r->slots = slots;
  r->batches_per_event = batches_per_event;
  r->meta = (int32_t *)meta;
  r->messages = calloc(slots, sizeof *r->messages);
  r->iovecs = calloc(slots, sizeof *r->iovecs);
  r->sources = calloc(slots, sizeof *r->sources);
  r->controls = calloc(slots, CONTROL_SPACE);
  if (r->messages == NULL || r->iovecs == NULL || r->sources == NULL || r->controls == NULL) {
    r->poll.data = r;
    receiver_free((uv_handle_t *)&r->poll);
    return int_value(env, -ENOMEM);
  }
  for (unsigned i = 0; i < slots; i++) {
    r->iovecs[i].iov_base = (char *)data + (size_t)i * slot_size;
    r->iovecs[i].iov_len = slot_size;
    struct msghdr *h = &r->messages[i].msg_hdr;
    h->msg_name = &r->sources[i];
    h->msg_iov = &r->iovecs[i];
    h->msg_iovlen = 1;
    h->msg_control = r->controls + (size_t)i * CONTROL_SPACE;
  }
  if (uv_poll_init(loop, &r->poll, fd) != 0) {
    r->poll.data = r;
    receiver_free((uv_handle_t *)&r->poll);
    return int_value(env, -EINVAL);
  }
  r->poll.data = r;
  napi_create_reference(env, argv[1], 1, &r->buffer_ref);
  napi_create_reference(env, argv[4], 1, &r->meta_ref);
  napi_create_reference(env, argv[5], 1, &r->callback_ref);
  napi_value name;
  napi_create_string_utf8(env, "weft_native.receive", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &r->context);
  uv_poll_start(&r->poll, UV_READABLE, receiver_poll);
  napi_value handle;
  if (napi_create_external(env, r, receiver_finalize_handle, NULL, &handle) != napi_ok) {
    r->stopped = 1;
    uv_poll_stop(&r->poll);
    receiver_release(r);
    uv_close((uv_handle_t *)&r->poll, receiver_free);
    napi_throw_error(env, NULL, "weft_native.receive: cannot make the handle");
    return NULL;
  }
  r->holders++;
  return handle;
}

/* stop(handle): stops polling and lets go of the receiver (the caller closes the fd afterwards). Idempotent;
   unref() after it does nothing. */
static napi_value udp_stop(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void *data;
  if (get_args(env, info, 1, argv) || napi_get_value_external(env, argv[0], &data) != napi_ok) {
    napi_throw_type_error(env, NULL, "weft_native.stop: bad arguments");
    return NULL;
  }
  receiver_t *r = (receiver_t *)data;
  if (r != NULL && !r->stopped) {
    r->stopped = 1;
    uv_poll_stop(&r->poll);
    receiver_release(r);
    uv_close((uv_handle_t *)&r->poll, receiver_free);
  }
  return int_value(env, 0);
}

/* netlinkOpen(receiveBuffer) -> fd | -errno: a non-blocking rtnetlink socket that has joined no group yet. */
static napi_value netlink_open(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint32_t rcvbuf;
  if (get_args(env, info, 1, argv) || get_u32(env, argv[0], &rcvbuf)) {
    napi_throw_type_error(env, NULL, "weft_native.netlinkOpen: bad arguments");
    return NULL;
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return int_value(env, -errno);
  /* FORCE (CAP_NET_ADMIN) is not capped by net.core.rmem_max; without the capability, the capped size. */
  int size = (int)rcvbuf;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  struct sockaddr_nl local;
  memset(&local, 0, sizeof local);
  local.nl_family = AF_NETLINK;
  if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) {
    int err = errno;
    close(fd);
    return int_value(env, -err);
  }
  return int_value(env, fd);
}

/* netlinkJoin(fd, group) -> 0 | -errno */
static napi_value netlink_join(napi_env env, napi_callback_info info) {
  int32_t fd;
  uint32_t group;
  if (get_fd_u32(env, info, "weft_native.netlinkJoin: bad arguments", &fd, &group)) return NULL;
  return int_value(env, setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0 ? -errno : 0);
}

/*
 * netlinkIgnorePort(fd, port) -> 0 | -errno: a socket filter that drops, in the kernel, every notification
 * whose sender port (nlmsg_pid) is `port`, i.e. the echoes of that socket's own requests. The kernel then
 * neither queues them nor wakes the reader for them (a notification is one message per datagram, so the
 * first header decides).
 */
static napi_value netlink_ignore_port(napi_env env, napi_callback_info info) {
  int32_t fd;
  uint32_t port;
  if (get_fd_u32(env, info, "weft_native.netlinkIgnorePort: bad arguments", &fd, &port)) return NULL;
  /* classic BPF loads words in network byte order; nlmsg_pid is in host order */
  struct sock_filter code[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct nlmsghdr, nlmsg_pid)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htonl(port), 0, 1),
    BPF_STMT(BPF_RET | BPF_K, 0),
    BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
  };
  struct sock_fprog program = { .len = sizeof code / sizeof code[0], .filter = code };
  return int_value(env, setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof program) < 0 ? -errno : 0);
}

/* unixDatagram(address, message) -> bytes sent | -errno. `address` is sun_path's bytes as they are: a path
 * (no terminating NUL needed), or a NUL and the name for the abstract namespace. The socket is non-blocking,
 * so a receiver that does not read costs EAGAIN rather than a stalled event loop. */
static napi_value unix_datagram(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void *address;
  size_t address_length;
  void *message;
  size_t message_length;
  if (get_args(env, info, 2, argv)
      || napi_get_buffer_info(env, argv[0], &address, &address_length) != napi_ok
      || napi_get_buffer_info(env, argv[1], &message, &message_length) != napi_ok) {
    napi_throw_type_error(env, NULL, "weft_native.unixDatagram: bad arguments");
    return NULL;
  }
  struct sockaddr_un to;
  if (address_length == 0 || address_length > sizeof to.sun_path) return int_value(env, -EINVAL);
  memset(&to, 0, sizeof to);
  to.sun_family = AF_UNIX;
  memcpy(to.sun_path, address, address_length);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return int_value(env, -errno);
  ssize_t sent;
  do sent = sendto(fd, message, message_length, MSG_NOSIGNAL, (struct sockaddr *)&to, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + address_length));
  while (sent < 0 && errno == EINTR);
  int err = sent < 0 ? errno : 0;
  close(fd);
  return int_value(env, sent < 0 ? -err : sent);
}

/* unref(handle): the receiver no longer keeps the event loop alive. */
static napi_value receiver_unref(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void *data;
  if (get_args(env, info, 1, argv) || napi_get_value_external(env, argv[0], &data) != napi_ok) {
    napi_throw_type_error(env, NULL, "weft_native.unref: bad arguments");
    return NULL;
  }
  receiver_t *r = (receiver_t *)data;
  if (r != NULL && !r->stopped) uv_unref((uv_handle_t *)&r->poll);
  return int_value(env, 0);
}

/*
 * sendFrame(fd, buffer, offset, length) -> bytes sent | -errno: buffer[offset, offset + length), a whole
 * Ethernet frame, out of the device the packet socket fd is bound to.
 */
static napi_value send_frame(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t fd;
  uint32_t offset, length;
  void *data;
  size_t size;
  if (get_args(env, info, 4, argv) || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &data, &size) != napi_ok || get_u32(env, argv[2], &offset) ||
      get_u32(env, argv[3], &length) || (size_t)offset + length > size) {
    napi_throw_type_error(env, NULL, "weft_native.sendFrame: bad arguments");
    return NULL;
  }
  ssize_t sent = send(fd, (char *)data + offset, length, MSG_DONTWAIT);
  return int_value(env, sent < 0 ? -errno : sent);
}

/* captureDrops(fd) -> frames the kernel dropped on packet socket fd since the last call (the kernel resets the count) | -errno */
static napi_value capture_drops(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (get_fd_only(env, info, "weft_native.captureDrops: bad arguments", &fd)) return NULL;
  /* tpacket_stats_v3 starts like tpacket_stats; the kernel copies what the socket's version has. */
  struct tpacket_stats_v3 stats;
  socklen_t length = sizeof stats;
  memset(&stats, 0, sizeof stats);
  if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &stats, &length) < 0) return int_value(env, -errno);
  return int_value(env, stats.tp_drops);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
    { "open", NULL, udp_open, NULL, NULL, NULL, napi_enumerable, NULL },
    { "close", NULL, udp_close, NULL, NULL, NULL, napi_enumerable, NULL },
    { "send", NULL, udp_send, NULL, NULL, NULL, napi_enumerable, NULL },
    { "receive", NULL, udp_receive, NULL, NULL, NULL, napi_enumerable, NULL },
    { "stop", NULL, udp_stop, NULL, NULL, NULL, napi_enumerable, NULL },
    { "unref", NULL, receiver_unref, NULL, NULL, NULL, napi_enumerable, NULL },
    { "captureDrops", NULL, capture_drops, NULL, NULL, NULL, napi_enumerable, NULL },
    { "sendFrame", NULL, send_frame, NULL, NULL, NULL, napi_enumerable, NULL },
    { "netlinkOpen", NULL, netlink_open, NULL, NULL, NULL, napi_enumerable, NULL },
    { "netlinkJoin", NULL, netlink_join, NULL, NULL, NULL, napi_enumerable, NULL },
    { "netlinkIgnorePort", NULL, netlink_ignore_port, NULL, NULL, NULL, napi_enumerable, NULL },
    { "unixDatagram", NULL, unix_datagram, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
