/* The stdout broker, loaded as the core loads it: JSON lines with every
 * field right, payload embedding, output options, I/O errors. */
#include "broker_test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "options.h"
#include "stdout_config.h"

typedef struct fixture {
    const obx_plugin *plugin;
    char *dir;
    char path[4096];
    stdout_config conf;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->plugin = obx_test_plugin("broker", "stdout");
    f->dir = obx_test_tmpdir();
    snprintf(f->path, sizeof f->path, "%s/out.jsonl", f->dir);
    f->conf.out.output = f->path;
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

/* Open, publish events[0..n) in one call (which must succeed), close. */
static void publish_all(fixture *f, obx_event *events, size_t n)
{
    void *inst = obx_tb_open(f->plugin, &f->conf);
    obx_result *res = calloc(n ? n : 1, sizeof *res);
    assert_int_equal(obx_tb_publish(f->plugin, inst, events, n, res), OBX_OK);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(res[i].status, OBX_OK);
        assert_string_equal(res[i].errstr, "");
    }
    obx_tb_ops(f->plugin)->close(inst);
    free(res);
}

/* The file's lines, each parsed; asserts there are exactly n. */
static json_t **read_objects(fixture *f, size_t n)
{
    char *buf = obx_tb_slurp(f->path, NULL);
    char **lines = calloc(n + 1, sizeof *lines);
    assert_int_equal(obx_tb_lines(buf, lines, n + 1), n);
    json_t **objs = calloc(n ? n : 1, sizeof *objs);
    for (size_t i = 0; i < n; i++)
        objs[i] = obx_tb_parse(lines[i]);
    free(lines);
    free(buf);
    return objs;
}

static void free_objects(json_t **objs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(objs[i]);
    free(objs);
}

/* Publish one event and return its parsed line. */
static json_t *roundtrip(fixture *f, obx_event *ev)
{
    unlink(f->path);
    publish_all(f, ev, 1);
    json_t **objs = read_objects(f, 1);
    json_t *o = objs[0];
    free(objs);
    return o;
}

static void test_descriptor(void **state)
{
    fixture *f = *state;
    const obx_plugin *p = f->plugin;
    assert_int_equal(p->abi_major, OBX_ABI_MAJOR);
    assert_string_equal(p->name, "stdout");
    assert_int_equal(p->config_size, sizeof(stdout_config));
    assert_int_equal(p->option_size, sizeof(obx_option));
    const char *names[] = {"output", "pretty", "fsync"};
    size_t offs[] = {offsetof(stdout_config, out.output),
                     offsetof(stdout_config, out.pretty),
                     offsetof(stdout_config, out.fsync)};
    size_t i = 0;
    for (; p->options[i].name; i++) {
        assert_true(i < 3);
        assert_string_equal(p->options[i].name, names[i]);
        assert_int_equal(p->options[i].offset, offs[i]);
        assert_non_null(p->options[i].description);
    }
    assert_int_equal(i, 3);
    assert_string_equal(p->options[0].def, "-");
    assert_string_equal(p->options[1].def, "false");
    const obx_broker_ops *ops = obx_tb_ops(p);
    assert_non_null(ops->publish);
    assert_non_null(ops->validate);
}

/* The option table suits the core's filler: defaults and values. */
static void test_options_through_core(void **state)
{
    fixture *f = *state;
    obx_optable t = {f->plugin->options, f->plugin->option_size};
    stdout_config c;
    char err[512];
    if (obx_tb_fill(f->plugin, NULL, 0, &c, err, sizeof err) != 0)
        fail_msg("defaults: %s", err);
    assert_string_equal(c.out.output, "-");
    assert_false(c.out.pretty);
    assert_false(c.out.fsync);
    obx_options_free(t, &c);
    static const char *const kv[] = {"broker.output", "out.jsonl",
                                     "broker.pretty", "true",
                                     "broker.fsync",  "on"};
    if (obx_tb_fill(f->plugin, kv, 3, &c, err, sizeof err) != 0)
        fail_msg("values: %s", err);
    assert_string_equal(c.out.output, "out.jsonl");
    assert_true(c.out.pretty);
    assert_true(c.out.fsync);
    obx_options_free(t, &c);
}

