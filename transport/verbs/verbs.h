/*
 * Internal state of weft's native verbs transport (libibverbs), shared by the files in
 * transport/verbs/.
 *
 * Every rank opens one device port, one protection domain and one completion queue with a
 * completion channel. Peers are reached through reliable-connected (RC) queue pairs, created on the
 * first post to a peer or the first request from it. The two ranks trade QP numbers over one
 * unreliable-datagram (UD) QP per rank, and get_address publishes the address of that UD QP.
 *
 * Messages travel as RC SENDs into per-QP receive slots (eager, with the payload) or as a request
 * to send (RTS) that the receiver follows with an RDMA READ from the sender's registered buffer
 * and a FIN. Writes are RDMA WRITE WITH IMMEDIATE straight into the peer's registered buffer. Each
 * SEND and each write with immediate uses one receive slot at the peer, so a sender spends a
 * credit for it; the receiver returns credits in the header of its own messages or, when it has
 * nothing to send, in a CREDIT message. Posts that find no credit or no send-queue room wait in
 * the peer's queue, in order, until progress() has room for them.
 *
 * verbs_device.c chooses the device, port and GID; verbs_transport.c implements the instance and
 * registration; verbs_connect.c creates and connects the QPs; verbs_post.c the posts and the
 * peer queues; verbs_progress.c reads the CQ. Log messages start with "NET/IB".
 */
#ifndef WF_VERBS_H
#define WF_VERBS_H

#include <stddef.h>
#include <stdint.h>

#include <infiniband/verbs.h>

#include "log.h"
#include "transport.h"
#include "xfer.h"

#define WF_VERBS_INFO(format, ...) WF_INFO(WF_SUB_NET, "NET/IB " format, ##__VA_ARGS__)
#define WF_VERBS_WARN(format, ...) WF_WARN(WF_SUB_NET, "NET/IB " format, ##__VA_ARGS__)
#define WF_VERBS_TRACE(format, ...) WF_TRACE(WF_SUB_NET, "NET/IB " format, ##__VA_ARGS__)

#define WF_VERBS_PROVIDER_NAME "verbs (weft)"

/* Bytes of one receive or send slot, header included; larger messages go by RTS and RDMA READ. */
#define WF_VERBS_SLOT 4096
/* Receive slots posted on each RC QP, which is also the number of credits a sender starts with. */
#define WF_VERBS_RECV_DEPTH 32
/* Send work requests outstanding per RC QP; more wait in the peer's queue. */
#define WF_VERBS_SEND_DEPTH 64
/* RDMA READs in flight per QP, in both directions (clamped to the device's limits). */
#define WF_VERBS_RD_ATOMIC 16
/* Registered send slots shared by every peer, for eager and control messages. */
#define WF_VERBS_SEND_SLOTS 256
/* Operation records are allocated in blocks of this many. */
#define WF_VERBS_OP_BLOCK 64
/* UD slots for connection messages, and how often a request is repeated until the reply arrives. */
#define WF_VERBS_UD_DEPTH 64
#define WF_VERBS_UD_SENDS 8
#define WF_VERBS_CONNECT_RETRY_MS 200
/* Bytes a UD receive carries in front of the message: the global route header. */
#define WF_VERBS_GRH 40
/*
 * Writes and reads are split into work requests of at most this many bytes, so a large transfer
 * to one peer does not occupy the device for its whole length. A guest measurement of 64 KiB,
 * 1 MiB and unsplit pieces showed no difference within the noise of a software device.
 */
#define WF_VERBS_WR_MAX ((size_t)1 << 20)
/* Largest single send, write or read accepted; callers split larger ones. */
#define WF_VERBS_MAX_MESSAGE ((size_t)1 << 30)
/* How long drain() waits for the CQ to stay quiet, in milliseconds. */
#define WF_VERBS_QUIET_MS 100
/*
 * progress() polls the CQ without sleeping for this long after the last completion, then sleeps
 * on the completion channel for at most WF_VERBS_SLEEP_MS per call. A process that only polls
 * starves a software RDMA device of CPU time (rdma_rxe works in the kernel on the same cores).
 */
