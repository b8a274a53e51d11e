/*
 * The inbound side of the shm transport: doorbells, draining the rings, tag matching, unexpected
 * messages, pulls by CMA, and immediates.
 *
 * Every record is taken out of its ring as soon as progress() reads it: a message without a posted
 * receive is copied into an unexpected entry (an RTS keeps only its address), so a ring never waits
 * for a receive. Receives match in post order: the first posted receive whose peer and tag fit, and
 * a new receive takes the first unexpected message that fits. Messages of one sender thus match in
 * the order they were sent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "shm.h"

int wf_shm_cma_read(struct wf_transport *t, int pid, void *local, uint64_t remote, size_t n)
{
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done < t->cma_chunk ? n - done : t->cma_chunk;
        struct iovec to = {(char *)local + done, chunk};
        struct iovec from = {(void *)(uintptr_t)(remote + done), chunk};
        ssize_t got = process_vm_readv(pid, &to, 1, &from, 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return got < 0 ? -errno : -EFAULT;
        done += (size_t)got;
    }
    t->cma_bytes += n;
    return 0;
}

static int tag_fits(const wf_shm_recv_t *recv, uint64_t tag)
{
    return ((recv->tag ^ tag) & ~recv->ignore) == 0;
}

/* Unlink and return the first receive in the list at head that fits tag, or NULL. */
static wf_shm_recv_t *find_posted(wf_shm_recv_t **head, wf_shm_recv_t **tail, uint64_t tag, int take)
{
    wf_shm_recv_t *previous = NULL;
    for (wf_shm_recv_t *recv = *head; recv != NULL; previous = recv, recv = recv->next) {
        if (!tag_fits(recv, tag))
            continue;
        if (take) {
            if (previous == NULL)
                *head = recv->next;
            else
                previous->next = recv->next;
            if (*tail == recv)
                *tail = previous;
            recv->next = NULL;
        }
        return recv;
    }
    return NULL;
}

/* Take the earliest posted receive that fits a message from sender with tag, or NULL. */
static wf_shm_recv_t *take_posted(struct wf_transport *t, int sender, uint64_t tag)
{
    wf_shm_peer_t *peer = &t->peers[sender];
    wf_shm_recv_t *directed = find_posted(&peer->posted, &peer->posted_tail, tag, 0);
    wf_shm_recv_t *any = find_posted(&t->posted_any, &t->posted_any_tail, tag, 0);
    if (directed != NULL && (any == NULL || directed->order < any->order))
        return find_posted(&peer->posted, &peer->posted_tail, tag, 1);
    if (any != NULL)
        return find_posted(&t->posted_any, &t->posted_any_tail, tag, 1);
    return NULL;
}

/* Complete a receive whose message of size bytes is in place (cut to the buffer when longer). */
static void finish_recv(struct wf_transport *t, wf_shm_recv_t *recv, int sender, uint64_t tag, size_t size)
{
    int status = 0;
    size_t length = size;
    if (size > recv->length) {
        status = -EMSGSIZE;
        length = recv->length;
        wf_shm_set_error(t, "tagged receive from rank %d with tag 0x%llx was truncated: the message of %zu bytes is "
                         "longer than the %zu-byte buffer; post a larger receive", sender, (unsigned long long)tag,
                         size, recv->length);
        WF_SHM_WARN("%s", t->error);
    }
    wf_shm_complete(t, recv->xfer, length, status);
    wf_shm_recv_release(t, recv);
}

