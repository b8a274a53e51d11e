/*
 * Internal state of weft's own shared-memory transport, shared by the files in transport/shm/.
 *
 * Every rank creates one POSIX shared-memory segment. It contains a header page (a doorbell bitmap and
 * the results of the cross-memory-attach probe) and one inbound ring per sender (shm_ring.h). A
 * sender appends a record to its ring in the receiver's segment and sets its doorbell bit. The
 * receiver's progress() clears the doorbell words it finds set and drains those senders' rings.
 * A receiver with at most WF_SHM_POLL_RINGS_MAX peers polls their rings' heads instead, and its
 * senders set no doorbell bit.
 * Nothing in shared memory is a lock, so a peer killed at any instruction leaves nothing that
 * another rank spins on forever. Payloads above an inline limit travel by cross-memory attach
 * (process_vm_readv and process_vm_writev, "CMA"): one copy from the sender's buffer into the
 * receiver's. Where the kernel rejects CMA, they go through the rings in fragments.
 *
 * shm_segment.c creates and maps segments, shm_transport.c implements the instance, addresses and
 * registration, shm_post.c the posts, shm_progress.c the inbound side. Log messages start with
 * "NET/SHM".
 */
#ifndef WF_SHM_H
#define WF_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "shm_ring.h"
#include "transport.h"
#include "xfer.h"

#define WF_SHM_INFO(format, ...) WF_INFO(WF_SUB_NET, "NET/SHM " format, ##__VA_ARGS__)
#define WF_SHM_WARN(format, ...) WF_WARN(WF_SUB_NET, "NET/SHM " format, ##__VA_ARGS__)
#define WF_SHM_TRACE(format, ...) WF_TRACE(WF_SUB_NET, "NET/SHM " format, ##__VA_ARGS__)

#define WF_SHM_PROVIDER_NAME "shm (weft)"

#define WF_SHM_PAGE 4096

/*
 * Ring capacity per sender: the largest power of two not above WF_SHM_RING_BUDGET / nranks,
 * clamped to [WF_SHM_RING_MIN, WF_SHM_RING_MAX]. A segment thus contains about 16 MiB of rings for
 * 64 to 1024 ranks (plus a page of control words per ring), and less below 64 ranks.
 */
#define WF_SHM_RING_BUDGET ((uint64_t)16 << 20)
#define WF_SHM_RING_MIN ((uint64_t)16 << 10)
#define WF_SHM_RING_MAX ((uint64_t)256 << 10)

/*
 * Tagged messages up to this many bytes are copied through the ring, and larger ones are pulled by
 * the receiver with process_vm_readv. Writes up to WF_SHM_WRITE_INLINE_MAX go through the ring,
 * larger ones by process_vm_writev. Either is further capped at a quarter of the ring, so that
 * several records fit in a ring. tools/shm-bench ping-pongs with pinned ranks on a 2-vCPU virtual
 * machine chose both (docs/benchmarks.md): the ring was faster for sends at every size up to that
 * cap, 48 KiB included, and for writes up to 12 KiB, while CMA was faster for writes from 32 KiB.
 */
#define WF_SHM_INLINE_MAX ((size_t)64 << 10)
#define WF_SHM_WRITE_INLINE_MAX ((size_t)16 << 10)

/*
 * Bytes per process_vm_readv or process_vm_writev call. A larger transfer takes several calls.
 * Chunks from 64 KiB to 64 MiB moved 16 and 64 MiB equally fast within the noise of the machine,
 * but 64 KiB chunks were slower for writes of 256 KiB and 1 MiB (docs/benchmarks.md).
 */
#define WF_SHM_CMA_CHUNK ((size_t)1 << 20)

/* Largest single send or write accepted. Callers split larger ones, as with the ofi transport. */
#define WF_SHM_MAX_MESSAGE ((size_t)1 << 30)

/* How long a post waits for ring space, in seconds, when config->should_stop keeps returning 0. */
#define WF_SHM_POST_TIMEOUT_SEC 30

/* How long drain() waits for the inbound rings to stay empty before it returns, in milliseconds. */
#define WF_SHM_QUIET_MS 50

/*
 * Receivers serving at most this many ranks (themselves included) poll the head of every inbound
 * ring instead of the doorbell. Ringing a doorbell costs the sender a full fence and an atomic OR
 * on a cache line that the receiver keeps reading, and the receiver an exchange on the same line.
 * Polling costs one load per ring, which hits the cache until the ring changes.
 */
