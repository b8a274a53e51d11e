/*
 * Provider discovery and choice for the libfabric transport.
 *
 * The fi_getinfo hints carry every requirement they can express: RDM endpoint, tagged messages
 * matched by source, RMA writes, the MR modes and context modes weft handles, and an AV table.
 * wf_ofi_info_acceptable checks the rest. Each rank chooses independently, so the provider depends
 * only on the configuration and on the order fi_getinfo returns; the caller makes single_node agree
 * across ranks. The domain may differ between ranks: each takes the one on the device the topology
 * chose for it (config->rail), when its provider offers one there.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rdma/fabric.h>
#include <rdma/fi_errno.h>

#include "ofi.h"

/* API version of the interfaces this file and ofi_transport.c call. */
#define WF_OFI_API_VERSION FI_VERSION(1, 14)

int wf_ofi_tag_bits(uint64_t mem_tag_format)
{
    /* NOTE: a provider that reports 0 gives no usable format; assume it matches all 64 bits. */
    if (mem_tag_format == 0)
        return 64;
    return 64 - __builtin_clzll(mem_tag_format);
}

static struct fi_info *build_hints(void)
{
    struct fi_info *hints = fi_allocinfo();
    if (hints == NULL)
        return NULL;

    hints->ep_attr->type = FI_EP_RDM;
    /*
     * FI_DIRECTED_RECV: transport.h matches receives by peer and tag, and without this capability
     * libfabric ignores the source address of fi_trecv.
     */
    hints->caps = FI_TAGGED | FI_SEND | FI_RECV | FI_DIRECTED_RECV | FI_RMA | FI_WRITE | FI_REMOTE_WRITE | FI_READ |
                  FI_REMOTE_READ;
    /* FI_RX_CQ_DATA is left out on purpose: remote CQ data must not consume posted receives. */
    hints->mode = FI_CONTEXT | FI_CONTEXT2;
    hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY |
                                  FI_MR_ENDPOINT;
    hints->domain_attr->threading = FI_THREAD_DOMAIN;
    hints->domain_attr->av_type = FI_AV_TABLE;
    hints->domain_attr->cq_data_size = sizeof(uint32_t);
    /* Progress modes stay FI_PROGRESS_UNSPEC: every operation is progressed by reading the CQ. */
    return hints;
}

int wf_ofi_info_acceptable(const struct fi_info *info)
{
    if (info->fabric_attr == NULL || info->fabric_attr->prov_name == NULL)
        return 0;
    if (info->domain_attr == NULL || info->ep_attr == NULL || info->tx_attr == NULL)
        return 0;
    if (info->domain_attr->cq_data_size < sizeof(uint32_t))
        return 0;
    if ((info->mode & FI_RX_CQ_DATA) || (info->rx_attr != NULL && (info->rx_attr->mode & FI_RX_CQ_DATA)))
        return 0;
    uint64_t needed = FI_TAGGED | FI_RMA | FI_DIRECTED_RECV;
    if ((info->caps & needed) != needed)
        return 0;
    if (info->domain_attr->threading != FI_THREAD_DOMAIN && info->domain_attr->threading != FI_THREAD_SAFE &&
        info->domain_attr->threading != FI_THREAD_COMPLETION && info->domain_attr->threading != FI_THREAD_FID)
        return 0;
    return 1;
}

/*
 * Flag set before weft's first libfabric call. libfabric reads FI_UNIVERSE_SIZE only when it
 * initialises, at the first fi_getinfo of the process, so a later setenv has no effect.
 */
static int libfabric_started;

int wf_ofi_universe_size(const char *provider, int nranks, const char *current, const char **reason)
{
    if (current != NULL && current[0] != '\0') {
        *reason = "set by the user";
        return 0;
    }
    if (provider != NULL && provider[0] != '\0' && strstr(provider, "verbs") == NULL) {
        *reason = "WEFT_OFI_PROVIDER names a provider that is not verbs-based";
        return 0;
    }
    *reason = "the communicator size, at least " WF_OFI_MIN_UNIVERSE_TEXT;
    return nranks > WF_OFI_MIN_UNIVERSE ? nranks : WF_OFI_MIN_UNIVERSE;
}

/*
 * Set FI_UNIVERSE_SIZE from the communicator size before libfabric initialises, unless the user
 * set it or requested a provider that is not verbs-based. libfabric 1.17's ofi_rxm opens one
 * completion queue per endpoint of (128 + 128) x FI_UNIVERSE_SIZE entries, 65536 by default, and
 * Soft-RoCE's max_cqe is 32767, so fi_enable fails with EINVAL. The hints' tx_attr and rx_attr
 * sizes do not change that queue.
 * NOTE: setenv is not thread-safe. The first communicator is normally created before the
 * application starts threads that read the environment.
 */
