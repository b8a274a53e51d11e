/*
 * The rank side of the TCP rendezvous, and the unique id that names a rendezvous.
 *
 * A rank connects to the root, retrying until the deadline because the root may start later. It
 * replies to the root's CHALLENGE with a HELLO that proves the job secret, then waits for the
 * WELCOME that proves the root has the secret too. Each allgather is one round: send this rank's block,
 * receive every rank's block in rank order. A failure leaves the bootstrap broken: later calls
 * return the same code at once and last_error keeps the first message.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bootstrap/internal.h"
#include "bootstrap/socket.h"
#include "log.h"

/*
 * Extra time a rank waits for the root beyond its own timeout, so that when both give up the
 * root's ERROR frame, which names the missing ranks, arrives before the rank's own timeout.
 */
#define CLIENT_GRACE_MS 1000

typedef struct {
    wf_bootstrap_common_t common;
    int fd;
    int timeout_s;
    const char *root_host; /* process hosting the root, named in messages */
    weft_result_t broken; /* result of the first failed operation, WEFT_SUCCESS while healthy */
    uint64_t round;
    char root_text[WF_ADDR_TEXT_MAX];
    unsigned char *scratch; /* nranks bytes for barrier */
    wf_root_t *root;        /* the root this process hosts and owns, or NULL */
    pthread_mutex_t send_lock; /* status records are sent from another thread than the rounds */
} wf_tcp_bootstrap_t;

/* ---- receiving from the root ----------------------------------------------------------------- */

static weft_result_t io_failure(wf_io_status_t status, int error, const char *root_text, const char *what,
                                int timeout_s, char *err, size_t errlen)
{
    if (status == WF_IO_TIMEOUT)
        return wf_boot_error(err, errlen, WEFT_ERR_TIMEOUT,
                             "timed out after %d s waiting for %s from the rendezvous root at %s; the root did not "
                             "answer (check that rank 0, or the process that created the unique id, is running)",
                             timeout_s, what, root_text);
    if (status == WF_IO_CLOSED)
        return wf_boot_error(err, errlen, WEFT_ERR_REMOTE,
                             "the rendezvous root at %s closed the connection while this rank waited for %s; the "
                             "process hosting the root (rank 0 or the creator of the unique id) may have exited",
                             root_text, what);
    return wf_boot_error(err, errlen, WEFT_ERR_REMOTE, "failed to exchange %s with the rendezvous root at %s: %s",
                         what, root_text, strerror(error));
}

/*
 * Read one frame of the expected type and exact length into payload. An ERROR frame from the
 * root becomes its code and message, and sets *reported when reported is not NULL.
 */
static weft_result_t recv_frame(int fd, const char *root_text, const char *what, uint32_t expected_type,
                                uint64_t expected_length, void *payload, int64_t deadline_ms, int timeout_s,
                                int *reported, char *err, size_t errlen)
{
    unsigned char header_bytes[WF_FRAME_HEADER_SIZE];
    unsigned char error_payload[4 + WF_FRAME_ERROR_TEXT_MAX];
    wf_frame_header_t header;
    char reason[256];
    size_t done;
    int error = 0;

    wf_io_status_t status = wf_sock_recv_all(fd, header_bytes, sizeof(header_bytes), deadline_ms, &done, &error);
    if (status != WF_IO_OK)
        return io_failure(status, error, root_text, what, timeout_s, err, errlen);
    uint64_t limit = expected_length > sizeof(error_payload) ? expected_length : sizeof(error_payload);
    if (wf_frame_header_decode(header_bytes, sizeof(header_bytes), limit, &header, reason, sizeof(reason)) !=
        WF_FRAME_OK)
        return wf_boot_error(err, errlen, WEFT_ERR_REMOTE,
                             "the rendezvous root at %s sent %s; check that the address belongs to a weft rendezvous",
                             root_text, reason);

    if (header.type == WF_FRAME_ERROR) {
        weft_result_t code;
        char message[WF_FRAME_ERROR_TEXT_MAX + 1];
        status = wf_sock_recv_all(fd, error_payload, (size_t)header.length, deadline_ms, &done, &error);
        if (status != WF_IO_OK)
            return io_failure(status, error, root_text, "an error report", timeout_s, err, errlen);
        if (wf_frame_error_decode(error_payload, (size_t)header.length, &code, message, sizeof(message)) < 0)
            return wf_boot_error(err, errlen, WEFT_ERR_REMOTE,
                                 "the rendezvous root at %s sent a malformed error report", root_text);
        if (reported)
            *reported = 1;
        return wf_boot_error(err, errlen, code, "the rendezvous root at %s reported: %s", root_text, message);
    }
    if (header.type != expected_type || header.length != expected_length)
        return wf_boot_error(err, errlen, WEFT_ERR_REMOTE,
                             "the rendezvous root at %s sent a frame of type %u with %llu bytes while this rank "
                             "waited for %s (type %u, %llu bytes); the ranks disagree on the protocol",
                             root_text, header.type, (unsigned long long)header.length, what, expected_type,
                             (unsigned long long)expected_length);
    if (expected_length == 0)
        return WEFT_SUCCESS;
    status = wf_sock_recv_all(fd, payload, (size_t)expected_length, deadline_ms, &done, &error);
    if (status != WF_IO_OK)
        return io_failure(status, error, root_text, what, timeout_s, err, errlen);
    return WEFT_SUCCESS;
}