/* Send the DONE record for an RTS, or queue it when the sender's ring is full. */
static void answer_done(struct wf_transport *t, int sender, uint64_t cookie, int status)
{
    wf_shm_peer_t *peer = &t->peers[sender];
    wf_shm_msg_t msg = {.kind = WF_SHM_MSG_DONE, .cookie = cookie, .status = status};
    if (peer->dones == NULL && wf_shm_ring_push(&peer->out, &msg, sizeof(msg), NULL, 0) == 0) {
        wf_shm_ring_doorbell(t, sender);
        return;
    }
    wf_shm_pending_done_t *pending = malloc(sizeof(*pending));
    if (pending == NULL) {
        /* The sender's xfer then never completes, and its wait times out naming this rank. */
        WF_SHM_WARN("rank %d: out of memory for the answer to a send of rank %d; that send will time out", t->rank,
                    sender);
        return;
    }
    pending->next = NULL;
    pending->cookie = cookie;
    pending->status = status;
    t->pending_dones++;
    if (peer->dones == NULL)
        peer->dones = pending;
    else
        peer->dones_tail->next = pending;
    peer->dones_tail = pending;
}

size_t wf_shm_flush_dones(struct wf_transport *t)
{
    for (int s = 0; s < t->nranks && t->pending_dones > 0; s++) {
        wf_shm_peer_t *peer = &t->peers[s];
        int pushed = 0;
        while (peer->dones != NULL) {
            wf_shm_msg_t msg = {.kind = WF_SHM_MSG_DONE, .cookie = peer->dones->cookie, .status = peer->dones->status};
            if (wf_shm_ring_push(&peer->out, &msg, sizeof(msg), NULL, 0) != 0)
                break;
            wf_shm_pending_done_t *next = peer->dones->next;
            free(peer->dones);
            peer->dones = next;
            t->pending_dones--;
            pushed = 1;
        }
        if (pushed)
            wf_shm_ring_doorbell(t, s);
    }
    return t->pending_dones;
}

/* Pull an RTS message into a matched receive by CMA, complete it and send DONE to the sender. */
static void pull_into(struct wf_transport *t, wf_shm_recv_t *recv, int sender, uint64_t tag, size_t size,
                      uint64_t address, uint64_t cookie)
{
    size_t n = size < recv->length ? size : recv->length;
    int rc = wf_shm_cma_read(t, t->peers[sender].pid, recv->buf, address, n);
    if (rc != 0) {
        wf_shm_set_error(t, "tagged receive of %zu bytes from rank %d (pid %d) with tag 0x%llx failed: "
                         "process_vm_readv of the sender's buffer at 0x%llx returned %s%s", size, sender,
                         t->peers[sender].pid, (unsigned long long)tag, (unsigned long long)address, strerror(-rc),
                         rc == -ESRCH ? "; the process of that rank exited" : "");
        WF_SHM_WARN("%s", t->error);
        wf_shm_complete(t, recv->xfer, 0, rc);
        wf_shm_recv_release(t, recv);
    } else {
        finish_recv(t, recv, sender, tag, size);
    }
    answer_done(t, sender, cookie, rc);
}

static int out_of_memory(struct wf_transport *t, int sender, size_t size)
{
    wf_shm_set_error(t, "rank %d: out of memory for an unexpected message of %zu bytes from rank %d", t->rank, size,
                     sender);
    return -ENOMEM;
}

/* Queue a message that found no receive. Its data is NULL for an RTS. */
static wf_shm_unexpected_t *add_unexpected(struct wf_transport *t, int sender, const wf_shm_msg_t *msg)
{
    wf_shm_unexpected_t *entry = calloc(1, sizeof(*entry));
    if (entry == NULL)
        return NULL;
    entry->kind = (wf_shm_kind_t)msg->kind;
    entry->tag = msg->tag;
    entry->size = (size_t)msg->size;
    entry->address = msg->address;
    entry->cookie = msg->cookie;
    entry->order = t->next_order++;
    if (msg->kind != WF_SHM_MSG_RTS && msg->size > 0) {
        entry->data = malloc((size_t)msg->size);
        if (entry->data == NULL) {
            free(entry);
            return NULL;
        }
    }
    wf_shm_peer_t *peer = &t->peers[sender];
    if (peer->unexpected == NULL)
        peer->unexpected = entry;
    else
        peer->unexpected_tail->next = entry;
    peer->unexpected_tail = entry;
    return entry;
}