#define WF_VERBS_SPIN_US 50
#define WF_VERBS_SLEEP_MS 1

#define WF_VERBS_ADDRESS_MAGIC 0x77666962u /* "wfib" */

/* Address that get_address publishes: how to reach this rank's UD QP. */
typedef struct {
    uint32_t magic;
    uint32_t rank;
    uint64_t instance;  /* random, so messages for another instance are ignored */
    uint8_t gid[16];
    uint16_t lid;
    uint8_t port;
    uint8_t is_global;  /* the port needs a GRH (RoCE, or a GID-routed fabric) */
    uint32_t ud_qpn;
    uint32_t mtu;       /* enum ibv_mtu of the port */
} wf_verbs_address_t;

/* Connection messages over UD. */
enum { WF_VERBS_CONN_REQUEST = 1, WF_VERBS_CONN_REPLY = 2 };

typedef struct {
    uint32_t magic;
    uint16_t type;      /* WF_VERBS_CONN_* */
    uint16_t mtu;       /* the sender's port MTU; both ends use the smaller */
    uint32_t from_rank;
    uint32_t qpn;       /* the sender's RC QP for this pair */
    uint32_t psn;
    uint32_t pad;
    uint64_t from_instance;
    uint64_t to_instance;
} wf_verbs_conn_msg_t;

/* Kinds of RC messages. */
typedef enum {
    WF_VERBS_MSG_EAGER = 1, /* tagged message, payload after the header */
    WF_VERBS_MSG_RTS,       /* tagged message the receiver reads from address/key, then FINs */
    WF_VERBS_MSG_FIN,       /* receiver to sender: RTS cookie was read, with status */
    WF_VERBS_MSG_CREDIT     /* credits only */
} wf_verbs_kind_t;

typedef struct {
    uint8_t kind;
    uint8_t pad;
    uint16_t credits;   /* receive slots the sender reposted for the receiver since its last message */
    uint32_t payload;   /* EAGER: payload bytes after the header */
    uint64_t tag;
    uint64_t size;      /* RTS: message bytes */
    uint64_t address;   /* RTS: the sender's buffer */
    uint64_t cookie;    /* RTS and FIN: the sender's operation */
    uint32_t key;       /* RTS: rkey of the sender's buffer */
    int32_t status;     /* FIN: 0 or a negative errno of the receiver's read */
} wf_verbs_msg_t;

#define WF_VERBS_EAGER_MAX (WF_VERBS_SLOT - sizeof(wf_verbs_msg_t))
_Static_assert(sizeof(wf_verbs_msg_t) == 48, "docs/transport.md states the 48-byte header");

/* What a work request id points to; the first field of every such record. */
typedef enum { WF_VERBS_WR_OP = 1, WF_VERBS_WR_RECV_SLOT, WF_VERBS_WR_UD_SLOT, WF_VERBS_WR_UD_SEND } wf_verbs_wr_kind_t;

/* Kinds of posted operations. */
typedef enum {
    WF_VERBS_OP_SEND = 1, /* eager send, or the RTS of a large send (then waits for FIN) */
    WF_VERBS_OP_WRITE,
    WF_VERBS_OP_READ,     /* caller's RDMA read */
    WF_VERBS_OP_RTS_READ, /* read of a matched RTS into a receive; then FIN */
    WF_VERBS_OP_CONTROL   /* FIN or CREDIT: no caller xfer */
} wf_verbs_op_kind_t;

struct wf_verbs_peer;

