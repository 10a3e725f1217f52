/* The chaos broker: stdout's output plus failures on demand, and the
 * ordering rule of broker.h (later events of a failed key are held back
 * as "not attempted", and only those). */
#include "broker_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chaos_config.h"
#include "options.h"
#include "stdout_config.h"

typedef struct fixture {
    const obx_plugin *plugin;
    char *dir;
    char path[4096];
    chb_config conf;
} fixture;

static char *one_type[] = {"Poison"};
static char *flaky_type[] = {"Flaky"};

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->plugin = obx_test_plugin("broker", "chaos");
    f->dir = obx_test_tmpdir();
    snprintf(f->path, sizeof f->path, "%s/out.jsonl", f->dir);
    f->conf.out.output = f->path;
    f->conf.flaky_times = 2;
    f->conf.seed = 1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    obx_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static const obx_broker_ops *ops(fixture *f)
{
    return obx_tb_ops(f->plugin);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The event ids written to the output, in order, joined by spaces. */
static char *written_ids(fixture *f)
{
    char *buf = obx_tb_slurp(f->path, NULL);
    char *lines[1024];
    size_t n = obx_tb_lines(buf, lines, 1024);
    char *ids = calloc(1, 16 * 1024);
    for (size_t i = 0; i < n; i++) {
        json_t *o = obx_tb_parse(lines[i]);
        if (i)
            strcat(ids, " ");
        strcat(ids, json_string_value(json_object_get(o, "event_id")));
        json_decref(o);
    }
    free(buf);
    return ids;
}

static void assert_written(fixture *f, const char *want)
{
    char *ids = written_ids(f);
    assert_string_equal(ids, want);
    free(ids);
}

static void test_descriptor(void **state)
{
    fixture *f = *state;
    const obx_plugin *p = f->plugin;
    assert_string_equal(p->name, "chaos");
    assert_int_equal(p->config_size, sizeof(chb_config));
    static const struct {
        const char *name, *def;
        obx_opt_type type;
        size_t off;
    } want[] = {
        {"output", "-", OBX_OPT_STRING, offsetof(chb_config, out.output)},
        {"pretty", "false", OBX_OPT_BOOL, offsetof(chb_config, out.pretty)},
        {"fsync", "false", OBX_OPT_BOOL, offsetof(chb_config, out.fsync)},
        {"permanent_types", NULL, OBX_OPT_LIST,
         offsetof(chb_config, permanent_types)},
        {"flaky_types", NULL, OBX_OPT_LIST, offsetof(chb_config, flaky_types)},
        {"flaky_times", "2", OBX_OPT_INT, offsetof(chb_config, flaky_times)},
        {"down_for", "0s", OBX_OPT_DURATION, offsetof(chb_config, down_for_ms)},
        {"down_while_file", NULL, OBX_OPT_STRING,
         offsetof(chb_config, down_while_file)},
        {"fail_percent", "0", OBX_OPT_INT, offsetof(chb_config, fail_percent)},
        {"seed", "1", OBX_OPT_INT, offsetof(chb_config, seed)},
        {"delay", "0s", OBX_OPT_DURATION, offsetof(chb_config, delay_ms)},
    };
    size_t n = sizeof want / sizeof want[0], i = 0;
    for (; p->options[i].name; i++) {
        assert_true(i < n);
        assert_string_equal(p->options[i].name, want[i].name);
        assert_int_equal(p->options[i].type, want[i].type);
        assert_int_equal(p->options[i].offset, want[i].off);
        if (want[i].def)
            assert_string_equal(p->options[i].def, want[i].def);
        else
            assert_null(p->options[i].def);
    }
    assert_int_equal(i, n);
    assert_int_equal(p->options[8].min, 0);
    assert_int_equal(p->options[8].max, 100);
    assert_non_null(obx_tb_ops(p)->health);
}

/* Without failures configured it writes exactly what stdout writes. */
static void test_same_output_as_stdout(void **state)
{
    fixture *f = *state;
    static const obx_header hdrs[] = {{"h", "v\"\n"}};
    obx_event ev[3] = {obx_tb_event("a", "k1", "T"),
                       obx_tb_event("b", "k2", "T"),
                       obx_tb_event("c", NULL, "U")};
    ev[1].headers = hdrs;
    ev[1].n_headers = 1;
    ev[2].payload = "not json \xff";
    ev[2].payload_len = strlen(ev[2].payload);
    obx_result res[3];
    void *inst = obx_tb_open(f->plugin, &f->conf);
    assert_int_equal(obx_tb_publish(f->plugin, inst, ev, 3, res), OBX_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res[i].status, OBX_OK);
        assert_string_equal(res[i].errstr, "");
    }
    assert_int_equal(ops(f)->health(inst, res[0].errstr, OBX_ERRSTR_LEN),
                     OBX_OK);
    ops(f)->close(inst);

    const obx_plugin *sp = obx_test_plugin("broker", "stdout");
    char spath[4200];
    snprintf(spath, sizeof spath, "%s/stdout.jsonl", f->dir);
    stdout_config sconf = {.out = {.output = spath}};
    inst = obx_tb_open(sp, &sconf);
    assert_int_equal(obx_tb_publish(sp, inst, ev, 3, res), OBX_OK);
    obx_tb_ops(sp)->close(inst);

    char *a = obx_tb_slurp(f->path, NULL), *b = obx_tb_slurp(spath, NULL);
    assert_string_equal(a, b);
    free(a);
    free(b);
    assert_written(f, "a b c");
}

