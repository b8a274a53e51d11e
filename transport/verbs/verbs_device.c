/*
 * Device, port and GID choice for the verbs transport, and the device listing of weft-info.
 *
 * The device is the rail the topology chose, which is the nearest port that WEFT_IB_HCA allows.
 * Without a rail, it is the first device with an active port that WEFT_IB_HCA allows. On InfiniBand the rank is
 * addressed by LID. On RoCE the GID is chosen from the port's table: RoCE v2 before v1, an
 * IPv4-mapped address before a global IPv6 one, and a link-local (fe80::) GID only when the port
 * has nothing routable. WEFT_IB_GID_INDEX overrides the choice.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nic_select.h"
#include "param.h"
#include "verbs.h"

int wf_verbs_gid_score(const struct ibv_gid_entry *entry)
{
    static const uint8_t zero[16];
    const uint8_t *raw = entry->gid.raw;
    if (memcmp(raw, zero, sizeof(zero)) == 0)
        return 0;
    int v2 = entry->gid_type == IBV_GID_TYPE_ROCE_V2;
    int ipv4 = memcmp(raw, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
    int link_local = raw[0] == 0xfe && (raw[1] & 0xc0) == 0x80;
    int score = 2; /* a global IPv6 address */
    if (ipv4)
        score = 3;
    else if (link_local)
        score = 1;
    return v2 ? score + 3 : score;
}

int wf_verbs_pick_gid(const struct ibv_gid_entry *entries, int count, int forced)
{
    int best = -1, best_score = 0;
    for (int i = 0; i < count; i++) {
        int score = wf_verbs_gid_score(&entries[i]);
        if (forced >= 0 && (int)entries[i].gid_index != forced)
            continue;
        if (score > best_score) {
            best = i;
            best_score = score;
        }
    }
    return best;
}

static const char *gid_type_name(uint32_t type)
{
    if (type == IBV_GID_TYPE_ROCE_V2)
        return "RoCE v2";
    if (type == IBV_GID_TYPE_ROCE_V1)
        return "RoCE v1";
    return "IB";
}