/* One operation, from post to completion. Lives in a transport-owned pool. */
typedef struct wf_verbs_op {
    wf_verbs_wr_kind_t wr_kind; /* WF_VERBS_WR_OP */
    wf_verbs_op_kind_t kind;
    struct wf_verbs_op *next;   /* peer queue or free list */
    wf_xfer_t *xfer;            /* NULL for control messages */
    int peer;
    int in_use;
    int rendezvous;             /* SEND by RTS: done once both its completion and the FIN arrived */
    int events_left;            /* rendezvous: of those two */
    size_t posted;              /* WRITE and reads: bytes posted so far, in pieces of wr_max */
    int pieces_outstanding;     /* work requests posted and not completed */
    int status;                 /* first failure among the pieces */
    int fin_status;
    int slot;                   /* send slot index, or -1 */
    uint64_t tag;
    const void *buf;            /* SEND, WRITE: source; READ, RTS_READ: destination */
    size_t length;
    uint32_t lkey;
    uint64_t remote_addr;
    uint32_t rkey;
    uint32_t immediate;
    uint64_t cookie;            /* RTS_READ: the sender's cookie to FIN */
    struct wf_verbs_recv *recv; /* RTS_READ: the receive it fills */
    struct ibv_mr *temporary;   /* registration made for a buffer passed without descriptor */
    uint32_t generation;        /* bumped at release, so a FIN for an old cookie is ignored */
    uint32_t index;             /* in the pool, for cookies */
} wf_verbs_op_t;

/* A posted receive. */
typedef struct wf_verbs_recv {
    struct wf_verbs_recv *next;
    wf_xfer_t *xfer;
    int peer;       /* -1: any rank */
    uint64_t tag;
    uint64_t ignore;
    void *buf;
    size_t length;
    uint32_t lkey;  /* 0 when the caller passed no descriptor */
    uint64_t order; /* post order, to pick the earliest between a peer's list and the any-rank list */
} wf_verbs_recv_t;

/* A message that arrived before its receive. */
typedef struct wf_verbs_unexpected {
    struct wf_verbs_unexpected *next;
    wf_verbs_msg_t msg;   /* EAGER or RTS header */
    uint64_t order;
    unsigned char *data;  /* EAGER payload */
} wf_verbs_unexpected_t;

/* A receive slot of an RC QP; its wr_id points here. */
typedef struct {
    wf_verbs_wr_kind_t wr_kind; /* WF_VERBS_WR_RECV_SLOT */
    int peer;
    unsigned char *data;
} wf_verbs_recv_slot_t;

typedef enum { WF_VERBS_PEER_IDLE = 0, WF_VERBS_PEER_CONNECTING, WF_VERBS_PEER_CONNECTED, WF_VERBS_PEER_FAILED } wf_verbs_peer_state_t;

typedef struct wf_verbs_peer {
    wf_verbs_address_t address;
    wf_verbs_peer_state_t state;
    struct ibv_qp *qp;
    struct ibv_ah *ah;           /* to the peer's UD QP */
    uint32_t psn;                /* this rank's initial send PSN */
    uint64_t last_request_ns;    /* when the last connection request went out */
    int requests;                /* connection requests sent */

    int credits;                 /* receive slots the peer has posted for this rank and not yet used */
    int owed;                    /* slots this rank reposted for the peer and not yet announced */
    int send_outstanding;        /* send work requests posted and not completed */
    int reads_outstanding;
    int max_reads;               /* RDMA READs this rank may have in flight to the peer */
    wf_verbs_op_t *queue, *queue_tail; /* posts waiting for a connection, credits or room */

    wf_verbs_recv_slot_t *slots; /* WF_VERBS_RECV_DEPTH of them */
    unsigned char *slot_memory;
    struct ibv_mr *slot_mr;

    wf_verbs_recv_t *posted, *posted_tail;
    wf_verbs_unexpected_t *unexpected, *unexpected_tail;
    char failure[512];           /* why the peer's QP failed, for later posts */
} wf_verbs_peer_t;

/* A UD slot; its wr_id points here. */
typedef struct {
    wf_verbs_wr_kind_t wr_kind; /* WF_VERBS_WR_UD_SLOT or WF_VERBS_WR_UD_SEND */
    unsigned char *data;        /* 40-byte GRH, then the message */
} wf_verbs_ud_slot_t;

