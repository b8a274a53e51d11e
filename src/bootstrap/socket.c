/*
 * TCP helpers of the rendezvous; see socket.h for the deadline and fork rules.
 */
#define _GNU_SOURCE /* accept4 */
#include "bootstrap/socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define CONNECT_BACKOFF_MIN_MS 10
#define CONNECT_BACKOFF_MAX_MS 500

int64_t wf_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int wf_poll_timeout(int64_t deadline_ms)
{
    if (deadline_ms < 0)
        return -1;
    int64_t left = deadline_ms - wf_now_ms();
    if (left <= 0)
        return 0;
    return left > 1000000000 ? 1000000000 : (int)left;
}

void wf_sleep_until(int64_t deadline_ms, int ms)
{
    int left = wf_poll_timeout(deadline_ms);
    if (left >= 0 && left < ms)
        ms = left;
    struct timespec pause = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) < 0 && errno == EINTR)
        ;
}

/* ---- sockets closed in a forked child -------------------------------------------------------- */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t registry_once = PTHREAD_ONCE_INIT;
static int *tracked_fds;
static size_t tracked_count, tracked_capacity;

static void lock_before_fork(void)
{
    pthread_mutex_lock(&registry_lock);
}

static void unlock_in_parent(void)
{
    pthread_mutex_unlock(&registry_lock);
}

/* The threads that used these sockets do not exist in the child. */
static void close_in_child(void)
{
    for (size_t i = 0; i < tracked_count; i++)
        close(tracked_fds[i]);
    tracked_count = 0;
    pthread_mutex_unlock(&registry_lock);
}

static void register_fork_handlers(void)
{
    pthread_atfork(lock_before_fork, unlock_in_parent, close_in_child);
}

/* Caller holds registry_lock. Returns -1 when the registry cannot grow. */
static int track_locked(int fd)
{
    if (tracked_count == tracked_capacity) {
        size_t capacity = tracked_capacity ? tracked_capacity * 2 : 64;
        int *grown = realloc(tracked_fds, capacity * sizeof(*grown));
        if (!grown)
            return -1;
        tracked_fds = grown;
        tracked_capacity = capacity;
    }
    tracked_fds[tracked_count++] = fd;
    return 0;
}

static int finish_tracking(int fd)
{
    if (fd >= 0 && track_locked(fd) < 0) {
        close(fd);
        fd = -1;
        errno = ENOMEM;
    }
    int saved = errno;
    pthread_mutex_unlock(&registry_lock);
    errno = saved;
    return fd;
}

int wf_fd_socket(int family)
{
    pthread_once(&registry_once, register_fork_handlers);
    pthread_mutex_lock(&registry_lock);
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    return finish_tracking(fd);
}

int wf_fd_accept(int listen_fd, struct sockaddr_storage *peer, socklen_t *peerlen)
{
    pthread_once(&registry_once, register_fork_handlers);
    pthread_mutex_lock(&registry_lock);
    *peerlen = sizeof(*peer);
    int fd = accept4(listen_fd, (struct sockaddr *)peer, peerlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return finish_tracking(fd);
}

void wf_fd_close(int fd)
{
    if (fd < 0)
        return;
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < tracked_count; i++) {
        if (tracked_fds[i] == fd) {
            tracked_fds[i] = tracked_fds[--tracked_count];
            break;
        }
    }
    close(fd);
    pthread_mutex_unlock(&registry_lock);
}

/* ---- bounded reads and writes ---------------------------------------------------------------- */

static wf_io_status_t wait_ready(int fd, short events, int64_t deadline_ms, int *error)
{
    for (;;) {
        struct pollfd entry = {.fd = fd, .events = events};
        int ready = poll(&entry, 1, wf_poll_timeout(deadline_ms));
        if (ready > 0)
            return WF_IO_OK; /* errors and hang-ups surface in the following send or recv */
        if (ready == 0)
            return WF_IO_TIMEOUT;
        if (errno != EINTR) {
            *error = errno;
            return WF_IO_ERROR;
        }
    }
}

