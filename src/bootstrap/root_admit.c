/*
 * Admission to the rendezvous: accept connections, send each a CHALLENGE, check the HELLO sent in
 * reply, and admit the rank. When every rank is in, close the listener and send WELCOME.
 * A connection that fails a check is logged with its peer address and closed, and the root keeps
 * waiting. A rank that proved the secret but disagrees with the job ends the rendezvous.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bootstrap/root_state.h"
#include "log.h"

void wf_root_close_pending(root_pending_t *pending)
{
    wf_fd_close(pending->fd);
    pending->fd = -1;
}

/*
 * Closing a socket with unread input makes TCP send a reset, which can destroy the ERROR frame
 * before the peer reads it, so discard what has already arrived first.
 */
static void discard_input(int fd)
{
    unsigned char sink[4096];
    for (int i = 0; i < 16 && recv(fd, sink, sizeof(sink), 0) > 0; i++)
        ;
}

void wf_root_reject_pending(root_pending_t *pending, weft_result_t code, const char *reason)
{
    WF_WARN(WF_SUB_BOOT, "rendezvous root rejected the connection from %s: %s", pending->peer, reason);
    wf_root_send_error(pending->fd, code, reason);
    discard_input(pending->fd);
    wf_root_close_pending(pending);
}

int wf_root_pending_slot(const wf_root_t *root, int64_t now_ms, int64_t *evictable_ms)
{
    int oldest = 0;
    *evictable_ms = -1;
    for (int i = 0; i < ROOT_MAX_PENDING; i++) {
        if (root->pending[i].fd < 0)
            return i;
        if (root->pending[i].hello_deadline_ms < root->pending[oldest].hello_deadline_ms)
            oldest = i;
    }
    /*
     * Evicting only handshakes that had time to reply keeps a burst of ranks (for example after the
     * root's process was descheduled) from evicting each other. Connections that never send a
     * HELLO still cannot keep every slot for the whole HELLO timeout.
     */
    *evictable_ms = root->pending[oldest].hello_deadline_ms - ROOT_HELLO_TIMEOUT_MS + ROOT_EVICT_AFTER_MS;
    return now_ms >= *evictable_ms ? oldest : -1;
}

void wf_root_accept(wf_root_t *root)
{
    while (!root->finished) {
        int64_t evictable_ms;
        int slot = wf_root_pending_slot(root, wf_now_ms(), &evictable_ms);
        if (slot < 0)
            return; /* The connection waits in the listen backlog, and fill_pollfds stops polling it. */
        struct sockaddr_storage peer;
        socklen_t peerlen;
        int fd = wf_fd_accept(root->listen_fd, &peer, &peerlen);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                wf_root_abort(root, WEFT_ERR_INTERNAL,
                              "the rendezvous root at %s ran out of file descriptors after %d of %d ranks connected; "
                              "raise the limit (ulimit -n) on the host of the root",
                              root->display, root->connected, root->nranks);
            return; /* EAGAIN: nothing more to accept; other errors concern only that connection */
        }

        root_pending_t *pending = &root->pending[slot];
        if (pending->fd >= 0)
            wf_root_reject_pending(pending, WEFT_ERR_TIMEOUT, "too many connections are waiting to send their HELLO");

        memset(pending, 0, sizeof(*pending));
        pending->fd = fd;
        pending->hello_deadline_ms = wf_now_ms() + ROOT_HELLO_TIMEOUT_MS;
        wf_addr_text((struct sockaddr *)&peer, pending->peer, sizeof(pending->peer));

        wf_challenge_t challenge = {.version = WF_BOOT_PROTOCOL_VERSION};
        unsigned char frame[WF_FRAME_HEADER_SIZE + WF_CHALLENGE_SIZE];
        int error = 0;
        if (wf_boot_random(challenge.nonce, sizeof(challenge.nonce)) < 0) {
            wf_root_reject_pending(pending, WEFT_ERR_INTERNAL, "the root failed to draw a random nonce");
            continue;
        }
        memcpy(pending->nonce, challenge.nonce, sizeof(pending->nonce));
        wf_frame_header_encode(frame, WF_FRAME_CHALLENGE, WF_CHALLENGE_SIZE);
        wf_challenge_encode(frame + WF_FRAME_HEADER_SIZE, &challenge);
        if (wf_sock_send_all(fd, frame, sizeof(frame), wf_now_ms() + 200, &error) != WF_IO_OK)
            wf_root_close_pending(pending);
    }
}

