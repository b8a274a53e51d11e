/*
 * TCP helpers of the rendezvous: addresses, connect and listen with retries, and reads and writes
 * bounded by a deadline.
 *
 * Deadlines are absolute CLOCK_MONOTONIC times in milliseconds; a negative deadline means none.
 * Every socket is non-blocking and close-on-exec. Sockets opened here are closed in the child
 * after fork(), because a child's copy would keep a connection or a listening port open after
 * the parent closed it. The root would then never see a rank leave, and a later job could not
 * reuse the port. A forked child therefore cannot use its parent's bootstrap.
 */
#ifndef WF_BOOTSTRAP_SOCKET_H
#define WF_BOOTSTRAP_SOCKET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define WF_ADDR_TEXT_MAX 80 /* "[ipv6%scope]:port" */

typedef enum {
    WF_IO_OK = 0,
    WF_IO_TIMEOUT, /* the deadline passed */
    WF_IO_CLOSED,  /* the peer closed the connection (end of file) */
    WF_IO_ERROR    /* errno-style code in *error */
} wf_io_status_t;

int64_t wf_now_ms(void);

/* Milliseconds left until deadline_ms for poll(): 0 once passed, -1 for no deadline. */
int wf_poll_timeout(int64_t deadline_ms);

/* Sleep for ms milliseconds, but not past deadline_ms. */
void wf_sleep_until(int64_t deadline_ms, int ms);

/* Open a TCP socket, accept a connection, or close one, tracked for the fork rule above. */
int wf_fd_socket(int family);
int wf_fd_accept(int listen_fd, struct sockaddr_storage *peer, socklen_t *peerlen);
void wf_fd_close(int fd);

/* Write or read exactly size bytes before deadline_ms; *done counts the bytes read so far. */
wf_io_status_t wf_sock_send_all(int fd, const void *buf, size_t size, int64_t deadline_ms, int *error);
wf_io_status_t wf_sock_recv_all(int fd, void *buf, size_t size, int64_t deadline_ms, size_t *done, int *error);

/*
 * Split "host:port", "[ipv6]:port" or "name:port" into host and port (1 to 65535). name is the
 * variable the text came from, for the message.
 */
int wf_addr_parse(const char *text, const char *name, char *host, size_t hostlen, int *port, char *err,
                  size_t errlen);

/* Resolve host (numeric or a name) with port into the first address getaddrinfo returns. */
int wf_addr_resolve(const char *host, int port, struct sockaddr_storage *out, char *err, size_t errlen);

socklen_t wf_addr_len(const struct sockaddr *address);
int wf_addr_port(const struct sockaddr *address);
void wf_addr_set_port(struct sockaddr *address, int port);
int wf_addr_is_loopback(const struct sockaddr *address);

/* Format address as "1.2.3.4:5" or "[::1]:5". */
void wf_addr_text(const struct sockaddr *address, char *out, size_t outlen);

/*
 * Choose the address this host advertises: the first IPv4 (else IPv6) address of interface ifname
 * when ifname is not empty, else of the first up, non-loopback interface in getifaddrs() order,
 * else 127.0.0.1. The port is left 0. Logs the choice at INFO.
 */
int wf_addr_pick_local(const char *ifname, struct sockaddr_storage *out, char *err, size_t errlen);

/*
 * Connect to address, retrying with backoff (the listener may start later) until deadline_ms.
 * Returns WF_IO_OK with *fd_out set, or WF_IO_TIMEOUT / WF_IO_ERROR with the last errno in *error.
 */
wf_io_status_t wf_sock_connect(const struct sockaddr *address, int64_t deadline_ms, int *fd_out, int *error);

/*
 * Listen on address with SO_REUSEADDR, retrying while the port is in use until deadline_ms. When
 * the port is 0 the kernel chooses one; *bound receives the address actually bound.
 */
int wf_sock_listen(const struct sockaddr *address, int64_t deadline_ms, int *fd_out,
                   struct sockaddr_storage *bound, char *err, size_t errlen);

#endif /* WF_BOOTSTRAP_SOCKET_H */