static void test_all_fields(void **state)
{
    fixture *f = *state;
    static const obx_header hdrs[] = {{"trace_id", "abc-123"},
                                      {"x-quote", "say \"hi\"\n"}};
    obx_event ev = obx_tb_event("ev-1", "order-42", "OrderCreated");
    ev.topic = "row.topic";
    ev.destination = "outbox.order";
    ev.headers = hdrs;
    ev.n_headers = 2;
    ev.payload = "{\"id\":42,\"items\":[1,2]}";
    ev.payload_len = strlen(ev.payload);
    json_t *o = roundtrip(f, &ev);
    assert_int_equal(json_object_size(o), 7);
    obx_tb_assert_str(o, "event_id", "ev-1");
    obx_tb_assert_str(o, "topic", "outbox.order");
    obx_tb_assert_str(o, "key", "order-42");
    obx_tb_assert_str(o, "event_type", "OrderCreated");
    obx_tb_assert_str(o, "aggregate_type", "order");
    json_t *h = json_object_get(o, "headers");
    assert_true(json_is_object(h));
    assert_int_equal(json_object_size(h), 2);
    obx_tb_assert_str(h, "trace_id", "abc-123");
    obx_tb_assert_str(h, "x-quote", "say \"hi\"\n");
    json_t *want = json_loads("{\"id\":42,\"items\":[1,2]}", 0, NULL);
    assert_true(json_equal(json_object_get(o, "payload"), want));
    json_decref(want);
    json_decref(o);
}

static void test_field_order_and_exact_line(void **state)
{
    fixture *f = *state;
    obx_event ev = obx_tb_event("e", "k", "T");
    publish_all(f, &ev, 1);
    char *buf = obx_tb_slurp(f->path, NULL);
    assert_string_equal(buf, "{\"event_id\":\"e\",\"topic\":\"orders\","
                             "\"key\":\"k\",\"event_type\":\"T\","
                             "\"aggregate_type\":\"order\",\"headers\":{},"
                             "\"payload\":{\"n\":1}}\n");
    free(buf);
}

static void test_topic_fallback_and_nulls(void **state)
{
    fixture *f = *state;
    obx_event ev = obx_tb_event("e", "k", "T");
    ev.destination = NULL;
    ev.topic = "row.topic";
    json_t *o = roundtrip(f, &ev);
    obx_tb_assert_str(o, "topic", "row.topic");
    json_decref(o);

    ev.topic = NULL;
    ev.key = NULL;
    ev.aggregate_type = NULL;
    o = roundtrip(f, &ev);
    assert_int_equal(json_object_size(o), 7);
    obx_tb_assert_str(o, "topic", NULL);
    obx_tb_assert_str(o, "key", NULL);
    obx_tb_assert_str(o, "aggregate_type", NULL);
    json_decref(o);
}

static void test_headers(void **state)
{
    fixture *f = *state;
    static const obx_header hdrs[] = {
        {"plain", "v"},
        {"na\"me\\", "tab\there"},
        {"nullvalue", NULL},
        {NULL, "skipped: no name"},
        {"utf8", "caf\xc3\xa9 \xe2\x82\xac"},
        {"bad-utf8", "a\xff"
                     "b"},
    };
    obx_event ev = obx_tb_event("e", "k", "T");
    ev.headers = hdrs;
    ev.n_headers = sizeof hdrs / sizeof hdrs[0];
    json_t *o = roundtrip(f, &ev);
    json_t *h = json_object_get(o, "headers");
    assert_int_equal(json_object_size(h), 5);
    obx_tb_assert_str(h, "plain", "v");
    obx_tb_assert_str(h, "na\"me\\", "tab\there");
    obx_tb_assert_str(h, "nullvalue", NULL);
    obx_tb_assert_str(h, "utf8", "caf\xc3\xa9 \xe2\x82\xac");
    obx_tb_assert_str(h, "bad-utf8",
                      "a\xef\xbf\xbd"
                      "b");
    json_decref(o);

    ev.headers = NULL;
    ev.n_headers = 3; /* no array: no headers, whatever the count says */
    o = roundtrip(f, &ev);
    assert_int_equal(json_object_size(json_object_get(o, "headers")), 0);
    json_decref(o);
}