static void admit_all_connected(wf_root_t *root)
{
    wf_fd_close(root->listen_fd);
    root->listen_fd = -1;
    for (int i = 0; i < ROOT_MAX_PENDING; i++) {
        if (root->pending[i].fd >= 0)
            wf_root_reject_pending(&root->pending[i], WEFT_ERR_INVALID_ARGUMENT,
                                   "every rank of this job has already connected");
    }

    for (int r = 0; r < root->nranks; r++) {
        root_rank_t *rank = &root->ranks[r];
        wf_welcome_t welcome = {.nranks = (uint32_t)root->nranks};
        unsigned char frame[WF_FRAME_HEADER_SIZE + WF_WELCOME_SIZE];
        int error = 0;
        wf_welcome_mac(root->secret, rank->client_nonce, welcome.nranks, welcome.mac);
        wf_frame_header_encode(frame, WF_FRAME_WELCOME, WF_WELCOME_SIZE);
        wf_welcome_encode(frame + WF_FRAME_HEADER_SIZE, &welcome);
        if (wf_sock_send_all(rank->fd, frame, sizeof(frame), wf_now_ms() + 1000L * root->timeout_s, &error) !=
            WF_IO_OK) {
            WF_WARN(WF_SUB_BOOT, "rendezvous root failed to welcome rank %d at %s: %s", r, rank->peer,
                    strerror(error));
            wf_fd_close(rank->fd);
            rank->fd = -1;
            rank->left = 1;
            root->left++;
        }
    }
    WF_INFO(WF_SUB_BOOT, "rendezvous at %s: all %d ranks connected", root->display, root->nranks);
}

int wf_root_allocate_ranks(wf_root_t *root, int nranks)
{
    root->ranks = calloc((size_t)nranks, sizeof(*root->ranks));
    struct pollfd *grown = realloc(root->pollfds, (POLL_RANKS + (size_t)nranks) * sizeof(*grown));
    if (!root->ranks || !grown) {
        free(root->ranks);
        root->ranks = NULL;
        if (grown)
            root->pollfds = grown;
        return -1;
    }
    root->pollfds = grown;
    root->nranks = nranks;
    for (int r = 0; r < nranks; r++)
        root->ranks[r].fd = -1;
    return 0;
}

/* The connection proved the secret, so it belongs to the job: it gets the ERROR frame of the abort. */
static void hand_over_to_abort(wf_root_t *root, root_pending_t *pending)
{
    root->extra_fd = pending->fd;
    pending->fd = -1;
}

/* Check a HELLO whose secret proof is valid against the job; on success the rank is admitted. */
static void admit_rank(wf_root_t *root, root_pending_t *pending, const wf_hello_t *hello)
{
    if (root->nranks == 0) {
        if (hello->nranks < 1 || hello->nranks > WF_BOOT_MAX_RANKS) {
            hand_over_to_abort(root, pending);
            wf_root_abort(root, WEFT_ERR_INVALID_ARGUMENT, "rank %u at %s asks for %u ranks; the limit is 1 to %d",
                          hello->rank, pending->peer, hello->nranks, WF_BOOT_MAX_RANKS);
            return;
        }
        if (wf_root_allocate_ranks(root, (int)hello->nranks) < 0) {
            wf_root_reject_pending(pending, WEFT_ERR_NO_MEMORY, "the rendezvous root is out of memory");
            return;
        }
    }
    if (hello->nranks != (uint32_t)root->nranks) {
        hand_over_to_abort(root, pending);
        wf_root_abort(root, WEFT_ERR_INVALID_ARGUMENT,
                      "rank %u at %s was started with %u ranks but the rendezvous at %s expects %d; every rank must "
                      "use the same number of ranks (WEFT_SIZE, WORLD_SIZE or the nranks argument)",
                      hello->rank, pending->peer, hello->nranks, root->display, root->nranks);
        return;
    }
    if (hello->rank >= (uint32_t)root->nranks) {
        hand_over_to_abort(root, pending);
        wf_root_abort(root, WEFT_ERR_INVALID_ARGUMENT, "rank %u at %s is out of range: the job has %d ranks (0 to %d)",
                      hello->rank, pending->peer, root->nranks, root->nranks - 1);
        return;
    }
    root_rank_t *rank = &root->ranks[hello->rank];
    if (rank->fd >= 0) {
        hand_over_to_abort(root, pending);
        wf_root_abort(root, WEFT_ERR_INVALID_ARGUMENT,
                      "two processes claim rank %u: %s and %s; give every process a different rank", hello->rank,
                      rank->peer, pending->peer);
        return;
    }

    rank->fd = pending->fd;
    rank->left = 0;
    memcpy(rank->client_nonce, hello->client_nonce, sizeof(rank->client_nonce));
    memcpy(rank->peer, pending->peer, sizeof(rank->peer));
    pending->fd = -1;
    root->connected++;
    WF_TRACE(WF_SUB_BOOT, "rendezvous at %s: rank %u connected from %s (%d of %d)", root->display, hello->rank,
             rank->peer, root->connected, root->nranks);
    if (root->connected == root->nranks)
        admit_all_connected(root);
}

