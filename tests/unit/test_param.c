/*
 * Parameter registry: defaults, strict parsing of every type, config files and their precedence,
 * and that the secret never reaches a message.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "param.h"

static char temp_dir[] = "/tmp/weft-test-param-XXXXXX";

/* Remove every WEFT_* variable and point HOME at an empty folder, so only the test's settings apply. */
static void reset_environment(void)
{
    for (int id = 0; id < WF_PARAM_COUNT; id++)
        unsetenv(wf_param_def((wf_param_id_t)id)->name);
    setenv("HOME", temp_dir, 1);
}

static int setup(void **state)
{
    if (!mkdtemp(temp_dir))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char command[256];

    snprintf(command, sizeof command, "rm -rf '%s'", temp_dir);
    return system(command) == 0 ? 0 : -1;
}

/* Write text to a file in the temporary folder and return its path in path. */
static void write_file(const char *name, const char *text, char *path, size_t pathlen)
{
    snprintf(path, pathlen, "%s/%s", temp_dir, name);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    assert_int_equal(fputs(text, file) >= 0, 1);
    assert_int_equal(fclose(file), 0);
}

static void skip_if_system_config(void)
{
    if (access("/etc/weft.conf", F_OK) == 0)
        skip(); /* the machine's own config would change the expected values */
}

static const wf_param_def_t *def_of(wf_param_id_t id)
{
    return wf_param_def(id);
}

static void test_table_order_and_help(void **state)
{
    static const char *const names[WF_PARAM_COUNT] = {
        "WEFT_DEBUG",         "WEFT_DEBUG_SUBSYS", "WEFT_DEBUG_FILE",  "WEFT_CONF_FILE",
        "WEFT_TRANSPORT",     "WEFT_OFI_PROVIDER", "WEFT_SOCKET_IFNAME", "WEFT_ROOT",
        "WEFT_RANK",          "WEFT_SIZE",         "WEFT_JOB_KEY",     "WEFT_HOSTID",
        "WEFT_CHUNK_SIZE",    "WEFT_EAGER_LIMIT",  "WEFT_REDUCE_PRECISION", "WEFT_TIMEOUT",
        "WEFT_MR_CACHE_SIZE", "WEFT_MR_CACHE_MONITOR", "WEFT_PROGRESS_THREAD", "WEFT_IB_HCA",
        "WEFT_TOPO_DUMP_FILE", "WEFT_ALGO",        "WEFT_TUNING_FILE",   "WEFT_SHM_CMA", "WEFT_SCRATCH_KEEP",
        "WEFT_IB_GID_INDEX",  "WEFT_IB_TIMEOUT",   "WEFT_IB_RETRY_CNT", "WEFT_IB_TC",   "WEFT_IB_SL",
    };

    for (int id = 0; id < WF_PARAM_COUNT; id++) {
        const wf_param_def_t *def = def_of((wf_param_id_t)id);
        assert_string_equal(def->name, names[id]);
        assert_true(strlen(def->help) > 20);
        assert_int_equal(def->help[strlen(def->help) - 1], '.');
        assert_int_equal(def->secret, id == WF_PARAM_JOB_KEY);
    }
    assert_null(wf_param_def(WF_PARAM_COUNT));
}

