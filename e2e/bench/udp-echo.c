/*
 * UDP echo server and round-trip client for the wake-up benchmark (wakeup.ts), compiled at bench time
 * with `cc -O2`.
 *
 *   udp-echo server PORT
 *       Answers every datagram to its sender: one epoll_wait per wake-up, then recvfrom/sendto until the
 *       socket is empty (the C counterpart of the Node servers). Prints "ready" once bound; runs until killed.
 *
 *   udp-echo client ADDRESS PORT LOCAL_PORT WARMUP COUNT INTERVAL_US
 *       From LOCAL_PORT, WARMUP + COUNT round trips of 64 bytes, one started every INTERVAL_US. Prints the
 *       round-trip times of the last COUNT in microseconds, one a line. A reply missing after 1 s counts as
 *       lost (no line); a late reply to an earlier round trip is recognised by its sequence number and skipped.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD_BYTES 64

static void die(const char *what) {
  perror(what);
  exit(1);
}

static long number(const char *text, long min, long max, const char *what) {
  char *end;
  long value = strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || value < min || value > max) {
    fprintf(stderr, "udp-echo: %s must be an integer in [%ld, %ld], got %s\n", what, min, max, text);
    exit(2);
  }
  return value;
}

static int bound_socket(uint16_t port) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in local = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY) };
  if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) die("bind");
  return fd;
}

_Noreturn static void serve(uint16_t port) {
  int fd = bound_socket(port);
  int epoll = epoll_create1(0);
  if (epoll < 0) die("epoll_create1");
  struct epoll_event event = { .events = EPOLLIN };
  if (epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) < 0) die("epoll_ctl");
  printf("ready\n");
  fflush(stdout);
  char buffer[2048];
  for (;;) {
    if (epoll_wait(epoll, &event, 1, -1) < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (;;) {
      struct sockaddr_in from;
      socklen_t length = sizeof from;
      ssize_t received = recvfrom(fd, buffer, sizeof buffer, MSG_DONTWAIT, (struct sockaddr *)&from, &length);
      if (received < 0) break;
      sendto(fd, buffer, (size_t)received, 0, (struct sockaddr *)&from, length);
    }
  }
}

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int measure(const char *address, uint16_t port, uint16_t local_port, long warmup, long count, long interval_us) {
  int fd = bound_socket(local_port);
  struct sockaddr_in server = { .sin_family = AF_INET, .sin_port = htons(port) };
  if (inet_pton(AF_INET, address, &server.sin_addr) != 1) {
    fprintf(stderr, "udp-echo: not an IPv4 address: %s\n", address);
    return 2;
  }
  if (connect(fd, (struct sockaddr *)&server, sizeof server) < 0) die("connect");
  struct timeval timeout = { .tv_sec = 1 };
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) < 0) die("setsockopt SO_RCVTIMEO");
  char request[PAYLOAD_BYTES] = { 0 };
  char reply[2048];
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (uint32_t sequence = 0; sequence < (uint32_t)(warmup + count); sequence++) {
    memcpy(request, &sequence, sizeof sequence);
    int64_t sent_at = now_ns();
    if (send(fd, request, sizeof request, 0) < 0) die("send");
    for (;;) {
      ssize_t received = recv(fd, reply, sizeof reply, 0);
      if (received < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR) continue;
        die("recv");
      }
      if (received >= (ssize_t)sizeof sequence && memcmp(reply, &sequence, sizeof sequence) == 0) {
        if (sequence >= (uint32_t)warmup) printf("%.3f\n", (double)(now_ns() - sent_at) / 1000.0);
        break;
      }
    }
    next.tv_nsec += interval_us * 1000;
    next.tv_sec += next.tv_nsec / 1000000000;
    next.tv_nsec %= 1000000000;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {}
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "server") == 0) serve((uint16_t)number(argv[2], 1, 65535, "PORT"));
  if (argc == 8 && strcmp(argv[1], "client") == 0) {
    return measure(argv[2], (uint16_t)number(argv[3], 1, 65535, "PORT"), (uint16_t)number(argv[4], 1, 65535, "LOCAL_PORT"),
      number(argv[5], 0, 1000000, "WARMUP"), number(argv[6], 1, 1000000, "COUNT"), number(argv[7], 0, 10000000, "INTERVAL_US"));
  }
  fprintf(stderr, "usage: udp-echo server PORT\n       udp-echo client ADDRESS PORT LOCAL_PORT WARMUP COUNT INTERVAL_US\n");
  return 2;
}