#define WF_SHM_POLL_RINGS_MAX 8

#define WF_SHM_SEGMENT_MAGIC 0x7765667473686d31ull /* "weftshm1" */
#define WF_SHM_ADDRESS_MAGIC 0x77667368u           /* "wfsh" */
#define WF_SHM_NAME_MAX 64

/* Probe results in the header: whether the segment's owner can read a peer's memory by CMA. */
enum { WF_SHM_CMA_UNKNOWN = 0, WF_SHM_CMA_ALLOWED = 1, WF_SHM_CMA_REFUSED = 2 };

/* First page of every segment. Only the owner writes the fields above mapped. */
typedef struct {
    uint64_t magic;
    uint64_t nonce;     /* random, also in the segment name and the published address */
    int32_t pid;
    uint32_t rank;
    uint32_t nranks;
    uint32_t polls_rings; /* non-zero: the owner polls its inbound rings, so senders set no doorbell bit */
    uint64_t capacity;  /* data bytes of every inbound ring */
    _Atomic uint32_t mapped; /* peers that mapped the segment, the last of which unlinks its name */
    /* Bit s: sender s published records since the owner last cleared the word. */
    _Alignas(WF_SHM_CACHE_LINE) _Atomic uint64_t doorbell[WF_SHM_MAX_RANKS / 64];
    /* Byte p: whether the owner can read rank p's memory by CMA (WF_SHM_CMA_*), set by connect. */
    _Alignas(WF_SHM_CACHE_LINE) _Atomic uint8_t pullable[WF_SHM_MAX_RANKS];
} wf_shm_header_t;

_Static_assert(sizeof(wf_shm_header_t) <= WF_SHM_PAGE, "the segment header fits in its page");

/* Address that get_address publishes and connect() reads for every rank. */
typedef struct {
    uint32_t magic;
    uint32_t nranks;
    int32_t pid;
    uint32_t rank;
    uint64_t nonce;
    uint64_t capacity;
    uint64_t header_address; /* the header's virtual address in its owner, read by the CMA probe */
    char name[WF_SHM_NAME_MAX];
} wf_shm_address_t;

/* Kinds of ring records. */
typedef enum {
    WF_SHM_MSG_EAGER = 1, /* tagged message with its payload inline */
    WF_SHM_MSG_RTS,       /* tagged message the receiver pulls from address by CMA, then acknowledges by DONE */
    WF_SHM_MSG_FRAGMENT,  /* piece of a tagged message at offset cookie, when CMA is not possible */
    WF_SHM_MSG_DONE,      /* receiver to sender: the RTS message cookie was pulled, with status */
    WF_SHM_MSG_WRITE,     /* write payload inline at address; the last piece raises the immediate */
    WF_SHM_MSG_WRITTEN    /* a CMA write of size bytes landed at address: raise the immediate */
} wf_shm_kind_t;

#define WF_SHM_FLAG_LAST 1u /* WRITE: the last piece of the write, which raises the immediate */

/* Header of every ring record, which the payload bytes follow. */
typedef struct {
    uint16_t kind;
    uint16_t flags;
    uint32_t payload;   /* bytes of payload after this header */
    uint64_t tag;       /* tag of a tagged message, or region key of a write */
    uint64_t size;      /* whole message or write, in bytes */
    uint64_t address;   /* sender's buffer (RTS), or target address (WRITE and WRITTEN) */
    uint64_t cookie;    /* sender's operation (RTS and DONE), or byte offset (FRAGMENT) */
    uint32_t immediate; /* writes */
    int32_t status;     /* DONE: 0 or a negative errno of the receiver's pull */
} wf_shm_msg_t;

_Static_assert(sizeof(wf_shm_msg_t) % WF_SHM_RING_ALIGN == 0, "records stay aligned after the header");

/* A posted receive. */
typedef struct wf_shm_recv {
    struct wf_shm_recv *next;
    wf_xfer_t *xfer;
    int peer;            /* -1: any rank */
    uint64_t tag;
    uint64_t ignore;     /* tag bits that need not match */
    void *buf;
    size_t length;
    uint64_t order;      /* post order, to pick the earliest match between a peer's list and any-rank list */
} wf_shm_recv_t;