static void test_permanent_types(void **state)
{
    fixture *f = *state;
    f->conf.permanent_types = (obx_list){one_type, 1};
    obx_event ev[3] = {obx_tb_event("e1", "a", "Good"),
                       obx_tb_event("e2", "b", "Poison"),
                       obx_tb_event("e3", "c", "Good")};
    obx_result res[3];
    void *inst = obx_tb_open(f->plugin, &f->conf);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(obx_tb_publish(f->plugin, inst, ev, 3, res), OBX_OK);
        assert_int_equal(res[0].status, OBX_OK);
        assert_int_equal(res[1].status, OBX_PERMANENT);
        assert_string_equal(res[1].errstr,
                            "chaos: permanent failure for event type Poison");
        assert_int_equal(res[2].status, OBX_OK);
    }
    ops(f)->close(inst);
    assert_written(f, "e1 e3 e1 e3 e1 e3");
}

/* Each flaky event fails exactly flaky_times times (counted per event id),
 * then succeeds, and stays succeeded. */
static void test_flaky_types(void **state)
{
    fixture *f = *state;
    f->conf.flaky_types = (obx_list){flaky_type, 1};
    f->conf.flaky_times = 3;
    obx_event ev[3] = {obx_tb_event("f1", "a", "Flaky"),
                       obx_tb_event("f2", "b", "Flaky"),
                       obx_tb_event("g", "c", "Good")};
    obx_result res[3];
    void *inst = obx_tb_open(f->plugin, &f->conf);
    for (int round = 1; round <= 5; round++) {
        assert_int_equal(obx_tb_publish(f->plugin, inst, ev, 3, res), OBX_OK);
        for (int i = 0; i < 2; i++) {
            if (round <= 3) {
                char want[128];
                snprintf(want, sizeof want,
                         "chaos: flaky failure %d of 3 for event type Flaky",
                         round);
                assert_int_equal(res[i].status, OBX_RETRY);
                assert_string_equal(res[i].errstr, want);
            } else {
                assert_int_equal(res[i].status, OBX_OK);
            }
        }
        assert_int_equal(res[2].status, OBX_OK);
    }
    /* A new flaky event starts its own count. */
    obx_event late = obx_tb_event("f3", "d", "Flaky");
    assert_int_equal(obx_tb_publish(f->plugin, inst, &late, 1, res), OBX_OK);
    assert_int_equal(res[0].status, OBX_RETRY);
    assert_non_null(strstr(res[0].errstr, "1 of 3"));
    ops(f)->close(inst);
    assert_written(f, "g g g f1 f2 g f1 f2 g");
}

