/*
 * WEFT_IB_HCA parsing and matching, and the choice of device ports. Pure functions: no hwloc, no
 * system calls, no logging.
 */
#include "nic_select.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WF_NIC_EXAMPLE "for example mlx5_0:1,mlx5_1:1"

/* Parse the port after the ':' of entry number `index` (1-based). Returns 0 or -1 with err set. */
static int parse_port(const char *text, size_t length, int index, const char *entry, int entry_length,
                      int *port, char *err, size_t errlen)
{
    int value = 0;

    for (size_t i = 0; i < length; i++) {
        if (!isdigit((unsigned char)text[i]) || value > WF_NIC_PORT_MAX) {
            value = -1;
            break;
        }
        value = value * 10 + (text[i] - '0');
    }
    if (length == 0 || value < 1 || value > WF_NIC_PORT_MAX) {
        snprintf(err, errlen, "entry %d (\"%.*s\") has an invalid port \"%.*s\": write NAME:PORT with a port "
                 "number from 1 to %d, %s", index, entry_length, entry, (int)(length > 16 ? 16 : length), text,
                 WF_NIC_PORT_MAX, WF_NIC_EXAMPLE);
        return -1;
    }
    *port = value;
    return 0;
}

/* Parse one entry of `length` bytes at text into spec->entries[index - 1]. */
static int parse_entry(const char *text, size_t length, int index, wf_nic_spec_t *spec, char *err, size_t errlen)
{
    int shown = (int)(length > 64 ? 64 : length);

    if (length == 0) {
        snprintf(err, errlen, "entry %d is empty: separate device names with single commas and no comma at "
                 "either end, %s", index, WF_NIC_EXAMPLE);
        return -1;
    }
    if (index > WF_NIC_ENTRIES_MAX) {
        snprintf(err, errlen, "more than %d entries: name fewer devices, or use a prefix such as mlx5 that "
                 "matches several", WF_NIC_ENTRIES_MAX);
        return -1;
    }
    const char *colon = memchr(text, ':', length);
    size_t name_length = colon ? (size_t)(colon - text) : length;
    wf_nic_entry_t *entry = &spec->entries[index - 1];

    if (name_length == 0) {
        snprintf(err, errlen, "entry %d (\"%.*s\") has no device name before the ':', %s", index, shown, text,
                 WF_NIC_EXAMPLE);
        return -1;
    }
    for (size_t i = 0; i < name_length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '^' || c == '=') {
            snprintf(err, errlen, "entry %d (\"%.*s\") contains '%c', but '^' and '=' apply to the whole list "
                     "and may only start it, as in ^=mlx5_0,mlx5_1", index, shown, text, c);
            return -1;
        }
        if (!isgraph(c)) {
            snprintf(err, errlen, "entry %d (\"%.*s\") contains a space or a control character: device names "
                     "have none, %s", index, shown, text, WF_NIC_EXAMPLE);
            return -1;
        }
    }
    if (name_length >= WF_NIC_NAME_MAX) {
        snprintf(err, errlen, "entry %d (\"%.*s\") is longer than %d bytes: write a shorter prefix of the "
                 "device name", index, shown, text, WF_NIC_NAME_MAX - 1);
        return -1;
    }
    memcpy(entry->name, text, name_length);
    entry->name[name_length] = '\0';
    entry->port = 0;
    if (colon == NULL)
        return 0;
    if (memchr(colon + 1, ':', length - name_length - 1) != NULL) {
        snprintf(err, errlen, "entry %d (\"%.*s\") has more than one ':': write NAME:PORT, %s", index, shown,
                 text, WF_NIC_EXAMPLE);
        return -1;
    }
    return parse_port(colon + 1, length - name_length - 1, index, text, shown, &entry->port, err, errlen);
}

int wf_nic_spec_parse(const char *text, wf_nic_spec_t *spec, char *err, size_t errlen)
{
    const char *p = text;

    memset(spec, 0, sizeof(*spec));
    if (*p == '\0')
        return 0;
    if (*p == '^') {
        spec->exclude = 1;
        p++;
    }
    if (*p == '=') {
        spec->exact = 1;
        p++;
    }
    if (*p == '^') {
        snprintf(err, errlen, "'^' must come first and only once: write ^=NAME to exclude exact names, "
                 "^PREFIX to exclude prefixes");
        memset(spec, 0, sizeof(*spec));
        return -1;
    }
    if (*p == '\0') {
        snprintf(err, errlen, "no device name follows the '%s': write for example %smlx5_0", spec->exclude ? "^" : "=",
                 text);
        memset(spec, 0, sizeof(*spec));
        return -1;
    }

    int index = 1;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t length = comma ? (size_t)(comma - p) : strlen(p);
        if (parse_entry(p, length, index, spec, err, errlen) != 0) {
            memset(spec, 0, sizeof(*spec));
            return -1;
        }
        spec->nentries = index;
        if (comma == NULL)
            return 0;
        p = comma + 1;
        index++;
    }
}