/* Valid JSON payloads are embedded as JSON, byte for byte when they fit
 * on one line. */
static void test_payload_json(void **state)
{
    fixture *f = *state;
    static const char *const cases[] = {
        "{\"a\":1}",
        "[1,2,3]",
        "42",
        "-1.5e3",
        "\"text\"",
        "true",
        "false",
        "null",
        "{ \"sp\" : [ ] }",
        "{}",
        "  [{\"deep\":{\"x\":[null]}}]  ",
        "\"caf\xc3\xa9\"",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        obx_event ev = obx_tb_event("e", "k", "T");
        ev.payload = cases[i];
        ev.payload_len = strlen(cases[i]);
        unlink(f->path);
        publish_all(f, &ev, 1);
        char *buf = obx_tb_slurp(f->path, NULL);
        char want[256];
        snprintf(want, sizeof want, "\"payload\":%s}\n", cases[i]);
        if (!strstr(buf, want))
            fail_msg("payload %s not embedded as is: %s", cases[i], buf);
        json_t *o = obx_tb_parse(buf);
        json_t *exp = json_loads(cases[i], JSON_DECODE_ANY, NULL);
        assert_true(json_equal(json_object_get(o, "payload"), exp));
        json_decref(exp);
        json_decref(o);
        free(buf);
    }
}

/* A JSON payload spread over lines still yields one line, every token
 * kept as written (a jansson dump would print 19.99 as
 * 19.989999999999998). */
static void test_payload_json_multiline(void **state)
{
    fixture *f = *state;
    const char *p =
        "{\r\n  \"price\": 19.99,\n  \"note\": \"a b\\nc\",\n"
        "  \"big\": 1.0E+2,\n  \"list\": [\n    1,\n    2\n  ]\n}\n";
    obx_event ev[2] = {obx_tb_event("e1", "k", "T"),
                       obx_tb_event("e2", "k", "T")};
    ev[0].payload = p;
    ev[0].payload_len = strlen(p);
    publish_all(f, ev, 2);
    char *buf = obx_tb_slurp(f->path, NULL);
    assert_non_null(strstr(buf,
                           "\"payload\":{\"price\":19.99,\"note\":"
                           "\"a b\\nc\",\"big\":1.0E+2,\"list\":[1,2]}}\n"));
    free(buf);
    json_t **objs = read_objects(f, 2);
    obx_tb_assert_str(objs[0], "event_id", "e1");
    json_t *exp = json_loads(p, 0, NULL);
    assert_true(json_equal(json_object_get(objs[0], "payload"), exp));
    json_decref(exp);
    free_objects(objs, 2);
}

typedef struct bytes_case {
    const char *in;
    size_t in_len;
    const char *want; /* the decoded JSON string */
    size_t want_len;
} bytes_case;

#define BC(in, want)                                                           \
    {                                                                          \
        in, sizeof(in) - 1, want, sizeof(want) - 1                             \
    }

/* Anything else is a JSON string, escaped so the line stays one line of
 * valid UTF-8 JSON; invalid UTF-8 becomes U+FFFD byte by byte. */