static void size_universe(const wf_transport_config_t *config)
{
    if (__atomic_exchange_n(&libfabric_started, 1, __ATOMIC_ACQ_REL))
        return;
    const char *current = getenv("FI_UNIVERSE_SIZE");
    const char *reason = "";
    int size = wf_ofi_universe_size(config->provider, config->nranks, current, &reason);
    if (size == 0) {
        WF_OFI_TRACE("rank %d: FI_UNIVERSE_SIZE left %s (%s)", config->rank, current != NULL ? current : "unset",
                     reason);
        return;
    }
    char text[16];
    snprintf(text, sizeof(text), "%d", size);
    if (setenv("FI_UNIVERSE_SIZE", text, 1) != 0) {
        WF_OFI_WARN("rank %d: could not set FI_UNIVERSE_SIZE=%s: %s", config->rank, text, strerror(errno));
        return;
    }
    WF_OFI_INFO("rank %d: set FI_UNIVERSE_SIZE=%s (%s) before libfabric starts, because ofi_rxm on verbs "
                "opens a completion queue of (128 + 128) x FI_UNIVERSE_SIZE entries, by default 65536, more "
                "than some devices allow (Soft-RoCE: 32767). Set FI_UNIVERSE_SIZE to choose another value",
                config->rank, text, reason);
}

struct fi_info *wf_ofi_query_providers(int *rc, char *err, size_t errlen)
{
    __atomic_store_n(&libfabric_started, 1, __ATOMIC_RELEASE);
    struct fi_info *hints = build_hints();
    if (hints == NULL) {
        *rc = -ENOMEM;
        wf_xfer_format(err, errlen, "fi_allocinfo failed: out of memory");
        return NULL;
    }

    struct fi_info *list = NULL;
    int ret = fi_getinfo(WF_OFI_API_VERSION, NULL, NULL, 0, hints, &list);
    fi_freeinfo(hints);
    if (ret == -FI_ENODATA) {
        *rc = -ENOENT;
        wf_xfer_format(err, errlen,
                       "no libfabric provider offers RDM endpoints with tagged messages, directed "
                       "receives and RMA writes with remote CQ data; run "
                       "'fi_info -t FI_EP_RDM -c FI_RMA' to see what is installed");
        return NULL;
    }
    if (ret != 0) {
        *rc = wf_ofi_errno(-ret);
        wf_xfer_format(err, errlen, "fi_getinfo failed: %s (libfabric %u.%u)", fi_strerror(-ret),
                       FI_MAJOR(fi_version()), FI_MINOR(fi_version()));
        return NULL;
    }

    /* Unlink the entries that fail the checks hints cannot express. */
    struct fi_info *kept = NULL, **tail = &kept;
    while (list != NULL) {
        struct fi_info *entry = list;
        list = list->next;
        entry->next = NULL;
        if (wf_ofi_info_acceptable(entry)) {
            *tail = entry;
            tail = &entry->next;
        } else {
            fi_freeinfo(entry);
        }
    }
    if (kept == NULL) {
        *rc = -ENOENT;
        wf_xfer_format(err, errlen,
                       "no libfabric provider meets weft's requirements (remote CQ data of at least "
                       "4 bytes that does not consume receives, directed receives); run "
                       "'fi_info -t FI_EP_RDM -c FI_RMA -v' to inspect the providers");
        return NULL;
    }
    *rc = 0;
    return kept;
}

static int name_contains(const char *name, const char *part)
{
    return strstr(name, part) != NULL;
}

