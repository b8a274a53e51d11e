/*
 * The TCP rendezvous root: one thread that admits the ranks of a job (root_admit.c) and then
 * serves rounds of allgather.
 *
 * Admission: every accepted connection gets a CHALLENGE with a fresh nonce and must reply with a
 * HELLO that proves the job secret, within ROOT_HELLO_TIMEOUT_MS. Connections that fail are
 * logged with their peer address and closed; the root keeps waiting for the real ranks. When all
 * nranks ranks are in, the root closes its listening socket at once, so the port is free for the
 * next job, and sends every rank a WELCOME.
 *
 * Rounds: the root reads one DATA frame from every rank (all of the same length), then sends the
 * concatenation in rank order to every rank. Three events end the rendezvous: a round that does
 * not complete within timeout_s of its first block, a rank that leaves while others still need
 * it, and a malformed frame from a rank. Every rank then gets an ERROR frame that names the cause,
 * and the root closes all connections. The thread exits after that, or when every rank has closed
 * its connection.
 *
 * Ownership: the bootstrap of the rank in the hosting process owns the root (rank 0 for WEFT_ROOT
 * and torchrun; for a unique id, the first rank of the creating process adopts it). Its destroy
 * wakes the thread through an eventfd and joins it, so the process cannot exit while the root
 * still sends a round's results to the other ranks. On that request the root closes every
 * connection, after an ERROR frame if a round was in progress, and the thread ends. A root that no
 * bootstrap adopted runs until every rank has closed its connection and then frees itself.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bootstrap/root_state.h"
#include "log.h"

/* Roots started by wf_bootstrap_create_id that no bootstrap of this process has adopted. */
static pthread_mutex_t roots_lock = PTHREAD_MUTEX_INITIALIZER;
static wf_root_t *unowned_roots;

/* ---- messages -------------------------------------------------------------------------------- */

/* Append "2, 3, 5-9" for the ranks where missing[r] is set; returns how many there are. */
static int format_rank_list(const wf_root_t *root, int (*missing)(const root_rank_t *), char *out, size_t outlen)
{
    size_t used = 0;
    int count = 0;
    out[0] = '\0';
    for (int r = 0; r < root->nranks; r++) {
        if (!missing(&root->ranks[r]))
            continue;
        int last = r;
        while (last + 1 < root->nranks && missing(&root->ranks[last + 1]))
            last++;
        count += last - r + 1;
        if (used + 32 < outlen) {
            int n = last == r ? snprintf(out + used, outlen - used, "%s%d", used ? ", " : "", r)
                              : snprintf(out + used, outlen - used, "%s%d-%d", used ? ", " : "", r, last);
            used += n > 0 ? (size_t)n : 0;
        } else if (used > 0 && used + 5 < outlen && out[used - 1] != '.') {
            used += (size_t)snprintf(out + used, outlen - used, ", ...");
        }
        r = last;
    }
    return count;
}

static int rank_never_connected(const root_rank_t *rank)
{
    return rank->fd < 0 && !rank->left;
}

static int rank_not_submitted(const root_rank_t *rank)
{
    return !rank->submitted;
}

static int rank_has_left(const root_rank_t *rank)
{
    return rank->left;
}

/* ---- ending the rendezvous ------------------------------------------------------------------- */

void wf_root_send_error(int fd, weft_result_t code, const char *message)
{
    unsigned char frame[ROOT_ERROR_FRAME_MAX];
    size_t size = wf_frame_error_build(frame, code, message);
    int error = 0;
    /* Best effort with a short bound: the frame fits an empty socket buffer. */
    wf_sock_send_all(fd, frame, size, wf_now_ms() + 200, &error);
}

/*
 * Wait until every rank has read what it was sent and closed, ROOT_DRAIN_MS passed, or the owner
 * left. Closing earlier could reset a connection whose peer is still sending.
 */