/* ---- operations ------------------------------------------------------------------------------ */

/*
 * A send can fail because the root gave up and closed the connection. Its ERROR frame, which
 * gives the reason, may then already wait in the receive buffer, so look for it first.
 */
static weft_result_t send_failed(wf_tcp_bootstrap_t *b, wf_io_status_t status, int error, const char *what)
{
    int reported = 0;
    weft_result_t result = recv_frame(b->fd, b->root_text, what, WF_FRAME_ERROR, 0, NULL, wf_now_ms() + 500,
                                      b->timeout_s, &reported, b->common.last_error, sizeof(b->common.last_error));
    if (reported)
        return result;
    return io_failure(status, error, b->root_text, what, b->timeout_s, b->common.last_error,
                      sizeof(b->common.last_error));
}

static weft_result_t tcp_allgather(wf_bootstrap_t *base, const void *mine, void *all, size_t length)
{
    wf_tcp_bootstrap_t *b = (wf_tcp_bootstrap_t *)base;
    if (b->broken != WEFT_SUCCESS)
        return b->broken; /* last_error still contains the first failure */
    if (length > 0 && (!mine || !all))
        return wf_boot_fail(&b->common, WEFT_ERR_INVALID_ARGUMENT,
                            "bootstrap allgather of %zu bytes on rank %d got a NULL buffer", length, base->rank);
    if (length > WF_FRAME_MAX_PAYLOAD / (uint64_t)base->nranks)
        return wf_boot_fail(&b->common, WEFT_ERR_INVALID_ARGUMENT,
                            "bootstrap allgather of %zu bytes per rank on rank %d exceeds the rendezvous limit of "
                            "%llu bytes for all %d ranks together",
                            length, base->rank, (unsigned long long)WF_FRAME_MAX_PAYLOAD, base->nranks);

    char what[64];
    snprintf(what, sizeof(what), "bootstrap round %llu", (unsigned long long)b->round);
    int64_t deadline_ms = wf_now_ms() + 1000L * b->timeout_s;
    unsigned char header[WF_FRAME_HEADER_SIZE];
    int error = 0;
    weft_result_t result;

    wf_frame_header_encode(header, WF_FRAME_DATA, length);
    pthread_mutex_lock(&b->send_lock);
    wf_io_status_t status = wf_sock_send_all(b->fd, header, sizeof(header), deadline_ms, &error);
    if (status == WF_IO_OK && length > 0)
        status = wf_sock_send_all(b->fd, mine, length, deadline_ms, &error);
    pthread_mutex_unlock(&b->send_lock);
    if (status != WF_IO_OK)
        result = send_failed(b, status, error, what);
    else
        result = recv_frame(b->fd, b->root_text, what, WF_FRAME_DATA, (uint64_t)length * (uint64_t)base->nranks, all,
                            deadline_ms + CLIENT_GRACE_MS, b->timeout_s, NULL, b->common.last_error,
                            sizeof(b->common.last_error));
    if (result != WEFT_SUCCESS) {
        b->broken = result;
        WF_ERROR(WF_SUB_BOOT, "%s", b->common.last_error);
        return result;
    }
    b->round++;
    return WEFT_SUCCESS;
}