/* A message that arrived before its receive. */
typedef struct wf_shm_unexpected {
    struct wf_shm_unexpected *next;
    wf_shm_kind_t kind;  /* EAGER (data contains it), RTS (to pull) or FRAGMENT (data being assembled) */
    uint64_t tag;
    size_t size;
    size_t filled;       /* FRAGMENT: bytes assembled so far */
    uint64_t address;    /* RTS */
    uint64_t cookie;     /* RTS */
    uint64_t order;      /* arrival order across senders, for receives from any rank */
    unsigned char *data;
} wf_shm_unexpected_t;

/* A DONE record that found the sender's ring full, which a later progress() pushes. */
typedef struct wf_shm_pending_done {
    struct wf_shm_pending_done *next;
    uint64_t cookie;
    int32_t status;
} wf_shm_pending_done_t;

/* State of one peer, as recorded by this rank. */
typedef struct {
    int pid;
    uint64_t capacity;               /* of the peer's rings */
    wf_shm_header_t *header;         /* the peer's header page (own segment for this rank) */
    void *ring_map;                  /* mapping of this rank's ring in the peer's segment */
    size_t ring_map_bytes;
    wf_shm_ring_end_t out;           /* producer end of that ring */
    wf_shm_ring_end_t in;            /* consumer end of the peer's ring in this rank's segment */
    int cma_writable;                /* this rank can write into the peer's memory by CMA */
    int rings_doorbell;              /* the peer reads doorbells: a push to it sets this rank's bit */
    size_t inline_max, write_inline_max; /* per-peer limits, which depend on the peer's ring size */

    wf_shm_recv_t *posted, *posted_tail;             /* receives posted for this peer */
    wf_shm_unexpected_t *unexpected, *unexpected_tail;
    wf_shm_pending_done_t *dones, *dones_tail;

    /* A FRAGMENT message in progress from this peer: its receive, or its unexpected entry. */
    wf_shm_recv_t *assembling_recv;
    wf_shm_unexpected_t *assembling_entry;
    size_t assembled;
    size_t assembling_size;
} wf_shm_peer_t;

/* A send by RTS waiting for the receiver's DONE; its index and generation form the cookie. */
typedef struct {
    wf_xfer_t *xfer;
    int peer;
    uint32_t generation;
    int in_use;
    size_t length;
    uint64_t tag;
} wf_shm_rts_t;

/* A registered region; the key carries its slot and generation. */
typedef struct {
    uintptr_t base;
    size_t length;
    uint32_t generation;
    int in_use;
} wf_shm_region_t;

struct wf_transport {
    int rank;
    int nranks;
    wf_remote_write_fn on_remote_write;
    int (*should_stop)(void *arg);
    void *callback_arg;
    int cma_allowed;                 /* 0 when WEFT_SHM_CMA=off */
    unsigned char *served;           /* ranks this instance connects to (non-zero), NULL for all */
    int served_count;                /* ranks served, this one included */

    char name[WF_SHM_NAME_MAX];      /* of this rank's segment */
    int unlinked;                    /* the name was removed (all peers mapped it, or destroy) */
    wf_shm_header_t *segment;        /* this rank's whole segment */
    size_t segment_bytes;
    uint64_t capacity;               /* of this rank's inbound rings */
    wf_shm_peer_t *peers;            /* nranks entries */
    int *polled;                     /* served ranks whose rings progress() polls, or NULL: doorbells */
    int polled_count;
    int connected;

    wf_shm_recv_t *posted_any, *posted_any_tail; /* receives from any rank */
    wf_shm_recv_t *free_recvs;
    uint64_t next_order;             /* shared by post order and arrival order */
    size_t posted_count;

    size_t pending_dones;            /* DONE records queued in the peers' dones lists */
    wf_shm_rts_t *rts;               /* sends waiting for DONE */
    uint32_t rts_capacity;
    uint32_t *free_rts;              /* stack of free indexes into rts */
    uint32_t free_rts_count;
    size_t rts_in_flight;

    wf_shm_region_t *regions;
    uint32_t region_capacity;
    uint32_t *free_regions;
    uint32_t free_region_count;

    /*
     * Immediates received while a post waited for ring space (post_depth > 0), delivered by the
     * next progress() call, so on_remote_write runs only from progress() as transport.h states.
     */
    int post_depth;
    int destroying;                  /* drain() ran: xfers of posted operations are never touched again */
    wf_held_immediates_t deferred_immediates;
    int deferred_error;              /* negative code of a failure seen during a post */