static void test_flaky_times_zero_disables(void **state)
{
    fixture *f = *state;
    f->conf.flaky_types = (obx_list){flaky_type, 1};
    f->conf.flaky_times = 0;
    obx_event ev = obx_tb_event("f1", "a", "Flaky");
    obx_result res[1];
    void *inst = obx_tb_open(f->plugin, &f->conf);
    assert_int_equal(obx_tb_publish(f->plugin, inst, &ev, 1, res), OBX_OK);
    assert_int_equal(res[0].status, OBX_OK);
    ops(f)->close(inst);
}

static void test_down_for(void **state)
{
    fixture *f = *state;
    f->conf.down_for_ms = 300;
    int64_t t0 = now_ms();
    void *inst = obx_tb_open(f->plugin, &f->conf);
    obx_event ev[2] = {obx_tb_event("a", "k", "T"),
                       obx_tb_event("b", "j", "T")};
    obx_result res[2];
    char err[OBX_ERRSTR_LEN];
    assert_int_equal(obx_tb_publish(f->plugin, inst, ev, 2, res),
                     OBX_UNAVAILABLE);
    assert_non_null(strstr(res[0].errstr, "chaos: broker down for 300 ms"));
    assert_int_equal(ops(f)->health(inst, err, sizeof err), OBX_UNAVAILABLE);
    assert_non_null(strstr(err, "down for 300 ms"));
    assert_true(now_ms() - t0 < 300); /* else the asserts above were late */
    usleep(150 * 1000);
    assert_int_equal(ops(f)->health(inst, err, sizeof err), OBX_UNAVAILABLE);
    while (now_ms() - t0 < 320)
        usleep(10 * 1000);
    assert_int_equal(ops(f)->health(inst, err, sizeof err), OBX_OK);
    assert_int_equal(obx_tb_publish(f->plugin, inst, ev, 2, res), OBX_OK);
    assert_int_equal(res[0].status, OBX_OK);
    assert_int_equal(res[1].status, OBX_OK);
    ops(f)->close(inst);
    assert_written(f, "a b");
}

static void touch(const char *path)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
}

static void test_down_while_file(void **state)
{
    fixture *f = *state;
    char flag[4200];
    snprintf(flag, sizeof flag, "%s/outage", f->dir);
    f->conf.down_while_file = flag;
    void *inst = obx_tb_open(f->plugin, &f->conf);
    obx_event ev = obx_tb_event("a", "k", "T");
    obx_result res[1];
    char err[OBX_ERRSTR_LEN];
    for (int round = 0; round < 2; round++) {
        assert_int_equal(obx_tb_publish(f->plugin, inst, &ev, 1, res), OBX_OK);
        assert_int_equal(ops(f)->health(inst, err, sizeof err), OBX_OK);
        touch(flag);
        assert_int_equal(obx_tb_publish(f->plugin, inst, &ev, 1, res),
                         OBX_UNAVAILABLE);
        assert_non_null(strstr(res[0].errstr, "while"));
        assert_non_null(strstr(res[0].errstr, flag));
        assert_int_equal(ops(f)->health(inst, err, sizeof err),
                         OBX_UNAVAILABLE);
        unlink(flag);
    }
    ops(f)->close(inst);
    assert_written(f, "a a");
}

enum { RAND_N = 20000, RAND_BATCH = 500 };