/* A registration; wf_mr_t.handle and .desc point here. */
typedef struct wf_verbs_mr {
    struct ibv_mr *mr;
    struct wf_verbs_mr *prev, *next;
} wf_verbs_mr_t;

/* The port this rank uses, chosen by verbs_device.c. */
typedef struct {
    char device[64];
    uint8_t port;
    int gid_index;
    union ibv_gid gid;
    uint16_t lid;
    int is_global;
    enum ibv_mtu mtu;
    int link_layer;   /* IBV_LINK_LAYER_* */
    char why[160];    /* why this device, port and GID, for the INFO line */
} wf_verbs_port_choice_t;

struct wf_transport {
    int rank;
    int nranks;
    unsigned char *served;      /* ranks this instance serves, NULL for all */
    wf_remote_write_fn on_remote_write;
    int (*should_stop)(void *arg);
    void *callback_arg;
    uint64_t instance;

    wf_verbs_port_choice_t port;
    struct ibv_context *context;
    struct ibv_pd *pd;
    struct ibv_comp_channel *channel;
    struct ibv_cq *cq;
    int cq_size;
    int cq_armed;
    struct ibv_device_attr device_attr;
    uint32_t max_inline;
    size_t wr_max;              /* largest RDMA write or read in one work request */
    uint64_t spin_ns;           /* polling time before progress() sleeps on the channel */
    int may_sleep;              /* whether progress() may sleep: 0 when another transport shares the loop */
    int timeout, retry_count, traffic_class, service_level;

    struct ibv_qp *ud_qp;
    wf_verbs_ud_slot_t ud_slots[WF_VERBS_UD_DEPTH];
    wf_verbs_ud_slot_t ud_send_slots[WF_VERBS_UD_SENDS];
    int ud_send_busy[WF_VERBS_UD_SENDS];
    unsigned char *ud_memory;
    struct ibv_mr *ud_mr;

    wf_verbs_peer_t *peers;     /* nranks entries */
    int connected_peers;
    int connecting_peers;

    unsigned char *send_slots;  /* WF_VERBS_SEND_SLOTS x WF_VERBS_SLOT, registered */
    struct ibv_mr *send_slot_mr;
    int free_slots[WF_VERBS_SEND_SLOTS];
    int free_slot_count;

    wf_verbs_op_t **op_blocks;  /* the pool, in blocks of WF_VERBS_OP_BLOCK; an op's index is its cookie */
    size_t op_block_count;
    wf_verbs_op_t *free_ops;
    size_t ops_in_use;

    wf_verbs_recv_t *posted_any, *posted_any_tail;
    uint64_t next_order;

    wf_verbs_mr_t *regions;

    int destroying;             /* drain() ran: the xfers of posted operations are never touched again */
    uint64_t last_event_ns;     /* last time the CQ had a completion */
    char error[512];
};

/* verbs_device.c */
#define WF_VERBS_GIDS_MAX 256 /* GID table entries examined per port */
/*
 * Rank of a GID for RoCE, higher is better and 0 unusable: RoCE v2 before v1, then an IPv4-mapped
 * address, a global IPv6 address, and a link-local (fe80::) one last.
 */
int wf_verbs_gid_score(const struct ibv_gid_entry *entry);
/* Index into entries of the best GID, only entries[i].gid_index == forced when forced >= 0; -1 if none. */
int wf_verbs_pick_gid(const struct ibv_gid_entry *entries, int count, int forced);
/*
 * Open the device and choose the port and GID this rank uses: rail (port rail_port) when the
 * topology chose one, else the first active port WEFT_IB_HCA allows. Returns 0, or a negative
 * code with the reason in err.
 */
int wf_verbs_choose_port(const char *rail, int rail_port, wf_verbs_port_choice_t *choice,
                         struct ibv_context **context, char *err, size_t errlen);

