/*
 * Wire format of the TCP rendezvous: every message is one frame.
 *
 * A frame is a 16-byte header followed by `length` payload bytes. The header holds, little-endian,
 * the magic "WEFT" (bytes 57 45 46 54), the frame type (u32) and the payload length (u64). A
 * reader rejects a bad magic, an unknown type or a length above its limit before it allocates
 * anything, so a peer that sends garbage costs at most one header read.
 *
 * A connection runs: root sends CHALLENGE, client sends HELLO, root sends WELCOME once every rank
 * has connected, then rounds of DATA (one frame from each rank, one reply to each rank). The root
 * sends ERROR instead of any reply when it gives up, then closes the connection.
 */
#ifndef WF_BOOTSTRAP_FRAME_H
#define WF_BOOTSTRAP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "weft.h"

#define WF_FRAME_MAGIC 0x54464557u /* "WEFT" when stored little-endian */
#define WF_FRAME_HEADER_SIZE 16
#define WF_FRAME_MAX_PAYLOAD ((uint64_t)64 << 20) /* 64 MiB, also the limit of one allgather result */
#define WF_BOOT_PROTOCOL_VERSION 1u
#define WF_BOOT_SECRET_SIZE 32
#define WF_BOOT_NONCE_SIZE 32
#define WF_BOOT_MAC_SIZE 32
#define WF_FRAME_ERROR_TEXT_MAX 1024 /* bytes of message text in an ERROR frame */

typedef enum {
    WF_FRAME_CHALLENGE = 1, /* root -> client: protocol version and a fresh nonce */
    WF_FRAME_HELLO = 2,     /* client -> root: version, rank, size, client nonce, proof of the secret */
    WF_FRAME_WELCOME = 3,   /* root -> client: every rank connected; root's proof of the secret */
    WF_FRAME_DATA = 4,      /* one rank's block of a round, or the root's concatenation */
    WF_FRAME_ERROR = 5,     /* root -> client: result code and message, then the root closes */
    WF_FRAME_BYE = 6,       /* client -> root, empty: the rank leaves on purpose; a close without it is a crash */
    WF_FRAME_STATUS = 7,    /* client -> root: the rank's latest status record, kept for diagnosis */
    WF_FRAME_QUERY = 8,     /* client -> root, empty: ask for every rank's status record */
    WF_FRAME_TABLE = 9      /* root -> client: nranks status slots (WF_BOOT_STATUS_SLOT bytes each) */
} wf_frame_type_t;

typedef enum {
    WF_FRAME_OK = 0,
    WF_FRAME_INCOMPLETE = 1, /* the buffer ends before the header or payload does */
    WF_FRAME_INVALID = -1    /* bad magic, unknown type or length above the limit */
} wf_frame_status_t;

typedef struct {
    uint32_t type;
    uint64_t length; /* payload bytes */
} wf_frame_header_t;

/* Fixed payload sizes of the handshake frames. */
#define WF_CHALLENGE_SIZE (8 + WF_BOOT_NONCE_SIZE)
#define WF_HELLO_SIZE (16 + WF_BOOT_NONCE_SIZE + WF_BOOT_MAC_SIZE)
#define WF_WELCOME_SIZE (8 + WF_BOOT_MAC_SIZE)

typedef struct {
    uint32_t version;
    unsigned char nonce[WF_BOOT_NONCE_SIZE];
} wf_challenge_t;

typedef struct {
    uint32_t version;
    uint32_t rank;
    uint32_t nranks;
    unsigned char client_nonce[WF_BOOT_NONCE_SIZE];
    /* HMAC-SHA-256 under the job secret of the root's nonce, version, rank and nranks */
    unsigned char mac[WF_BOOT_MAC_SIZE];
} wf_hello_t;

typedef struct {
    uint32_t nranks;
    /* HMAC-SHA-256 under the job secret of the client's nonce and nranks */
    unsigned char mac[WF_BOOT_MAC_SIZE];
} wf_welcome_t;

void wf_put_u32(unsigned char *out, uint32_t value);
void wf_put_u64(unsigned char *out, uint64_t value);
uint32_t wf_get_u32(const unsigned char *in);
uint64_t wf_get_u64(const unsigned char *in);

void wf_frame_header_encode(unsigned char out[WF_FRAME_HEADER_SIZE], uint32_t type, uint64_t length);

/*
 * Decode and validate the header at the start of bytes. Returns WF_FRAME_INCOMPLETE when size is
 * below WF_FRAME_HEADER_SIZE, WF_FRAME_INVALID with a sentence in err when the magic, the type or
 * a length above max_payload is wrong.
 */
wf_frame_status_t wf_frame_header_decode(const unsigned char *bytes, size_t size, uint64_t max_payload,
                                         wf_frame_header_t *header, char *err, size_t errlen);

/*
 * Find one complete frame at the start of buf. On WF_FRAME_OK, *payload points into buf and
 * *frame_size is the header plus payload size, so the next frame starts at buf + *frame_size.
 */
wf_frame_status_t wf_frame_parse(const unsigned char *buf, size_t size, uint64_t max_payload,
                                 wf_frame_header_t *header, const unsigned char **payload, size_t *frame_size,
                                 char *err, size_t errlen);

void wf_challenge_encode(unsigned char out[WF_CHALLENGE_SIZE], const wf_challenge_t *challenge);
void wf_challenge_decode(const unsigned char in[WF_CHALLENGE_SIZE], wf_challenge_t *challenge);
void wf_hello_encode(unsigned char out[WF_HELLO_SIZE], const wf_hello_t *hello);
void wf_hello_decode(const unsigned char in[WF_HELLO_SIZE], wf_hello_t *hello);
void wf_welcome_encode(unsigned char out[WF_WELCOME_SIZE], const wf_welcome_t *welcome);
void wf_welcome_decode(const unsigned char in[WF_WELCOME_SIZE], wf_welcome_t *welcome);

/* Proofs of the secret carried by HELLO and WELCOME. */
void wf_hello_mac(const unsigned char secret[WF_BOOT_SECRET_SIZE], const unsigned char nonce[WF_BOOT_NONCE_SIZE],
                  const wf_hello_t *hello, unsigned char mac[WF_BOOT_MAC_SIZE]);
void wf_welcome_mac(const unsigned char secret[WF_BOOT_SECRET_SIZE],
                    const unsigned char client_nonce[WF_BOOT_NONCE_SIZE], uint32_t nranks,
                    unsigned char mac[WF_BOOT_MAC_SIZE]);

/*
 * Build a whole ERROR frame (header included) in out, which must hold
 * WF_FRAME_HEADER_SIZE + 4 + WF_FRAME_ERROR_TEXT_MAX bytes; longer messages are cut. Returns the
 * frame size.
 */
size_t wf_frame_error_build(unsigned char *out, weft_result_t code, const char *message);

/*
 * Decode an ERROR payload into a code and a NUL-terminated message. A code outside the result
 * enum becomes WEFT_ERR_INTERNAL.
 */
int wf_frame_error_decode(const unsigned char *payload, size_t length, weft_result_t *code, char *message,
                          size_t messagelen);

/* Compare two byte strings in time that depends only on size, not on where they differ. */
int wf_equal_const_time(const unsigned char *a, const unsigned char *b, size_t size);

#endif /* WF_BOOTSTRAP_FRAME_H */
