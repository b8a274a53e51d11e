/*
 * Encoding and validation of rendezvous frames; no I/O here, so every check runs on raw buffers.
 */
#include "bootstrap/frame.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bootstrap/sha256.h"

void wf_put_u32(unsigned char *out, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        out[i] = (unsigned char)(value >> (8 * i));
}

void wf_put_u64(unsigned char *out, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(value >> (8 * i));
}

uint32_t wf_get_u32(const unsigned char *in)
{
    uint32_t value = 0;
    for (int i = 0; i < 4; i++)
        value |= (uint32_t)in[i] << (8 * i);
    return value;
}

uint64_t wf_get_u64(const unsigned char *in)
{
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value |= (uint64_t)in[i] << (8 * i);
    return value;
}

void wf_frame_header_encode(unsigned char out[WF_FRAME_HEADER_SIZE], uint32_t type, uint64_t length)
{
    wf_put_u32(out, WF_FRAME_MAGIC);
    wf_put_u32(out + 4, type);
    wf_put_u64(out + 8, length);
}

wf_frame_status_t wf_frame_header_decode(const unsigned char *bytes, size_t size, uint64_t max_payload,
                                         wf_frame_header_t *header, char *err, size_t errlen)
{
    if (size < WF_FRAME_HEADER_SIZE)
        return WF_FRAME_INCOMPLETE;

    uint32_t magic = wf_get_u32(bytes);
    if (magic != WF_FRAME_MAGIC) {
        snprintf(err, errlen,
                 "invalid frame: magic 0x%08" PRIx32 " instead of 0x%08x; the peer is not a weft rendezvous "
                 "endpoint or speaks another protocol",
                 magic, WF_FRAME_MAGIC);
        return WF_FRAME_INVALID;
    }
    header->type = wf_get_u32(bytes + 4);
    header->length = wf_get_u64(bytes + 8);
    if (header->type < WF_FRAME_CHALLENGE || header->type > WF_FRAME_TABLE) {
        snprintf(err, errlen, "invalid frame: unknown type %" PRIu32, header->type);
        return WF_FRAME_INVALID;
    }
    if (header->length > max_payload) {
        snprintf(err, errlen, "invalid frame: payload of %" PRIu64 " bytes exceeds the limit of %" PRIu64 " bytes",
                 header->length, max_payload);
        return WF_FRAME_INVALID;
    }
    return WF_FRAME_OK;
}

wf_frame_status_t wf_frame_parse(const unsigned char *buf, size_t size, uint64_t max_payload,
                                 wf_frame_header_t *header, const unsigned char **payload, size_t *frame_size,
                                 char *err, size_t errlen)
{
    wf_frame_status_t status = wf_frame_header_decode(buf, size, max_payload, header, err, errlen);
    if (status != WF_FRAME_OK)
        return status;
    if (header->length > size - WF_FRAME_HEADER_SIZE)
        return WF_FRAME_INCOMPLETE;
    *payload = buf + WF_FRAME_HEADER_SIZE;
    *frame_size = WF_FRAME_HEADER_SIZE + (size_t)header->length;
    return WF_FRAME_OK;
}

void wf_challenge_encode(unsigned char out[WF_CHALLENGE_SIZE], const wf_challenge_t *challenge)
{
    wf_put_u32(out, challenge->version);
    wf_put_u32(out + 4, 0);
    memcpy(out + 8, challenge->nonce, WF_BOOT_NONCE_SIZE);
}

void wf_challenge_decode(const unsigned char in[WF_CHALLENGE_SIZE], wf_challenge_t *challenge)
{
    challenge->version = wf_get_u32(in);
    memcpy(challenge->nonce, in + 8, WF_BOOT_NONCE_SIZE);
}

void wf_hello_encode(unsigned char out[WF_HELLO_SIZE], const wf_hello_t *hello)
{
    wf_put_u32(out, hello->version);
    wf_put_u32(out + 4, hello->rank);
    wf_put_u32(out + 8, hello->nranks);
    wf_put_u32(out + 12, 0);
    memcpy(out + 16, hello->client_nonce, WF_BOOT_NONCE_SIZE);
    memcpy(out + 16 + WF_BOOT_NONCE_SIZE, hello->mac, WF_BOOT_MAC_SIZE);
}

