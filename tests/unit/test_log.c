/*
 * Logging: subsystem list parsing, the defaults before init, and lines written to WEFT_DEBUG_FILE
 * with the expected prefix, filtering and errno preserved.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "param.h"

static void expect_mask(const char *text, unsigned expected)
{
    char err[512] = "";
    unsigned mask = 0x12345;

    if (wf_log_parse_subsys(text, &mask, err, sizeof err) != 0)
        fail_msg("\"%s\" rejected: %s", text, err);
    if (mask != expected)
        fail_msg("\"%s\" parsed as 0x%x, expected 0x%x", text, mask, expected);
}

static void expect_subsys_rejected(const char *text, const char *phrase)
{
    char err[512] = "";
    unsigned mask = 0x12345;

    if (wf_log_parse_subsys(text, &mask, err, sizeof err) == 0)
        fail_msg("\"%s\" accepted as 0x%x", text, mask);
    assert_int_equal(mask, 0x12345);
    if (!strstr(err, phrase))
        fail_msg("message for \"%s\" lacks \"%s\": %s", text, phrase, err);
    assert_non_null(strstr(err, "INIT, COLL, NET, TOPO, ALLOC, TUNE, ENV, BOOT or ALL"));
}

static void test_defaults_before_init(void **state)
{
    assert_int_equal(wf_log_level, WF_LOG_WARN);
    assert_int_equal(wf_log_mask, 0xffu);
}

static void test_subsys_names(void **state)
{
    expect_mask("INIT", 0x01);
    expect_mask("COLL", 0x02);
    expect_mask("NET", 0x04);
    expect_mask("TOPO", 0x08);
    expect_mask("ALLOC", 0x10);
    expect_mask("TUNE", 0x20);
    expect_mask("ENV", 0x40);
    expect_mask("BOOT", 0x80);
    expect_mask("init,coll", 0x03);
    expect_mask(" Net , TOPO ", 0x0c);
    expect_mask("ENV,BOOT,ENV", 0xc0);
}

static void test_subsys_all(void **state)
{
    expect_mask("ALL", 0xff);
    expect_mask("all", 0xff);
    expect_mask("", 0xff);
    expect_mask("INIT,ALL", 0xff);
}

static void test_subsys_negation(void **state)
{
    expect_mask("^COLL", 0xfd);
    expect_mask("^INIT,NET", 0xfa);
    expect_mask(" ^ boot", 0x7f);
    expect_mask("^ALL", 0x00);
}

static void test_subsys_unknown_rejected(void **state)
{
    expect_subsys_rejected("INIT,FOO", "unknown subsystem \"FOO\"");
    expect_subsys_rejected("NETWORK", "unknown subsystem \"NETWORK\"");
    expect_subsys_rejected("INIT^COLL", "unknown subsystem \"INIT^COLL\"");
    expect_subsys_rejected("COLL,^INIT", "unknown subsystem \"^INIT\"");
    expect_subsys_rejected("^", "empty subsystem name");
    expect_subsys_rejected("INIT,", "empty subsystem name");
    expect_subsys_rejected("INIT,,COLL", "empty subsystem name");
}

static char *read_whole_file(const char *path)
{
    FILE *file = fopen(path, "r");
    if (!file)
        fail_msg("log file %s was not created", path);
    static char text[16384];
    size_t length = fread(text, 1, sizeof text - 1, file);
    text[length] = '\0';
    fclose(file);
    return text;
}

static void test_line_goes_to_file(void **state)
{
    char dir[] = "/tmp/weft-test-log-XXXXXX";
    char pattern[256];
    char conf[256];
    char path[256];
    char err[1024] = "";

    assert_non_null(mkdtemp(dir));
    snprintf(conf, sizeof conf, "%s/empty.conf", dir);
    FILE *empty = fopen(conf, "w");
    assert_non_null(empty);
    fclose(empty);

    snprintf(pattern, sizeof pattern, "%s/log.%%p.txt", dir);
    setenv("WEFT_CONF_FILE", conf, 1);
    setenv("WEFT_DEBUG_FILE", pattern, 1);
    setenv("WEFT_DEBUG", "info", 1);
    setenv("WEFT_DEBUG_SUBSYS", "COLL,ENV", 1);
    setenv("WEFT_JOB_KEY", "Hk4secretPq", 1);
    assert_int_equal(wf_param_load(err, sizeof err), 0);
    wf_log_init();
    assert_int_equal(wf_log_level, WF_LOG_INFO);
    assert_int_equal(wf_log_mask, WF_SUB_COLL | WF_SUB_ENV);

    wf_log_set_rank(3);
    WF_INFO(WF_SUB_COLL, "hello %d", 42);
    WF_TRACE(WF_SUB_COLL, "hidden by level");
    WF_INFO(WF_SUB_NET, "hidden by subsystem");
    errno = EAGAIN;
    WF_WARN(WF_SUB_COLL, "errno survives");
    assert_int_equal(errno, EAGAIN);
    wf_log_set_rank(-1);
    WF_ERROR(WF_SUB_ENV, "no rank yet");
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    WF_INFO(WF_SUB_COLL, "%s", big);
    wf_param_log_overrides();

    snprintf(path, sizeof path, "%s/log.%d.txt", dir, (int)getpid());
    const char *text = read_whole_file(path);

    char host[256];
    assert_int_equal(gethostname(host, sizeof host), 0);
    char expected[512];
    /* In the main thread the thread id equals the process id. */
    snprintf(expected, sizeof expected, "%s:%d:%d [3] weft INFO COLL test_log.c:", host, (int)getpid(),
             (int)getpid());
    assert_non_null(strstr(text, expected));
    assert_non_null(strstr(text, "hello 42\n"));
    snprintf(expected, sizeof expected, "%s:%d:%d [-] weft ERROR ENV test_log.c:", host, (int)getpid(),
             (int)getpid());
    assert_non_null(strstr(text, expected));
    assert_non_null(strstr(text, " WARN COLL "));
    assert_non_null(strstr(text, "errno survives\n"));
    assert_null(strstr(text, "hidden"));
    assert_non_null(strstr(text, "WEFT_DEBUG=INFO (from the environment)\n"));
    assert_non_null(strstr(text, "WEFT_JOB_KEY=(set) (from the environment)\n"));
    assert_null(strstr(text, "Hk4secretPq"));

    /* The long message is cut to one line of 2048 bytes that ends in "...". */
    const char *cut = strstr(text, "xxx...\n");
    assert_non_null(cut);
    const char *line_start = cut;
    while (line_start > text && line_start[-1] != '\n')
        line_start--;
    assert_int_equal(cut + strlen("xxx...\n") - line_start, 2048);

    /* Four messages (one cut) plus the overrides of CONF_FILE, DEBUG_FILE, DEBUG, DEBUG_SUBSYS and JOB_KEY. */
    int lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 9);

    /* A second init reopens nothing: the pattern changes, the destination does not. */
    setenv("WEFT_DEBUG_FILE", "/nonexistent-dir/never.log", 1);
    assert_int_equal(wf_param_load(err, sizeof err), 0);
    wf_log_init();
    WF_INFO(WF_SUB_COLL, "after reinit");
    text = read_whole_file(path);
    assert_non_null(strstr(text, "after reinit\n"));

    unlink(path);
    unlink(conf);
    rmdir(dir);
    unsetenv("WEFT_CONF_FILE");
    unsetenv("WEFT_DEBUG_FILE");
    unsetenv("WEFT_DEBUG");
    unsetenv("WEFT_DEBUG_SUBSYS");
    unsetenv("WEFT_JOB_KEY");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_before_init),
        cmocka_unit_test(test_subsys_names),
        cmocka_unit_test(test_subsys_all),
        cmocka_unit_test(test_subsys_negation),
        cmocka_unit_test(test_subsys_unknown_rejected),
        cmocka_unit_test(test_line_goes_to_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