wf_io_status_t wf_sock_send_all(int fd, const void *buf, size_t size, int64_t deadline_ms, int *error)
{
    const char *bytes = buf;
    size_t sent = 0;
    while (sent < size) {
        ssize_t n = send(fd, bytes + sent, size - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            *error = errno;
            return errno == EPIPE || errno == ECONNRESET ? WF_IO_CLOSED : WF_IO_ERROR;
        }
        wf_io_status_t status = wait_ready(fd, POLLOUT, deadline_ms, error);
        if (status != WF_IO_OK)
            return status;
    }
    return WF_IO_OK;
}

wf_io_status_t wf_sock_recv_all(int fd, void *buf, size_t size, int64_t deadline_ms, size_t *done, int *error)
{
    char *bytes = buf;
    *done = 0;
    while (*done < size) {
        ssize_t n = recv(fd, bytes + *done, size - *done, 0);
        if (n > 0) {
            *done += (size_t)n;
            continue;
        }
        if (n == 0)
            return WF_IO_CLOSED;
        if (errno == EINTR)
            continue;
        if (errno == ECONNRESET) {
            *error = errno;
            return WF_IO_CLOSED;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            *error = errno;
            return WF_IO_ERROR;
        }
        wf_io_status_t status = wait_ready(fd, POLLIN, deadline_ms, error);
        if (status != WF_IO_OK)
            return status;
    }
    return WF_IO_OK;
}

/* ---- addresses ------------------------------------------------------------------------------- */

static int parse_port(const char *text, int *port)
{
    if (*text == '\0' || strlen(text) > 5)
        return -1;
    int value = 0;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        value = value * 10 + (*c - '0');
    }
    if (value < 1 || value > 65535)
        return -1;
    *port = value;
    return 0;
}

int wf_addr_parse(const char *text, const char *name, char *host, size_t hostlen, int *port, char *err,
                  size_t errlen)
{
    const char *host_start = text, *host_end, *port_text;
    if (text[0] == '[') {
        host_start = text + 1;
        host_end = strchr(host_start, ']');
        if (!host_end || host_end[1] != ':') {
            snprintf(err, errlen, "invalid %s=%s: expected [ipv6-address]:port, for example [::1]:29500", name, text);
            return -1;
        }
        port_text = host_end + 2;
    } else {
        host_end = strrchr(text, ':');
        if (!host_end) {
            snprintf(err, errlen, "invalid %s=%s: the port is missing; expected host:port, for example 10.0.0.1:29500",
                     name, text);
            return -1;
        }
        if (memchr(text, ':', (size_t)(host_end - text))) {
            snprintf(err, errlen, "invalid %s=%s: put an IPv6 address in brackets, for example [fe80::1]:29500",
                     name, text);
            return -1;
        }
        port_text = host_end + 1;
    }

    size_t length = (size_t)(host_end - host_start);
    if (length == 0 || length >= hostlen) {
        snprintf(err, errlen, "invalid %s=%s: the host part is %s; expected host:port", name, text,
                 length == 0 ? "empty" : "too long");
        return -1;
    }
    if (parse_port(port_text, port) < 0) {
        snprintf(err, errlen, "invalid %s=%s: the port \"%s\" is not a number from 1 to 65535", name, text, port_text);
        return -1;
    }
    memcpy(host, host_start, length);
    host[length] = '\0';
    return 0;
}

int wf_addr_resolve(const char *host, int port, struct sockaddr_storage *out, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *found = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &found);
    if (rc != 0 || !found) {
        snprintf(err, errlen, "failed to resolve host \"%s\": %s; check the name or give a numeric address", host,
                 rc != 0 ? gai_strerror(rc) : "no address");
        if (found)
            freeaddrinfo(found);
        return -1;
    }
    memset(out, 0, sizeof(*out));
    memcpy(out, found->ai_addr, found->ai_addrlen);
    freeaddrinfo(found);
    wf_addr_set_port((struct sockaddr *)out, port);
    return 0;
}

socklen_t wf_addr_len(const struct sockaddr *address)
{
    return address->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

int wf_addr_port(const struct sockaddr *address)
{
    if (address->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)address)->sin6_port);
    return ntohs(((const struct sockaddr_in *)address)->sin_port);
}

