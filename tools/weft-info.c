/*
 * weft-info: print the weft version, every WEFT_* parameter with its current value and the source
 * of that value, the libfabric providers weft can open in this environment, and the topology of
 * this process (node, binding, caches, network devices, NIC choice).
 *
 * Exit status: 0 on success, 1 when hwloc cannot load the topology, 2 when a parameter or an
 * option is invalid, including a WEFT_IB_HCA that matches no usable device port on this host.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "info_topo.h"
#include "log.h"
#include "param.h"
#include "transport.h"

static void print_usage(FILE *out)
{
    fprintf(out,
            "Usage: weft-info [--params | --topo]\n"
            "Print the weft version, every WEFT_* parameter (value, source, description), the\n"
            "libfabric providers weft can open, and the topology of this process.\n"
            "\n"
            "  --params    print only the parameter table\n"
            "  --topo      print only the topology: node identity, cores, NUMA nodes, caches, network\n"
            "              devices with their locality, and the NIC ports WEFT_IB_HCA leads to\n"
            "  -h, --help  print this help\n");
}

/* The value as weft-info shows it: secrets only as set or unset, sizes also in bytes. */
static void format_value(wf_param_id_t id, char *out, size_t outlen)
{
    const wf_param_def_t *def = wf_param_def(id);
    const char *text = wf_param_str(id);

    if (def->secret)
        snprintf(out, outlen, "%s", text[0] ? "(set)" : "(unset)");
    else if (!text[0])
        snprintf(out, outlen, "\"\"");
    else if (def->type == WF_PARAM_TYPE_SIZE && strcmp(text, "0") != 0)
        snprintf(out, outlen, "%s (%" PRId64 ")", text, wf_param_int(id));
    else
        snprintf(out, outlen, "%s", text);
}

static void format_source(wf_param_id_t id, char *out, size_t outlen)
{
    if (wf_param_source(id) == WF_PARAM_SOURCE_FILE)
        snprintf(out, outlen, "file %s", wf_param_origin(id));
    else
        snprintf(out, outlen, "%s", wf_param_origin(id));
}

static void print_params(void)
{
    char value[4200];
    char source[4200];
    int name_width = (int)strlen("NAME");
    int value_width = (int)strlen("VALUE");
    int source_width = (int)strlen("SOURCE");

    for (int id = 0; id < WF_PARAM_COUNT; id++) {
        int length = (int)strlen(wf_param_def((wf_param_id_t)id)->name);
        name_width = length > name_width ? length : name_width;
        format_value((wf_param_id_t)id, value, sizeof value);
        length = (int)strlen(value);
        value_width = length > value_width ? length : value_width;
        format_source((wf_param_id_t)id, source, sizeof source);
        length = (int)strlen(source);
        source_width = length > source_width ? length : source_width;
    }
    /* Columns stop growing at 24 characters so one long path does not push every description right. */
    value_width = value_width > 24 ? 24 : value_width;
    source_width = source_width > 24 ? 24 : source_width;

    printf("%-*s  %-*s  %-*s  %s\n", name_width, "NAME", value_width, "VALUE", source_width, "SOURCE",
           "DESCRIPTION");
    for (int id = 0; id < WF_PARAM_COUNT; id++) {
        format_value((wf_param_id_t)id, value, sizeof value);
        format_source((wf_param_id_t)id, source, sizeof source);
        printf("%-*s  %-*s  %-*s  %s\n", name_width, wf_param_def((wf_param_id_t)id)->name, value_width, value,
               source_width, source, wf_param_def((wf_param_id_t)id)->help);
    }
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"params", no_argument, NULL, 'p'},
        {"topo", no_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    int params_only = 0;
    int topo_only = 0;
    int option;

    while ((option = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (option) {
        case 'h':
            print_usage(stdout);
            return 0;
        case 'p':
            params_only = 1;
            break;
        case 't':
            topo_only = 1;
            break;
        default:
            print_usage(stderr);
            return 2;
        }
    }
    if (params_only && topo_only) {
        fprintf(stderr, "weft-info: use --params or --topo, not both\n");
        print_usage(stderr);
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "weft-info: unexpected argument %s\n", argv[optind]);
        print_usage(stderr);
        return 2;
    }

    char err[1024];
    if (wf_param_load(err, sizeof err) != 0) {
        fprintf(stderr, "weft-info: %s\n", err);
        return 2;
    }
    wf_log_init();

    if (topo_only)
        return info_print_topology();
    if (!params_only)
        printf("weft %s\n\nParameters:\n", WEFT_VERSION_STRING);
    print_params();
    if (params_only)
        return 0;
    printf("\nProviders:\n");
    fflush(stdout);
    wf_ofi_print_providers(stdout);
    printf("\n");
    fflush(stdout);
    return info_print_topology();
}