/* Write the GID as an IPv4 or IPv6 address. */
static void format_gid(const union ibv_gid *gid, char *out, size_t outlen)
{
    if (memcmp(gid->raw, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0)
        inet_ntop(AF_INET, gid->raw + 12, out, (socklen_t)outlen);
    else
        inet_ntop(AF_INET6, gid->raw, out, (socklen_t)outlen);
}

/* Fill the GID fields of choice for an Ethernet port; 0, or -1 with the reason in err. */
static int choose_gid(struct ibv_context *context, const struct ibv_port_attr *attr, wf_verbs_port_choice_t *choice,
                      char *err, size_t errlen)
{
    int forced = (int)wf_param_int(WF_PARAM_IB_GID_INDEX);
    struct ibv_gid_entry entries[WF_VERBS_GIDS_MAX];
    int count = 0;
    for (int index = 0; index < attr->gid_tbl_len && count < WF_VERBS_GIDS_MAX; index++)
        if (ibv_query_gid_ex(context, choice->port, (uint32_t)index, &entries[count], 0) == 0)
            count++;
    int best = wf_verbs_pick_gid(entries, count, forced);
    if (best < 0) {
        if (forced >= 0) {
            char valid[160] = "";
            size_t used = 0;
            for (int i = 0; i < count && used + 8 < sizeof(valid); i++)
                if (wf_verbs_gid_score(&entries[i]) > 0)
                    used += (size_t)snprintf(valid + used, sizeof(valid) - used, "%s%u", used > 0 ? ", " : "",
                                             entries[i].gid_index);
            wf_xfer_format(err, errlen, "WEFT_IB_GID_INDEX=%d is not a GID that %s port %u has (its GIDs: %s); "
                           "choose one from `weft-info`, or unset it", forced, choice->device, choice->port,
                           used > 0 ? valid : "none");
        } else
            wf_xfer_format(err, errlen, "%s port %u has no GID: give its network interface an IP address",
                           choice->device, choice->port);
        return -1;
    }
    const struct ibv_gid_entry *entry = &entries[best];
    choice->gid_index = (int)entry->gid_index;
    choice->gid = entry->gid;
    choice->is_global = 1;
    char text[64];
    format_gid(&entry->gid, text, sizeof(text));
    snprintf(choice->why, sizeof(choice->why), "GID %d (%s, %s)%s", choice->gid_index,
             gid_type_name(entry->gid_type), text,
             forced >= 0 ? " from WEFT_IB_GID_INDEX" : wf_verbs_gid_score(entry) >= 5 ? ", the first routable RoCE v2 GID" : "");
    return 0;
}

/* Fill choice for port of an open device; 0 when the port is active and addressable. */
static int describe_port(struct ibv_context *context, uint8_t port, wf_verbs_port_choice_t *choice, char *err,
                         size_t errlen)
{
    struct ibv_port_attr attr;
    if (ibv_query_port(context, port, &attr) != 0) {
        wf_xfer_format(err, errlen, "cannot query %s port %u", choice->device, port);
        return -1;
    }
    if (attr.state != IBV_PORT_ACTIVE) {
        wf_xfer_format(err, errlen, "%s port %u is %s, not active", choice->device, port,
                       ibv_port_state_str(attr.state));
        return -1;
    }
    choice->port = port;
    choice->lid = attr.lid;
    choice->mtu = attr.active_mtu;
    choice->link_layer = attr.link_layer;
    if (attr.link_layer == IBV_LINK_LAYER_ETHERNET)
        return choose_gid(context, &attr, choice, err, errlen);
    int64_t forced = wf_param_int(WF_PARAM_IB_GID_INDEX);
    choice->gid_index = forced >= 0 ? (int)forced : 0;
    if (ibv_query_gid(context, port, choice->gid_index, &choice->gid) != 0) {
        wf_xfer_format(err, errlen, "cannot read GID %d of %s port %u", choice->gid_index, choice->device, port);
        return -1;
    }
    choice->is_global = forced >= 0; /* InfiniBand routes by LID inside a subnet */
    snprintf(choice->why, sizeof(choice->why), "InfiniBand LID %u%s", attr.lid,
             forced >= 0 ? ", GID from WEFT_IB_GID_INDEX" : "");
    return 0;
}

/* Try every port of device (or only wanted_port when non-zero) that spec allows. */
static int try_device(struct ibv_device *device, const wf_nic_spec_t *spec, int wanted_port,
                      wf_verbs_port_choice_t *choice, struct ibv_context **out, char *err, size_t errlen)
{
    struct ibv_context *context = ibv_open_device(device);
    if (context == NULL) {
        wf_xfer_format(err, errlen, "cannot open %s", ibv_get_device_name(device));
        return -1;
    }
    struct ibv_device_attr attr;
    if (ibv_query_device(context, &attr) == 0) {
        snprintf(choice->device, sizeof(choice->device), "%s", ibv_get_device_name(device));
        for (uint8_t port = 1; port <= attr.phys_port_cnt; port++) {
            if (wanted_port > 0 && port != wanted_port)
                continue;
            if (spec != NULL && !wf_nic_spec_allows(spec, choice->device, port))
                continue;
            if (describe_port(context, port, choice, err, errlen) == 0) {
                *out = context;
                return 0;
            }
        }
    }
    ibv_close_device(context);
    return -1;
}

int wf_verbs_choose_port(const char *rail, int rail_port, wf_verbs_port_choice_t *choice,
                         struct ibv_context **context, char *err, size_t errlen)
{
    int count = 0;
    struct ibv_device **list = ibv_get_device_list(&count);
    if (list == NULL || count == 0) {
        wf_xfer_format(err, errlen, "no RDMA device is present (ibv_get_device_list found none); load the "
                       "device's driver, or unset WEFT_TRANSPORT so that weft uses shared memory inside nodes "
                       "and libfabric between them");
        if (list != NULL)
            ibv_free_device_list(list);
        return -ENODEV;
    }
    wf_nic_spec_t spec;
    char spec_err[256];
    int have_spec = wf_nic_spec_parse(wf_param_str(WF_PARAM_IB_HCA), &spec, spec_err, sizeof(spec_err)) == 0;
    char last[256] = "";
    int rc = -ENODEV;
    memset(choice, 0, sizeof(*choice));
    for (int i = 0; i < count && rc != 0; i++) {
        const char *name = ibv_get_device_name(list[i]);
        if (rail != NULL && rail[0] != '\0' && strcmp(name, rail) != 0)
            continue;
        if (try_device(list[i], have_spec ? &spec : NULL, rail != NULL && rail[0] ? rail_port : 0, choice, context,
                       last, sizeof(last)) == 0)
            rc = 0;
    }
    ibv_free_device_list(list);
    if (rc != 0) {
        if (rail != NULL && rail[0] != '\0')
            wf_xfer_format(err, errlen, "the topology chose %s port %d, but it cannot be used: %s", rail, rail_port,
                           last[0] ? last : "it is not listed by libibverbs");
        else
            wf_xfer_format(err, errlen, "no RDMA device has an active port that WEFT_IB_HCA=\"%s\" allows%s%s; "
                           "check `ibv_devinfo`", wf_param_str(WF_PARAM_IB_HCA), last[0] ? ": " : "", last);
    }
    return rc;
}

/* One line per port, for weft-info. */
static void print_device(FILE *out, struct ibv_device *device)
{
    struct ibv_context *context = ibv_open_device(device);
    const char *name = ibv_get_device_name(device);
    struct ibv_device_attr attr;
    if (context == NULL || ibv_query_device(context, &attr) != 0) {
        fprintf(out, "  %s: cannot be opened\n", name);
        if (context != NULL)
            ibv_close_device(context);
        return;
    }
    for (uint8_t port = 1; port <= attr.phys_port_cnt; port++) {
        wf_verbs_port_choice_t choice = {0};
        char why[256] = "";
        snprintf(choice.device, sizeof(choice.device), "%s", name);
        struct ibv_port_attr port_attr;
        if (ibv_query_port(context, port, &port_attr) != 0)
            continue;
        int usable = describe_port(context, port, &choice, why, sizeof(why)) == 0;
        fprintf(out, "  %s port %u: %s, %s, MTU %d", name, port, ibv_port_state_str(port_attr.state),
                port_attr.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet (RoCE)" : "InfiniBand",
                128 << port_attr.active_mtu);
        if (usable)
            fprintf(out, ", would use %s\n", choice.why);
        else
            fprintf(out, " (%s)\n", why);
        for (int index = 0; port_attr.link_layer == IBV_LINK_LAYER_ETHERNET && index < port_attr.gid_tbl_len;
             index++) {
            struct ibv_gid_entry entry;
            if (ibv_query_gid_ex(context, port, (uint32_t)index, &entry, 0) != 0 || wf_verbs_gid_score(&entry) == 0)
                continue;
            char text[64];
            format_gid(&entry.gid, text, sizeof(text));
            fprintf(out, "    GID %d: %s %s\n", index, gid_type_name(entry.gid_type), text);
        }
    }
    ibv_close_device(context);
}

void wf_verbs_print_devices(void *file)
{
    FILE *out = file;
    int count = 0;
    struct ibv_device **list = ibv_get_device_list(&count);
    if (list == NULL || count == 0) {
        fprintf(out, "  none (no RDMA device is present)\n");
        if (list != NULL)
            ibv_free_device_list(list);
        return;
    }
    for (int i = 0; i < count; i++)
        print_device(out, list[i]);
    ibv_free_device_list(list);
}
