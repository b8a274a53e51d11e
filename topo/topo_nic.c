/*
 * The NIC choice of this process: the OpenFabrics device ports nearest to its binding that
 * WEFT_IB_HCA allows. The rules themselves are in nic_select.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topo_internal.h"

/* Convert the OpenFabrics devices of local for wf_nic_choose; (*map)[i] is the index in local->devices. */
static int collect_candidates(const wf_topo_local_t *local, wf_nic_device_t **candidates, int **map)
{
    int count = 0;

    *candidates = calloc((size_t)local->ndevices + 1, sizeof(**candidates));
    *map = calloc((size_t)local->ndevices + 1, sizeof(**map));
    if (*candidates == NULL || *map == NULL)
        return -1;
    for (int i = 0; i < local->ndevices; i++) {
        const wf_topo_device_t *device = &local->devices[i];
        /* A name that does not fit in a rail cannot be published to the other ranks. */
        if (device->type != WF_TOPO_DEV_OPENFABRICS || strlen(device->name) >= WF_NIC_NAME_MAX)
            continue;
        wf_nic_device_t *candidate = &(*candidates)[count];
        candidate->name = device->name;
        candidate->distance = (int)device->distance;
        candidate->nports = device->nports;
        memcpy(candidate->port_state, device->port_state, sizeof(candidate->port_state));
        (*map)[count++] = i;
    }
    return count;
}

/* Explain why spec allowed no usable port, naming the variable, its value and the devices. */
static void explain_no_match(const wf_nic_outcome_t *outcome, const wf_nic_device_t *candidates, int count,
                             const char *spec_text, const char *spec_origin, const char *hostname, char *err,
                             size_t errlen)
{
    char devices[1024];

    wf_nic_describe_devices(candidates, count, devices, sizeof(devices));
    if (count == 0)
        snprintf(err, errlen, "WEFT_IB_HCA=%.200s (from %.200s) names OpenFabrics devices, but host %s has none; "
                 "unset WEFT_IB_HCA on this host", spec_text, spec_origin, hostname);
    else if (outcome->allowed > 0)
        snprintf(err, errlen, "WEFT_IB_HCA=%.200s (from %.200s) matches only ports that are not active on host %s; "
                 "devices here: %s; name an active port or unset WEFT_IB_HCA", spec_text, spec_origin, hostname,
                 devices);
    else
        snprintf(err, errlen, "WEFT_IB_HCA=%.200s (from %.200s) matches no OpenFabrics device port on host %s; "
                 "devices here: %s; name one of them or unset WEFT_IB_HCA", spec_text, spec_origin, hostname,
                 devices);
}

int wf_topo_choose_nic(wf_topo_local_t *local, const char *spec_text, const char *spec_origin, char *err,
                       size_t errlen)
{
    wf_nic_spec_t spec;
    char reason[512];

    local->nrails = 0;
    local->rails_left_out = 0;
    local->rail_distance = WF_TOPO_UNKNOWN;
    /* The registry has already checked the syntax; this catches a caller that bypassed it. */
    if (wf_nic_spec_parse(spec_text, &spec, reason, sizeof(reason)) != 0) {
        snprintf(err, errlen, "WEFT_IB_HCA=%.200s (from %.200s) is invalid: %s", spec_text, spec_origin, reason);
        return WF_TOPO_ERR_NIC;
    }

    wf_nic_device_t *candidates = NULL;
    int *map = NULL;
    int count = collect_candidates(local, &candidates, &map);
    if (count < 0) {
        free(candidates);
        free(map);
        snprintf(err, errlen, "out of memory choosing a NIC");
        return WF_TOPO_ERR_HWLOC;
    }

    wf_nic_choice_t chosen[WF_TOPO_RAILS_MAX];
    wf_nic_outcome_t outcome;
    int nchosen = wf_nic_choose(&spec, candidates, count, chosen, WF_TOPO_RAILS_MAX, &outcome);
    int rc = 0;
    for (int i = 0; i < nchosen; i++) {
        const wf_topo_device_t *device = &local->devices[map[chosen[i].device]];
        snprintf(local->rails[i].name, sizeof(local->rails[i].name), "%.*s", WF_NIC_NAME_MAX - 1, device->name);
        local->rails[i].port = chosen[i].port;
        local->rail_distance = device->distance;
    }
    local->nrails = nchosen;
    local->rails_left_out = outcome.nearest - nchosen;

    /* An exclusion list may leave nothing on purpose; a list of names that matches nothing is a mistake. */
    if (nchosen == 0 && spec.nentries > 0 && !spec.exclude) {
        explain_no_match(&outcome, candidates, count, spec_text, spec_origin, local->hostname, err, errlen);
        rc = WF_TOPO_ERR_NIC;
    }
    free(candidates);
    free(map);
    return rc;
}