static void drain_ranks(wf_root_t *root)
{
    int64_t deadline_ms = wf_now_ms() + ROOT_DRAIN_MS;
    unsigned char sink[4096];
    while (!atomic_load(&root->owner_left)) {
        int open = 0;
        root->pollfds[POLL_WAKE] = (struct pollfd){.fd = root->wake_fd, .events = POLLIN};
        for (int r = 0; r < root->nranks; r++) {
            root->pollfds[POLL_RANKS + r] = (struct pollfd){.fd = root->ranks[r].fd, .events = POLLIN};
            open += root->ranks[r].fd >= 0;
        }
        /* Entries from POLL_WAKE on; the pending slots hold -1 and are ignored by poll. */
        for (int i = 0; i < ROOT_MAX_PENDING; i++)
            root->pollfds[POLL_PENDING + i].fd = -1;
        if (open == 0 || poll(root->pollfds + POLL_WAKE, (nfds_t)(POLL_RANKS - POLL_WAKE + root->nranks),
                              wf_poll_timeout(deadline_ms)) <= 0)
            return;
        for (int r = 0; r < root->nranks; r++) {
            if (root->ranks[r].fd < 0 || !root->pollfds[POLL_RANKS + r].revents)
                continue;
            ssize_t n = recv(root->ranks[r].fd, sink, sizeof(sink), 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                wf_fd_close(root->ranks[r].fd);
                root->ranks[r].fd = -1;
            }
        }
    }
}

void wf_root_abort(wf_root_t *root, weft_result_t code, const char *format, ...)
{
    char message[WF_FRAME_ERROR_TEXT_MAX];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    WF_WARN(WF_SUB_BOOT, "%s", message);

    if (root->extra_fd >= 0) {
        wf_root_send_error(root->extra_fd, code, message);
        wf_fd_close(root->extra_fd);
        root->extra_fd = -1;
    }
    for (int r = 0; r < root->nranks; r++) {
        if (root->ranks[r].fd < 0)
            continue;
        wf_root_send_error(root->ranks[r].fd, code, message);
        shutdown(root->ranks[r].fd, SHUT_WR);
    }
    if (root->nranks > 0)
        drain_ranks(root);
    wf_root_close_all(root);
    root->finished = 1;
}

/* ---- rounds ---------------------------------------------------------------------------------- */

static void reset_round(wf_root_t *root)
{
    for (int r = 0; r < root->nranks; r++) {
        root->ranks[r].submitted = 0;
        if (root->ranks[r].reading_status)
            continue; /* in the middle of a status record, which is not part of the round */
        root->ranks[r].header_got = 0;
        root->ranks[r].payload_got = 0;
    }
    free(root->gather);
    root->gather = NULL;
    root->round_started = 0;
    root->submitted = 0;
    root->round++;
}

static void complete_round(wf_root_t *root)
{
    uint64_t total = root->round_length * (uint64_t)root->nranks;
    unsigned char header[WF_FRAME_HEADER_SIZE];
    int64_t deadline_ms = wf_now_ms() + 1000L * root->timeout_s;
    wf_frame_header_encode(header, WF_FRAME_DATA, total);

    for (int r = 0; r < root->nranks; r++) {
        root_rank_t *rank = &root->ranks[r];
        int error = 0;
        wf_io_status_t status = wf_sock_send_all(rank->fd, header, sizeof(header), deadline_ms, &error);
        if (status == WF_IO_OK && total > 0)
            status = wf_sock_send_all(rank->fd, root->gather, (size_t)total, deadline_ms, &error);
        if (status != WF_IO_OK) {
            /* The others still get this round; the next one fails and names this rank. */
            WF_WARN(WF_SUB_BOOT, "rendezvous at %s: failed to send round %llu to rank %d at %s: %s", root->display,
                    (unsigned long long)root->round, r, rank->peer,
                    status == WF_IO_TIMEOUT ? "timed out" : strerror(error));
            wf_fd_close(rank->fd);
            rank->fd = -1;
            rank->left = 1;
            root->left++;
        }
    }
    reset_round(root);
}

