/* The relay under systemd's notify protocol, with a datagram socket of
 * the test's own as NOTIFY_SOCKET: READY=1 only once store and broker are
 * open, WATCHDOG=1 at half of WATCHDOG_USEC while the engine loop lives,
 * none while a pipeline is wedged, STOPPING=1 on SIGTERM. The store is
 * the engine tests' fake (its open fails while a file exists), the broker
 * chaos (its delay wedges a publish). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"
#include "support.h"

#define BIN OBX_BUILD_DIR "/outbox-relay"
#define FAKE_DIR OBX_BUILD_DIR "/tests/engine/plugins"

typedef struct fx {
    char *dir;
    char sock[100], conf[4200], err[4200], down[4200];
    int fd;
    pid_t pid;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = obx_test_tmpdir();
    /* a short path: sun_path holds 108 bytes */
    snprintf(f->sock, sizeof f->sock, "/tmp/obx-notify-%d.sock", (int)getpid());
    snprintf(f->conf, sizeof f->conf, "%s/relay.conf", f->dir);
    snprintf(f->err, sizeof f->err, "%s/relay.log", f->dir);
    snprintf(f->down, sizeof f->down, "%s/store-down", f->dir);
    unlink(f->sock);
    f->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", f->sock);
    assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        proc_wait(f->pid, 5000);
    }
    close(f->fd);
    unlink(f->sock);
    obx_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Messages for up to ms; counts those containing `what` (and stops at the
 * first one when stop_at_first). */
static int receive(fx *f, int ms, const char *what, bool stop_at_first,
                   char *last, size_t lastlen)
{
    int n = 0;
    int64_t end = now_ms() + ms;
    for (;;) {
        int64_t left = end - now_ms();
        if (left <= 0)
            return n;
        struct timeval tv = {left / 1000, (left % 1000) * 1000};
        setsockopt(f->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[2048];
        ssize_t got = recv(f->fd, buf, sizeof buf - 1, 0);
        if (got <= 0)
            continue;
        buf[got] = '\0';
        if (strstr(buf, what)) {
            n++;
            if (last)
                snprintf(last, lastlen, "%s", buf);
            if (stop_at_first)
                return n;
        }
    }
}

static void start(fx *f, const char *extra, const char *watchdog_us)
{
    FILE *fp = fopen(f->conf, "w");
    fprintf(fp,
            "[relay]\nplugin_path = %s\nmetrics_listen = off\n"
            "[pipeline sd]\nstore = fake\nbroker = chaos\n"
            "store.open_down_while_file = %s\ncircuit.backoff = 100ms..200ms\n"
            "poll_interval = 50ms\nbroker.output = %s/out.jsonl\n%s\n",
            FAKE_DIR, f->down, f->dir, extra);
    fclose(fp);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("NOTIFY_SOCKET", f->sock, 1);
        setenv("WATCHDOG_USEC", watchdog_us, 1);
        FILE *e = freopen(f->err, "w", stderr);
        (void)e;
        execl(BIN, BIN, "run", "-c", f->conf, (char *)NULL);
        _exit(127);
    }
    f->pid = pid;
}

static void test_ready_after_open_watchdog_and_stopping(void **state)
{
    fx *f = *state;
    FILE *d = fopen(f->down, "w");
    fclose(d);
    start(f, "store.events = 10\nstore.keys = 2", "600000");
    /* the store cannot open: no READY, however long we wait */
    assert_int_equal(receive(f, 1500, "READY=1", true, NULL, 0), 0);
    unlink(f->down);
    char msg[2048];
    assert_int_equal(receive(f, 5000, "READY=1", true, msg, sizeof msg), 1);
    assert_non_null(strstr(msg, "STATUS=sd: "));
    /* pings every 300 ms: about 10 in 3 s */
    int pings = receive(f, 3000, "WATCHDOG=1", false, NULL, 0);
    if (pings < 7 || pings > 12)
        fail_msg("%d watchdog pings in 3 s at WATCHDOG_USEC=600ms", pings);
    assert_int_equal(receive(f, 3000, "STATUS=", true, msg, sizeof msg), 1);
    assert_non_null(strstr(msg, "circuit closed"));
    kill(f->pid, SIGTERM);
    assert_int_equal(receive(f, 5000, "STOPPING=1", true, NULL, 0), 1);
    assert_int_equal(proc_wait(f->pid, 20000), 0);
    f->pid = 0;
}

/* A publish that takes 4 s wedges the pipeline's loop: the pings stop
 * (systemd would restart the relay) and the log says which pipeline. */
static void test_no_pings_while_wedged(void **state)
{
    fx *f = *state;
    start(f,
          "store.events = 1000\nstore.keys = 2\nbroker.delay = 4s\n"
          "publish_timeout = 30s",
          "600000");
    assert_int_equal(receive(f, 5000, "READY=1", true, NULL, 0), 1);
    /* the first publish began at open; skip the first ping window */
    receive(f, 700, "WATCHDOG=1", false, NULL, 0);
    assert_int_equal(receive(f, 2500, "WATCHDOG=1", false, NULL, 0), 0);
    char *log = slurp(f->err);
    assert_non_null(strstr(log, "pipeline sd: its loop has not moved"));
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_ready_after_open_watchdog_and_stopping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_pings_while_wedged, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