void wf_addr_set_port(struct sockaddr *address, int port)
{
    if (address->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)address)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)address)->sin_port = htons((uint16_t)port);
}

int wf_addr_is_loopback(const struct sockaddr *address)
{
    if (address->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)address)->sin6_addr);
    return (ntohl(((const struct sockaddr_in *)address)->sin_addr.s_addr) >> 24) == 127;
}

void wf_addr_text(const struct sockaddr *address, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2] = "?";
    if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
        if (v6->sin6_scope_id != 0) {
            size_t used = strlen(host);
            snprintf(host + used, sizeof(host) - used, "%%%u", (unsigned)v6->sin6_scope_id);
        }
        snprintf(out, outlen, "[%s]:%d", host, wf_addr_port(address));
    } else if (address->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)address)->sin_addr, host, sizeof(host));
        snprintf(out, outlen, "%s:%d", host, wf_addr_port(address));
    } else {
        snprintf(out, outlen, "(address family %d)", address->sa_family);
    }
}

/* Rank of an address for advertising: IPv4 first, then global IPv6, then link-local IPv6. */
static int address_preference(const struct sockaddr *address)
{
    if (address->sa_family == AF_INET)
        return 3;
    if (address->sa_family == AF_INET6)
        return IN6_IS_ADDR_LINKLOCAL(&((const struct sockaddr_in6 *)address)->sin6_addr) ? 1 : 2;
    return 0;
}

static void list_interfaces(const struct ifaddrs *list, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (const struct ifaddrs *entry = list; entry; entry = entry->ifa_next) {
        if (!entry->ifa_addr || address_preference(entry->ifa_addr) == 0 || strstr(out, entry->ifa_name))
            continue;
        int n = snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", entry->ifa_name);
        if (n < 0 || (size_t)n >= outlen - used)
            break;
        used += (size_t)n;
    }
}

int wf_addr_pick_local(const char *ifname, struct sockaddr_storage *out, char *err, size_t errlen)
{
    struct ifaddrs *list = NULL;
    if (getifaddrs(&list) < 0) {
        snprintf(err, errlen, "failed to list network interfaces: %s", strerror(errno));
        return -1;
    }

    const struct ifaddrs *best = NULL;
    int best_preference = 0, candidates = 0;
    for (const struct ifaddrs *entry = list; entry; entry = entry->ifa_next) {
        int preference = entry->ifa_addr ? address_preference(entry->ifa_addr) : 0;
        if (preference == 0 || !(entry->ifa_flags & IFF_UP))
            continue;
        if (ifname[0] ? strcmp(entry->ifa_name, ifname) != 0 : (entry->ifa_flags & IFF_LOOPBACK) != 0)
            continue;
        candidates++;
        if (preference > best_preference) {
            best = entry;
            best_preference = preference;
        }
    }

    memset(out, 0, sizeof(*out));
    if (best) {
        memcpy(out, best->ifa_addr, best->ifa_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                        : sizeof(struct sockaddr_in));
        char text[WF_ADDR_TEXT_MAX];
        wf_addr_text((struct sockaddr *)out, text, sizeof(text));
        WF_INFO(WF_SUB_BOOT, "advertising address %s of interface %s (%s; %d candidate addresses)", text,
                best->ifa_name, ifname[0] ? "chosen by WEFT_SOCKET_IFNAME" : "first up non-loopback interface",
                candidates);
    } else if (ifname[0]) {
        char names[256];
        list_interfaces(list, names, sizeof(names));
        snprintf(err, errlen,
                 "WEFT_SOCKET_IFNAME=%s names no up interface with an IP address; interfaces with addresses: %s",
                 ifname, names[0] ? names : "none");
        freeifaddrs(list);
        return -1;
    } else {
        struct sockaddr_in *v4 = (struct sockaddr_in *)out;
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        WF_INFO(WF_SUB_BOOT, "advertising 127.0.0.1: no up non-loopback interface has an IP address, so only "
                             "processes on this host can connect");
    }
    freeifaddrs(list);
    return 0;
}

/* ---- connect and listen ---------------------------------------------------------------------- */

