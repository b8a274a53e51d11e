/* CPU binding of locally forked ranks (see bench_affinity.h). */
#define _GNU_SOURCE
#include "bench_affinity.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

int bench_bind_to_cpu(const char *program, int index)
{
    cpu_set_t allowed;

    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
        fprintf(stderr, "%s: sched_getaffinity failed: %s\n", program, strerror(errno));
        return -1;
    }
    int remaining = index % CPU_COUNT(&allowed);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed) || remaining-- > 0)
            continue;
        cpu_set_t chosen;
        CPU_ZERO(&chosen);
        CPU_SET(cpu, &chosen);
        if (sched_setaffinity(0, sizeof(chosen), &chosen) != 0) {
            fprintf(stderr, "%s: binding rank %d to CPU %d failed: %s\n", program, index, cpu, strerror(errno));
            return -1;
        }
        return 0;
    }
    return 0; /* not reached: CPU_COUNT counted the CPUs of allowed */
}