static void test_defaults(void **state)
{
    char err[1024] = "";

    skip_if_system_config();
    reset_environment();
    assert_int_equal(wf_param_load(err, sizeof err), 0);

    for (int id = 0; id < WF_PARAM_COUNT; id++) {
        assert_int_equal(wf_param_source((wf_param_id_t)id), WF_PARAM_SOURCE_DEFAULT);
        assert_string_equal(wf_param_origin((wf_param_id_t)id), "default");
    }
    assert_string_equal(wf_param_str(WF_PARAM_DEBUG), "WARN");
    assert_int_equal(wf_param_enum(WF_PARAM_DEBUG), 2);
    assert_string_equal(wf_param_str(WF_PARAM_DEBUG_SUBSYS), "ALL");
    assert_string_equal(wf_param_str(WF_PARAM_DEBUG_FILE), "");
    assert_string_equal(wf_param_str(WF_PARAM_CONF_FILE), "");
    assert_string_equal(wf_param_str(WF_PARAM_TRANSPORT), "auto");
    assert_int_equal(wf_param_enum(WF_PARAM_TRANSPORT), 0);
    assert_string_equal(wf_param_str(WF_PARAM_OFI_PROVIDER), "");
    assert_string_equal(wf_param_str(WF_PARAM_SOCKET_IFNAME), "");
    assert_string_equal(wf_param_str(WF_PARAM_ROOT), "");
    assert_int_equal(wf_param_int(WF_PARAM_RANK), -1);
    assert_int_equal(wf_param_int(WF_PARAM_SIZE), -1);
    assert_string_equal(wf_param_str(WF_PARAM_JOB_KEY), "");
    assert_string_equal(wf_param_str(WF_PARAM_HOSTID), "");
    assert_int_equal(wf_param_int(WF_PARAM_CHUNK_SIZE), 524288);
    assert_int_equal(wf_param_int(WF_PARAM_EAGER_LIMIT), 32768);
    assert_string_equal(wf_param_str(WF_PARAM_REDUCE_PRECISION), "float32");
    assert_int_equal(wf_param_enum(WF_PARAM_REDUCE_PRECISION), 0);
    assert_int_equal(wf_param_int(WF_PARAM_TIMEOUT), 300);
    assert_int_equal(wf_param_int(WF_PARAM_MR_CACHE_SIZE), 1024);
    assert_string_equal(wf_param_str(WF_PARAM_MR_CACHE_MONITOR), "auto");
    assert_int_equal(wf_param_enum(WF_PARAM_MR_CACHE_MONITOR), 0);
    assert_string_equal(wf_param_str(WF_PARAM_IB_HCA), "");
    assert_string_equal(wf_param_str(WF_PARAM_TOPO_DUMP_FILE), "");
    assert_string_equal(wf_param_str(WF_PARAM_ALGO), "");
    assert_string_equal(wf_param_str(WF_PARAM_TUNING_FILE), "");
    assert_string_equal(wf_param_str(WF_PARAM_SHM_CMA), "auto");
    assert_int_equal(wf_param_enum(WF_PARAM_SHM_CMA), 0);
}

static void expect_number(wf_param_id_t id, const char *text, int64_t expected)
{
    char err[1024] = "";
    int64_t value = -12345;

    if (wf_param_parse_value(def_of(id), text, &value, NULL, err, sizeof err) != 0)
        fail_msg("%s rejected: %s", text, err);
    if (value != expected)
        fail_msg("%s=%s parsed as %lld, expected %lld", def_of(id)->name, text, (long long)value,
                 (long long)expected);
}

/* Expect text to be rejected with a message that contains both phrases. */
static void expect_rejected(wf_param_id_t id, const char *text, const char *phrase1, const char *phrase2)
{
    char err[1024] = "";
    int64_t value = -12345;
    int choice = -7;

    if (wf_param_parse_value(def_of(id), text, &value, &choice, err, sizeof err) == 0)
        fail_msg("%s=\"%s\" was accepted", def_of(id)->name, text);
    assert_int_equal(value, -12345);
    assert_int_equal(choice, -7);
    if (!strstr(err, phrase1) || (phrase2 && !strstr(err, phrase2)))
        fail_msg("message for \"%s\" lacks \"%s\"/\"%s\": %s", text, phrase1, phrase2 ? phrase2 : "", err);
}