/* Publish RAND_N events (distinct keys) in batches; statuses go to out. */
static size_t run_random(fixture *f, obx_status *out)
{
    static char ids[RAND_N][16];
    obx_event *evs = calloc(RAND_BATCH, sizeof *evs);
    obx_result *res = calloc(RAND_BATCH, sizeof *res);
    f->conf.out.output = "/dev/null";
    void *inst = obx_tb_open(f->plugin, &f->conf);
    size_t failed = 0;
    for (size_t b = 0; b < RAND_N; b += RAND_BATCH) {
        for (size_t i = 0; i < RAND_BATCH; i++) {
            snprintf(ids[b + i], sizeof ids[b + i], "r%zu", b + i);
            evs[i] = obx_tb_event(ids[b + i], ids[b + i], "T");
        }
        assert_int_equal(obx_tb_publish(f->plugin, inst, evs, RAND_BATCH, res),
                         OBX_OK);
        for (size_t i = 0; i < RAND_BATCH; i++) {
            out[b + i] = res[i].status;
            if (res[i].status != OBX_OK) {
                assert_int_equal(res[i].status, OBX_RETRY);
                assert_string_equal(res[i].errstr,
                                    "chaos: random failure (fail_percent 30)");
                failed++;
            }
        }
    }
    ops(f)->close(inst);
    free(evs);
    free(res);
    return failed;
}

static void test_fail_percent(void **state)
{
    fixture *f = *state;
    obx_status *a = calloc(RAND_N, sizeof *a), *b = calloc(RAND_N, sizeof *b);
    f->conf.fail_percent = 30;
    f->conf.seed = 42;
    size_t fa = run_random(f, a);
    assert_in_range(fa, RAND_N * 27 / 100, RAND_N * 33 / 100);
    size_t fb = run_random(f, b);
    assert_int_equal(fa, fb);
    assert_memory_equal(a, b, RAND_N * sizeof *a); /* same seed, same fate */
    f->conf.seed = 43;
    run_random(f, b);
    assert_true(memcmp(a, b, RAND_N * sizeof *a) != 0);
    free(a);
    free(b);
}

static void test_fail_percent_bounds(void **state)
{
    fixture *f = *state;
    obx_event ev[50];
    char ids[50][8];
    for (int i = 0; i < 50; i++) {
        snprintf(ids[i], sizeof ids[i], "x%d", i);
        ev[i] = obx_tb_event(ids[i], ids[i], "T");
    }
    obx_result res[50];
    int64_t pcts[] = {0, 100};
    for (int p = 0; p < 2; p++) {
        f->conf.fail_percent = pcts[p];
        void *inst = obx_tb_open(f->plugin, &f->conf);
        assert_int_equal(obx_tb_publish(f->plugin, inst, ev, 50, res), OBX_OK);
        for (int i = 0; i < 50; i++)
            assert_int_equal(res[i].status, p == 0 ? OBX_OK : OBX_RETRY);
        ops(f)->close(inst);
    }
}

/* A failed event holds back the later events of its key in the same call
 * ("not attempted", not written), and only of its key. */
static void test_not_attempted(void **state)
{
    fixture *f = *state;
    f->conf.permanent_types = (obx_list){one_type, 1};
    obx_event ev[8] = {
        obx_tb_event("0", "a", "Good"), obx_tb_event("1", "a", "Poison"),
        obx_tb_event("2", "b", "Good"), obx_tb_event("3", "a", "Good"),
        obx_tb_event("4", "c", "Good"), obx_tb_event("5", "a", "Poison"),
        obx_tb_event("6", "b", "Good"), obx_tb_event("7", NULL, "Good"),
    };
    obx_status want[8] = {OBX_OK, OBX_PERMANENT, OBX_OK, OBX_RETRY,
                          OBX_OK, OBX_RETRY,     OBX_OK, OBX_OK};
    obx_result res[8];
    void *inst = obx_tb_open(f->plugin, &f->conf);
    assert_int_equal(obx_tb_publish(f->plugin, inst, ev, 8, res), OBX_OK);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(res[i].status, want[i]);
        if (i == 3 || i == 5)
            assert_string_equal(res[i].errstr, "not attempted");
    }
    /* The next call starts clean: key a flows again. */
    assert_int_equal(obx_tb_publish(f->plugin, inst, &ev[3], 1, res), OBX_OK);
    assert_int_equal(res[0].status, OBX_OK);
    ops(f)->close(inst);
    assert_written(f, "0 2 4 6 7 3");
}