int wf_ofi_choose_provider(const char *const *names, size_t count, const char *requested,
                           int single_node, const char **reason)
{
    if (requested != NULL && requested[0] != '\0') {
        for (size_t i = 0; i < count; i++) {
            if (strcmp(names[i], requested) == 0) {
                *reason = "requested by configuration (WEFT_OFI_PROVIDER)";
                return (int)i;
            }
        }
        *reason = "requested provider not offered";
        return -1;
    }

    if (single_node) {
        for (size_t i = 0; i < count; i++) {
            if (strcmp(names[i], "shm") == 0) {
                *reason = "all ranks are on this node";
                return (int)i;
            }
        }
    }

    static const char *const preferred[] = {"verbs", "efa", "cxi", "tcp"};
    for (size_t p = 0; p < sizeof(preferred) / sizeof(preferred[0]); p++) {
        for (size_t i = 0; i < count; i++) {
            if (name_contains(names[i], preferred[p])) {
                *reason = single_node ? "all ranks are on this node but shm is not offered; preferred "
                                        "network provider (order: verbs, efa, cxi, tcp)"
                                      : "preferred network provider (order: verbs, efa, cxi, tcp)";
                return (int)i;
            }
        }
    }

    for (size_t i = 0; i < count; i++) {
        if (strcmp(names[i], "shm") != 0 && !name_contains(names[i], "sockets") &&
            !name_contains(names[i], "udp")) {
            *reason = "first network provider offered (no verbs, efa, cxi or tcp provider found)";
            return (int)i;
        }
    }
    *reason = "no network provider offered";
    return -1;
}

/* Collect the distinct provider names of list in order; returns the count or -ENOMEM. */
static int collect_names(const struct fi_info *list, const char ***names_out)
{
    size_t capacity = 0, count = 0;
    for (const struct fi_info *entry = list; entry != NULL; entry = entry->next)
        capacity++;
    const char **names = calloc(capacity > 0 ? capacity : 1, sizeof(*names));
    if (names == NULL)
        return -ENOMEM;

    for (const struct fi_info *entry = list; entry != NULL; entry = entry->next) {
        const char *name = entry->fabric_attr->prov_name;
        size_t i = 0;
        while (i < count && strcmp(names[i], name) != 0)
            i++;
        if (i == count)
            names[count++] = name;
    }
    *names_out = names;
    return (int)count;
}