/* Copy the payload of the current record (payload bytes after its header) to out. */
static void read_payload(wf_shm_peer_t *peer, void *out, size_t payload)
{
    if (payload > 0)
        wf_shm_ring_read(&peer->in, sizeof(wf_shm_msg_t), out, payload);
}

static int protocol_error(struct wf_transport *t, int sender, const wf_shm_msg_t *msg, const char *problem)
{
    wf_shm_set_error(t, "rank %d received a malformed record from rank %d (kind %u, %u payload bytes, size %llu): "
                     "%s; every rank must run the same weft version", t->rank, sender, msg->kind, msg->payload,
                     (unsigned long long)msg->size, problem);
    return -EPROTO;
}

static int handle_eager(struct wf_transport *t, int sender, const wf_shm_msg_t *msg)
{
    wf_shm_peer_t *peer = &t->peers[sender];
    if (msg->payload != msg->size)
        return protocol_error(t, sender, msg, "an eager message must carry its whole payload");
    wf_shm_recv_t *recv = take_posted(t, sender, msg->tag);
    if (recv != NULL) {
        read_payload(peer, recv->buf, msg->payload < recv->length ? msg->payload : recv->length);
        finish_recv(t, recv, sender, msg->tag, msg->payload);
        return 0;
    }
    wf_shm_unexpected_t *entry = add_unexpected(t, sender, msg);
    if (entry == NULL)
        return out_of_memory(t, sender, msg->payload);
    read_payload(peer, entry->data, msg->payload);
    return 0;
}

static int handle_rts(struct wf_transport *t, int sender, const wf_shm_msg_t *msg)
{
    wf_shm_recv_t *recv = take_posted(t, sender, msg->tag);
    if (recv != NULL) {
        pull_into(t, recv, sender, msg->tag, (size_t)msg->size, msg->address, msg->cookie);
        return 0;
    }
    return add_unexpected(t, sender, msg) != NULL ? 0 : out_of_memory(t, sender, 0);
}

/* A piece of a message sent through the ring: start or continue the sender's message. */
static int handle_fragment(struct wf_transport *t, int sender, const wf_shm_msg_t *msg)
{
    wf_shm_peer_t *peer = &t->peers[sender];
    int assembling = peer->assembling_recv != NULL || peer->assembling_entry != NULL;
    if (msg->cookie == 0 && !assembling) {
        peer->assembled = 0;
        peer->assembling_size = (size_t)msg->size;
        peer->assembling_recv = take_posted(t, sender, msg->tag);
        if (peer->assembling_recv == NULL && (peer->assembling_entry = add_unexpected(t, sender, msg)) == NULL)
            return out_of_memory(t, sender, (size_t)msg->size);
    } else if (!assembling || msg->cookie != peer->assembled || msg->size != peer->assembling_size) {
        return protocol_error(t, sender, msg, "the piece does not continue the message in progress");
    }
    if (msg->cookie + msg->payload > msg->size)
        return protocol_error(t, sender, msg, "the piece ends past the message");

    if (peer->assembling_recv != NULL) {
        wf_shm_recv_t *recv = peer->assembling_recv;
        size_t room = recv->length > peer->assembled ? recv->length - peer->assembled : 0;
        read_payload(peer, (char *)recv->buf + peer->assembled, msg->payload < room ? msg->payload : room);
    } else {
        read_payload(peer, peer->assembling_entry->data + peer->assembled, msg->payload);
        peer->assembling_entry->filled += msg->payload;
    }
    peer->assembled += msg->payload;
    if (peer->assembled < peer->assembling_size)
        return 0;
    if (peer->assembling_recv != NULL)
        finish_recv(t, peer->assembling_recv, sender, msg->tag, peer->assembling_size);
    peer->assembling_recv = NULL;
    peer->assembling_entry = NULL;
    return 0;
}