/* Events without a key are not ordered, so a keyless failure holds back
 * nothing. */
static void test_null_keys_not_held(void **state)
{
    fixture *f = *state;
    f->conf.permanent_types = (obx_list){one_type, 1};
    obx_event ev[2] = {obx_tb_event("p", NULL, "Poison"),
                       obx_tb_event("g", NULL, "Good")};
    obx_result res[2];
    void *inst = obx_tb_open(f->plugin, &f->conf);
    assert_int_equal(obx_tb_publish(f->plugin, inst, ev, 2, res), OBX_OK);
    assert_int_equal(res[0].status, OBX_PERMANENT);
    assert_int_equal(res[1].status, OBX_OK);
    ops(f)->close(inst);
}

/* A held-back event was not attempted: its own flaky count is untouched. */
static void test_held_back_flaky_not_counted(void **state)
{
    fixture *f = *state;
    f->conf.flaky_types = (obx_list){flaky_type, 1};
    f->conf.flaky_times = 1;
    obx_event ev[3] = {obx_tb_event("f1", "a", "Flaky"),
                       obx_tb_event("f2", "a", "Flaky"),
                       obx_tb_event("g", "b", "Good")};
    obx_result res[3];
    void *inst = obx_tb_open(f->plugin, &f->conf);
    assert_int_equal(obx_tb_publish(f->plugin, inst, ev, 3, res), OBX_OK);
    assert_int_equal(res[0].status, OBX_RETRY);
    assert_non_null(strstr(res[0].errstr, "flaky failure 1 of 1"));
    assert_int_equal(res[1].status, OBX_RETRY);
    assert_string_equal(res[1].errstr, "not attempted");
    assert_int_equal(res[2].status, OBX_OK);

    assert_int_equal(obx_tb_publish(f->plugin, inst, ev, 2, res), OBX_OK);
    assert_int_equal(res[0].status, OBX_OK);
    assert_int_equal(res[1].status, OBX_RETRY);
    assert_non_null(strstr(res[1].errstr, "flaky failure 1 of 1"));

    assert_int_equal(obx_tb_publish(f->plugin, inst, &ev[1], 1, res), OBX_OK);
    assert_int_equal(res[0].status, OBX_OK);
    ops(f)->close(inst);
    assert_written(f, "g f1 f2");
}

static void test_delay(void **state)
{
    fixture *f = *state;
    f->conf.delay_ms = 120;
    void *inst = obx_tb_open(f->plugin, &f->conf);
    obx_event ev = obx_tb_event("slow", "k", "T");
    obx_result res[1];
    obx_event *pev = &ev;
    int64_t t0 = now_ms();
    assert_int_equal(ops(f)->publish(inst, &pev, 1, res, 5000), OBX_OK);
    assert_true(now_ms() - t0 >= 120);
    assert_int_equal(res[0].status, OBX_OK);

    /* Slower than the caller's timeout: waits the timeout, fails it all. */
    t0 = now_ms();
    assert_int_equal(ops(f)->publish(inst, &pev, 1, res, 50), OBX_OK);
    int64_t took = now_ms() - t0;
    assert_true(took >= 50 && took < 120);
    assert_int_equal(res[0].status, OBX_RETRY);
    assert_string_equal(res[0].errstr,
                        "chaos: timed out after 50 ms (delay 120 ms)");
    ops(f)->close(inst);
    assert_written(f, "slow");
}

