/*
 * SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), enough for the rendezvous handshake.
 *
 * The bootstrap uses them to turn WEFT_JOB_KEY into a 32-byte job secret and to prove knowledge
 * of that secret without sending it. Not constant-time in the message length; the inputs are
 * public nonces and fixed-size fields.
 */
#ifndef WF_BOOTSTRAP_SHA256_H
#define WF_BOOTSTRAP_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define WF_SHA256_SIZE 32
#define WF_SHA256_BLOCK 64

typedef struct {
    uint32_t state[8];
    uint64_t total; /* bytes hashed so far */
    unsigned char block[WF_SHA256_BLOCK];
    size_t used; /* bytes waiting in block */
} wf_sha256_t;

void wf_sha256_init(wf_sha256_t *ctx);
void wf_sha256_update(wf_sha256_t *ctx, const void *data, size_t size);
void wf_sha256_final(wf_sha256_t *ctx, unsigned char digest[WF_SHA256_SIZE]);
void wf_sha256(const void *data, size_t size, unsigned char digest[WF_SHA256_SIZE]);

/* HMAC-SHA-256 of the concatenation of parts (count of them) under key. */
void wf_hmac_sha256(const unsigned char *key, size_t keylen, const void *const *parts, const size_t *sizes,
                    int count, unsigned char mac[WF_SHA256_SIZE]);

#endif /* WF_BOOTSTRAP_SHA256_H */
