/*
 * coll_check: exact checks of every collective over many datatypes, ops, counts and in-place modes
 * in one launch. Start it on every rank with coll_launch, mpirun, or WEFT_ROOT/WEFT_RANK/WEFT_SIZE.
 *
 *   coll_check [--quick] [--large] [--seed N] [--coll NAME] [--verbose]
 *
 * Every rank must get the same options, because they decide the sequence of collective calls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "coll_check.h"

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: coll_check [--quick] [--large] [--seed N] [--coll NAME] [--verbose]\n"
            "  --quick      fewer counts and large cases (for runs with many ranks)\n"
            "  --large      add float32 cases above 64 MiB: all-reduce and broadcast of 64 MiB + 12 bytes,\n"
            "               and an all-gather whose output is above 64 MiB\n"
            "  --seed N     seed of the input pattern (default 1); use the same on every rank\n"
            "  --coll NAME  run only allreduce, allgather, reduce_scatter, broadcast or barrier\n"
            "  --verbose    rank 0 prints every case and its time in seconds\n");
}

static int parse_coll_name(const char *name)
{
    for (int c = 0; c < CT_NUM_COLLS; c++) {
        if (strcmp(name, ct_coll_name((ct_coll_t)c)) == 0)
            return c;
    }
    return -1;
}

/* Parse the command line; exits with status 2 and the usage on a bad option. */
static void parse_options(int argc, char **argv, ct_options_t *options)
{
    *options = (ct_options_t){.only_coll = -1, .seed = 1};

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;

        if (strcmp(arg, "--quick") == 0) {
            options->quick = 1;
        } else if (strcmp(arg, "--large") == 0) {
            options->large = 1;
        } else if (strcmp(arg, "--verbose") == 0) {
            options->verbose = 1;
        } else if (strcmp(arg, "--seed") == 0 && value != NULL) {
            options->seed = strtoull(value, &end, 0);
            if (*value == '\0' || *end != '\0') {
                fprintf(stderr, "coll_check: invalid --seed value '%s'; expected an unsigned integer\n", value);
                exit(2);
            }
            i++;
        } else if (strcmp(arg, "--coll") == 0 && value != NULL) {
            options->only_coll = parse_coll_name(value);
            if (options->only_coll < 0) {
                fprintf(stderr, "coll_check: unknown --coll value '%s'\n", value);
                print_usage(stderr);
                exit(2);
            }
            i++;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "coll_check: invalid option '%s'\n", arg);
            print_usage(stderr);
            exit(2);
        }
    }
}

/*
 * With WEFT_REDUCE_PRECISION=native the library rounds 16-bit partial results on the way, so
 * their sum, prod and avg depend on its reduction order and have no exact reference.
 */
static int has_no_exact_reference(const ct_case_t *item)
{
    const char *precision = getenv("WEFT_REDUCE_PRECISION");
    int native = precision != NULL && strcasecmp(precision, "native") == 0;
    int reduction = item->coll == CT_ALLREDUCE || item->coll == CT_REDUCE_SCATTER;
    int half = item->type == WEFT_FLOAT16 || item->type == WEFT_BFLOAT16;
    int rounds = item->op == WEFT_SUM || item->op == WEFT_PROD || item->op == WEFT_AVG;
    return native && reduction && half && rounds;
}

int main(int argc, char **argv)
{
    ct_options_t options;
    ct_case_list_t cases = {0};
    ct_context_t context;
    size_t skipped = 0;

    parse_options(argc, argv, &options);
    context.comm = ct_init_or_exit("coll_check");
    context.rank = weft_comm_rank(context.comm);
    context.nranks = weft_comm_size(context.comm);
    context.seed = options.seed;
    context.tally = (ct_tally_t){.program = "coll_check", .rank = context.rank, .nranks = context.nranks};

    ct_plan_cases(&options, context.nranks, &cases);
    if (context.rank == 0)
        printf("coll_check: %zu cases on %d ranks (%s mode, seed %llu)\n", cases.length, context.nranks,
               options.quick ? "quick" : "full", (unsigned long long)options.seed);

    double started = ct_now();
    for (size_t i = 0; i < cases.length && !context.tally.broken; i++) {
        const ct_case_t *item = &cases.items[i];
        if (has_no_exact_reference(item)) {
            skipped++;
            continue;
        }
        double case_started = ct_now();
        ct_run_case(&context, item);
        if (options.verbose && context.rank == 0) {
            char description[160];
            ct_describe_case(item, description, sizeof description);
            printf("coll_check: %s: %.3f s\n", description, ct_now() - case_started);
        }
    }
    if (context.tally.broken)
        printf("coll_check rank %d: stopped after a failed call, because the communicator is now usable only "
               "for weft_comm_destroy\n", context.rank);
    if (context.rank == 0) {
        printf("coll_check: ran for %.1f s", ct_now() - started);
        if (skipped > 0)
            printf("; skipped %zu float16/bfloat16 sum, prod and avg cases because "
                   "WEFT_REDUCE_PRECISION=native has no exact reference", skipped);
        printf("\n");
    }
    free(cases.items);
    return ct_finish(&context.tally, context.comm);
}