static void test_options_through_core(void **state)
{
    fixture *f = *state;
    obx_optable t = {f->plugin->options, f->plugin->option_size};
    chb_config c;
    char err[512];
    if (obx_tb_fill(f->plugin, NULL, 0, &c, err, sizeof err) != 0)
        fail_msg("defaults: %s", err);
    assert_string_equal(c.out.output, "-");
    assert_false(c.out.pretty);
    assert_false(c.out.fsync);
    assert_int_equal(c.permanent_types.n, 0);
    assert_int_equal(c.flaky_times, 2);
    assert_int_equal(c.down_for_ms, 0);
    assert_null(c.down_while_file);
    assert_int_equal(c.fail_percent, 0);
    assert_int_equal(c.seed, 1);
    assert_int_equal(c.delay_ms, 0);
    obx_options_free(t, &c);

    static const char *const kv[] = {
        "broker.output",
        "/tmp/x.jsonl",
        "broker.pretty",
        "yes",
        "broker.permanent_types",
        "A, B",
        "broker.flaky_types",
        "F",
        "broker.flaky_times",
        "5",
        "broker.down_for",
        "2s",
        "broker.down_while_file",
        "/tmp/down",
        "broker.fail_percent",
        "10",
        "broker.seed",
        "7",
        "broker.delay",
        "250ms",
    };
    if (obx_tb_fill(f->plugin, kv, 10, &c, err, sizeof err) != 0)
        fail_msg("values: %s", err);
    assert_string_equal(c.out.output, "/tmp/x.jsonl");
    assert_true(c.out.pretty);
    assert_int_equal(c.permanent_types.n, 2);
    assert_string_equal(c.permanent_types.items[1], "B");
    assert_string_equal(c.flaky_types.items[0], "F");
    assert_int_equal(c.flaky_times, 5);
    assert_int_equal(c.down_for_ms, 2000);
    assert_string_equal(c.down_while_file, "/tmp/down");
    assert_int_equal(c.fail_percent, 10);
    assert_int_equal(c.seed, 7);
    assert_int_equal(c.delay_ms, 250);
    obx_options_free(t, &c);

    static const char *const bad[] = {"broker.fail_percent", "101"};
    assert_int_not_equal(obx_tb_fill(f->plugin, bad, 1, &c, err, sizeof err),
                         0);
    assert_non_null(strstr(err, "fail_percent"));
}

static void test_config_errors(void **state)
{
    fixture *f = *state;
    char err[256];
    void *inst = NULL;
    f->conf.fail_percent = 101;
    assert_int_equal(ops(f)->open(obx_test_host(), &f->conf, &inst, err, 256),
                     OBX_CONFIG);
    assert_non_null(strstr(err, "fail_percent"));
    assert_int_equal(
        ops(f)->validate(obx_test_host(), &f->conf, false, err, sizeof err),
        OBX_CONFIG);
    f->conf.fail_percent = 0;
    f->conf.flaky_times = -1;
    assert_int_equal(ops(f)->open(obx_test_host(), &f->conf, &inst, err, 256),
                     OBX_CONFIG);
    f->conf.flaky_times = 2;
    f->conf.out.output = "/nonexistent-obx-dir/x";
    assert_int_equal(ops(f)->open(obx_test_host(), &f->conf, &inst, err, 256),
                     OBX_CONFIG);
    assert_null(inst);
}

static void test_io_error(void **state)
{
    fixture *f = *state;
    f->conf.out.output = "/dev/full";
    f->conf.permanent_types = (obx_list){one_type, 1};
    void *inst = obx_tb_open(f->plugin, &f->conf);
    obx_event ev[2] = {obx_tb_event("a", "k", "Poison"),
                       obx_tb_event("b", "j", "T")};
    obx_result res[2];
    assert_int_equal(obx_tb_publish(f->plugin, inst, ev, 2, res),
                     OBX_UNAVAILABLE);
    assert_non_null(strstr(res[1].errstr, "No space left on device"));
    ops(f)->close(inst);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_descriptor),
        T(test_same_output_as_stdout),
        T(test_permanent_types),
        T(test_flaky_types),
        T(test_flaky_times_zero_disables),
        T(test_down_for),
        T(test_down_while_file),
        T(test_fail_percent),
        T(test_fail_percent_bounds),
        T(test_not_attempted),
        T(test_null_keys_not_held),
        T(test_held_back_flaky_not_counted),
        T(test_delay),
        T(test_options_through_core),
        T(test_config_errors),
        T(test_io_error),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