static void check_hello(wf_root_t *root, root_pending_t *pending)
{
    wf_hello_t hello;
    unsigned char expected[WF_BOOT_MAC_SIZE];
    char reason[256];

    wf_hello_decode(pending->buf + WF_FRAME_HEADER_SIZE, &hello);
    if (hello.version != WF_BOOT_PROTOCOL_VERSION) {
        snprintf(reason, sizeof(reason),
                 "the peer speaks rendezvous protocol version %u but the root speaks %u; run the same weft "
                 "version on every rank",
                 hello.version, WF_BOOT_PROTOCOL_VERSION);
        wf_root_reject_pending(pending, WEFT_ERR_INVALID_ARGUMENT, reason);
        return;
    }
    wf_hello_mac(root->secret, pending->nonce, &hello, expected);
    if (!wf_equal_const_time(expected, hello.mac, sizeof(expected))) {
        wf_root_reject_pending(pending, WEFT_ERR_INVALID_ARGUMENT,
                               "the job secret does not match; every rank must use the same unique id or WEFT_JOB_KEY");
        return;
    }
    admit_rank(root, pending, &hello);
}

void wf_root_read_hello(wf_root_t *root, root_pending_t *pending)
{
    size_t want = pending->got < WF_FRAME_HEADER_SIZE ? WF_FRAME_HEADER_SIZE : sizeof(pending->buf);
    ssize_t n = recv(pending->fd, pending->buf + pending->got, want - pending->got, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        WF_WARN(WF_SUB_BOOT, "rendezvous root: the connection from %s closed before a complete HELLO (%zu bytes)",
                pending->peer, pending->got);
        wf_root_close_pending(pending);
        return;
    }
    if (n < 0)
        return;
    pending->got += (size_t)n;

    if (pending->got == WF_FRAME_HEADER_SIZE) {
        wf_frame_header_t header;
        char reason[256];
        if (wf_frame_header_decode(pending->buf, pending->got, WF_HELLO_SIZE, &header, reason, sizeof(reason)) !=
            WF_FRAME_OK) {
            wf_root_reject_pending(pending, WEFT_ERR_INVALID_ARGUMENT, reason);
            return;
        }
        if (header.type != WF_FRAME_HELLO || header.length != WF_HELLO_SIZE) {
            snprintf(reason, sizeof(reason), "expected a HELLO frame of %d bytes, got type %u with %llu bytes",
                     WF_HELLO_SIZE, header.type, (unsigned long long)header.length);
            wf_root_reject_pending(pending, WEFT_ERR_INVALID_ARGUMENT, reason);
        }
        return;
    }
    if (pending->got == sizeof(pending->buf))
        check_hello(root, pending);
}

void wf_root_drop_unwelcomed(wf_root_t *root, int r)
{
    WF_WARN(WF_SUB_BOOT, "rendezvous at %s: rank %d at %s disconnected before all ranks arrived; waiting for it to "
                         "connect again",
            root->display, r, root->ranks[r].peer);
    wf_fd_close(root->ranks[r].fd);
    root->ranks[r].fd = -1;
    root->connected--;
}