/* Start a round with the first header that arrives; returns -1 when the rendezvous ended. */
static int start_round(wf_root_t *root, int r, uint64_t length)
{
    if (root->left > 0) {
        char list[256];
        int count = format_rank_list(root, rank_has_left, list, sizeof(list));
        wf_root_abort(root, WEFT_ERR_REMOTE,
                      "rank%s %s of %d left the job (closed %s connection to the rendezvous at %s) before round %llu, "
                      "which rank %d started; the remaining ranks cannot complete bootstrap operations without %s",
                      count > 1 ? "s" : "", list, root->nranks, count > 1 ? "their" : "its", root->display,
                      (unsigned long long)root->round, r, count > 1 ? "them" : "it");
        return -1;
    }
    if (length > WF_FRAME_MAX_PAYLOAD / (uint64_t)root->nranks) {
        wf_root_abort(root, WEFT_ERR_INVALID_ARGUMENT,
                      "rank %d started an allgather of %llu bytes per rank; with %d ranks the result exceeds the "
                      "rendezvous limit of %llu bytes",
                      r, (unsigned long long)length, root->nranks, (unsigned long long)WF_FRAME_MAX_PAYLOAD);
        return -1;
    }
    size_t total = (size_t)(length * (uint64_t)root->nranks);
    root->gather = malloc(total > 0 ? total : 1);
    if (!root->gather) {
        wf_root_abort(root, WEFT_ERR_NO_MEMORY, "the rendezvous root failed to allocate %zu bytes for round %llu",
                      total, (unsigned long long)root->round);
        return -1;
    }
    root->round_started = 1;
    root->round_length = length;
    root->round_deadline_ms = wf_now_ms() + 1000L * root->timeout_s;
    return 0;
}

/* The connection of an admitted rank ended (end of file or a reset). */
static void rank_closed(wf_root_t *root, int r)
{
    root_rank_t *rank = &root->ranks[r];
    if (root->round_started || rank->header_got > 0) {
        wf_root_abort(root, WEFT_ERR_REMOTE,
                      "rank %d at %s closed its connection to the rendezvous at %s during round %llu; its process "
                      "probably exited or failed, so the other ranks cannot complete this bootstrap operation",
                      r, rank->peer, root->display, (unsigned long long)root->round);
        return;
    }
    if (!rank->said_bye) {
        /* No BYE first: the process died (killed, crashed, or exited without destroying its communicator). */
        wf_root_abort(root, WEFT_ERR_REMOTE,
                      "rank %d at %s was lost: its connection to the rendezvous at %s closed without a goodbye, so "
                      "its process crashed, was killed, called weft_comm_abort, or exited without weft_comm_destroy",
                      r, rank->peer, root->display);
        return;
    }
    WF_TRACE(WF_SUB_BOOT, "rendezvous at %s: rank %d closed its connection", root->display, r);
    wf_fd_close(rank->fd);
    rank->fd = -1;
    rank->left = 1;
    root->left++;
    if (root->left == root->nranks) {
        WF_INFO(WF_SUB_BOOT, "rendezvous at %s: every rank has closed its connection after %llu rounds",
                root->display, (unsigned long long)root->round);
        wf_root_close_all(root);
        root->finished = 1;
    }
}

static void read_status(wf_root_t *root, int r);

/* Reply to a QUERY with every rank's last status record and its age. */
static void send_status_table(wf_root_t *root, int r)
{
    size_t length = (size_t)root->nranks * WF_BOOT_STATUS_SLOT;
    unsigned char *frame = calloc(1, WF_FRAME_HEADER_SIZE + length);
    if (frame == NULL)
        return; /* the asking rank times out on its query and explains without the table */
    int64_t now = wf_now_ms();
    wf_frame_header_encode(frame, WF_FRAME_TABLE, length);
    for (int q = 0; q < root->nranks; q++) {
        const root_rank_t *rank = &root->ranks[q];
        unsigned char *slot = frame + WF_FRAME_HEADER_SIZE + (size_t)q * WF_BOOT_STATUS_SLOT;
        wf_put_u64(slot, rank->status_ms == 0 ? UINT64_MAX : (uint64_t)(now - rank->status_ms));
        wf_put_u32(slot + 8, rank->status_length);
        memcpy(slot + 12, rank->status, rank->status_length);
    }
    int error = 0;
    if (wf_sock_send_all(root->ranks[r].fd, frame, WF_FRAME_HEADER_SIZE + length, now + 2000, &error) != WF_IO_OK)
        WF_WARN(WF_SUB_BOOT, "rendezvous at %s: failed to send the status table to rank %d", root->display, r);
    free(frame);
}

/*
 * Take the status frames a rank may send at any time between and during rounds. Returns 1 when
 * the header was one of them (handled), 0 otherwise.
 */
static int accept_status_header(wf_root_t *root, int r, const wf_frame_header_t *header)
{
    root_rank_t *rank = &root->ranks[r];
    if (header->type == WF_FRAME_QUERY && header->length == 0) {
        rank->header_got = 0;
        send_status_table(root, r);
        return 1;
    }
    if (header->type == WF_FRAME_STATUS && header->length <= WF_BOOT_STATUS_MAX) {
        rank->reading_status = 1;
        rank->status_expected = (uint32_t)header->length;
        rank->payload_got = 0;
        if (header->length == 0)
            read_status(root, r); /* an empty record is complete at once */
        return 1;
    }
    return 0;
}