static void test_payload_not_json(void **state)
{
    fixture *f = *state;
    static const bytes_case cases[] = {
        BC("hello world", "hello world"),
        BC("", ""),
        BC("he said \"hi\" \\o/", "he said \"hi\" \\o/"),
        BC("line1\nline2\r\n", "line1\nline2\r\n"),
        BC("\x01\x02\x1f\t\b\f\x7f", "\x01\x02\x1f\t\b\f\x7f"),
        BC("a\0b", "a\0b"),
        BC("{\"a\":1", "{\"a\":1"),
        BC("{\"a\":1} trailing", "{\"a\":1} trailing"),
        BC("{\"a\":1}\0", "{\"a\":1}\0"),
        BC("{\"a\":\"x\ny\"}", "{\"a\":\"x\ny\"}"),
        BC("{'single':1}", "{'single':1}"),
        BC("NaN", "NaN"),
        BC("\xff\xfe", "\xef\xbf\xbd\xef\xbf\xbd"),
        BC("\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd"),
        BC("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"),
        BC("x\xe2\x82", "x\xef\xbf\xbd\xef\xbf\xbd"),
        BC("\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                               "\xef\xbf\xbd"),
        BC("{\"a\":\"\xff\"}", "{\"a\":\"\xef\xbf\xbd\"}"),
        BC("h\xc3\xa9llo \xe2\x82\xac \xf0\x9d\x84\x9e",
           "h\xc3\xa9llo \xe2\x82\xac \xf0\x9d\x84\x9e"),
        BC("\xe2\x80\xa8 sep", "\xe2\x80\xa8 sep"),
    };
    size_t n = sizeof cases / sizeof cases[0];
    obx_event *evs = calloc(n, sizeof *evs);
    char ids[32][8];
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "e%zu", i);
        evs[i] = obx_tb_event(ids[i], "k", "T");
        evs[i].payload = cases[i].in;
        evs[i].payload_len = cases[i].in_len;
    }
    publish_all(f, evs, n);
    json_t **objs = read_objects(f, n);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_object_get(objs[i], "payload");
        if (!json_is_string(p))
            fail_msg("case %zu: payload is not a string", i);
        assert_int_equal(json_string_length(p), cases[i].want_len);
        if (memcmp(json_string_value(p), cases[i].want, cases[i].want_len))
            fail_msg("case %zu: payload differs: %s", i, json_string_value(p));
    }
    free_objects(objs, n);
    free(evs);
}

static void test_appends_to_file(void **state)
{
    fixture *f = *state;
    FILE *fp = fopen(f->path, "w");
    fputs("{\"earlier\":true}\n", fp);
    fclose(fp);
    obx_event ev[3] = {obx_tb_event("a", "k", "T"), obx_tb_event("b", "k", "T"),
                       obx_tb_event("c", "k", "T")};
    void *inst = obx_tb_open(f->plugin, &f->conf);
    obx_result res[3];
    assert_int_equal(obx_tb_publish(f->plugin, inst, ev, 2, res), OBX_OK);
    /* Published means written: visible before close. */
    char *buf = obx_tb_slurp(f->path, NULL);
    assert_non_null(strstr(buf, "\"event_id\":\"b\""));
    free(buf);
    obx_tb_ops(f->plugin)->close(inst);
    publish_all(f, &ev[2], 1);
    json_t **objs = read_objects(f, 4);
    assert_true(json_is_true(json_object_get(objs[0], "earlier")));
    obx_tb_assert_str(objs[1], "event_id", "a");
    obx_tb_assert_str(objs[2], "event_id", "b");
    obx_tb_assert_str(objs[3], "event_id", "c");
    free_objects(objs, 4);
}

/* output "-" (and NULL, when filled by hand) is standard output. */
static void test_standard_output(void **state)
{
    fixture *f = *state;
    const char *outputs[] = {"-", NULL};
    for (size_t i = 0; i < 2; i++) {
        unlink(f->path);
        fflush(stdout);
        int saved = dup(STDOUT_FILENO);
        int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(saved >= 0 && fd >= 0);
        dup2(fd, STDOUT_FILENO);
        close(fd);
        stdout_config conf = {.out = {.output = (char *)outputs[i]}};
        void *inst = obx_tb_open(f->plugin, &conf);
        obx_event ev = obx_tb_event("to-stdout", "k", "T");
        obx_result res[1];
        obx_status st = obx_tb_publish(f->plugin, inst, &ev, 1, res);
        obx_tb_ops(f->plugin)->close(inst);
        fflush(stdout);
        dup2(saved, STDOUT_FILENO);
        close(saved);
        assert_int_equal(st, OBX_OK);
        json_t **objs = read_objects(f, 1);
        obx_tb_assert_str(objs[0], "event_id", "to-stdout");
        free_objects(objs, 1);
    }
}

