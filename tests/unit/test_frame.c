/*
 * Rendezvous wire format on raw byte buffers: header validation, payload bounds, frames back to
 * back, handshake payloads, ERROR frames, SHA-256 and HMAC-SHA-256 against published vectors,
 * and host:port parsing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bootstrap/frame.h"
#include "bootstrap/sha256.h"
#include "bootstrap/socket.h"

static void hex_of(const unsigned char *bytes, size_t size, char *out)
{
    for (size_t i = 0; i < size; i++)
        sprintf(out + 2 * i, "%02x", bytes[i]);
}

static void frame_header_round_trip(void **state)
{
    unsigned char bytes[WF_FRAME_HEADER_SIZE];
    wf_frame_header_t header;
    char err[256] = "";

    wf_frame_header_encode(bytes, WF_FRAME_DATA, 0x0102030405ULL);
    /* Little-endian layout, byte by byte: "WEFT", type 4, length. */
    const unsigned char expected[WF_FRAME_HEADER_SIZE] = {'W', 'E', 'F', 'T', 4, 0, 0, 0,
                                                          0x05, 0x04, 0x03, 0x02, 0x01, 0, 0, 0};
    assert_memory_equal(bytes, expected, sizeof(expected));
    assert_int_equal(wf_frame_header_decode(bytes, sizeof(bytes), UINT64_MAX, &header, err, sizeof(err)), WF_FRAME_OK);
    assert_int_equal(header.type, WF_FRAME_DATA);
    assert_true(header.length == 0x0102030405ULL);
}

static void frame_truncated_header(void **state)
{
    unsigned char bytes[WF_FRAME_HEADER_SIZE];
    wf_frame_header_t header;
    const unsigned char *payload;
    size_t frame_size;
    char err[256];

    wf_frame_header_encode(bytes, WF_FRAME_HELLO, 0);
    for (size_t size = 0; size < WF_FRAME_HEADER_SIZE; size++) {
        assert_int_equal(wf_frame_parse(bytes, size, 64, &header, &payload, &frame_size, err, sizeof(err)),
                         WF_FRAME_INCOMPLETE);
        assert_int_equal(wf_frame_header_decode(bytes, size, 64, &header, err, sizeof(err)), WF_FRAME_INCOMPLETE);
    }
}

static void frame_truncated_payload(void **state)
{
    unsigned char bytes[WF_FRAME_HEADER_SIZE + 10];
    wf_frame_header_t header;
    const unsigned char *payload;
    size_t frame_size;
    char err[256];

    wf_frame_header_encode(bytes, WF_FRAME_DATA, 10);
    memset(bytes + WF_FRAME_HEADER_SIZE, 0xab, 10);
    for (size_t size = WF_FRAME_HEADER_SIZE; size < sizeof(bytes); size++)
        assert_int_equal(wf_frame_parse(bytes, size, 64, &header, &payload, &frame_size, err, sizeof(err)),
                         WF_FRAME_INCOMPLETE);
    assert_int_equal(wf_frame_parse(bytes, sizeof(bytes), 64, &header, &payload, &frame_size, err, sizeof(err)),
                     WF_FRAME_OK);
    assert_int_equal(frame_size, sizeof(bytes));
    assert_ptr_equal(payload, bytes + WF_FRAME_HEADER_SIZE);
}

static void frame_oversized_length(void **state)
{
    unsigned char bytes[WF_FRAME_HEADER_SIZE];
    wf_frame_header_t header;
    char err[256] = "";

    /* The largest 64-bit length must be rejected from the header alone, before any allocation. */
    wf_frame_header_encode(bytes, WF_FRAME_DATA, UINT64_MAX);
    assert_int_equal(wf_frame_header_decode(bytes, sizeof(bytes), WF_FRAME_MAX_PAYLOAD, &header, err, sizeof(err)),
                     WF_FRAME_INVALID);
    assert_non_null(strstr(err, "18446744073709551615 bytes exceeds the limit of 67108864"));

    wf_frame_header_encode(bytes, WF_FRAME_DATA, WF_FRAME_MAX_PAYLOAD + 1);
    assert_int_equal(wf_frame_header_decode(bytes, sizeof(bytes), WF_FRAME_MAX_PAYLOAD, &header, err, sizeof(err)),
                     WF_FRAME_INVALID);
    wf_frame_header_encode(bytes, WF_FRAME_DATA, WF_FRAME_MAX_PAYLOAD);
    assert_int_equal(wf_frame_header_decode(bytes, sizeof(bytes), WF_FRAME_MAX_PAYLOAD, &header, err, sizeof(err)),
                     WF_FRAME_OK);
}