static void test_size_suffixes(void **state)
{
    expect_number(WF_PARAM_CHUNK_SIZE, "4096", 4096);
    expect_number(WF_PARAM_CHUNK_SIZE, "4K", 4096);
    expect_number(WF_PARAM_CHUNK_SIZE, "512K", 524288);
    expect_number(WF_PARAM_CHUNK_SIZE, "512k", 524288);
    expect_number(WF_PARAM_CHUNK_SIZE, "1M", 1048576);
    expect_number(WF_PARAM_CHUNK_SIZE, "3m", 3145728);
    expect_number(WF_PARAM_CHUNK_SIZE, "1G", 1073741824);
    expect_number(WF_PARAM_CHUNK_SIZE, "1073741824", 1073741824);
    expect_number(WF_PARAM_CHUNK_SIZE, "0010K", 10240);
    expect_number(WF_PARAM_EAGER_LIMIT, "0", 0);
    expect_number(WF_PARAM_EAGER_LIMIT, "0K", 0);
    expect_number(WF_PARAM_EAGER_LIMIT, "1M", 1048576);
    expect_number(WF_PARAM_TIMEOUT, "86400", 86400);
    expect_number(WF_PARAM_TIMEOUT, "1", 1);
    expect_number(WF_PARAM_RANK, "-1", -1);
    expect_number(WF_PARAM_SIZE, "1048576", 1048576);
    expect_number(WF_PARAM_MR_CACHE_SIZE, "1000000", 1000000);
}

static void test_trailing_garbage_rejected(void **state)
{
    expect_rejected(WF_PARAM_CHUNK_SIZE, "12Q",
                    "WEFT_CHUNK_SIZE=12Q is not a size: use a number of bytes with an optional K, M or G suffix, "
                    "between 4096 and 1073741824",
                    NULL);
    expect_rejected(WF_PARAM_CHUNK_SIZE, "512KB", "not a size", NULL);
    expect_rejected(WF_PARAM_CHUNK_SIZE, "8192 ", "not a size", NULL);
    expect_rejected(WF_PARAM_CHUNK_SIZE, " 8192", "not a size", NULL);
    expect_rejected(WF_PARAM_CHUNK_SIZE, "1.5M", "not a size", NULL);
    expect_rejected(WF_PARAM_CHUNK_SIZE, "K", "not a size", NULL);
    expect_rejected(WF_PARAM_CHUNK_SIZE, "+8192", "not a size", NULL);
    expect_rejected(WF_PARAM_CHUNK_SIZE, "0x1000", "not a size", NULL);
    expect_rejected(WF_PARAM_CHUNK_SIZE, "", "not a size", NULL);
    expect_rejected(WF_PARAM_TIMEOUT, "30s", "WEFT_TIMEOUT=30s is not an integer",
                    "use a whole number between 1 and 86400");
    expect_rejected(WF_PARAM_TIMEOUT, "1K", "not an integer", NULL);
    expect_rejected(WF_PARAM_RANK, "--1", "not an integer", NULL);
}

static void test_negative_size_rejected(void **state)
{
    expect_rejected(WF_PARAM_CHUNK_SIZE, "-4096", "WEFT_CHUNK_SIZE=-4096 is not a size", NULL);
    expect_rejected(WF_PARAM_EAGER_LIMIT, "-1", "WEFT_EAGER_LIMIT=-1 is not a size", "between 0 and 1048576");
    expect_rejected(WF_PARAM_EAGER_LIMIT, "-0", "not a size", NULL);
}

static void test_out_of_range_rejected(void **state)
{
    expect_rejected(WF_PARAM_CHUNK_SIZE, "4095", "WEFT_CHUNK_SIZE=4095 is out of range", "between 4096 and 1073741824");
    expect_rejected(WF_PARAM_CHUNK_SIZE, "2G", "out of range", NULL);
    expect_rejected(WF_PARAM_CHUNK_SIZE, "1073741825", "out of range", NULL);
    expect_rejected(WF_PARAM_EAGER_LIMIT, "1025K", "out of range", NULL);
    expect_rejected(WF_PARAM_TIMEOUT, "0", "WEFT_TIMEOUT=0 is out of range", "between 1 and 86400");
    expect_rejected(WF_PARAM_TIMEOUT, "86401", "out of range", NULL);
    expect_rejected(WF_PARAM_RANK, "-2", "out of range", "between -1 and 1048575");
    expect_rejected(WF_PARAM_SIZE, "1048577", "out of range", NULL);
    expect_rejected(WF_PARAM_MR_CACHE_SIZE, "0", "out of range", "between 1 and 1000000");
}