/* pretty: indented objects over several lines, same content. */
static void test_pretty(void **state)
{
    fixture *f = *state;
    static const obx_header hdrs[] = {{"h", "v, {x}: [y]"}};
    obx_event ev[2] = {obx_tb_event("p1", "k", "T"),
                       obx_tb_event("p2", "k", "T")};
    ev[0].headers = hdrs;
    ev[0].n_headers = 1;
    ev[1].payload = "{\"a\":[],\"b\":{},\"s\":\"q\\\"{,}\"}";
    ev[1].payload_len = strlen(ev[1].payload);
    f->conf.out.pretty = true;
    publish_all(f, ev, 2);
    char *buf = obx_tb_slurp(f->path, NULL);
    assert_non_null(strstr(buf, "{\n  \"event_id\": \"p1\",\n  \"topic\": "));
    assert_non_null(strstr(buf, "\"headers\": {\n    \"h\": \"v, {x}: [y]\"\n"
                                "  },"));
    assert_non_null(strstr(buf, "\"headers\": {},"));
    assert_non_null(strstr(buf, "\"a\": [],\n    \"b\": {},"));
    /* Two values, one after the other, equal to the compact output. */
    json_error_t jerr;
    size_t off = 0, len = strlen(buf), count = 0;
    json_t *vals[2];
    while (off < len && count < 2) {
        vals[count] =
            json_loadb(buf + off, len - off, JSON_DISABLE_EOF_CHECK, &jerr);
        if (!vals[count])
            fail_msg("pretty output does not parse: %s", jerr.text);
        off += jerr.position;
        while (off < len && buf[off] == '\n')
            off++;
        count++;
    }
    assert_int_equal(count, 2);
    assert_int_equal(off, len);
    free(buf);
    unlink(f->path);
    f->conf.out.pretty = false;
    publish_all(f, ev, 2);
    json_t **objs = read_objects(f, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_true(json_equal(vals[i], objs[i]));
        json_decref(vals[i]);
    }
    free_objects(objs, 2);
}

static void test_fsync(void **state)
{
    fixture *f = *state;
    f->conf.out.fsync = true;
    obx_event ev = obx_tb_event("synced", "k", "T");
    publish_all(f, &ev, 1);
    json_t **objs = read_objects(f, 1);
    obx_tb_assert_str(objs[0], "event_id", "synced");
    free_objects(objs, 1);
}

/* More than a stdio chunk in one batch: every line, in order. */
static void test_large_batch(void **state)
{
    fixture *f = *state;
    enum { N = 3000 };
    static char ids[N][16];
    char payload[700];
    memset(payload, 'x', sizeof payload);
    obx_event *evs = calloc(N, sizeof *evs);
    for (size_t i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "big-%zu", i);
        evs[i] = obx_tb_event(ids[i], ids[i], "T");
        evs[i].payload = payload;
        evs[i].payload_len = sizeof payload;
    }
    publish_all(f, evs, N);
    json_t **objs = read_objects(f, N);
    for (size_t i = 0; i < N; i++) {
        obx_tb_assert_str(objs[i], "event_id", ids[i]);
        assert_int_equal(
            json_string_length(json_object_get(objs[i], "payload")),
            sizeof payload);
    }
    free_objects(objs, N);
    free(evs);
}

static void test_empty_batch(void **state)
{
    fixture *f = *state;
    publish_all(f, NULL, 0);
    size_t len;
    free(obx_tb_slurp(f->path, &len));
    assert_int_equal(len, 0);
}

static void test_open_errors(void **state)
{
    fixture *f = *state;
    const obx_broker_ops *ops = obx_tb_ops(f->plugin);
    char err[256] = "";
    void *inst = NULL;
    stdout_config conf = {.out = {.output = "/nonexistent-obx-dir/x"}};
    assert_int_equal(ops->open(obx_test_host(), &conf, &inst, err, sizeof err),
                     OBX_CONFIG);
    assert_non_null(strstr(err, "/nonexistent-obx-dir/x"));
    assert_non_null(strstr(err, "No such file or directory"));
    assert_int_equal(ops->validate(obx_test_host(), &conf, false, err, 256),
                     OBX_OK);
    assert_int_equal(ops->validate(obx_test_host(), &conf, true, err, 256),
                     OBX_CONFIG);
    conf.out.output = f->dir;
    assert_int_equal(ops->validate(obx_test_host(), &conf, true, err, 256),
                     OBX_CONFIG);
    assert_non_null(strstr(err, "directory"));
    conf.out.output = "";
    assert_int_equal(ops->validate(obx_test_host(), &conf, false, err, 256),
                     OBX_CONFIG);
    conf.out.output = f->path;
    assert_int_equal(ops->validate(obx_test_host(), &conf, true, err, 256),
                     OBX_OK);
    assert_int_equal(access(f->path, F_OK), -1); /* validate creates nothing */
}