static weft_result_t tcp_barrier(wf_bootstrap_t *base)
{
    wf_tcp_bootstrap_t *b = (wf_tcp_bootstrap_t *)base;
    unsigned char token = 1;
    return tcp_allgather(base, &token, b->scratch, 1);
}

/*
 * Report, without blocking, whether the root has given up on the job since the last operation.
 * Between rounds the root sends nothing but an ERROR frame (for example when a rank was lost), and
 * a closed connection means the root's process is gone.
 */
static weft_result_t tcp_check(wf_bootstrap_t *base)
{
    wf_tcp_bootstrap_t *b = (wf_tcp_bootstrap_t *)base;
    if (b->broken != WEFT_SUCCESS)
        return b->broken;
    struct pollfd descriptor = {.fd = b->fd, .events = POLLIN};
    if (poll(&descriptor, 1, 0) <= 0)
        return WEFT_SUCCESS;
    /* A close or reset with nothing left to read means the root's process ended without an error frame. */
    char next;
    ssize_t peeked = recv(b->fd, &next, 1, MSG_PEEK | MSG_DONTWAIT);
    if (peeked == 0 || (peeked < 0 && errno == ECONNRESET)) {
        b->broken = wf_boot_error(b->common.last_error, sizeof(b->common.last_error), WEFT_ERR_REMOTE,
                                  "%s, which hosts the rendezvous root at %s, left the job: its connection to this "
                                  "rank closed, so its process crashed, was killed, or destroyed its communicator",
                                  b->root_host, b->root_text);
        return b->broken;
    }
    weft_result_t result = recv_frame(b->fd, b->root_text, "the state of the job", WF_FRAME_ERROR, 0, NULL,
                                      wf_now_ms() + 500, b->timeout_s, NULL, b->common.last_error,
                                      sizeof(b->common.last_error));
    if (result == WEFT_SUCCESS) /* an empty ERROR frame cannot be sent, so this is a protocol slip */
        result = wf_boot_error(b->common.last_error, sizeof(b->common.last_error), WEFT_ERR_REMOTE,
                               "the rendezvous root at %s sent data between rounds", b->root_text);
    b->broken = result;
    return result;
}

static weft_result_t tcp_publish(wf_bootstrap_t *base, const void *record, size_t length)
{
    wf_tcp_bootstrap_t *b = (wf_tcp_bootstrap_t *)base;
    if (b->broken != WEFT_SUCCESS || length > WF_BOOT_STATUS_MAX)
        return b->broken != WEFT_SUCCESS ? b->broken : WEFT_ERR_INVALID_ARGUMENT;
    unsigned char frame[WF_FRAME_HEADER_SIZE + WF_BOOT_STATUS_MAX];
    wf_frame_header_encode(frame, WF_FRAME_STATUS, length);
    memcpy(frame + WF_FRAME_HEADER_SIZE, record, length);
    int error = 0;
    pthread_mutex_lock(&b->send_lock);
    wf_io_status_t status = wf_sock_send_all(b->fd, frame, WF_FRAME_HEADER_SIZE + length, wf_now_ms() + 1000, &error);
    pthread_mutex_unlock(&b->send_lock);
    /* A failed send shows up in the next check or round, which reads the root's reason. */
    return status == WF_IO_OK ? WEFT_SUCCESS : WEFT_ERR_REMOTE;
}