static void test_overflow_rejected(void **state)
{
    expect_rejected(WF_PARAM_CHUNK_SIZE, "99999999999G", "WEFT_CHUNK_SIZE=99999999999G is out of range", NULL);
    expect_rejected(WF_PARAM_CHUNK_SIZE, "9223372036854775807K", "out of range", NULL);
    expect_rejected(WF_PARAM_CHUNK_SIZE, "8589934592G", "out of range", NULL);
    expect_rejected(WF_PARAM_CHUNK_SIZE, "99999999999999999999", "out of range", NULL);
    expect_rejected(WF_PARAM_TIMEOUT, "99999999999999999999", "out of range", NULL);
    expect_rejected(WF_PARAM_RANK, "-99999999999999999999", "out of range", NULL);
}

static void test_enum_values(void **state)
{
    char err[1024] = "";
    int choice = -1;

    static const struct {
        wf_param_id_t id;
        const char *text;
        int expected;
    } cases[] = {
        {WF_PARAM_DEBUG, "NONE", 0},    {WF_PARAM_DEBUG, "error", 1},
        {WF_PARAM_DEBUG, "Warn", 2},    {WF_PARAM_DEBUG, "info", 3},
        {WF_PARAM_DEBUG, "TRACE", 4},   {WF_PARAM_TRANSPORT, "OFI", 1}, {WF_PARAM_TRANSPORT, "Shm", 2},
        {WF_PARAM_SHM_CMA, "OFF", 1},
        {WF_PARAM_REDUCE_PRECISION, "Native", 1}, {WF_PARAM_MR_CACHE_MONITOR, "NONE", 2},
        {WF_PARAM_MR_CACHE_MONITOR, "patch", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        choice = -1;
        assert_int_equal(wf_param_parse_value(def_of(cases[i].id), cases[i].text, NULL, &choice, err, sizeof err), 0);
        assert_int_equal(choice, cases[i].expected);
    }

    expect_rejected(WF_PARAM_DEBUG, "LOUD", "WEFT_DEBUG=LOUD is not a valid choice",
                    "use one of NONE, ERROR, WARN, INFO, TRACE");
    expect_rejected(WF_PARAM_TRANSPORT, "rdma", "WEFT_TRANSPORT=rdma", "use one of auto, ofi, shm, verbs");
    expect_rejected(WF_PARAM_SHM_CMA, "on", "WEFT_SHM_CMA=on", "use one of auto, off");
    expect_rejected(WF_PARAM_REDUCE_PRECISION, "float16", "use one of float32, native", NULL);
    expect_rejected(WF_PARAM_MR_CACHE_MONITOR, "off", "use one of auto, patch, none", NULL);
    expect_rejected(WF_PARAM_DEBUG, "INFO ", "not a valid choice", NULL);
    expect_rejected(WF_PARAM_DEBUG, "", "not a valid choice", NULL);
}

static void test_enum_stored_canonical(void **state)
{
    char err[1024] = "";

    skip_if_system_config();
    reset_environment();
    setenv("WEFT_DEBUG", "trace", 1);
    setenv("WEFT_MR_CACHE_MONITOR", "None", 1);
    assert_int_equal(wf_param_load(err, sizeof err), 0);
    assert_string_equal(wf_param_str(WF_PARAM_DEBUG), "TRACE");
    assert_int_equal(wf_param_enum(WF_PARAM_DEBUG), 4);
    assert_string_equal(wf_param_str(WF_PARAM_MR_CACHE_MONITOR), "none");
    assert_int_equal(wf_param_source(WF_PARAM_DEBUG), WF_PARAM_SOURCE_ENV);
    assert_string_equal(wf_param_origin(WF_PARAM_DEBUG), "environment");
    reset_environment();
}

static void test_environment_over_file(void **state)
{
    char path[512];
    char err[1024] = "";

    write_file("env-over-file.conf",
               "# weft settings for the test\n"
               "\n"
               "  WEFT_CHUNK_SIZE = 1M   # trailing comment\n"
               "WEFT_TIMEOUT=60\n"
               "WEFT_TRANSPORT=ofi\n"
               "WEFT_EAGER_LIMIT=\n"
               "WEFT_OFI_PROVIDER=tcp;ofi_rxm\n",
               path, sizeof path);
    reset_environment();
    setenv("WEFT_CONF_FILE", path, 1);
    setenv("WEFT_TIMEOUT", "120", 1);
    setenv("WEFT_TRANSPORT", "", 1); /* empty: the file's value stays */
    assert_int_equal(wf_param_load(err, sizeof err), 0);

    assert_int_equal(wf_param_int(WF_PARAM_CHUNK_SIZE), 1048576);
    assert_int_equal(wf_param_source(WF_PARAM_CHUNK_SIZE), WF_PARAM_SOURCE_FILE);
    assert_string_equal(wf_param_origin(WF_PARAM_CHUNK_SIZE), path);
    assert_int_equal(wf_param_int(WF_PARAM_TIMEOUT), 120);
    assert_int_equal(wf_param_source(WF_PARAM_TIMEOUT), WF_PARAM_SOURCE_ENV);
    assert_string_equal(wf_param_str(WF_PARAM_TRANSPORT), "ofi");
    assert_int_equal(wf_param_source(WF_PARAM_TRANSPORT), WF_PARAM_SOURCE_FILE);
    assert_int_equal(wf_param_int(WF_PARAM_EAGER_LIMIT), 32768);
    assert_int_equal(wf_param_source(WF_PARAM_EAGER_LIMIT), WF_PARAM_SOURCE_DEFAULT);
    assert_string_equal(wf_param_str(WF_PARAM_OFI_PROVIDER), "tcp;ofi_rxm");
    assert_string_equal(wf_param_str(WF_PARAM_CONF_FILE), path);
    assert_int_equal(wf_param_source(WF_PARAM_CONF_FILE), WF_PARAM_SOURCE_ENV);
    assert_int_equal(wf_param_source(WF_PARAM_DEBUG), WF_PARAM_SOURCE_DEFAULT);
    reset_environment();
}

static void test_home_file_read(void **state)
{
    char path[512];
    char err[1024] = "";

    skip_if_system_config();
    write_file(".weft.conf", "WEFT_EAGER_LIMIT=1K\n", path, sizeof path);
    reset_environment();
    assert_int_equal(wf_param_load(err, sizeof err), 0);
    assert_int_equal(wf_param_int(WF_PARAM_EAGER_LIMIT), 1024);
    assert_int_equal(wf_param_source(WF_PARAM_EAGER_LIMIT), WF_PARAM_SOURCE_FILE);
    assert_string_equal(wf_param_origin(WF_PARAM_EAGER_LIMIT), path);

    /* WEFT_CONF_FILE replaces the home file instead of adding to it. */
    char other[512];
    write_file("other.conf", "WEFT_TIMEOUT=7\n", other, sizeof other);
    setenv("WEFT_CONF_FILE", other, 1);
    assert_int_equal(wf_param_load(err, sizeof err), 0);
    assert_int_equal(wf_param_int(WF_PARAM_EAGER_LIMIT), 32768);
    assert_int_equal(wf_param_int(WF_PARAM_TIMEOUT), 7);
    assert_int_equal(unlink(path), 0);
    reset_environment();
}

/* Load with WEFT_CONF_FILE pointing at a file holding text; expect failure naming both phrases. */
static void expect_file_error(const char *text, const char *phrase1, const char *phrase2)
{
    char path[512];
    char err[1024] = "";

    write_file("bad.conf", text, path, sizeof path);
    reset_environment();
    setenv("WEFT_CONF_FILE", path, 1);
    if (wf_param_load(err, sizeof err) == 0)
        fail_msg("file accepted: %s", text);
    if (!strstr(err, path) || !strstr(err, phrase1) || (phrase2 && !strstr(err, phrase2)))
        fail_msg("message lacks the path, \"%s\" or \"%s\": %s", phrase1, phrase2 ? phrase2 : "", err);
    reset_environment();
}

static void test_file_errors_name_line(void **state)
{
    expect_file_error("WEFT_TIMEOUT=60\n\nnot a setting\n", "line 3", "expected NAME=value");
    expect_file_error("# comment\nWEFT_CHUNKSIZE=1M\n", "line 2", "unknown parameter WEFT_CHUNKSIZE");
    expect_file_error("PATH=/usr/bin\n", "line 1", "unknown parameter PATH");
    expect_file_error("=5\n", "line 1", "expected NAME=value");
    expect_file_error("WEFT_TIMEOUT=abc\n", "WEFT_TIMEOUT=abc (from ", "line 1) is not an integer");
    expect_file_error("\n\nWEFT_CHUNK_SIZE=12Q\n", "line 3) is not a size", NULL);
    expect_file_error("WEFT_DEBUG=LOUD\n", "line 1", "use one of NONE, ERROR, WARN, INFO, TRACE");
    expect_file_error("WEFT_CONF_FILE=/tmp/x\n", "line 1", "cannot be set in a config file");
}

static void test_missing_conf_file(void **state)
{
    char path[512];
    char err[1024] = "";

    snprintf(path, sizeof path, "%s/does-not-exist.conf", temp_dir);
    reset_environment();
    setenv("WEFT_CONF_FILE", path, 1);
    assert_int_equal(wf_param_load(err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file or directory"));
    reset_environment();
}

static void test_failed_load_keeps_values(void **state)
{
    char err[1024] = "";

    skip_if_system_config();
    reset_environment();
    setenv("WEFT_TIMEOUT", "120", 1);
    assert_int_equal(wf_param_load(err, sizeof err), 0);
    setenv("WEFT_TIMEOUT", "2m", 1);
    assert_int_equal(wf_param_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "WEFT_TIMEOUT=2m (from the environment) is not an integer"));
    assert_int_equal(wf_param_int(WF_PARAM_TIMEOUT), 120);
    reset_environment();
}

static void test_debug_subsys_checked(void **state)
{
    char err[1024] = "";

    skip_if_system_config();
    reset_environment();
    setenv("WEFT_DEBUG_SUBSYS", "INIT,BOGUS", 1);
    assert_int_equal(wf_param_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "WEFT_DEBUG_SUBSYS=INIT,BOGUS (from the environment)"));
    assert_non_null(strstr(err, "BOGUS\""));
    setenv("WEFT_DEBUG_SUBSYS", "^net,coll", 1);
    assert_int_equal(wf_param_load(err, sizeof err), 0);
    assert_string_equal(wf_param_str(WF_PARAM_DEBUG_SUBSYS), "^net,coll");
    reset_environment();
}

static void test_ib_hca_checked(void **state)
{
    char err[1024] = "";

    skip_if_system_config();
    reset_environment();
    setenv("WEFT_IB_HCA", "mlx5_0,,mlx5_1", 1);
    assert_int_equal(wf_param_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "WEFT_IB_HCA=mlx5_0,,mlx5_1 (from the environment) is invalid"));
    assert_non_null(strstr(err, "entry 2 is empty"));
    setenv("WEFT_IB_HCA", "^=mlx5_0:1,mlx5_1", 1);
    assert_int_equal(wf_param_load(err, sizeof err), 0);
    assert_string_equal(wf_param_str(WF_PARAM_IB_HCA), "^=mlx5_0:1,mlx5_1");
    reset_environment();
}