static void frame_bad_magic_and_type(void **state)
{
    unsigned char bytes[WF_FRAME_HEADER_SIZE];
    wf_frame_header_t header;
    char err[256] = "";

    memcpy(bytes, "GET / HTTP/1.1\r\n", WF_FRAME_HEADER_SIZE);
    assert_int_equal(wf_frame_header_decode(bytes, sizeof(bytes), 64, &header, err, sizeof(err)), WF_FRAME_INVALID);
    assert_non_null(strstr(err, "magic 0x20544547"));

    wf_frame_header_encode(bytes, 0, 0);
    assert_int_equal(wf_frame_header_decode(bytes, sizeof(bytes), 64, &header, err, sizeof(err)), WF_FRAME_INVALID);
    assert_non_null(strstr(err, "unknown type 0"));
    wf_frame_header_encode(bytes, WF_FRAME_TABLE + 1, 0);
    assert_int_equal(wf_frame_header_decode(bytes, sizeof(bytes), 64, &header, err, sizeof(err)), WF_FRAME_INVALID);
}

static void frame_back_to_back(void **state)
{
    unsigned char buf[3 * WF_FRAME_HEADER_SIZE + 3 + 0 + 5];
    size_t used = 0;
    wf_frame_header_encode(buf + used, WF_FRAME_DATA, 3);
    memcpy(buf + used + WF_FRAME_HEADER_SIZE, "abc", 3);
    used += WF_FRAME_HEADER_SIZE + 3;
    wf_frame_header_encode(buf + used, WF_FRAME_DATA, 0);
    used += WF_FRAME_HEADER_SIZE;
    wf_frame_header_encode(buf + used, WF_FRAME_WELCOME, 5);
    memcpy(buf + used + WF_FRAME_HEADER_SIZE, "12345", 5);
    used += WF_FRAME_HEADER_SIZE + 5;
    assert_int_equal(used, sizeof(buf));

    const uint32_t types[3] = {WF_FRAME_DATA, WF_FRAME_DATA, WF_FRAME_WELCOME};
    const char *payloads[3] = {"abc", "", "12345"};
    size_t offset = 0;
    for (int i = 0; i < 3; i++) {
        wf_frame_header_t header;
        const unsigned char *payload;
        size_t frame_size;
        char err[256];
        assert_int_equal(wf_frame_parse(buf + offset, sizeof(buf) - offset, 64, &header, &payload, &frame_size, err,
                                        sizeof(err)),
                         WF_FRAME_OK);
        assert_int_equal(header.type, types[i]);
        assert_int_equal(header.length, strlen(payloads[i]));
        assert_memory_equal(payload, payloads[i], header.length);
        offset += frame_size;
    }
    assert_int_equal(offset, sizeof(buf));
}

static void handshake_payload_round_trip(void **state)
{
    wf_hello_t hello = {.version = 1, .rank = 7, .nranks = 9}, decoded;
    unsigned char bytes[WF_HELLO_SIZE];
    for (int i = 0; i < WF_BOOT_NONCE_SIZE; i++)
        hello.client_nonce[i] = (unsigned char)i;
    for (int i = 0; i < WF_BOOT_MAC_SIZE; i++)
        hello.mac[i] = (unsigned char)(200 + i);
    wf_hello_encode(bytes, &hello);
    assert_int_equal(bytes[4], 7);
    assert_int_equal(bytes[8], 9);
    wf_hello_decode(bytes, &decoded);
    assert_int_equal(decoded.version, 1);
    assert_int_equal(decoded.rank, 7);
    assert_int_equal(decoded.nranks, 9);
    assert_memory_equal(decoded.client_nonce, hello.client_nonce, WF_BOOT_NONCE_SIZE);
    assert_memory_equal(decoded.mac, hello.mac, WF_BOOT_MAC_SIZE);

    wf_challenge_t challenge = {.version = 3}, challenge_decoded;
    unsigned char challenge_bytes[WF_CHALLENGE_SIZE];
    memset(challenge.nonce, 0x5a, sizeof(challenge.nonce));
    wf_challenge_encode(challenge_bytes, &challenge);
    wf_challenge_decode(challenge_bytes, &challenge_decoded);
    assert_int_equal(challenge_decoded.version, 3);
    assert_memory_equal(challenge_decoded.nonce, challenge.nonce, WF_BOOT_NONCE_SIZE);

    wf_welcome_t welcome = {.nranks = 65536}, welcome_decoded;
    unsigned char welcome_bytes[WF_WELCOME_SIZE];
    memset(welcome.mac, 0xc3, sizeof(welcome.mac));
    wf_welcome_encode(welcome_bytes, &welcome);
    wf_welcome_decode(welcome_bytes, &welcome_decoded);
    assert_int_equal(welcome_decoded.nranks, 65536);
    assert_memory_equal(welcome_decoded.mac, welcome.mac, WF_BOOT_MAC_SIZE);
}

