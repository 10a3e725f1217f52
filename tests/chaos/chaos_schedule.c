/* Fault schedules from their text (see chaos.h for the grammar). */
#include "chaos.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DEFAULT_OUTAGE_MS 10000
#define DEFAULT_STALL_MS 20000
#define DEFAULT_SLOW_DELAY_MS 20
#define DEFAULT_SLOW_MS 5000
#define DEFAULT_CUTS 3
#define DEFAULT_KILLS 20

/* "500ms", "10s", "10" (seconds); -1 when it is none of them. */
static int parse_ms(const char *t)
{
    char *end;
    long v = strtol(t, &end, 10);
    if (end == t || v < 0 || v > 3600000)
        return -1;
    if (strcmp(end, "ms") == 0)
        return (int)v;
    if (*end == '\0' || strcmp(end, "s") == 0)
        return v > 3600 ? -1 : (int)v * 1000;
    return -1;
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

/* The outage length OBX_CHAOS_OUTAGE imposes, or -1. */
static int outage_override(void)
{
    const char *v = getenv("OBX_CHAOS_OUTAGE");
    if (!v || !*v)
        return -1;
    int ms = parse_ms(v);
    if (ms <= 0)
        fail_msg("OBX_CHAOS_OUTAGE=%s is not a duration (30s, 500ms)", v);
    return ms;
}

static chaos_link parse_link(const char *t, const char *step)
{
    if (t && strcmp(t, "store") == 0)
        return CHAOS_LINK_STORE;
    if (t && strcmp(t, "broker") == 0)
        return CHAOS_LINK_BROKER;
    if (t && strcmp(t, "both") == 0)
        return CHAOS_LINK_BOTH;
    fail_msg("chaos schedule: '%s' needs store, broker or both", step);
    return CHAOS_LINK_STORE;
}

static int arg_ms(const char *t, int def, const char *step)
{
    if (!t)
        return def;
    int ms = parse_ms(t);
    if (ms <= 0)
        fail_msg("chaos schedule: '%s': '%s' is not a duration", step, t);
    return ms;
}

static void show_ms(char *buf, size_t len, int ms)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%ds", ms / 1000);
    else
        snprintf(buf, len, "%dms", ms);
}

static void name_step(const chaos_step *st, char *buf, size_t len)
{
    char a[16], b[16];
    const char *link = st->link == CHAOS_LINK_STORE    ? "store"
                       : st->link == CHAOS_LINK_BROKER ? "broker"
                                                       : "both";
    show_ms(a, sizeof a, st->ms);
    show_ms(b, sizeof b, st->delay_ms);
    switch (st->fault) {
    case CHAOS_KILL: snprintf(buf, len, "kill %d", st->count); break;
    case CHAOS_BROKER_DOWN: snprintf(buf, len, "broker-down %s", a); break;
    case CHAOS_STORE_RESTART: snprintf(buf, len, "store-restart %s", a); break;
    case CHAOS_COLD_START: snprintf(buf, len, "cold-start %s", a); break;
    case CHAOS_CUT: snprintf(buf, len, "cut %s x%d", link, st->count); break;
    case CHAOS_STALL: snprintf(buf, len, "stall %s %s", link, a); break;
    case CHAOS_SLOW: snprintf(buf, len, "slow %s %s/%s", link, b, a); break;
    }
}

static void parse_step(char *text, chaos_step *st, int index)
{
    char *args[4] = {NULL};
    char *save = NULL;
    char *name = strtok_r(text, ":", &save);
    for (int i = 0; i < 4; i++)
        args[i] = strtok_r(NULL, ":", &save);
    if (!name || strtok_r(NULL, ":", &save))
        fail_msg("chaos schedule: bad step '%s'", text);
    memset(st, 0, sizeof *st);
    if (strcmp(name, "kill") == 0) {
        st->fault = CHAOS_KILL;
        st->count =
            args[0] ? atoi(args[0]) : env_int("OBX_CHAOS_KILLS", DEFAULT_KILLS);
        if (st->count < 1 || args[1])
            fail_msg("chaos schedule: bad kill count in '%s'", name);
    } else if (strcmp(name, "broker-down") == 0 ||
               strcmp(name, "store-restart") == 0 ||
               strcmp(name, "cold-start") == 0) {
        st->fault = name[0] == 'b'   ? CHAOS_BROKER_DOWN
                    : name[0] == 's' ? CHAOS_STORE_RESTART
                                     : CHAOS_COLD_START;
        st->ms = arg_ms(args[0], DEFAULT_OUTAGE_MS, name);
        int o = outage_override();
        if (o > 0)
            st->ms = o;
        if (st->fault == CHAOS_COLD_START && index != 0)
            fail_msg("chaos schedule: cold-start can only be the first step");
    } else if (strcmp(name, "cut") == 0) {
        st->fault = CHAOS_CUT;
        st->link = parse_link(args[0], name);
        st->count = args[1] ? atoi(args[1]) : DEFAULT_CUTS;
        if (st->count < 1)
            fail_msg("chaos schedule: bad cut count");
    } else if (strcmp(name, "stall") == 0) {
        st->fault = CHAOS_STALL;
        st->link = parse_link(args[0], name);
        st->ms = arg_ms(args[1], DEFAULT_STALL_MS, name);
    } else if (strcmp(name, "slow") == 0) {
        st->fault = CHAOS_SLOW;
        st->link = parse_link(args[0], name);
        st->delay_ms = arg_ms(args[1], DEFAULT_SLOW_DELAY_MS, name);
        st->ms = arg_ms(args[2], DEFAULT_SLOW_MS, name);
    } else {
        fail_msg("chaos schedule: no fault named '%s' (kill, broker-down, "
                 "store-restart, cold-start, cut, stall, slow)",
                 name);
    }
}

void chaos_schedule_parse(const char *spec, chaos_schedule *out)
{
    memset(out, 0, sizeof *out);
    char *copy = strdup(spec);
    assert_non_null(copy);
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (out->n == CHAOS_MAX_STEPS)
            fail_msg("chaos schedule: more than %d steps", CHAOS_MAX_STEPS);
        char *text = strdup(t);
        assert_non_null(text);
        parse_step(text, &out->steps[out->n], out->n);
        free(text);
        char one[64];
        name_step(&out->steps[out->n], one, sizeof one);
        size_t used = strlen(out->name);
        snprintf(out->name + used, sizeof out->name - used, "%s%s",
                 out->n ? "+" : "", one);
        out->n++;
    }
    free(copy);
    if (out->n == 0)
        fail_msg("chaos schedule: no step in '%s'", spec);
}

bool chaos_schedule_has(const chaos_schedule *s, chaos_fault f)
{
    for (int i = 0; i < s->n; i++)
        if (s->steps[i].fault == f)
            return true;
    return false;
}

bool chaos_schedule_proxies(const chaos_schedule *s, chaos_link l)
{
    for (int i = 0; i < s->n; i++) {
        chaos_fault f = s->steps[i].fault;
        chaos_link sl = s->steps[i].link;
        if ((f == CHAOS_CUT || f == CHAOS_STALL || f == CHAOS_SLOW) &&
            (sl == l || sl == CHAOS_LINK_BOTH))
            return true;
    }
    return false;
}

int chaos_schedule_kills(const chaos_schedule *s)
{
    int n = 0;
    for (int i = 0; i < s->n; i++)
        if (s->steps[i].fault == CHAOS_KILL)
            n += s->steps[i].count;
    return n;
}