static void test_secret_never_in_messages(void **state)
{
    const char *secret = "Zq7secretXw9";
    char path[512];
    char text[256];
    char err[8192] = "";

    /* A line whose '=' is missing is not echoed. */
    snprintf(text, sizeof text, "WEFT_TIMEOUT=60\nWEFT_JOB_KEY %s\n", secret);
    write_file("secret.conf", text, path, sizeof path);
    reset_environment();
    setenv("WEFT_CONF_FILE", path, 1);
    assert_int_equal(wf_param_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "line 2"));
    assert_null(strstr(err, secret));

    /* A key longer than allowed is reported by name and length only. */
    size_t long_length = 5000;
    char *long_key = malloc(long_length + 1);
    assert_non_null(long_key);
    memset(long_key, 'k', long_length);
    memcpy(long_key, secret, strlen(secret));
    long_key[long_length] = '\0';
    reset_environment();
    setenv("WEFT_JOB_KEY", long_key, 1);
    assert_int_equal(wf_param_load(err, sizeof err), -1);
    assert_non_null(strstr(err, "WEFT_JOB_KEY (from the environment) is too long: 5000 bytes"));
    assert_null(strstr(err, secret));
    assert_null(strstr(err, "kkkk"));
    assert_int_equal(wf_param_parse_value(def_of(WF_PARAM_JOB_KEY), long_key, NULL, NULL, err, sizeof err), -1);
    assert_null(strstr(err, secret));
    free(long_key);

    /* A valid key loads and is readable by the code that needs it. */
    setenv("WEFT_JOB_KEY", secret, 1);
    assert_int_equal(wf_param_load(err, sizeof err), 0);
    assert_string_equal(wf_param_str(WF_PARAM_JOB_KEY), secret);
    reset_environment();
}