    size_t cma_chunk;                /* bytes per CMA call, WF_SHM_CMA_CHUNK unless a benchmark changes it */
    uint64_t full_waits;             /* posts that found a ring full, for tests and diagnostics */
    uint64_t cma_bytes;              /* payload bytes moved by CMA, for tests */
    char error[512];
};

/* Store a formatted sentence as the instance's last error, returned by error_string(). */
#define wf_shm_set_error(t, ...) wf_xfer_format((t)->error, sizeof((t)->error), __VA_ARGS__)

/* Ring capacity for a communicator of nranks, before any reduction for a small /dev/shm. */
uint64_t wf_shm_ring_capacity(int nranks);

/* Offset and size of the ring that sender writes in a segment whose rings have capacity bytes. */
size_t wf_shm_ring_stride(uint64_t capacity);
size_t wf_shm_ring_offset(int sender, uint64_t capacity);
size_t wf_shm_segment_bytes(int nranks, uint64_t capacity);

/* shm_segment.c: create this rank's segment (t->name, t->segment, ...); message in err on failure. */
int wf_shm_segment_create(struct wf_transport *t, char *err, size_t errlen);

/* shm_segment.c: map the header page and this rank's ring of every peer; set their producer ends. */
int wf_shm_segment_map_peers(struct wf_transport *t, const wf_shm_address_t *addresses);

/* shm_segment.c: unmap everything and remove the name if it is still there. */
void wf_shm_segment_release(struct wf_transport *t);

/* shm_segment.c: find out which peers this rank reaches by CMA, and publish it in its header. */
void wf_shm_probe_cma(struct wf_transport *t, const wf_shm_address_t *addresses);

/* Whether rank is one this instance connects to (all ranks unless the route transport chose). */
static inline int wf_shm_serves(const struct wf_transport *t, int rank)
{
    return t->served == NULL || t->served[rank] != 0 || rank == t->rank;
}

/* shm_transport.c: the live region of key, or NULL. */
const wf_shm_region_t *wf_shm_region_find(const struct wf_transport *t, uint64_t key);

/*
 * shm_progress.c: forget every posted receive and unexpected message without touching their xfers;
 * the senders of unexpected RTS messages get a DONE with -ECANCELED.
 */
void wf_shm_drop_queues(struct wf_transport *t);

/* shm_progress.c: the progress() entry point. */
int wf_shm_progress(struct wf_transport *t);

/* shm_progress.c: drain every inbound ring once; returns the records handled or a negative code. */
int wf_shm_poll(struct wf_transport *t);

/* shm_progress.c: push the DONE replies that waited for ring space, and return how many are left. */
size_t wf_shm_flush_dones(struct wf_transport *t);

/*
 * shm_progress.c: match a new receive against the unexpected messages of its peer (or of every peer
 * when peer is -1). Returns 1 when it completed or took over a message, 0 when it must be posted.
 */
int wf_shm_match_unexpected(struct wf_transport *t, wf_shm_recv_t *recv);

/* shm_progress.c: copy n bytes from the peer's pid at remote into local; 0 or a negative errno. */
int wf_shm_cma_read(struct wf_transport *t, int pid, void *local, uint64_t remote, size_t n);

/* shm_post.c: append a record to peer's ring, waiting for space; 0 or a negative code. */
int wf_shm_push(struct wf_transport *t, int peer, const wf_shm_msg_t *msg, const void *payload, const char *what);

/* shm_post.c: set this rank's doorbell bit in the peer's header after publishing records. */
void wf_shm_ring_doorbell(struct wf_transport *t, int peer);

void wf_shm_recv_release(struct wf_transport *t, wf_shm_recv_t *recv);
void wf_shm_complete(struct wf_transport *t, wf_xfer_t *xfer, size_t length, int status);

int wf_shm_send(wf_transport_t *t, int peer, uint64_t tag, const void *buf, size_t length, void *desc,
                wf_xfer_t *xfer);
int wf_shm_recv(wf_transport_t *t, int peer, uint64_t tag, void *buf, size_t length, void *desc,
                wf_xfer_t *xfer);
int wf_shm_recv_any(wf_transport_t *t, uint64_t tag, uint64_t ignore, void *buf, size_t length, void *desc,
                    wf_xfer_t *xfer);
int wf_shm_write(wf_transport_t *t, int peer, const void *buf, size_t length, void *desc, uint64_t remote_addr,
                 uint64_t key, uint32_t immediate, wf_xfer_t *xfer);

#endif /* WF_SHM_H */