static int handle_done(struct wf_transport *t, int sender, const wf_shm_msg_t *msg)
{
    uint32_t slot = (uint32_t)msg->cookie;
    wf_shm_rts_t *record = slot < t->rts_capacity ? &t->rts[slot] : NULL;
    if (record == NULL || !record->in_use || record->generation != (uint32_t)(msg->cookie >> 32) ||
        record->peer != sender)
        return protocol_error(t, sender, msg, "the DONE record names no send of this rank to that rank");
    if (msg->status != 0)
        wf_shm_set_error(t, "tagged send of %zu bytes to rank %d with tag 0x%llx failed: the receiver could not pull "
                         "it (%s)", record->length, sender, (unsigned long long)record->tag, strerror(-msg->status));
    wf_shm_complete(t, record->xfer, record->length, msg->status);
    record->in_use = 0;
    record->generation++;
    t->free_rts[t->free_rts_count++] = slot;
    t->rts_in_flight--;
    return 0;
}

/* Deliver an immediate now, or hold it until the next progress() when a post is waiting. */
static int deliver_immediate(struct wf_transport *t, uint32_t immediate)
{
    if (t->post_depth == 0) {
        if (t->on_remote_write != NULL)
            t->on_remote_write(t->callback_arg, immediate);
        else
            WF_SHM_WARN("rank %d received immediate 0x%08x but has no on_remote_write callback; dropped", t->rank,
                        immediate);
        return 0;
    }
    if (wf_held_immediates_add(&t->deferred_immediates, immediate) != 0) {
        wf_shm_set_error(t, "out of memory while holding back immediate 0x%08x of an incoming write", immediate);
        return -ENOMEM;
    }
    return 0;
}

/* Check that a write of length bytes at address lies inside the region of key. */
static int check_region(struct wf_transport *t, int sender, uint64_t key, uint64_t address, uint64_t length)
{
    const wf_shm_region_t *region = wf_shm_region_find(t, key);
    if (region != NULL && address >= region->base && length <= region->length &&
        address - region->base <= region->length - length)
        return 0;
    wf_shm_set_error(t, "rank %d wrote %llu bytes at 0x%llx with key 0x%llx into rank %d, outside every region rank "
                     "%d has registered under that key; the region was deregistered or the address is wrong",
                     sender, (unsigned long long)length, (unsigned long long)address, (unsigned long long)key,
                     t->rank, t->rank);
    WF_SHM_WARN("%s", t->error);
    return -EFAULT;
}

static int handle_write(struct wf_transport *t, int sender, const wf_shm_msg_t *msg)
{
    uint64_t length = msg->kind == WF_SHM_MSG_WRITE ? msg->payload : msg->size;
    int rc = check_region(t, sender, msg->tag, msg->address, length);
    if (rc != 0)
        return rc;
    if (msg->kind == WF_SHM_MSG_WRITE) {
        read_payload(&t->peers[sender], (void *)(uintptr_t)msg->address, msg->payload);
        if ((msg->flags & WF_SHM_FLAG_LAST) == 0)
            return 0;
    }
    return deliver_immediate(t, msg->immediate);
}

/* After drain(): nothing is delivered, but RTS senders get a DONE so their sends end. */
static int handle_while_destroying(struct wf_transport *t, int sender, const wf_shm_msg_t *msg)
{
    if (msg->kind == WF_SHM_MSG_RTS)
        answer_done(t, sender, msg->cookie, -ECANCELED);
    else if (msg->kind == WF_SHM_MSG_DONE)
        handle_done(t, sender, msg); /* frees the record, and skips completing it while destroying */
    return 0;
}