/* Validate a complete DATA header from rank r; returns 0 to go on reading its payload. */
static int accept_data_header(wf_root_t *root, int r)
{
    root_rank_t *rank = &root->ranks[r];
    wf_frame_header_t header = {0};
    char reason[256];
    wf_frame_status_t status =
        wf_frame_header_decode(rank->header, sizeof(rank->header), WF_FRAME_MAX_PAYLOAD, &header, reason,
                               sizeof(reason));
    if (status == WF_FRAME_OK && accept_status_header(root, r, &header))
        return -1; /* nothing of the round to read */
    if (status == WF_FRAME_OK && header.type == WF_FRAME_BYE && header.length == 0 && !root->round_started) {
        rank->said_bye = 1; /* its end of file that follows is a deliberate close */
        rank->header_got = 0;
        return -1;
    }
    if (status == WF_FRAME_OK && header.type == WF_FRAME_BYE) {
        wf_root_abort(root, WEFT_ERR_REMOTE,
                      "rank %d at %s destroyed its communicator during bootstrap round %llu, which the other ranks "
                      "were still in; a communicator that failed on one rank cannot complete on the others",
                      r, rank->peer, (unsigned long long)root->round);
        return -1;
    }
    if (status != WF_FRAME_OK || header.type != WF_FRAME_DATA) {
        if (status == WF_FRAME_OK)
            snprintf(reason, sizeof(reason), "frame type %u instead of DATA", header.type);
        wf_root_abort(root, WEFT_ERR_INTERNAL, "rank %d at %s sent an invalid frame in round %llu: %s", r, rank->peer,
                      (unsigned long long)root->round, reason);
        return -1;
    }
    if (!root->round_started)
        return start_round(root, r, header.length);
    if (header.length != root->round_length) {
        wf_root_abort(root, WEFT_ERR_MISMATCH,
                      "in round %llu rank %d sent %llu bytes but an earlier rank sent %llu; the ranks are at "
                      "different bootstrap steps or passed different lengths",
                      (unsigned long long)root->round, r, (unsigned long long)header.length,
                      (unsigned long long)root->round_length);
        return -1;
    }
    return 0;
}

/* Advance the read of a status record; a complete one replaces the rank's previous record. */
static void read_status(wf_root_t *root, int r)
{
    root_rank_t *rank = &root->ranks[r];
    ssize_t n = 0;
    if (rank->payload_got < rank->status_expected) {
        n = recv(rank->fd, rank->status_in + rank->payload_got, rank->status_expected - rank->payload_got, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            rank->reading_status = 0;
            rank->header_got = 0;
            rank_closed(root, r);
            return;
        }
        rank->payload_got += (uint64_t)n;
    }
    if (rank->payload_got < rank->status_expected)
        return;
    memcpy(rank->status, rank->status_in, rank->status_expected);
    rank->status_length = rank->status_expected;
    rank->status_ms = wf_now_ms();
    rank->reading_status = 0;
    rank->header_got = 0;
    rank->payload_got = 0;
}

/* Advance the read of rank r's block of the current round. */
static void read_rank(wf_root_t *root, int r)
{
    root_rank_t *rank = &root->ranks[r];
    ssize_t n;
    if (rank->reading_status) {
        read_status(root, r);
        return;
    }
    if (rank->header_got < WF_FRAME_HEADER_SIZE)
        n = recv(rank->fd, rank->header + rank->header_got, WF_FRAME_HEADER_SIZE - rank->header_got, 0);
    else
        n = recv(rank->fd, root->gather + (size_t)r * root->round_length + rank->payload_got,
                 (size_t)(root->round_length - rank->payload_got), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        rank_closed(root, r);
        return;
    }

    if (rank->header_got < WF_FRAME_HEADER_SIZE) {
        rank->header_got += (size_t)n;
        if (rank->header_got < WF_FRAME_HEADER_SIZE || accept_data_header(root, r) < 0)
            return;
    } else {
        rank->payload_got += (uint64_t)n;
    }
    if (rank->payload_got == root->round_length) {
        rank->submitted = 1;
        if (++root->submitted == root->nranks)
            complete_round(root);
    }
}