int wf_nic_spec_find(const wf_nic_spec_t *spec, const char *name, int port)
{
    for (int i = 0; i < spec->nentries; i++) {
        const wf_nic_entry_t *entry = &spec->entries[i];
        int name_matches = spec->exact ? strcmp(name, entry->name) == 0
                                       : strncmp(name, entry->name, strlen(entry->name)) == 0;
        if (name_matches && (entry->port == 0 || entry->port == port))
            return i;
    }
    return -1;
}

int wf_nic_spec_allows(const wf_nic_spec_t *spec, const char *name, int port)
{
    if (spec->nentries == 0)
        return 1;
    int found = wf_nic_spec_find(spec, name, port) >= 0;
    return spec->exclude ? !found : found;
}

typedef struct {
    wf_nic_choice_t choice;
    int entry; /* sort key: index of the matching entry of a list of names, else 0 */
} candidate_t;

static int compare_candidates(const void *a, const void *b)
{
    const candidate_t *x = a;
    const candidate_t *y = b;

    if (x->entry != y->entry)
        return x->entry < y->entry ? -1 : 1;
    if (x->choice.device != y->choice.device)
        return x->choice.device < y->choice.device ? -1 : 1;
    return (x->choice.port > y->choice.port) - (x->choice.port < y->choice.port);
}

int wf_nic_choose(const wf_nic_spec_t *spec, const wf_nic_device_t *devices, int ndevices,
                  wf_nic_choice_t *chosen, int max_chosen, wf_nic_outcome_t *outcome)
{
    memset(outcome, 0, sizeof(*outcome));

    /* The nearest distance among the usable allowed ports. */
    for (int d = 0; d < ndevices; d++) {
        int nports = devices[d].nports > 0 ? devices[d].nports : 1;
        for (int port = 1; port <= nports; port++) {
            if (!wf_nic_spec_allows(spec, devices[d].name, port))
                continue;
            outcome->allowed++;
            if (devices[d].nports > 0 && devices[d].port_state[port - 1] == WF_PORT_STATE_DOWN)
                continue;
            if (outcome->usable == 0 || devices[d].distance < outcome->distance)
                outcome->distance = devices[d].distance;
            outcome->usable++;
        }
    }
    if (outcome->usable == 0)
        return 0;

    /* Every usable allowed port at that distance, in entry, device, port order. */
    candidate_t *candidates = calloc((size_t)outcome->usable, sizeof(*candidates));
    if (candidates == NULL)
        return 0; /* NOTE: reads as "nothing chosen"; a few bytes per device port, so not expected */
    int count = 0;
    for (int d = 0; d < ndevices; d++) {
        int nports = devices[d].nports > 0 ? devices[d].nports : 1;
        for (int port = 1; port <= nports; port++) {
            if (devices[d].distance != outcome->distance || !wf_nic_spec_allows(spec, devices[d].name, port))
                continue;
            if (devices[d].nports > 0 && devices[d].port_state[port - 1] == WF_PORT_STATE_DOWN)
                continue;
            candidates[count].choice.device = d;
            candidates[count].choice.port = port;
            candidates[count].entry = spec->exclude ? 0 : wf_nic_spec_find(spec, devices[d].name, port);
            count++;
        }
    }
    qsort(candidates, (size_t)count, sizeof(*candidates), compare_candidates);
    outcome->nearest = count;

    int nchosen = count < max_chosen ? count : max_chosen;
    for (int i = 0; i < nchosen; i++)
        chosen[i] = candidates[i].choice;
    free(candidates);
    return nchosen;
}

static const char *port_state_name(int state)
{
    switch (state) {
    case WF_PORT_STATE_ACTIVE:
        return " active";
    case WF_PORT_STATE_DOWN:
        return " down";
    default:
        return "";
    }
}

void wf_nic_describe_devices(const wf_nic_device_t *devices, int ndevices, char *out, size_t outlen)
{
    size_t used = 0;

    if (outlen == 0)
        return;
    out[0] = '\0';
    if (ndevices == 0) {
        snprintf(out, outlen, "none");
        return;
    }
    for (int d = 0; d < ndevices && used < outlen; d++) {
        used += (size_t)snprintf(out + used, outlen - used, "%s%s (", d ? ", " : "", devices[d].name);
        int nports = devices[d].nports > 0 ? devices[d].nports : 1;
        for (int port = 1; port <= nports && used < outlen; port++) {
            int state = devices[d].nports > 0 ? devices[d].port_state[port - 1] : WF_PORT_STATE_UNKNOWN;
            used += (size_t)snprintf(out + used, outlen - used, "%sport %d%s", port > 1 ? ", " : "", port,
                                     port_state_name(state));
        }
        if (used < outlen)
            used += (size_t)snprintf(out + used, outlen - used, ")");
    }
}
