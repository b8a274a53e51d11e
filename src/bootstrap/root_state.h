/*
 * State of the rendezvous root, shared by root.c (rounds, the thread, ownership) and
 * root_admit.c (accepting connections and checking HELLO frames). Only the root thread touches
 * it, except owner_left, owned and next, as noted at their fields.
 */
#ifndef WF_BOOTSTRAP_ROOT_STATE_H
#define WF_BOOTSTRAP_ROOT_STATE_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "bootstrap/internal.h"
#include "bootstrap/socket.h"

#define ROOT_MAX_PENDING 64          /* connections that have not yet sent a valid HELLO */
#define ROOT_HELLO_TIMEOUT_MS 10000  /* time an accepted connection has to send its HELLO */
#define ROOT_EVICT_AFTER_MS 5000     /* a handshake this old may give its slot to a new connection */
#define ROOT_DRAIN_MS 2000           /* time ranks get to read an ERROR frame before the root closes */
#define ROOT_LISTEN_RETRY_S 2        /* how long a port in use is retried */
#define ROOT_ERROR_FRAME_MAX (WF_FRAME_HEADER_SIZE + 4 + WF_FRAME_ERROR_TEXT_MAX)

/* Layout of the poll set: listener, wake-up eventfd, pending connections, then ranks. */
#define POLL_LISTENER 0
#define POLL_WAKE 1
#define POLL_PENDING 2
#define POLL_RANKS (POLL_PENDING + ROOT_MAX_PENDING)

typedef struct {
    int fd; /* -1 when not connected */
    int64_t hello_deadline_ms;
    size_t got; /* bytes of header and HELLO payload received */
    unsigned char buf[WF_FRAME_HEADER_SIZE + WF_HELLO_SIZE];
    unsigned char nonce[WF_BOOT_NONCE_SIZE];
    char peer[WF_ADDR_TEXT_MAX];
} root_pending_t;

typedef struct {
    int fd;        /* -1 before the rank connects and after it closes */
    int left;      /* the rank closed its connection after admission */
    int said_bye;  /* the rank announced a deliberate close (BYE) */
    int submitted; /* its block of the current round has arrived */
    size_t header_got;
    unsigned char header[WF_FRAME_HEADER_SIZE];
    uint64_t payload_got;
    unsigned char client_nonce[WF_BOOT_NONCE_SIZE];
    char peer[WF_ADDR_TEXT_MAX];
    /* status records: the one being read, and the last complete one with its arrival time */
    int reading_status;
    uint32_t status_expected;
    unsigned char status_in[WF_BOOT_STATUS_MAX];
    unsigned char status[WF_BOOT_STATUS_MAX];
    uint32_t status_length;
    int64_t status_ms; /* 0 before the first record */
} root_rank_t;

struct wf_root {
    pthread_t thread;
    int wake_fd;           /* eventfd the owner writes when it leaves */
    atomic_int owner_left; /* set by the owner's thread in wf_root_release */
    int owned;             /* a bootstrap will join the thread; guarded by roots_lock */
    struct wf_root *next;  /* in the list of roots no bootstrap owns yet; guarded by roots_lock */

    int listen_fd; /* -1 once every rank is in */
    int extra_fd;  /* an admitted-but-invalid connection that must also get the ERROR frame */
    char display[WF_ADDR_TEXT_MAX + 64];
    unsigned char secret[WF_BOOT_SECRET_SIZE];
    int timeout_s;
    int64_t accept_deadline_ms;
    int finished;

    root_pending_t pending[ROOT_MAX_PENDING];

    int nranks; /* 0 until the first valid HELLO when learned */
    root_rank_t *ranks;
    struct pollfd *pollfds; /* POLL_RANKS + nranks entries */
    int connected, left;

    /* Current round; started once its first header has arrived. */
    uint64_t round;
    int round_started;
    uint64_t round_length; /* bytes per rank */
    int submitted;
    int64_t round_deadline_ms;
    unsigned char *gather; /* nranks * round_length bytes */
};


void wf_root_send_error(int fd, weft_result_t code, const char *message);

/*
 * End the rendezvous: every connected rank (and extra_fd) gets an ERROR frame with the message,
 * then the root closes everything and sets finished.
 */
void wf_root_abort(wf_root_t *root, weft_result_t code, const char *format, ...) __attribute__((format(printf, 3, 4)));
void wf_root_close_all(wf_root_t *root);

void wf_root_close_pending(root_pending_t *pending);
void wf_root_reject_pending(root_pending_t *pending, weft_result_t code, const char *reason);
int wf_root_allocate_ranks(wf_root_t *root, int nranks);

/*
 * Return the pending slot a new connection may take: a free one, else the oldest handshake once it
 * has waited ROOT_EVICT_AFTER_MS, else -1. When every slot is busy, *evictable_ms receives the time
 * the oldest handshake becomes evictable, else -1.
 */
int wf_root_pending_slot(const wf_root_t *root, int64_t now_ms, int64_t *evictable_ms);

/*
 * Accept waiting connections while a pending slot may be taken, and send each a CHALLENGE. The
 * others stay in the listen backlog until a slot frees up.
 */
void wf_root_accept(wf_root_t *root);

/* Advance the HELLO read of a pending connection; a complete one is checked and admitted. */
void wf_root_read_hello(wf_root_t *root, root_pending_t *pending);

/* A rank closed its connection before every rank was in: free its slot so it may reconnect. */
void wf_root_drop_unwelcomed(wf_root_t *root, int r);

#endif /* WF_BOOTSTRAP_ROOT_STATE_H */
