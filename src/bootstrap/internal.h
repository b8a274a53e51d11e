/*
 * Pieces shared by the bootstrap implementations (TCP rendezvous, PMIx) and their selection.
 */
#ifndef WF_BOOTSTRAP_INTERNAL_H
#define WF_BOOTSTRAP_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>

#include "bootstrap/bootstrap.h"
#include "bootstrap/frame.h"

/* Largest job the TCP rendezvous accepts; the root keeps one connection per rank. */
#define WF_BOOT_MAX_RANKS (1 << 20)
#define WF_BOOT_ERROR_MAX 512

/* Common head of every implementation, so wf_bootstrap_last_error works on any of them. */
typedef struct {
    wf_bootstrap_t base; /* first member: a wf_bootstrap_t * points here */
    char last_error[WF_BOOT_ERROR_MAX];
} wf_bootstrap_common_t;

/* Format a message into err (may be NULL) and return code. */
weft_result_t wf_boot_error(char *err, size_t errlen, weft_result_t code, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

/* Store a failure of an operation of b in its last_error, log it at ERROR and return code. */
weft_result_t wf_boot_fail(wf_bootstrap_common_t *b, weft_result_t code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Fill buf with bytes from getrandom(). Returns 0, or -1 with errno set. */
int wf_boot_random(void *buf, size_t size);

/*
 * Derive the 32-byte job secret from WEFT_JOB_KEY: SHA-256 of the label "weft-job-key:" followed
 * by the key, so every rank with the same key gets the same secret and the key never travels.
 */
void wf_boot_secret_from_key(const char *key, unsigned char secret[WF_BOOT_SECRET_SIZE]);

typedef struct wf_root wf_root_t;

/*
 * Start the rendezvous root on a thread. It listens on listen_address (port 0: the kernel
 * chooses, *bound receives the result), waits up to timeout_s seconds for nranks ranks (nranks 0:
 * learn it from the first valid HELLO), then serves rounds until every rank has closed its
 * connection. display names the rendezvous in messages (for example the WEFT_ROOT value; NULL:
 * the bound address). The listening socket exists when this returns, so clients may connect at
 * once. With owner set, the caller owns the root and must end it with wf_root_release. With
 * owner NULL the root waits in a list for wf_root_adopt, and frees itself at the end if no
 * bootstrap adopted it.
 */
weft_result_t wf_root_start(const struct sockaddr *listen_address, const char *display,
                            const unsigned char secret[WF_BOOT_SECRET_SIZE], int nranks, int timeout_s,
                            struct sockaddr_storage *bound, wf_root_t **owner, char *err, size_t errlen);

/* Take ownership of the unowned root of this process with this secret; NULL when there is none. */
wf_root_t *wf_root_adopt(const unsigned char secret[WF_BOOT_SECRET_SIZE]);

/*
 * End an owned root: a round in progress fails on every rank with an ERROR frame, otherwise the
 * connections are closed. Returns after the thread has exited and the root is freed.
 */
void wf_root_release(wf_root_t *root);

/*
 * Connect to the root at root_address as rank `rank` of nranks and wait until every rank has
 * connected, at most timeout_s seconds. method is stored in the bootstrap for logs. The bootstrap
 * takes over owned_root (may be NULL) and releases it on destroy, or at once when this fails.
 */
weft_result_t wf_tcp_bootstrap_connect(wf_bootstrap_t **out, const char *method, const struct sockaddr *root_address,
                                       const unsigned char secret[WF_BOOT_SECRET_SIZE], int rank, int nranks,
                                       int timeout_s, wf_root_t *owned_root, char *err, size_t errlen);

#ifdef WEFT_HAVE_PMIX
/* Initialise PMIx (reference-counted across bootstraps of this process) and wrap it. */
weft_result_t wf_pmix_bootstrap_create(wf_bootstrap_t **out, int timeout_s, char *err, size_t errlen);
#endif

#endif /* WF_BOOTSTRAP_INTERNAL_H */
