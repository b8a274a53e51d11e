/*
 * WEFT_TOPO_DUMP_FILE: the rank map as JSON and this node's hwloc topology as XML.
 *
 * Each file is written under a temporary name and renamed into place, so a reader never sees half
 * a file and two writers of one path leave one whole file, not a mix.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "topo_internal.h"

#define WF_DUMP_PATH_MAX 4096

/* Expand %h (host name), %p (pid), %r (rank) and %% in pattern. Returns 0, or -1 when too long. */
static int expand_pattern(const char *pattern, const char *host, int rank, char *out, size_t outlen)
{
    size_t used = 0;

    for (const char *p = pattern; *p; p++) {
        char piece[64];
        const char *text = piece;

        if (p[0] == '%' && p[1] == 'h') {
            text = host;
            p++;
        } else if (p[0] == '%' && p[1] == 'p') {
            snprintf(piece, sizeof(piece), "%d", (int)getpid());
            p++;
        } else if (p[0] == '%' && p[1] == 'r') {
            snprintf(piece, sizeof(piece), "%d", rank);
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            snprintf(piece, sizeof(piece), "%%");
            p++;
        } else {
            piece[0] = *p;
            piece[1] = '\0';
        }
        size_t length = strlen(text);
        if (used + length >= outlen)
            return -1;
        memcpy(out + used, text, length);
        used += length;
    }
    out[used] = '\0';
    return 0;
}

/* Write text as a JSON string: quotes, backslashes and control characters escaped. */
static void write_json_string(FILE *file, const char *text)
{
    fputc('"', file);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(file, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(file, "\\u%04x", *p);
        else
            fputc(*p, file);
    }
    fputc('"', file);
}

static void write_int_or_null(FILE *file, int value)
{
    if (value >= 0)
        fprintf(file, "%d", value);
    else
        fputs("null", file);
}

static void write_nodes(FILE *file, const wf_node_map_t *map, const wf_topo_summary_t *summaries)
{
    fputs("  \"nodes\": [\n", file);
    for (int n = 0; n < map->nnodes; n++) {
        const wf_topo_summary_t *leader = &summaries[map->leader[n]];
        fprintf(file, "    {\"node\": %d, \"hostid\": ", n);
        write_json_string(file, leader->hostid);
        fputs(", \"hostname\": ", file);
        write_json_string(file, leader->hostname);
        fprintf(file, ", \"leader\": %d, \"ranks\": [", map->leader[n]);
        for (int i = map->node_offset[n]; i < map->node_offset[n + 1]; i++)
            fprintf(file, "%s%d", i > map->node_offset[n] ? ", " : "", map->node_ranks[i]);
        fprintf(file, "]}%s\n", n + 1 < map->nnodes ? "," : "");
    }
    fputs("  ],\n", file);
}

static void write_ranks(FILE *file, const wf_node_map_t *map, const wf_topo_summary_t *summaries)
{
    fputs("  \"ranks\": [\n", file);
    for (int r = 0; r < map->nranks; r++) {
        const wf_topo_summary_t *summary = &summaries[r];
        fprintf(file, "    {\"rank\": %d, \"node\": %d, \"local_rank\": %d, \"hostname\": ", r, map->node_of_rank[r],
                map->local_rank[r]);
        write_json_string(file, summary->hostname);
        fprintf(file, ", \"pid\": %d, \"numa_node\": ", (int)summary->pid);
        write_int_or_null(file, summary->numa_node);
        fputs(", \"package\": ", file);
        write_int_or_null(file, summary->package);
        fputs(", \"cpuset\": ", file);
        write_json_string(file, summary->cpuset);
        fputs(", \"nics\": [", file);
        for (int i = 0; i < summary->nrails && i < WF_TOPO_RAILS_MAX; i++) {
            char rail[WF_NIC_NAME_MAX + 8];
            snprintf(rail, sizeof(rail), "%.*s:%d", WF_NIC_NAME_MAX - 1, summary->rails[i].name,
                     (int)summary->rails[i].port);
            fputs(i ? ", " : "", file);
            write_json_string(file, rail);
        }
        fputs("], \"nic_distance\": ", file);
        if (summary->nrails > 0)
            write_json_string(file, wf_topo_distance_name((wf_topo_distance_t)summary->rail_distance));
        else
            fputs("null", file);
        fprintf(file, "}%s\n", r + 1 < map->nranks ? "," : "");
    }
    fputs("  ]\n", file);
}