/* ---- the thread ------------------------------------------------------------------------------ */

void wf_root_close_all(wf_root_t *root)
{
    wf_fd_close(root->listen_fd);
    root->listen_fd = -1;
    for (int i = 0; i < ROOT_MAX_PENDING; i++) {
        if (root->pending[i].fd >= 0)
            wf_root_close_pending(&root->pending[i]);
    }
    for (int r = 0; r < root->nranks; r++) {
        wf_fd_close(root->ranks[r].fd);
        root->ranks[r].fd = -1;
    }
}

static void check_deadlines(wf_root_t *root)
{
    int64_t now = wf_now_ms();
    char list[256];
    for (int i = 0; i < ROOT_MAX_PENDING; i++) {
        if (root->pending[i].fd >= 0 && now >= root->pending[i].hello_deadline_ms)
            wf_root_reject_pending(&root->pending[i], WEFT_ERR_TIMEOUT, "no complete HELLO within 10 s of connecting");
    }
    if (root->listen_fd >= 0 && now >= root->accept_deadline_ms) {
        if (root->nranks == 0) {
            wf_root_abort(root, WEFT_ERR_TIMEOUT,
                          "rendezvous at %s timed out after %d s: no rank connected; check that every rank received "
                          "the unique id and calls weft_comm_init_rank",
                          root->display, root->timeout_s);
            return;
        }
        int count = format_rank_list(root, rank_never_connected, list, sizeof(list));
        wf_root_abort(root, WEFT_ERR_TIMEOUT,
                      "rendezvous at %s timed out after %d s: rank%s %s of %d never connected; check that every rank "
                      "runs with the same WEFT_ROOT and WEFT_SIZE (or the same unique id and number of ranks)",
                      root->display, root->timeout_s, count > 1 ? "s" : "", list, root->nranks);
        return;
    }
    if (root->round_started && now >= root->round_deadline_ms) {
        int count = format_rank_list(root, rank_not_submitted, list, sizeof(list));
        wf_root_abort(root, WEFT_ERR_TIMEOUT,
                      "bootstrap round %llu at the rendezvous %s timed out after %d s: rank%s %s of %d did not take "
                      "part; check that every rank reaches the same step (communicator creation or destruction)",
                      (unsigned long long)root->round, root->display, root->timeout_s, count > 1 ? "s" : "", list,
                      root->nranks);
    }
}

static int64_t next_deadline(const wf_root_t *root)
{
    int64_t next = -1;
    for (int i = 0; i < ROOT_MAX_PENDING; i++) {
        if (root->pending[i].fd >= 0 && (next < 0 || root->pending[i].hello_deadline_ms < next))
            next = root->pending[i].hello_deadline_ms;
    }
    if (root->listen_fd >= 0 && (next < 0 || root->accept_deadline_ms < next))
        next = root->accept_deadline_ms;
    int64_t evictable_ms;
    if (root->listen_fd >= 0 && wf_root_pending_slot(root, wf_now_ms(), &evictable_ms) < 0 &&
        (next < 0 || evictable_ms < next))
        next = evictable_ms; /* A waiting connection may then take the oldest handshake's slot. */
    if (root->round_started && (next < 0 || root->round_deadline_ms < next))
        next = root->round_deadline_ms;
    return next;
}

static nfds_t fill_pollfds(wf_root_t *root)
{
    struct pollfd *fds = root->pollfds;
    int64_t evictable_ms;
    /* With every pending slot busy, new connections wait in the backlog instead of waking poll. */
    int can_accept = root->listen_fd >= 0 && wf_root_pending_slot(root, wf_now_ms(), &evictable_ms) >= 0;
    fds[POLL_LISTENER] = (struct pollfd){.fd = can_accept ? root->listen_fd : -1, .events = POLLIN};
    fds[POLL_WAKE] = (struct pollfd){.fd = root->wake_fd, .events = POLLIN};
    for (int i = 0; i < ROOT_MAX_PENDING; i++)
        fds[POLL_PENDING + i] = (struct pollfd){.fd = root->pending[i].fd, .events = POLLIN};
    /* A rank whose block has arrived is not read again until the round completes. */
    for (int r = 0; r < root->nranks; r++)
        fds[POLL_RANKS + r] =
            (struct pollfd){.fd = root->ranks[r].submitted ? -1 : root->ranks[r].fd, .events = POLLIN};
    return POLL_RANKS + (nfds_t)root->nranks;
}