static weft_result_t tcp_query(wf_bootstrap_t *base, void *slots)
{
    wf_tcp_bootstrap_t *b = (wf_tcp_bootstrap_t *)base;
    if (b->broken != WEFT_SUCCESS)
        return b->broken;
    unsigned char header[WF_FRAME_HEADER_SIZE];
    wf_frame_header_encode(header, WF_FRAME_QUERY, 0);
    int error = 0;
    int64_t deadline_ms = wf_now_ms() + 2000;
    pthread_mutex_lock(&b->send_lock);
    wf_io_status_t status = wf_sock_send_all(b->fd, header, sizeof(header), deadline_ms, &error);
    pthread_mutex_unlock(&b->send_lock);
    if (status != WF_IO_OK)
        return WEFT_ERR_REMOTE;
    char err[WF_BOOT_ERROR_MAX];
    return recv_frame(b->fd, b->root_text, "the status of every rank", WF_FRAME_TABLE,
                      (uint64_t)base->nranks * WF_BOOT_STATUS_SLOT, slots, deadline_ms, 2, NULL, err, sizeof(err));
}

static void tcp_destroy(wf_bootstrap_t *base)
{
    wf_tcp_bootstrap_t *b = (wf_tcp_bootstrap_t *)base;
    if (!b)
        return;
    /*
     * BYE marks this close as deliberate. A close without it means the process died, and the root
     * then fails every other rank at once. Best effort: a broken connection needs no BYE.
     */
    if (b->fd >= 0 && b->broken == WEFT_SUCCESS && !base->skip_goodbye) {
        unsigned char header[WF_FRAME_HEADER_SIZE];
        int error = 0;
        wf_frame_header_encode(header, WF_FRAME_BYE, 0);
        (void)wf_sock_send_all(b->fd, header, sizeof(header), wf_now_ms() + 1000, &error);
    }
    wf_fd_close(b->fd);
    wf_root_release(b->root);
    pthread_mutex_destroy(&b->send_lock);
    free(b->scratch);
    free(b);
}

/* ---- connecting ------------------------------------------------------------------------------ */

/* Reply to the CHALLENGE with a HELLO, then wait for the WELCOME sent once every rank is in. */
static weft_result_t handshake(wf_tcp_bootstrap_t *b, const unsigned char secret[WF_BOOT_SECRET_SIZE],
                               int64_t deadline_ms, char *err, size_t errlen)
{
    unsigned char challenge_bytes[WF_CHALLENGE_SIZE];
    unsigned char hello_frame[WF_FRAME_HEADER_SIZE + WF_HELLO_SIZE];
    unsigned char welcome_bytes[WF_WELCOME_SIZE], expected[WF_BOOT_MAC_SIZE];
    wf_challenge_t challenge;
    wf_welcome_t welcome;
    int error = 0;

    weft_result_t result = recv_frame(b->fd, b->root_text, "the rendezvous challenge", WF_FRAME_CHALLENGE,
                                      WF_CHALLENGE_SIZE, challenge_bytes, deadline_ms, b->timeout_s, NULL, err, errlen);
    if (result != WEFT_SUCCESS)
        return result;
    wf_challenge_decode(challenge_bytes, &challenge);
    if (challenge.version != WF_BOOT_PROTOCOL_VERSION)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT,
                             "the rendezvous root at %s speaks protocol version %u but this rank speaks %u; run the "
                             "same weft version on every rank",
                             b->root_text, challenge.version, WF_BOOT_PROTOCOL_VERSION);

    wf_hello_t hello = {.version = WF_BOOT_PROTOCOL_VERSION,
                        .rank = (uint32_t)b->common.base.rank,
                        .nranks = (uint32_t)b->common.base.nranks};
    if (wf_boot_random(hello.client_nonce, sizeof(hello.client_nonce)) < 0)
        return wf_boot_error(err, errlen, WEFT_ERR_INTERNAL, "failed to draw a random nonce: %s", strerror(errno));
    wf_hello_mac(secret, challenge.nonce, &hello, hello.mac);
    wf_frame_header_encode(hello_frame, WF_FRAME_HELLO, WF_HELLO_SIZE);
    wf_hello_encode(hello_frame + WF_FRAME_HEADER_SIZE, &hello);
    wf_io_status_t status = wf_sock_send_all(b->fd, hello_frame, sizeof(hello_frame), deadline_ms, &error);
    if (status != WF_IO_OK)
        return io_failure(status, error, b->root_text, "the HELLO", b->timeout_s, err, errlen);

    result = recv_frame(b->fd, b->root_text, "every rank to connect", WF_FRAME_WELCOME, WF_WELCOME_SIZE,
                        welcome_bytes, deadline_ms, b->timeout_s, NULL, err, errlen);
    if (result != WEFT_SUCCESS)
        return result;
    wf_welcome_decode(welcome_bytes, &welcome);
    wf_welcome_mac(secret, hello.client_nonce, hello.nranks, expected);
    if (welcome.nranks != hello.nranks || !wf_equal_const_time(expected, welcome.mac, sizeof(expected)))
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT,
                             "the rendezvous root at %s could not prove that it knows the job secret; another "
                             "service or another job may be listening at that address",
                             b->root_text);
    return WEFT_SUCCESS;
}