/*
 * Connecting to a local port with no listener can make TCP connect the socket to itself, when the
 * kernel picks the same port as the source. That connection would hold the port the root needs.
 */
static int is_connected_to_self(int fd)
{
    struct sockaddr_storage local, peer;
    socklen_t locallen = sizeof(local), peerlen = sizeof(peer);
    if (getsockname(fd, (struct sockaddr *)&local, &locallen) < 0 ||
        getpeername(fd, (struct sockaddr *)&peer, &peerlen) < 0)
        return 0;
    return locallen == peerlen && memcmp(&local, &peer, locallen) == 0;
}

/* One attempt; returns 0 on a connection, else an errno value. */
static int connect_once(int fd, const struct sockaddr *address, int64_t deadline_ms)
{
    if (connect(fd, address, wf_addr_len(address)) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return errno;

    struct pollfd entry = {.fd = fd, .events = POLLOUT};
    int ready;
    do
        ready = poll(&entry, 1, wf_poll_timeout(deadline_ms));
    while (ready < 0 && errno == EINTR);
    if (ready == 0)
        return ETIMEDOUT;
    if (ready < 0)
        return errno;

    int error = 0;
    socklen_t errorlen = sizeof(error);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &errorlen) < 0)
        return errno;
    return error;
}

wf_io_status_t wf_sock_connect(const struct sockaddr *address, int64_t deadline_ms, int *fd_out, int *error)
{
    int backoff_ms = CONNECT_BACKOFF_MIN_MS;
    for (;;) {
        int fd = wf_fd_socket(address->sa_family);
        if (fd < 0) {
            *error = errno;
            return WF_IO_ERROR;
        }
        int rc = connect_once(fd, address, deadline_ms);
        if (rc == 0 && is_connected_to_self(fd))
            rc = ECONNREFUSED;
        if (rc == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            *fd_out = fd;
            return WF_IO_OK;
        }
        wf_fd_close(fd);
        *error = rc;
        if (rc == EAFNOSUPPORT || rc == EACCES || rc == EPERM)
            return WF_IO_ERROR;
        if (wf_poll_timeout(deadline_ms) == 0)
            return WF_IO_TIMEOUT;
        wf_sleep_until(deadline_ms, backoff_ms);
        backoff_ms = backoff_ms * 2 > CONNECT_BACKOFF_MAX_MS ? CONNECT_BACKOFF_MAX_MS : backoff_ms * 2;
    }
}

int wf_sock_listen(const struct sockaddr *address, int64_t deadline_ms, int *fd_out,
                   struct sockaddr_storage *bound, char *err, size_t errlen)
{
    char text[WF_ADDR_TEXT_MAX];
    wf_addr_text(address, text, sizeof(text));
    int backoff_ms = CONNECT_BACKOFF_MIN_MS;
    for (;;) {
        int fd = wf_fd_socket(address->sa_family);
        if (fd < 0) {
            snprintf(err, errlen, "failed to create a socket to listen on %s: %s", text, strerror(errno));
            return -1;
        }
        int one = 1, zero = 0;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (address->sa_family == AF_INET6) /* a wildcard IPv6 listener also accepts IPv4 */
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        if (bind(fd, address, wf_addr_len(address)) == 0 && listen(fd, SOMAXCONN) == 0) {
            socklen_t boundlen = sizeof(*bound);
            getsockname(fd, (struct sockaddr *)bound, &boundlen);
            *fd_out = fd;
            return 0;
        }
        int saved = errno;
        wf_fd_close(fd);
        if (saved != EADDRINUSE || wf_poll_timeout(deadline_ms) == 0) {
            snprintf(err, errlen, "failed to listen on %s: %s%s", text, strerror(saved),
                     saved == EADDRINUSE ? "; another process holds the port (a previous job, or torchrun's "
                                           "store when the port is MASTER_PORT), so choose a free port"
                                         : "");
            return -1;
        }
        wf_sleep_until(deadline_ms, backoff_ms);
        backoff_ms = backoff_ms * 2 > CONNECT_BACKOFF_MAX_MS ? CONNECT_BACKOFF_MAX_MS : backoff_ms * 2;
    }
}