/* Handle the ready descriptors; stops early when a handler changed the descriptor table. */
static void dispatch(wf_root_t *root)
{
    struct pollfd *fds = root->pollfds;
    for (int r = 0; r < root->nranks && !root->finished; r++) {
        struct pollfd *entry = &fds[POLL_RANKS + r];
        if (!entry->revents || entry->fd < 0 || entry->fd != root->ranks[r].fd)
            continue;
        if (root->listen_fd >= 0) {
            /* Before WELCOME a rank has nothing to send: data or end of file both end its admission. */
            wf_root_drop_unwelcomed(root, r);
            continue;
        }
        read_rank(root, r);
    }
    for (int i = 0; i < ROOT_MAX_PENDING && !root->finished && fds == root->pollfds; i++) {
        struct pollfd *entry = &fds[POLL_PENDING + i];
        if (entry->revents && entry->fd >= 0 && entry->fd == root->pending[i].fd)
            wf_root_read_hello(root, &root->pending[i]);
    }
    if (!root->finished && fds == root->pollfds && fds[POLL_LISTENER].revents && root->listen_fd >= 0 &&
        fds[POLL_LISTENER].fd == root->listen_fd)
        wf_root_accept(root);
}

/* The owning bootstrap is being destroyed: end the rendezvous now. */
static void handle_owner_left(wf_root_t *root)
{
    int in_round = root->round_started;
    for (int r = 0; r < root->nranks; r++)
        in_round |= root->ranks[r].header_got > 0;

    if (root->listen_fd >= 0) {
        wf_root_abort(root, WEFT_ERR_REMOTE,
                      "the process hosting the rendezvous root at %s shut it down before every rank connected (%d of "
                      "%d had); see the error reported by that process",
                      root->display, root->connected, root->nranks);
    } else if (in_round) {
        wf_root_abort(root, WEFT_ERR_REMOTE,
                      "the process hosting the rendezvous root at %s destroyed its bootstrap during round %llu; the "
                      "other ranks cannot complete this bootstrap operation",
                      root->display, (unsigned long long)root->round);
    } else {
        /* Between rounds every result has been sent, so closing loses nothing. */
        WF_TRACE(WF_SUB_BOOT, "rendezvous at %s: closing after %llu rounds because its owner left", root->display,
                 (unsigned long long)root->round);
        wf_root_close_all(root);
        root->finished = 1;
    }
}

static void root_free(wf_root_t *root)
{
    wf_root_close_all(root);
    if (root->wake_fd >= 0)
        close(root->wake_fd);
    explicit_bzero(root->secret, sizeof(root->secret));
    free(root->gather);
    free(root->ranks);
    free(root->pollfds);
    free(root);
}

static void *root_main(void *arg)
{
    wf_root_t *root = arg;
    while (!root->finished) {
        nfds_t count = fill_pollfds(root);
        int ready = poll(root->pollfds, count, wf_poll_timeout(next_deadline(root)));
        if (ready < 0 && errno != EINTR) {
            wf_root_abort(root, WEFT_ERR_INTERNAL, "the rendezvous root at %s failed to poll its connections: %s",
                          root->display, strerror(errno));
            break;
        }
        if (atomic_load(&root->owner_left)) {
            handle_owner_left(root);
            break;
        }
        check_deadlines(root);
        if (ready > 0 && !root->finished)
            dispatch(root);
    }

    /* An owned root is freed by wf_root_release after the join; an unowned one frees itself. */
    pthread_mutex_lock(&roots_lock);
    int owned = root->owned;
    if (!owned) {
        for (wf_root_t **link = &unowned_roots; *link; link = &(*link)->next) {
            if (*link == root) {
                *link = root->next;
                break;
            }
        }
        pthread_detach(pthread_self());
    }
    pthread_mutex_unlock(&roots_lock);
    if (!owned)
        root_free(root);
    return NULL;
}