static void join_names(const char *const *names, size_t count, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < count && used < outlen; i++) {
        int n = snprintf(out + used, outlen - used, "%s%s", i > 0 ? ", " : "", names[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/*
 * libfabric's shm provider gives every rank's shared-memory queue one slot per peer and reports
 * the slot count as domain_attr->ep_cnt (256 in libfabric 1.17). For a larger address vector,
 * fi_av_open fails with ENOSYS ("Function not implemented"). Returns that count when nranks
 * exceeds it, else 0.
 */
static size_t shm_peer_limit_exceeded(const struct fi_info *entry, int nranks)
{
    size_t limit = entry->domain_attr->ep_cnt;
    if (strcmp(entry->fabric_attr->prov_name, "shm") != 0 || limit == 0 || (size_t)nranks <= limit)
        return 0;
    return limit;
}

static const struct fi_info *first_entry_of(const struct fi_info *list, const char *name)
{
    while (strcmp(list->fabric_attr->prov_name, name) != 0)
        list = list->next;
    return list;
}

const struct fi_info *wf_ofi_rail_entry(const struct fi_info *list, const char *prov_name, const char *rail)
{
    size_t length = strlen(rail);
    for (const struct fi_info *entry = list; entry != NULL && length > 0; entry = entry->next) {
        const char *domain = entry->domain_attr != NULL ? entry->domain_attr->name : NULL;
        if (domain == NULL || strcmp(entry->fabric_attr->prov_name, prov_name) != 0)
            continue;
        if (strncmp(domain, rail, length) == 0 && (domain[length] == '\0' || domain[length] == '-'))
            return entry;
    }
    return NULL;
}

/* Return the entry on the rank's rail when the provider has a domain on that device, else entry. */
static const struct fi_info *entry_on_rail(const struct fi_info *list, const struct fi_info *entry,
                                           const wf_transport_config_t *config)
{
    if (config->rail == NULL || config->rail[0] == '\0')
        return entry;
    const struct fi_info *on_rail = wf_ofi_rail_entry(list, entry->fabric_attr->prov_name, config->rail);
    if (on_rail == NULL) {
        WF_OFI_TRACE("rank %d: provider %s has no domain on device %s, the NIC the topology chose; using "
                     "its first domain %s", config->rank, entry->fabric_attr->prov_name, config->rail,
                     entry->domain_attr->name);
        return entry;
    }
    WF_OFI_INFO("rank %d: domain %s of provider %s, on device %s that the topology chose for this rank",
                config->rank, on_rail->domain_attr->name, on_rail->fabric_attr->prov_name, config->rail);
    return on_rail;
}

struct fi_info *wf_ofi_select(const wf_transport_config_t *config, int *rc, char *err, size_t errlen,
                              const char **reason)
{
    size_universe(config);
    struct fi_info *list = wf_ofi_query_providers(rc, err, errlen);
    if (list == NULL)
        return NULL;

    const char **names = NULL;
    int count = collect_names(list, &names);
    if (count < 0) {
        fi_freeinfo(list);
        *rc = count;
        wf_xfer_format(err, errlen, "out of memory while listing libfabric providers");
        return NULL;
    }

    int chosen = wf_ofi_choose_provider(names, (size_t)count, config->provider, config->single_node, reason);
    if (chosen < 0) {
        char offered[512];
        join_names(names, (size_t)count, offered, sizeof(offered));
        if (config->provider != NULL && config->provider[0] != '\0')
            wf_xfer_format(err, errlen,
                           "libfabric provider \"%s\" is not installed or lacks RDM endpoints with "
                           "tagged messages and RMA writes with remote CQ data; providers that "
                           "qualify: %s. Set WEFT_OFI_PROVIDER to one of them or leave it empty",
                           config->provider, offered);
        else
            wf_xfer_format(err, errlen,
                           "no libfabric network provider for a communicator that spans nodes; "
                           "providers that qualify: %s (shm, sockets and udp are never chosen "
                           "automatically). Set WEFT_OFI_PROVIDER to force one of them",
                           offered);
        free(names);
        fi_freeinfo(list);
        *rc = -ENOENT;
        return NULL;
    }

    /* The first entry of that provider is its preferred fabric and domain. */
    const struct fi_info *entry = first_entry_of(list, names[chosen]);
    size_t shm_limit = shm_peer_limit_exceeded(entry, config->nranks);
    int requested = config->provider != NULL && config->provider[0] != '\0';
    if (shm_limit != 0 && !requested) {
        /* shm was chosen only because every rank is on this node, and a network provider serves them all. */
        chosen = wf_ofi_choose_provider(names, (size_t)count, NULL, 0, reason);
        if (chosen >= 0) {
            entry = first_entry_of(list, names[chosen]);
            shm_limit = 0;
            *reason = "all ranks are on this node, but more of them than the shm provider serves (its "
                      "domain ep_cnt); preferred network provider";
        }
    }
    if (shm_limit != 0) {
        wf_xfer_format(err, errlen,
                       "%d ranks are more than the %zu peers libfabric's shm provider serves (its domain "
                       "ep_cnt); set WEFT_OFI_PROVIDER=\"tcp;ofi_rxm\" or run at most %zu ranks per "
                       "communicator over shm",
                       config->nranks, shm_limit, shm_limit);
        free(names);
        fi_freeinfo(list);
        *rc = -E2BIG;
        return NULL;
    }
    struct fi_info *copy = fi_dupinfo(entry_on_rail(list, entry, config));
    free(names);
    fi_freeinfo(list);
    if (copy == NULL) {
        *rc = -ENOMEM;
        wf_xfer_format(err, errlen, "fi_dupinfo failed: out of memory");
        return NULL;
    }
    *rc = 0;
    return copy;
}

static const char *text_or_dash(const char *text)
{
    return text != NULL ? text : "-";
}

static int same_fabric_domain(const struct fi_info *a, const struct fi_info *b)
{
    return strcmp(a->fabric_attr->prov_name, b->fabric_attr->prov_name) == 0 &&
           strcmp(text_or_dash(a->fabric_attr->name), text_or_dash(b->fabric_attr->name)) == 0 &&
           strcmp(text_or_dash(a->domain_attr->name), text_or_dash(b->domain_attr->name)) == 0;
}

void wf_ofi_print_providers(void *file)
{
    FILE *out = file;
    char err[512];
    int rc = 0;
    struct fi_info *list = wf_ofi_query_providers(&rc, err, sizeof(err));
    if (list == NULL) {
        fprintf(out, "libfabric: %s\n", err);
        return;
    }

    /* fi_getinfo repeats a fabric and domain once per address format; print each triple once. */
    for (const struct fi_info *entry = list; entry != NULL; entry = entry->next) {
        int seen = 0;
        for (const struct fi_info *earlier = list; earlier != entry && !seen; earlier = earlier->next)
            seen = same_fabric_domain(earlier, entry);
        if (seen)
            continue;
        int local = (entry->domain_attr->mr_mode & FI_MR_LOCAL) != 0;
        fprintf(out, "%-16s fabric %-20s domain %-12s %s\n", entry->fabric_attr->prov_name,
                text_or_dash(entry->fabric_attr->name), text_or_dash(entry->domain_attr->name),
                local ? "needs FI_MR_LOCAL" : "no FI_MR_LOCAL");
    }
    fi_freeinfo(list);
}