static void hello_mac_binds_fields(void **state)
{
    unsigned char secret[WF_BOOT_SECRET_SIZE] = {1}, other_secret[WF_BOOT_SECRET_SIZE] = {2};
    unsigned char nonce[WF_BOOT_NONCE_SIZE] = {3}, other_nonce[WF_BOOT_NONCE_SIZE] = {4};
    unsigned char mac[WF_BOOT_MAC_SIZE], changed[WF_BOOT_MAC_SIZE], again[WF_BOOT_MAC_SIZE];
    wf_hello_t hello = {.version = 1, .rank = 2, .nranks = 4};

    wf_hello_mac(secret, nonce, &hello, mac);
    wf_hello_mac(secret, nonce, &hello, again);
    assert_memory_equal(mac, again, sizeof(mac));
    wf_hello_mac(other_secret, nonce, &hello, changed);
    assert_memory_not_equal(mac, changed, sizeof(mac));
    wf_hello_mac(secret, other_nonce, &hello, changed);
    assert_memory_not_equal(mac, changed, sizeof(mac));
    hello.rank = 3;
    wf_hello_mac(secret, nonce, &hello, changed);
    assert_memory_not_equal(mac, changed, sizeof(mac));

    /* A WELCOME proof over the same bytes differs from the HELLO proof, so neither replays as the other. */
    wf_welcome_mac(secret, nonce, 4, changed);
    assert_memory_not_equal(mac, changed, sizeof(mac));
}

static void error_frame_round_trip(void **state)
{
    unsigned char frame[WF_FRAME_HEADER_SIZE + 4 + WF_FRAME_ERROR_TEXT_MAX];
    wf_frame_header_t header;
    const unsigned char *payload;
    size_t frame_size;
    weft_result_t code;
    char message[WF_FRAME_ERROR_TEXT_MAX + 1], err[256];

    size_t size = wf_frame_error_build(frame, WEFT_ERR_TIMEOUT, "rank 3 of 4\nnever connected");
    assert_int_equal(size, WF_FRAME_HEADER_SIZE + 4 + 27);
    assert_int_equal(wf_frame_parse(frame, size, 4 + WF_FRAME_ERROR_TEXT_MAX, &header, &payload, &frame_size, err,
                                    sizeof(err)),
                     WF_FRAME_OK);
    assert_int_equal(header.type, WF_FRAME_ERROR);
    assert_int_equal(wf_frame_error_decode(payload, (size_t)header.length, &code, message, sizeof(message)), 0);
    assert_int_equal(code, WEFT_ERR_TIMEOUT);
    assert_string_equal(message, "rank 3 of 4?never connected"); /* control bytes replaced */

    /* Messages longer than the limit are cut, never overrun. */
    char *long_text = malloc(3000);
    memset(long_text, 'x', 2999);
    long_text[2999] = '\0';
    size = wf_frame_error_build(frame, WEFT_ERR_REMOTE, long_text);
    assert_int_equal(size, sizeof(frame));
    free(long_text);

    /* A code outside the result enum becomes WEFT_ERR_INTERNAL; a short payload is rejected. */
    unsigned char odd[6] = {99, 0, 0, 0, 'h', 'i'};
    assert_int_equal(wf_frame_error_decode(odd, sizeof(odd), &code, message, sizeof(message)), 0);
    assert_int_equal(code, WEFT_ERR_INTERNAL);
    assert_string_equal(message, "hi");
    assert_int_equal(wf_frame_error_decode(odd, 3, &code, message, sizeof(message)), -1);
}