static weft_result_t start_thread(wf_root_t *root, char *err, size_t errlen)
{
    sigset_t all, previous;

    /* The root must not take the application's signals, so they all stay blocked on its thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    int rc = pthread_create(&root->thread, NULL, root_main, root);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (rc != 0)
        return wf_boot_error(err, errlen, WEFT_ERR_INTERNAL, "failed to start the rendezvous root thread: %s",
                             strerror(rc));
    return WEFT_SUCCESS;
}

static wf_root_t *root_create(const unsigned char secret[WF_BOOT_SECRET_SIZE], int nranks, int timeout_s)
{
    wf_root_t *root = calloc(1, sizeof(*root));
    if (!root)
        return NULL;
    root->listen_fd = -1;
    root->extra_fd = -1;
    root->timeout_s = timeout_s;
    memcpy(root->secret, secret, WF_BOOT_SECRET_SIZE);
    for (int i = 0; i < ROOT_MAX_PENDING; i++)
        root->pending[i].fd = -1;
    root->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (root->wake_fd < 0 || (nranks > 0 ? wf_root_allocate_ranks(root, nranks) < 0
                                          : !(root->pollfds = malloc(POLL_RANKS * sizeof(*root->pollfds))))) {
        root_free(root);
        return NULL;
    }
    return root;
}

weft_result_t wf_root_start(const struct sockaddr *listen_address, const char *display,
                            const unsigned char secret[WF_BOOT_SECRET_SIZE], int nranks, int timeout_s,
                            struct sockaddr_storage *bound, wf_root_t **owner, char *err, size_t errlen)
{
    wf_root_t *root = root_create(secret, nranks, timeout_s);
    if (!root)
        return wf_boot_error(err, errlen, WEFT_ERR_NO_MEMORY, "failed to create the rendezvous root for %d ranks: %s",
                             nranks, strerror(errno));

    /*
     * A port in use is retried only briefly: a previous root closes its listener as soon as its
     * ranks are in, so a port still taken after that belongs to another service.
     */
    int64_t now = wf_now_ms();
    int64_t listen_deadline_ms = now + (timeout_s < ROOT_LISTEN_RETRY_S ? timeout_s : ROOT_LISTEN_RETRY_S) * 1000L;
    if (wf_sock_listen(listen_address, listen_deadline_ms, &root->listen_fd, bound, err, errlen) < 0) {
        root_free(root);
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    root->accept_deadline_ms = now + 1000L * timeout_s;

    char text[WF_ADDR_TEXT_MAX];
    wf_addr_text((struct sockaddr *)bound, text, sizeof(text));
    snprintf(root->display, sizeof(root->display), "%s", display ? display : text);
    if (nranks > 0)
        WF_INFO(WF_SUB_BOOT, "rendezvous root for %s listening on %s, waiting up to %d s for %d ranks", root->display,
                text, timeout_s, nranks);
    else
        WF_INFO(WF_SUB_BOOT, "rendezvous root listening on %s, waiting up to %d s for the ranks of the unique id",
                text, timeout_s);

    /* Publish before the thread starts, so that it always finds itself in the list it leaves. */
    pthread_mutex_lock(&roots_lock);
    root->owned = owner != NULL;
    if (!owner) {
        root->next = unowned_roots;
        unowned_roots = root;
    }
    weft_result_t result = start_thread(root, err, errlen);
    if (result != WEFT_SUCCESS && !owner)
        unowned_roots = root->next;
    pthread_mutex_unlock(&roots_lock);

    if (result != WEFT_SUCCESS) {
        root_free(root);
        return result;
    }
    if (owner)
        *owner = root;
    return WEFT_SUCCESS;
}

wf_root_t *wf_root_adopt(const unsigned char secret[WF_BOOT_SECRET_SIZE])
{
    wf_root_t *found = NULL;
    pthread_mutex_lock(&roots_lock);
    for (wf_root_t **link = &unowned_roots; *link; link = &(*link)->next) {
        if (wf_equal_const_time((*link)->secret, secret, WF_BOOT_SECRET_SIZE)) {
            found = *link;
            *link = found->next;
            found->owned = 1;
            break;
        }
    }
    pthread_mutex_unlock(&roots_lock);
    return found;
}

void wf_root_release(wf_root_t *root)
{
    if (!root)
        return;
    uint64_t one = 1;
    atomic_store(&root->owner_left, 1);
    /* The only write to this eventfd, so its counter cannot overflow; a failure means a bad descriptor. */
    if (write(root->wake_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
        WF_WARN(WF_SUB_BOOT, "failed to wake the rendezvous root at %s: %s", root->display, strerror(errno));
    pthread_join(root->thread, NULL);
    root_free(root);
}
