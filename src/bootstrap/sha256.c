/*
 * SHA-256 and HMAC-SHA-256, written from FIPS 180-4 (sections 4.1.2, 4.2.2, 5.1.1, 6.2) and
 * RFC 2104. Checked against the FIPS and RFC 4231 test vectors in tests/unit/test_frame.c.
 */
#include "bootstrap/sha256.h"

#include <string.h>

/* First 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t round_constants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t rotate_right(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static void compress_block(uint32_t state[8], const unsigned char block[WF_SHA256_BLOCK])
{
    uint32_t schedule[64];
    for (int t = 0; t < 16; t++)
        schedule[t] = (uint32_t)block[4 * t] << 24 | (uint32_t)block[4 * t + 1] << 16 |
                      (uint32_t)block[4 * t + 2] << 8 | (uint32_t)block[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotate_right(schedule[t - 15], 7) ^ rotate_right(schedule[t - 15], 18) ^ (schedule[t - 15] >> 3);
        uint32_t s1 = rotate_right(schedule[t - 2], 17) ^ rotate_right(schedule[t - 2], 19) ^ (schedule[t - 2] >> 10);
        schedule[t] = schedule[t - 16] + s0 + schedule[t - 7] + s1;
    }

    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int t = 0; t < 64; t++) {
        uint32_t sum1 = rotate_right(e, 6) ^ rotate_right(e, 11) ^ rotate_right(e, 25);
        uint32_t choose = (e & f) ^ (~e & g);
        uint32_t temp1 = h + sum1 + choose + round_constants[t] + schedule[t];
        uint32_t sum0 = rotate_right(a, 2) ^ rotate_right(a, 13) ^ rotate_right(a, 22);
        uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
        uint32_t temp2 = sum0 + majority;
        h = g;
        g = f;
        f = e;
        e = d + temp1;
        d = c;
        c = b;
        b = a;
        a = temp1 + temp2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

void wf_sha256_init(wf_sha256_t *ctx)
{
    /* First 32 bits of the fractional parts of the square roots of the first 8 primes. */
    static const uint32_t initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(ctx->state, initial, sizeof(initial));
    ctx->total = 0;
    ctx->used = 0;
}

void wf_sha256_update(wf_sha256_t *ctx, const void *data, size_t size)
{
    const unsigned char *bytes = data;
    ctx->total += size;
    while (size > 0) {
        size_t take = WF_SHA256_BLOCK - ctx->used;
        if (take > size)
            take = size;
        memcpy(ctx->block + ctx->used, bytes, take);
        ctx->used += take;
        bytes += take;
        size -= take;
        if (ctx->used == WF_SHA256_BLOCK) {
            compress_block(ctx->state, ctx->block);
            ctx->used = 0;
        }
    }
}

void wf_sha256_final(wf_sha256_t *ctx, unsigned char digest[WF_SHA256_SIZE])
{
    uint64_t bit_length = ctx->total * 8;

    /* Padding: one 1 bit, zeros up to 56 bytes mod 64, then the message length in bits, big-endian. */
    ctx->block[ctx->used++] = 0x80;
    if (ctx->used > 56) {
        memset(ctx->block + ctx->used, 0, WF_SHA256_BLOCK - ctx->used);
        compress_block(ctx->state, ctx->block);
        ctx->used = 0;
    }
    memset(ctx->block + ctx->used, 0, 56 - ctx->used);
    for (int i = 0; i < 8; i++)
        ctx->block[56 + i] = (unsigned char)(bit_length >> (56 - 8 * i));
    compress_block(ctx->state, ctx->block);

    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (unsigned char)(ctx->state[i] >> 24);
        digest[4 * i + 1] = (unsigned char)(ctx->state[i] >> 16);
        digest[4 * i + 2] = (unsigned char)(ctx->state[i] >> 8);
        digest[4 * i + 3] = (unsigned char)ctx->state[i];
    }
    explicit_bzero(ctx, sizeof(*ctx));
}

void wf_sha256(const void *data, size_t size, unsigned char digest[WF_SHA256_SIZE])
{
    wf_sha256_t ctx;
    wf_sha256_init(&ctx);
    wf_sha256_update(&ctx, data, size);
    wf_sha256_final(&ctx, digest);
}

void wf_hmac_sha256(const unsigned char *key, size_t keylen, const void *const *parts, const size_t *sizes,
                    int count, unsigned char mac[WF_SHA256_SIZE])
{
    unsigned char block_key[WF_SHA256_BLOCK] = {0};
    unsigned char pad[WF_SHA256_BLOCK];
    unsigned char inner[WF_SHA256_SIZE];
    wf_sha256_t ctx;

    /* A key longer than one block is replaced by its digest; a shorter one is zero-padded. */
    if (keylen > WF_SHA256_BLOCK)
        wf_sha256(key, keylen, block_key);
    else if (keylen > 0)
        memcpy(block_key, key, keylen);

    for (int i = 0; i < WF_SHA256_BLOCK; i++)
        pad[i] = block_key[i] ^ 0x36;
    wf_sha256_init(&ctx);
    wf_sha256_update(&ctx, pad, sizeof(pad));
    for (int i = 0; i < count; i++)
        wf_sha256_update(&ctx, parts[i], sizes[i]);
    wf_sha256_final(&ctx, inner);

    for (int i = 0; i < WF_SHA256_BLOCK; i++)
        pad[i] = block_key[i] ^ 0x5c;
    wf_sha256_init(&ctx);
    wf_sha256_update(&ctx, pad, sizeof(pad));
    wf_sha256_update(&ctx, inner, sizeof(inner));
    wf_sha256_final(&ctx, mac);

    explicit_bzero(block_key, sizeof(block_key));
    explicit_bzero(pad, sizeof(pad));
    explicit_bzero(inner, sizeof(inner));
}