weft_result_t wf_tcp_bootstrap_connect(wf_bootstrap_t **out, const char *method, const struct sockaddr *root_address,
                                       const unsigned char secret[WF_BOOT_SECRET_SIZE], int rank, int nranks,
                                       int timeout_s, wf_root_t *owned_root, char *err, size_t errlen)
{
    int64_t deadline_ms = wf_now_ms() + 1000L * timeout_s;
    weft_result_t result;
    int error = 0;

    wf_tcp_bootstrap_t *b = calloc(1, sizeof(*b));
    unsigned char *scratch = malloc((size_t)nranks);
    if (!b || !scratch) {
        free(b);
        free(scratch);
        wf_root_release(owned_root);
        return wf_boot_error(err, errlen, WEFT_ERR_NO_MEMORY, "failed to allocate the bootstrap of %d ranks", nranks);
    }
    b->common.base = (wf_bootstrap_t){.rank = rank,
                                      .nranks = nranks,
                                      .method = method,
                                      .allgather = tcp_allgather,
                                      .barrier = tcp_barrier,
                                      .check = tcp_check,
                                      .publish = tcp_publish,
                                      .query = tcp_query,
                                      .destroy = tcp_destroy};
    pthread_mutex_init(&b->send_lock, NULL);
    b->scratch = scratch;
    b->root = owned_root;
    b->timeout_s = timeout_s;
    /* WEFT_ROOT and torchrun start the root on rank 0, and a unique id's root runs in the id's creator. */
    b->root_host = strcmp(method, "unique-id") == 0 ? "the process that created the unique id" : "rank 0";
    wf_addr_text(root_address, b->root_text, sizeof(b->root_text));

    wf_io_status_t status = wf_sock_connect(root_address, deadline_ms, &b->fd, &error);
    if (status != WF_IO_OK) {
        b->fd = -1;
        if (status == WF_IO_TIMEOUT)
            result = wf_boot_error(err, errlen, WEFT_ERR_TIMEOUT,
                                   "rank %d could not connect to the rendezvous root at %s within %d s (last error: "
                                   "%s); check that rank 0, or the process that created the unique id, is running "
                                   "and that this host can reach %s",
                                   rank, b->root_text, timeout_s, strerror(error), b->root_text);
        else
            result = wf_boot_error(err, errlen, WEFT_ERR_REMOTE,
                                   "rank %d failed to connect to the rendezvous root at %s: %s", rank, b->root_text,
                                   strerror(error));
        goto fail;
    }

    result = handshake(b, secret, deadline_ms + CLIENT_GRACE_MS, err, errlen);
    if (result != WEFT_SUCCESS)
        goto fail;
    WF_INFO(WF_SUB_BOOT, "rank %d of %d joined the rendezvous at %s (%s)", rank, nranks, b->root_text, method);
    *out = &b->common.base;
    return WEFT_SUCCESS;

fail:
    tcp_destroy(&b->common.base);
    return result;
}