static void stream_short_read(void **state)
{
    int pair[2];
    unsigned char bytes[WF_FRAME_HEADER_SIZE];
    size_t done = 0;
    int error = 0;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair), 0);
    wf_frame_header_encode(bytes, WF_FRAME_DATA, 8);
    assert_int_equal(write(pair[1], bytes, 10), 10);
    close(pair[1]);
    assert_int_equal(wf_sock_recv_all(pair[0], bytes, sizeof(bytes), wf_now_ms() + 2000, &done, &error), WF_IO_CLOSED);
    assert_int_equal(done, 10);
    close(pair[0]);

    /* A silent peer ends in a timeout close to the deadline, not a hang. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair), 0);
    int64_t start = wf_now_ms();
    assert_int_equal(wf_sock_recv_all(pair[0], bytes, sizeof(bytes), start + 200, &done, &error), WF_IO_TIMEOUT);
    assert_true(wf_now_ms() - start >= 190);
    assert_true(wf_now_ms() - start < 1500);
    close(pair[0]);
    close(pair[1]);
}

static void sha256_vectors(void **state)
{
    static const struct {
        const char *text;
        const char *digest;
    } cases[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    unsigned char digest[WF_SHA256_SIZE];
    char hex[2 * WF_SHA256_SIZE + 1];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wf_sha256(cases[i].text, strlen(cases[i].text), digest);
        hex_of(digest, sizeof(digest), hex);
        assert_string_equal(hex, cases[i].digest);
    }

    /* One million 'a' fed in uneven pieces crosses block boundaries at every offset. */
    wf_sha256_t ctx;
    char chunk[997];
    memset(chunk, 'a', sizeof(chunk));
    wf_sha256_init(&ctx);
    size_t left = 1000000;
    while (left > 0) {
        size_t take = left < sizeof(chunk) ? left : sizeof(chunk);
        wf_sha256_update(&ctx, chunk, take);
        left -= take;
    }
    wf_sha256_final(&ctx, digest);
    hex_of(digest, sizeof(digest), hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void hmac_sha256_vectors(void **state)
{
    unsigned char mac[WF_SHA256_SIZE];
    char hex[2 * WF_SHA256_SIZE + 1];

    /* RFC 4231 test cases 1, 2 and 6 (a key longer than one block). */
    unsigned char key1[20];
    memset(key1, 0x0b, sizeof(key1));
    const void *parts1[] = {"Hi ", "There"};
    const size_t sizes1[] = {3, 5};
    wf_hmac_sha256(key1, sizeof(key1), parts1, sizes1, 2, mac);
    hex_of(mac, sizeof(mac), hex);
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    const void *parts2[] = {"what do ya want for nothing?"};
    const size_t sizes2[] = {28};
    wf_hmac_sha256((const unsigned char *)"Jefe", 4, parts2, sizes2, 1, mac);
    hex_of(mac, sizeof(mac), hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    unsigned char key6[131];
    memset(key6, 0xaa, sizeof(key6));
    const char *text6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    const void *parts6[] = {text6};
    const size_t sizes6[] = {strlen(text6)};
    wf_hmac_sha256(key6, sizeof(key6), parts6, sizes6, 1, mac);
    hex_of(mac, sizeof(mac), hex);
    assert_string_equal(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static void constant_time_compare(void **state)
{
    unsigned char a[32] = {0}, b[32] = {0};
    assert_true(wf_equal_const_time(a, b, sizeof(a)));
    b[31] = 1;
    assert_false(wf_equal_const_time(a, b, sizeof(a)));
    b[31] = 0;
    b[0] = 0x80;
    assert_false(wf_equal_const_time(a, b, sizeof(a)));
}

static void address_parse_cases(void **state)
{
    char host[256], err[256];
    int port = 0;

    assert_int_equal(wf_addr_parse("127.0.0.1:29500", "WEFT_ROOT", host, sizeof(host), &port, err, sizeof(err)), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 29500);
    assert_int_equal(wf_addr_parse("[::1]:1", "WEFT_ROOT", host, sizeof(host), &port, err, sizeof(err)), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 1);
    assert_int_equal(wf_addr_parse("node-01.cluster:65535", "WEFT_ROOT", host, sizeof(host), &port, err, sizeof(err)),
                     0);
    assert_string_equal(host, "node-01.cluster");
    assert_int_equal(port, 65535);

    static const struct {
        const char *text;
        const char *fragment;
    } bad[] = {
        {"node01", "the port is missing"},
        {"::1:29500", "put an IPv6 address in brackets"},
        {"[::1]29500", "expected [ipv6-address]:port"},
        {":29500", "the host part is empty"},
        {"node01:0", "not a number from 1 to 65535"},
        {"node01:65536", "not a number from 1 to 65535"},
        {"node01:29a", "not a number from 1 to 65535"},
        {"node01:", "not a number from 1 to 65535"},
        {"node01:-1", "not a number from 1 to 65535"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(wf_addr_parse(bad[i].text, "WEFT_ROOT", host, sizeof(host), &port, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "WEFT_ROOT="));
        if (!strstr(err, bad[i].fragment))
            fail_msg("\"%s\": expected \"%s\" in \"%s\"", bad[i].text, bad[i].fragment, err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frame_header_round_trip),
        cmocka_unit_test(frame_truncated_header),
        cmocka_unit_test(frame_truncated_payload),
        cmocka_unit_test(frame_oversized_length),
        cmocka_unit_test(frame_bad_magic_and_type),
        cmocka_unit_test(frame_back_to_back),
        cmocka_unit_test(handshake_payload_round_trip),
        cmocka_unit_test(hello_mac_binds_fields),
        cmocka_unit_test(error_frame_round_trip),
        cmocka_unit_test(stream_short_read),
        cmocka_unit_test(sha256_vectors),
        cmocka_unit_test(hmac_sha256_vectors),
        cmocka_unit_test(constant_time_compare),
        cmocka_unit_test(address_parse_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