static int handle_record(struct wf_transport *t, int sender, const wf_shm_msg_t *msg)
{
    if (t->destroying)
        return handle_while_destroying(t, sender, msg);
    wf_shm_peer_t *peer = &t->peers[sender];
    int assembling = peer->assembling_recv != NULL || peer->assembling_entry != NULL;
    if (assembling && (msg->kind == WF_SHM_MSG_EAGER || msg->kind == WF_SHM_MSG_RTS))
        return protocol_error(t, sender, msg, "a new message started before the previous one was complete");
    switch (msg->kind) {
    case WF_SHM_MSG_EAGER:
        return handle_eager(t, sender, msg);
    case WF_SHM_MSG_RTS:
        return handle_rts(t, sender, msg);
    case WF_SHM_MSG_FRAGMENT:
        return handle_fragment(t, sender, msg);
    case WF_SHM_MSG_DONE:
        return handle_done(t, sender, msg);
    case WF_SHM_MSG_WRITE:
    case WF_SHM_MSG_WRITTEN:
        return handle_write(t, sender, msg);
    default:
        return protocol_error(t, sender, msg, "unknown record kind");
    }
}

/* Handle every record the sender has published so far. Returns the count or a negative code. */
static int drain_ring(struct wf_transport *t, int sender)
{
    wf_shm_peer_t *peer = &t->peers[sender];
    uint64_t available = wf_shm_ring_available(&peer->in);
    int handled = 0;
    while (available > 0) {
        wf_shm_msg_t msg;
        if (available < sizeof(msg))
            return protocol_error(t, sender, &(wf_shm_msg_t){0}, "the ring holds a partial record header");
        wf_shm_ring_read(&peer->in, 0, &msg, sizeof(msg));
        size_t record = sizeof(msg) + msg.payload;
        if (wf_shm_ring_record_bytes(record) > available)
            return protocol_error(t, sender, &msg, "the record runs past the published bytes");
        int rc = handle_record(t, sender, &msg);
        wf_shm_ring_release(&peer->in, record);
        available -= wf_shm_ring_record_bytes(record);
        if (rc != 0)
            return rc;
        handled++;
    }
    return handled;
}

/* Drain the rings of the few senders this rank polls directly (t->polled). */
static int poll_rings(struct wf_transport *t)
{
    int handled = 0;
    for (int i = 0; i < t->polled_count; i++) {
        wf_shm_ring_end_t *in = &t->peers[t->polled[i]].in;
        /* The common case, an empty ring, costs one load of a line that stays cached until it changes. */
        uint64_t head = atomic_load_explicit(&in->shared->head, memory_order_relaxed);
        /*
         * Also load the line where the next record starts, whatever the value of head, so that
         * the two cache misses after the sender publishes can overlap instead of following each
         * other.
         */
        (void)*(volatile const unsigned char *)&in->shared->data[in->position & (in->capacity - 1)];
        if (head == in->position)
            continue;
        int rc = drain_ring(t, t->polled[i]);
        if (rc < 0)
            return rc; /* the records after the failed one stay for the next poll */
        handled += rc;
    }
    return handled;
}

