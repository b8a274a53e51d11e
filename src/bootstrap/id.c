/*
 * The unique id: the address of a rendezvous root and its job secret, in 128 bytes.
 *
 * Layout, little-endian: magic "WFID" (u32), layout version (u16), address family (u16: 4 or 6),
 * port (u16), reserved (u16), IPv6 scope id (u32), address (16 bytes; IPv4 in the first 4),
 * job secret (32 bytes), zeros up to 128 bytes. The secret makes the id a credential.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "bootstrap/internal.h"
#include "bootstrap/socket.h"
#include "log.h"
#include "param.h"

#define ID_MAGIC 0x44494657u /* "WFID" */
#define ID_VERSION 1u

_Static_assert(sizeof(weft_unique_id_t) >= 64 + WF_BOOT_SECRET_SIZE, "the unique id must hold address and secret");

static void encode_id(weft_unique_id_t *id, const struct sockaddr *address,
                      const unsigned char secret[WF_BOOT_SECRET_SIZE])
{
    unsigned char *bytes = id->bytes;
    memset(id, 0, sizeof(*id));
    wf_put_u32(bytes, ID_MAGIC);
    bytes[4] = (unsigned char)ID_VERSION;
    if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
        bytes[6] = 6;
        wf_put_u32(bytes + 12, v6->sin6_scope_id);
        memcpy(bytes + 16, &v6->sin6_addr, 16);
    } else {
        bytes[6] = 4;
        memcpy(bytes + 16, &((const struct sockaddr_in *)address)->sin_addr, 4);
    }
    bytes[8] = (unsigned char)(wf_addr_port(address) & 0xff);
    bytes[9] = (unsigned char)(wf_addr_port(address) >> 8);
    memcpy(bytes + 32, secret, WF_BOOT_SECRET_SIZE);
}

static int decode_id(const weft_unique_id_t *id, struct sockaddr_storage *address,
                     unsigned char secret[WF_BOOT_SECRET_SIZE])
{
    const unsigned char *bytes = id->bytes;
    int port = bytes[8] | bytes[9] << 8;
    if (wf_get_u32(bytes) != ID_MAGIC || bytes[4] != ID_VERSION || bytes[5] != 0 || port == 0)
        return -1;

    memset(address, 0, sizeof(*address));
    if (bytes[6] == 6) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)address;
        v6->sin6_family = AF_INET6;
        v6->sin6_scope_id = wf_get_u32(bytes + 12);
        memcpy(&v6->sin6_addr, bytes + 16, 16);
    } else if (bytes[6] == 4) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)address;
        v4->sin_family = AF_INET;
        memcpy(&v4->sin_addr, bytes + 16, 4);
    } else {
        return -1;
    }
    wf_addr_set_port((struct sockaddr *)address, port);
    memcpy(secret, bytes + 32, WF_BOOT_SECRET_SIZE);
    return 0;
}

weft_result_t wf_bootstrap_create_id(weft_unique_id_t *id, char *err, size_t errlen)
{
    struct sockaddr_storage chosen, bound;
    unsigned char secret[WF_BOOT_SECRET_SIZE];
    const char *ifname = wf_param_str(WF_PARAM_SOCKET_IFNAME);
    int timeout_s = (int)wf_param_int(WF_PARAM_TIMEOUT);

    if (!id)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT, "the unique id pointer is NULL");
    if (timeout_s <= 0)
        return wf_boot_error(err, errlen, WEFT_ERR_INTERNAL,
                             "WEFT_TIMEOUT is %d: the parameters were not loaded before creating a unique id",
                             timeout_s);
    if (wf_addr_pick_local(ifname ? ifname : "", &chosen, err, errlen) < 0)
        return WEFT_ERR_INVALID_ARGUMENT;
    if (wf_boot_random(secret, sizeof(secret)) < 0)
        return wf_boot_error(err, errlen, WEFT_ERR_INTERNAL, "failed to draw the job secret from getrandom()");

    weft_result_t result =
        wf_root_start((struct sockaddr *)&chosen, NULL, secret, 0, timeout_s, &bound, NULL, err, errlen);
    if (result == WEFT_SUCCESS)
        encode_id(id, (struct sockaddr *)&bound, secret);
    explicit_bzero(secret, sizeof(secret));
    return result;
}

weft_result_t wf_bootstrap_from_id(wf_bootstrap_t **out, const weft_unique_id_t *id, int rank, int nranks,
                                   int timeout_s, char *err, size_t errlen)
{
    struct sockaddr_storage root;
    unsigned char secret[WF_BOOT_SECRET_SIZE];

    if (!out || !id)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT, "the %s pointer is NULL",
                             !out ? "bootstrap" : "unique id");
    if (nranks < 1 || nranks > WF_BOOT_MAX_RANKS)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT,
                             "nranks=%d is invalid: the TCP rendezvous serves 1 to %d ranks", nranks,
                             WF_BOOT_MAX_RANKS);
    if (rank < 0 || rank >= nranks)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT,
                             "rank=%d is out of range for nranks=%d; ranks are numbered 0 to %d", rank, nranks,
                             nranks - 1);
    if (timeout_s <= 0)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT, "timeout of %d s is invalid; it must be positive",
                             timeout_s);
    if (decode_id(id, &root, secret) < 0)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT,
                             "the unique id is not valid (wrong magic, version or address); pass the 128 bytes "
                             "from weft_get_unique_id to every rank unchanged");

    /* A rank in the process that created the id owns its root, so this process outlives the root's sends. */
    wf_root_t *local_root = wf_root_adopt(secret);
    weft_result_t result = wf_tcp_bootstrap_connect(out, "unique-id", (struct sockaddr *)&root, secret, rank, nranks,
                                                    timeout_s, local_root, err, errlen);
    explicit_bzero(secret, sizeof(secret));
    return result;
}