/* A full device fails the batch as a broker-wide outage, every time. */
static void test_full_device(void **state)
{
    fixture *f = *state;
    f->conf.out.output = "/dev/full";
    void *inst = obx_tb_open(f->plugin, &f->conf);
    obx_event ev[2] = {obx_tb_event("a", "k", "T"),
                       obx_tb_event("b", "j", "T")};
    obx_result res[2];
    for (int round = 0; round < 2; round++) {
        assert_int_equal(obx_tb_publish(f->plugin, inst, ev, 2, res),
                         OBX_UNAVAILABLE);
        assert_non_null(strstr(res[0].errstr, "/dev/full"));
        assert_non_null(strstr(res[0].errstr, "No space left on device"));
    }
    obx_tb_ops(f->plugin)->close(inst);
}

/* A pipe whose reader left: EPIPE -> OBX_FATAL (no reader ever comes
 * back to that pipe, so `run --once | head -1` must end, not wait), and
 * the process survives SIGPIPE at its default (fatal) disposition. */
static void test_broken_pipe(void **state)
{
    fixture *f = *state;
    signal(SIGPIPE, SIG_DFL);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fds[1]);
    f->conf.out.output = path;
    void *inst = obx_tb_open(f->plugin, &f->conf);
    close(fds[1]);
    close(fds[0]);
    obx_event ev = obx_tb_event("a", "k", "T");
    obx_result res[1];
    assert_int_equal(obx_tb_publish(f->plugin, inst, &ev, 1, res), OBX_FATAL);
    assert_non_null(strstr(res[0].errstr, "Broken pipe"));
    sigset_t pending;
    sigpending(&pending);
    assert_false(sigismember(&pending, SIGPIPE));
    obx_tb_ops(f->plugin)->close(inst);
}

/* A write that fails halfway (file size limit) leaves a torn line; the
 * next successful batch starts on a fresh line, so every line after it is
 * whole and valid. */
static void test_torn_line_is_terminated(void **state)
{
    fixture *f = *state;
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    void *inst = obx_tb_open(f->plugin, &f->conf);
    enum { N = 40 };
    obx_event evs[N];
    char ids[N][16];
    for (size_t i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "t%zu", i);
        evs[i] = obx_tb_event(ids[i], "k", "T");
    }
    obx_result res[N];
    lim = old;
    lim.rlim_cur = 1000;
    setrlimit(RLIMIT_FSIZE, &lim);
    obx_status st = obx_tb_publish(f->plugin, inst, evs, N, res);
    setrlimit(RLIMIT_FSIZE, &old);
    assert_int_equal(st, OBX_UNAVAILABLE);
    assert_non_null(strstr(res[0].errstr, "File too large"));
    st = obx_tb_publish(f->plugin, inst, evs, N, res);
    if (st != OBX_OK)
        fail_msg("after the limit: %s", res[0].errstr);
    obx_tb_ops(f->plugin)->close(inst);

    char *buf = obx_tb_slurp(f->path, NULL);
    char *lines[2 * N];
    size_t n = obx_tb_lines(buf, lines, 2 * N);
    assert_true(n > N);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_loads(lines[i], 0, NULL);
        bad += v == NULL;
        assert_true(v != NULL || i == n - N - 1); /* only the torn one */
        json_decref(v);
    }
    assert_int_equal(bad, 1);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_options_through_core, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_all_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_field_order_and_exact_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_topic_fallback_and_nulls, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_payload_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_payload_json_multiline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_payload_not_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_appends_to_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_standard_output, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pretty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_pipe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_line_is_terminated, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