int wf_shm_poll(struct wf_transport *t)
{
    if (t->polled != NULL)
        return poll_rings(t);
    wf_shm_header_t *header = t->segment;
    int handled = 0;
    for (int w = 0; w * 64 < t->nranks; w++) {
        if (atomic_load_explicit(&header->doorbell[w], memory_order_relaxed) == 0)
            continue;
        /* Clear before draining: a sender that publishes meanwhile sets its bit again. */
        uint64_t bits = atomic_exchange_explicit(&header->doorbell[w], 0, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
        while (bits != 0) {
            int sender = w * 64 + __builtin_ctzll(bits);
            bits &= bits - 1;
            int rc = sender < t->nranks ? drain_ring(t, sender) : 0;
            if (rc < 0) {
                /* Keep the senders not drained yet, and this one, whose ring may still contain records. */
                atomic_fetch_or_explicit(&header->doorbell[w], bits | 1ull << (sender % 64), memory_order_seq_cst);
                return rc;
            }
            handled += rc;
        }
    }
    return handled;
}

int wf_shm_progress(struct wf_transport *t)
{
    int handled = 0;
    if (t->deferred_immediates.count > 0)
        handled = (int)wf_held_immediates_deliver(&t->deferred_immediates, t->on_remote_write, t->callback_arg);
    if (t->deferred_error != 0) {
        int rc = t->deferred_error;
        t->deferred_error = 0;
        return rc;
    }
    if (t->pending_dones > 0)
        wf_shm_flush_dones(t);
    int rc = wf_shm_poll(t);
    return rc < 0 ? rc : handled + rc;
}

/* Find the earliest unexpected message recv can take: from its peer, or from any peer. */
static wf_shm_unexpected_t *find_unexpected(struct wf_transport *t, const wf_shm_recv_t *recv, int *sender,
                                            wf_shm_unexpected_t **previous)
{
    wf_shm_unexpected_t *best = NULL;
    int first = recv->peer >= 0 ? recv->peer : 0, last = recv->peer >= 0 ? recv->peer : t->nranks - 1;
    for (int s = first; s <= last; s++) {
        wf_shm_unexpected_t *before = NULL;
        for (wf_shm_unexpected_t *entry = t->peers[s].unexpected; entry != NULL; before = entry, entry = entry->next) {
            if (!tag_fits(recv, entry->tag))
                continue;
            if (best == NULL || entry->order < best->order) {
                best = entry;
                *sender = s;
                *previous = before;
            }
            break;
        }
    }
    return best;
}

int wf_shm_match_unexpected(struct wf_transport *t, wf_shm_recv_t *recv)
{
    int sender = -1;
    wf_shm_unexpected_t *previous = NULL;
    wf_shm_unexpected_t *entry = find_unexpected(t, recv, &sender, &previous);
    if (entry == NULL)
        return 0;
    wf_shm_peer_t *peer = &t->peers[sender];
    if (previous == NULL)
        peer->unexpected = entry->next;
    else
        previous->next = entry->next;
    if (peer->unexpected_tail == entry)
        peer->unexpected_tail = previous;

    if (entry->kind == WF_SHM_MSG_RTS) {
        pull_into(t, recv, sender, entry->tag, entry->size, entry->address, entry->cookie);
    } else if (entry->kind == WF_SHM_MSG_FRAGMENT && peer->assembling_entry == entry) {
        /* Still arriving: the receive takes over, and later pieces go straight into its buffer. */
        if (recv->length > 0)
            memcpy(recv->buf, entry->data, entry->filled < recv->length ? entry->filled : recv->length);
        peer->assembling_entry = NULL;
        peer->assembling_recv = recv;
    } else {
        if (entry->size > 0 && recv->length > 0)
            memcpy(recv->buf, entry->data, entry->size < recv->length ? entry->size : recv->length);
        finish_recv(t, recv, sender, entry->tag, entry->size);
    }
    free(entry->data);
    free(entry);
    return 1;
}

void wf_shm_drop_queues(struct wf_transport *t)
{
    for (wf_shm_recv_t *recv = t->posted_any, *next; recv != NULL; recv = next) {
        next = recv->next;
        wf_shm_recv_release(t, recv);
    }
    t->posted_any = t->posted_any_tail = NULL;
    for (int s = 0; s < t->nranks; s++) {
        wf_shm_peer_t *peer = &t->peers[s];
        for (wf_shm_recv_t *recv = peer->posted, *next; recv != NULL; recv = next) {
            next = recv->next;
            wf_shm_recv_release(t, recv);
        }
        peer->posted = peer->posted_tail = NULL;
        for (wf_shm_unexpected_t *entry = peer->unexpected, *next; entry != NULL; entry = next) {
            next = entry->next;
            if (entry->kind == WF_SHM_MSG_RTS && peer->out.shared != NULL)
                answer_done(t, s, entry->cookie, -ECANCELED);
            free(entry->data);
            free(entry);
        }
        peer->unexpected = peer->unexpected_tail = NULL;
        if (peer->assembling_recv != NULL)
            wf_shm_recv_release(t, peer->assembling_recv);
        peer->assembling_recv = NULL;
        peer->assembling_entry = NULL; /* it was in the unexpected list, freed above */
    }
}