static int write_rank_map(const char *path, const char *xml_path, int rank, const wf_node_map_t *map,
                          const wf_topo_summary_t *summaries, char *err, size_t errlen)
{
    char temporary[WF_DUMP_PATH_MAX + 32];
    snprintf(temporary, sizeof(temporary), "%s.tmp%d", path, (int)getpid());
    FILE *file = fopen(temporary, "we");
    if (file == NULL) {
        snprintf(err, errlen, "failed to create %s: %s", temporary, strerror(errno));
        return -1;
    }

    fprintf(file, "{\n  \"weft_version\": \"%s\",\n  \"written_by_rank\": %d,\n  \"hostname\": ",
            WEFT_VERSION_STRING, rank);
    write_json_string(file, summaries[rank].hostname);
    fputs(",\n  \"hwloc_xml\": ", file);
    if (xml_path != NULL)
        write_json_string(file, xml_path);
    else
        fputs("null", file);
    fprintf(file, ",\n  \"nranks\": %d,\n  \"nnodes\": %d,\n  \"regular\": %s,\n", map->nranks, map->nnodes,
            map->regular ? "true" : "false");
    write_nodes(file, map, summaries);
    write_ranks(file, map, summaries);
    fputs("}\n", file);

    int failed = ferror(file);
    if (fclose(file) != 0 || failed) {
        snprintf(err, errlen, "failed to write %s: %s", temporary, strerror(errno));
        unlink(temporary);
        return -1;
    }
    if (rename(temporary, path) != 0) {
        snprintf(err, errlen, "failed to rename %s to %s: %s", temporary, path, strerror(errno));
        unlink(temporary);
        return -1;
    }
    return 0;
}

static int write_xml(hwloc_topology_t topology, const char *path, char *err, size_t errlen)
{
    char temporary[WF_DUMP_PATH_MAX + 32];
    snprintf(temporary, sizeof(temporary), "%s.tmp%d", path, (int)getpid());
    if (hwloc_topology_export_xml(topology, temporary, 0) != 0) {
        snprintf(err, errlen, "hwloc failed to write %s: %s", temporary, strerror(errno));
        unlink(temporary);
        return -1;
    }
    if (rename(temporary, path) != 0) {
        snprintf(err, errlen, "failed to rename %s to %s: %s", temporary, path, strerror(errno));
        unlink(temporary);
        return -1;
    }
    return 0;
}

int wf_topo_dump(const char *pattern, int rank, const wf_node_map_t *map, const wf_topo_summary_t *summaries,
                 char *path, size_t pathlen, char *err, size_t errlen)
{
    char base[WF_DUMP_PATH_MAX];
    char json_path[WF_DUMP_PATH_MAX + 8];
    char xml_path[WF_DUMP_PATH_MAX + 8];

    if (expand_pattern(pattern, summaries[rank].hostname, rank, base, sizeof(base)) != 0) {
        snprintf(err, errlen, "WEFT_TOPO_DUMP_FILE=%.200s is longer than %d bytes after expanding %%h, %%p and %%r",
                 pattern, WF_DUMP_PATH_MAX - 1);
        return -1;
    }
    snprintf(path, pathlen, "%s", base);
    snprintf(json_path, sizeof(json_path), "%s.json", base);
    snprintf(xml_path, sizeof(xml_path), "%s.xml", base);

    /* Without hwloc the rank map is still worth having; its hwloc_xml is then null. */
    char reason[256] = "";
    hwloc_topology_t topology = wf_topo_shared(reason, sizeof(reason));
    int xml_written = topology != NULL && write_xml(topology, xml_path, err, errlen) == 0;
    if (topology != NULL && !xml_written)
        return -1;
    return write_rank_map(json_path, xml_written ? xml_path : NULL, rank, map, summaries, err, errlen);
}