/* Store a formatted sentence as the instance's last error, returned by error_string(). */
#define wf_verbs_set_error(t, ...) wf_xfer_format((t)->error, sizeof((t)->error), __VA_ARGS__)

static inline int wf_verbs_serves(const struct wf_transport *t, int rank)
{
    return t->served == NULL || t->served[rank] != 0;
}

/* verbs_connect.c */
int wf_verbs_ud_open(struct wf_transport *t);
void wf_verbs_ud_close(struct wf_transport *t);
/* Start connecting to peer if nothing is under way: create its QP and send a request. */
int wf_verbs_connect_peer(struct wf_transport *t, int peer);
/* Handle a UD completion (a connection request or reply). */
void wf_verbs_on_ud_message(struct wf_transport *t, wf_verbs_ud_slot_t *slot, size_t length);
/* Repeat the connection requests that got no reply yet. */
void wf_verbs_retry_connects(struct wf_transport *t, uint64_t now_ns);
void wf_verbs_peer_close(struct wf_transport *t, wf_verbs_peer_t *peer);
int wf_verbs_post_recv_slot(struct wf_transport *t, wf_verbs_recv_slot_t *slot);

/* verbs_post.c */
wf_verbs_op_t *wf_verbs_op_get(struct wf_transport *t);
void wf_verbs_op_release(struct wf_transport *t, wf_verbs_op_t *op);
wf_verbs_op_t *wf_verbs_op_of_cookie(struct wf_transport *t, uint64_t cookie);
/* Post the queued operations of peer while credits and room last; 0 or a negative code. */
int wf_verbs_flush_queue(struct wf_transport *t, int peer);
/* Queue op for peer and flush. */
int wf_verbs_submit(struct wf_transport *t, int peer, wf_verbs_op_t *op);
/* Send a FIN for cookie, or a CREDIT when owed credits pile up. */
int wf_verbs_send_control(struct wf_transport *t, int peer, wf_verbs_kind_t kind, uint64_t cookie, int status);
void wf_verbs_complete(struct wf_transport *t, wf_xfer_t *xfer, size_t length, int status);
void wf_verbs_fail_peer(struct wf_transport *t, int peer, int status, const char *format, ...)
    __attribute__((format(printf, 4, 5)));
const char *wf_verbs_op_name(wf_verbs_op_kind_t kind);

int wf_verbs_send(wf_transport_t *t, int peer, uint64_t tag, const void *buf, size_t length, void *desc,
                  wf_xfer_t *xfer);
int wf_verbs_recv(wf_transport_t *t, int peer, uint64_t tag, void *buf, size_t length, void *desc, wf_xfer_t *xfer);
int wf_verbs_recv_any(wf_transport_t *t, uint64_t tag, uint64_t ignore, void *buf, size_t length, void *desc,
                      wf_xfer_t *xfer);
int wf_verbs_write(wf_transport_t *t, int peer, const void *buf, size_t length, void *desc, uint64_t remote_addr,
                   uint64_t key, uint32_t immediate, wf_xfer_t *xfer);
int wf_verbs_read(wf_transport_t *t, int peer, void *buf, size_t length, void *desc, uint64_t remote_addr,
                  uint64_t key, wf_xfer_t *xfer);

/* verbs_progress.c */
int wf_verbs_progress(wf_transport_t *t);
/* Poll the CQ once without sleeping; returns completions handled or a negative code. */
int wf_verbs_poll(struct wf_transport *t);
/* A matched RTS or EAGER: deliver unexpected entry e into recv. */
void wf_verbs_deliver(struct wf_transport *t, int peer, wf_verbs_recv_t *recv, const wf_verbs_msg_t *msg,
                      const void *payload);
/* Match a new receive against the unexpected messages; 1 when it took one. */
int wf_verbs_match_unexpected(struct wf_transport *t, wf_verbs_recv_t *recv);

#endif /* WF_VERBS_H */