static void test_hostid_length_limit(void **state)
{
    char hostid[200];

    memset(hostid, 'h', sizeof hostid - 1);
    hostid[95] = '\0';
    char err[1024] = "";
    assert_int_equal(wf_param_parse_value(def_of(WF_PARAM_HOSTID), hostid, NULL, NULL, err, sizeof err), 0);
    hostid[95] = 'h';
    hostid[96] = '\0';
    expect_rejected(WF_PARAM_HOSTID, hostid, "WEFT_HOSTID is too long: 96 bytes, at most 95 allowed", NULL);
}

/*
 * docs/env.md must list every variable with the table's default, in a row "| `NAME` | type |
 * `default` |" ("(empty)" for an empty default). The source tree is found through __FILE__.
 */
static void test_docs_match_defaults(void **state)
{
    char path[1024];
    snprintf(path, sizeof path, "%s", __FILE__);
    char *slash = strstr(path, "/tests/unit/");
    if (!slash)
        skip();
    snprintf(slash, sizeof path - (size_t)(slash - path), "/docs/env.md");
    FILE *file = fopen(path, "r");
    if (!file)
        skip();
    static char doc[65536];
    size_t length = fread(doc, 1, sizeof doc - 1, file);
    doc[length] = '\0';
    fclose(file);

    for (int id = 0; id < WF_PARAM_COUNT; id++) {
        const wf_param_def_t *def = def_of((wf_param_id_t)id);
        char row[128];
        snprintf(row, sizeof row, "| `%s` |", def->name);
        char *start = strstr(doc, row);
        if (!start)
            fail_msg("docs/env.md has no table row for %s", def->name);
        char *end = strchr(start, '\n');
        char cell[128];
        if (def->default_value[0])
            snprintf(cell, sizeof cell, "| `%s` |", def->default_value);
        else
            snprintf(cell, sizeof cell, "| (empty) |");
        if (!end || !strstr(start, cell) || strstr(start, cell) > end)
            fail_msg("docs/env.md row for %s lacks the default %s", def->name, cell);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_order_and_help),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_size_suffixes),
        cmocka_unit_test(test_trailing_garbage_rejected),
        cmocka_unit_test(test_negative_size_rejected),
        cmocka_unit_test(test_out_of_range_rejected),
        cmocka_unit_test(test_overflow_rejected),
        cmocka_unit_test(test_enum_values),
        cmocka_unit_test(test_enum_stored_canonical),
        cmocka_unit_test(test_environment_over_file),
        cmocka_unit_test(test_home_file_read),
        cmocka_unit_test(test_file_errors_name_line),
        cmocka_unit_test(test_missing_conf_file),
        cmocka_unit_test(test_failed_load_keeps_values),
        cmocka_unit_test(test_debug_subsys_checked),
        cmocka_unit_test(test_ib_hca_checked),
        cmocka_unit_test(test_secret_never_in_messages),
        cmocka_unit_test(test_hostid_length_limit),
        cmocka_unit_test(test_docs_match_defaults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