void wf_hello_decode(const unsigned char in[WF_HELLO_SIZE], wf_hello_t *hello)
{
    hello->version = wf_get_u32(in);
    hello->rank = wf_get_u32(in + 4);
    hello->nranks = wf_get_u32(in + 8);
    memcpy(hello->client_nonce, in + 16, WF_BOOT_NONCE_SIZE);
    memcpy(hello->mac, in + 16 + WF_BOOT_NONCE_SIZE, WF_BOOT_MAC_SIZE);
}

void wf_welcome_encode(unsigned char out[WF_WELCOME_SIZE], const wf_welcome_t *welcome)
{
    wf_put_u32(out, welcome->nranks);
    wf_put_u32(out + 4, 0);
    memcpy(out + 8, welcome->mac, WF_BOOT_MAC_SIZE);
}

void wf_welcome_decode(const unsigned char in[WF_WELCOME_SIZE], wf_welcome_t *welcome)
{
    welcome->nranks = wf_get_u32(in);
    memcpy(welcome->mac, in + 8, WF_BOOT_MAC_SIZE);
}

/*
 * The labels keep a HELLO proof from being replayed as a WELCOME proof and the reverse. The
 * root's fresh nonce keeps a recorded HELLO from being replayed to a later root.
 */
void wf_hello_mac(const unsigned char secret[WF_BOOT_SECRET_SIZE], const unsigned char nonce[WF_BOOT_NONCE_SIZE],
                  const wf_hello_t *hello, unsigned char mac[WF_BOOT_MAC_SIZE])
{
    static const char label[] = "weft-hello";
    unsigned char fields[12];
    wf_put_u32(fields, hello->version);
    wf_put_u32(fields + 4, hello->rank);
    wf_put_u32(fields + 8, hello->nranks);
    const void *parts[] = {label, nonce, hello->client_nonce, fields};
    const size_t sizes[] = {sizeof(label) - 1, WF_BOOT_NONCE_SIZE, WF_BOOT_NONCE_SIZE, sizeof(fields)};
    wf_hmac_sha256(secret, WF_BOOT_SECRET_SIZE, parts, sizes, 4, mac);
}

void wf_welcome_mac(const unsigned char secret[WF_BOOT_SECRET_SIZE],
                    const unsigned char client_nonce[WF_BOOT_NONCE_SIZE], uint32_t nranks,
                    unsigned char mac[WF_BOOT_MAC_SIZE])
{
    static const char label[] = "weft-welcome";
    unsigned char fields[4];
    wf_put_u32(fields, nranks);
    const void *parts[] = {label, client_nonce, fields};
    const size_t sizes[] = {sizeof(label) - 1, WF_BOOT_NONCE_SIZE, sizeof(fields)};
    wf_hmac_sha256(secret, WF_BOOT_SECRET_SIZE, parts, sizes, 3, mac);
}

size_t wf_frame_error_build(unsigned char *out, weft_result_t code, const char *message)
{
    size_t textlen = strlen(message);
    if (textlen > WF_FRAME_ERROR_TEXT_MAX)
        textlen = WF_FRAME_ERROR_TEXT_MAX;
    wf_frame_header_encode(out, WF_FRAME_ERROR, 4 + textlen);
    wf_put_u32(out + WF_FRAME_HEADER_SIZE, (uint32_t)code);
    memcpy(out + WF_FRAME_HEADER_SIZE + 4, message, textlen);
    return WF_FRAME_HEADER_SIZE + 4 + textlen;
}

int wf_frame_error_decode(const unsigned char *payload, size_t length, weft_result_t *code, char *message,
                          size_t messagelen)
{
    if (length < 4 || length > 4 + WF_FRAME_ERROR_TEXT_MAX || messagelen == 0)
        return -1;
    uint32_t raw = wf_get_u32(payload);
    *code = raw >= WEFT_ERR_INVALID_ARGUMENT && raw <= WEFT_ERR_INTERNAL ? (weft_result_t)raw : WEFT_ERR_INTERNAL;

    size_t textlen = length - 4;
    if (textlen >= messagelen)
        textlen = messagelen - 1;
    /* The text comes from the network: replace control bytes so it cannot forge log lines. */
    for (size_t i = 0; i < textlen; i++) {
        unsigned char c = payload[4 + i];
        message[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    message[textlen] = '\0';
    return 0;
}

int wf_equal_const_time(const unsigned char *a, const unsigned char *b, size_t size)
{
    volatile unsigned char difference = 0;
    for (size_t i = 0; i < size; i++)
        difference |= a[i] ^ b[i];
    return difference == 0;
}
