/*
 * weft-info: print the weft version, every WEFT_* parameter with its current value and the source
 * of that value, the libfabric providers weft can open in this environment, the RDMA device
 * ports with their GIDs and the one weft's verbs transport would use, and the topology of
 * this process (node, binding, caches, network devices, NIC choice).
 *
 * Exit status: 0 on success, 1 when hwloc cannot load the topology, 2 when a parameter or an
 * option is invalid, including a WEFT_IB_HCA that matches no usable device port on this host.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "info_explain.h"
#include "info_topo.h"
#include "log.h"
#include "param.h"
#include "transport.h"

static void print_usage(FILE *out)
{
    fprintf(out,
            "Usage: weft-info [--params | --topo]\n"
            "       weft-info --explain COLLECTIVE SIZE [-n RANKS] [--nodes N] [--transport shm|net|route]\n"
            "                 [--datatype TYPE] [--op OP]\n"
            "Print the weft version, every WEFT_* parameter (value, source, description), the\n"
            "libfabric providers weft can open, the RDMA device ports (GIDs, and the one the verbs\n"
            "transport would use), and the topology of this process. With --explain,\n"
            "print the cost model's estimate of every algorithm of one call and the algorithm weft\n"
            "would choose, with WEFT_ALGO and WEFT_TUNING_FILE applied, without starting a job.\n"
            "\n"
            "  --params          print only the parameter table\n"
            "  --topo            print only the topology: node identity, cores, NUMA nodes, caches,\n"
            "                    network devices with their locality, and the NIC ports WEFT_IB_HCA\n"
            "                    leads to\n"
            "  --explain         explain the choice for COLLECTIVE (allreduce, allgather,\n"
            "                    reduce_scatter, broadcast, reduce, barrier) of SIZE bytes as\n"
            "                    nccl-tests counts them (K, M, G suffixes allowed)\n"
            "  -n, --ranks N     ranks of the communicator (default 8)\n"
            "  --nodes N         nodes they are spread over (default 1)\n"
            "  --transport T     shm: shm parameters everywhere; net: net parameters everywhere;\n"
            "                    route: shm inside nodes and net between them (default: shm on\n"
            "                    one node, route on several, net with one rank per node)\n"
            "  --datatype TYPE   element type, e.g. float16 (default float32)\n"
            "  --op OP           sum, prod, min, max or avg (default sum)\n"
            "  -h, --help        print this help\n");
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
        {"topo", no_argument, NULL, 'T'},
        {"explain", no_argument, NULL, 'e'},
        {"ranks", required_argument, NULL, 'n'},
        {"nodes", required_argument, NULL, 'N'},
        {"transport", required_argument, NULL, 't'},
        {"datatype", required_argument, NULL, 'd'},
        {"op", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    wf_explain_request_t explain = {NULL, NULL, "float32", "sum", NULL, 8, 1};
    int params_only = 0, topo_only = 0, explain_mode = 0;
    int option;

    while ((option = getopt_long(argc, argv, "hn:", options, NULL)) != -1) {
        switch (option) {
        case 'h':
            print_usage(stdout);
            return 0;
        case 'p':
            params_only = 1;
            break;
        case 'T':
            topo_only = 1;
            break;
        case 'e':
            explain_mode = 1;
            break;
        case 'n':
        case 'N': {
            char *end = NULL;
            long value = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || value < 1 || value > (1 << 20)) {
                fprintf(stderr, "weft-info: %s '%s' is not a count from 1 to 1048576\n",
                        option == 'n' ? "--ranks" : "--nodes", optarg);
                return 2;
            }
            *(option == 'n' ? &explain.nranks : &explain.nnodes) = (int)value;
            break;
        }
        case 't':
            explain.transport = optarg;
            break;
        case 'd':
            explain.datatype = optarg;
            break;
        case 'o':
            explain.op = optarg;
            break;
        default:
            print_usage(stderr);
            return 2;
        }
    }
    if (params_only + topo_only + explain_mode > 1) {
        fprintf(stderr, "weft-info: use one of --params, --topo and --explain\n");
        print_usage(stderr);
        return 2;
    }
    if (explain_mode && argc - optind != 2) {
        fprintf(stderr, "weft-info: --explain needs COLLECTIVE and SIZE, as in --explain allreduce 1M\n");
        print_usage(stderr);
        return 2;
    }
    if (!explain_mode && optind < argc) {
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
    if (explain_mode) {
        explain.coll = argv[optind];
        explain.size = argv[optind + 1];
        return wf_explain(&explain);
    }
    if (!params_only)
        printf("weft %s\n\nParameters:\n", WEFT_VERSION_STRING);
    print_params();
    if (params_only)
        return 0;
    printf("\nProviders:\n");
    fflush(stdout);
    wf_ofi_print_providers(stdout);
    printf("\nRDMA devices (weft's verbs transport):\n");
    fflush(stdout);
#ifdef WEFT_HAVE_VERBS
    wf_verbs_print_devices(stdout);
#else
    printf("  not built: this libweft was built without libibverbs (install libibverbs-dev and rebuild)\n");
#endif
    printf("\n");
    fflush(stdout);
    return info_print_topology();
}
