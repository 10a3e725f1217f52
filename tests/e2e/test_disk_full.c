/* The sqlite store on a full disk: a real, small tmpfs holds the outbox
 * database; the relay runs against it while a filler file takes every free
 * byte. The relay must pause (circuit open, /readyz says why), say once
 * and clearly that the database's disk is full, lose nothing, burn no
 * attempt, dead-letter nothing, and recover by itself once space returns.
 *
 * The tmpfs is mounted in a private mount namespace of this process (its
 * children, the relay, share it), so a crashed run leaves no mount behind:
 * as root a plain mount namespace, otherwise a user namespace too. When
 * neither can be had the test fails and says so: a disk-full test that
 * did not fill a disk proves nothing. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "proc.h"
#include "support.h"

#define BIN OBX_BUILD_DIR "/outbox-relay"
#define KEYS 10
#define MAX_SEQ 100000
/* Larger than the WAL grows before SQLite checkpoints it (1000 pages), so
 * the disk fills only when the filler takes it. */
#define TMPFS_SIZE "16m"

/* ---- a tmpfs of our own ------------------------------------------------ */

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Enter a private mount namespace. Must run while the process has one
 * thread (a user namespace cannot be entered otherwise). A user namespace
 * comes first, root or not: the mounts it inherits are slaves, so ours
 * cannot propagate back to the host's namespace even where "/" is not a
 * mount point (a chroot, where --make-rprivate / fails). Without user
 * namespaces, root gets a plain mount namespace made private. */
static void private_mount_namespace(void)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0) {
        char map[64];
        snprintf(map, sizeof map, "0 %ld 1", (long)uid);
        bool ok = write_file("/proc/self/setgroups", "deny") == 0 &&
                  write_file("/proc/self/uid_map", map) == 0;
        snprintf(map, sizeof map, "0 %ld 1", (long)gid);
        if (!ok || write_file("/proc/self/gid_map", map) != 0)
            fail_msg("user namespace: cannot write the id maps: %s",
                     strerror(errno));
        /* belt and braces; EINVAL: "/" is not a mount point here */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 &&
            errno != EINVAL)
            fail_msg("mount --make-rprivate /: %s", strerror(errno));
        return;
    }
    int e_user = errno;
    if (unshare(CLONE_NEWNS) != 0)
        fail_msg("cannot get a private mount namespace for the tmpfs: "
                 "unshare(CLONE_NEWUSER | CLONE_NEWNS): %s; "
                 "unshare(CLONE_NEWNS): %s (run as root, or allow "
                 "unprivileged user namespaces: sysctl kernel."
                 "unprivileged_userns_clone=1)",
                 strerror(e_user), strerror(errno));
    /* our mounts must not propagate back to the host's namespace. EINVAL:
     * "/" is not a mount point (a chroot, as in a fresh Debian root
     * without user namespaces): the tmpfs may then be seen outside while
     * the test runs; teardown unmounts it either way. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        if (errno != EINVAL)
            fail_msg("mount --make-rprivate /: %s (and no user namespace: "
                     "%s)",
                     strerror(errno), strerror(e_user));
        print_message("test_disk_full: \"/\" is not a mount point and "
                      "there is no user namespace (%s): the tmpfs is "
                      "mounted without a private namespace\n",
                      strerror(e_user));
    }
}

static void mount_tmpfs(const char *dir)
{
    if (mkdir(dir, 0700) != 0)
        fail_msg("mkdir %s: %s", dir, strerror(errno));
    if (mount("obx-disk-full", dir, "tmpfs", MS_NOSUID | MS_NODEV,
              "size=" TMPFS_SIZE ",mode=0700") != 0)
        fail_msg("mount -t tmpfs -o size=%s %s: %s", TMPFS_SIZE, dir,
                 strerror(errno));
}

/* Take every free byte of dir's filesystem; returns the bytes written. */
static long long fill(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        fail_msg("create %s: %s", path, strerror(errno));
    static char chunk[1 << 20];
    memset(chunk, 'x', sizeof chunk);
    long long total = 0;
    /* big chunks first, then pages: tmpfs hands out whole pages */
    for (size_t sz = sizeof chunk; sz >= 4096; sz /= 16) {
        for (;;) {
            ssize_t n = write(fd, chunk, sz);
            if (n > 0)
                total += n;
            if (n == (ssize_t)sz)
                continue;
            if (n < 0 && errno != ENOSPC)
                fail_msg("write %s: %s", path, strerror(errno));
            break;
        }
    }
    errno = 0;
    if (write(fd, chunk, 1) >= 0 || errno != ENOSPC)
        fail_msg("%s: the filesystem is not full after %lld bytes", path,
                 total);
    close(fd);
    return total;
}

/* ---- the broker's output: a FIFO the test reads, and can stop reading -- */

/* Reading paused, the relay blocks inside publish with a claimed batch:
 * that is how the test puts the disk-full moment between a publish and its
 * ack, the write the relay must not give up on. */
typedef struct reader {
    int fd;
    atomic_int paused, stop;
    pthread_mutex_t mu;
    int seen[MAX_SEQ]; /* copies delivered, by seq */
    long order_breaks, lines;
    long last[KEYS];
    char buf[1 << 16];
    size_t len;
    pthread_t th;
} reader;

static void reader_line(reader *r, const char *line)
{
    json_error_t je;
    json_t *o = json_loads(line, 0, &je);
    json_t *p = json_object_get(o, "payload");
    json_t *q = json_object_get(p, "seq"), *k = json_object_get(p, "k");
    if (!json_is_integer(q) || !json_is_integer(k))
        fail_msg("not an event of this test: %s", line);
    long seq = (long)json_integer_value(q);
    int key = (int)json_integer_value(k);
    json_decref(o);
    if (seq < 0 || seq >= MAX_SEQ || key < 0 || key >= KEYS)
        fail_msg("seq or key out of range: %s", line);
    pthread_mutex_lock(&r->mu);
    /* per key, first deliveries in commit order (seq grows with commits) */
    if (r->seen[seq]++ == 0) {
        if (seq < r->last[key])
            r->order_breaks++;
        else
            r->last[key] = seq;
    }
    r->lines++;
    pthread_mutex_unlock(&r->mu);
}

static void *reader_main(void *arg)
{
    reader *r = arg;
    while (!atomic_load(&r->stop)) {
        if (atomic_load(&r->paused)) {
            sleep_ms(5);
            continue;
        }
        ssize_t n = read(r->fd, r->buf + r->len, sizeof r->buf - r->len - 1);
        if (n < 0 && errno == EAGAIN) {
            sleep_ms(5);
            continue;
        }
        if (n <= 0)
            break;
        r->len += (size_t)n;
        r->buf[r->len] = '\0';
        char *start = r->buf, *nl;
        while ((nl = strchr(start, '\n')) != NULL) {
            *nl = '\0';
            reader_line(r, start);
            start = nl + 1;
        }
        r->len -= (size_t)(start - r->buf);
        memmove(r->buf, start, r->len);
    }
    return NULL;
}

static void reader_start(reader *r, const char *fifo)
{
    if (mkfifo(fifo, 0600) != 0)
        fail_msg("mkfifo %s: %s", fifo, strerror(errno));
    /* read-write: the relay's open for writing never blocks, and a relay
     * that restarts never makes us see end-of-file */
    r->fd = open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (r->fd < 0)
        fail_msg("open %s: %s", fifo, strerror(errno));
    /* one page: a paused reader blocks the relay within one batch */
    fcntl(r->fd, F_SETPIPE_SZ, 4096);
    for (int k = 0; k < KEYS; k++)
        r->last[k] = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_create(&r->th, NULL, reader_main, r);
}

static void reader_stop(reader *r)
{
    atomic_store(&r->stop, 1);
    pthread_join(r->th, NULL);
    close(r->fd);
    pthread_mutex_destroy(&r->mu);
}

/* ---- the writer -------------------------------------------------------- */

typedef struct writer {
    sqlite3 *db;
    long next_seq;
    bool committed[MAX_SEQ];
    long n_committed;
} writer;

static void writer_open(writer *w, const char *path)
{
    if (sqlite3_open(path, &w->db) != SQLITE_OK)
        fail_msg("open %s: %s", path, sqlite3_errmsg(w->db));
    sqlite3_extended_result_codes(w->db, 1);
    sqlite3_busy_timeout(w->db, 10000);
}

/* One transaction of n events; the SQLite result code of the first
 * failure (the transaction is then rolled back), SQLITE_OK once committed. */
static int write_tx(writer *w, int n)
{
    int rc = sqlite3_exec(w->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    sqlite3_stmt *st = NULL;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(w->db,
                                "INSERT INTO outbox (aggregate_type, "
                                "aggregate_id, event_type, payload) VALUES "
                                "('disk', ?, 'Full', ?)",
                                -1, &st, NULL);
    long first = w->next_seq;
    if (first + n > MAX_SEQ)
        fail_msg("writer: more than %d events", MAX_SEQ);
    for (int i = 0; rc == SQLITE_OK && i < n; i++) {
        long seq = w->next_seq++;
        char agg[16], pl[64];
        snprintf(agg, sizeof agg, "k%ld", seq % KEYS);
        snprintf(pl, sizeof pl, "{\"seq\":%ld,\"k\":%ld}", seq, seq % KEYS);
        sqlite3_bind_text(st, 1, agg, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, pl, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(w->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        if (!sqlite3_get_autocommit(w->db))
            sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    for (long s = first; s < w->next_seq; s++)
        w->committed[s] = true;
    w->n_committed += n;
    return SQLITE_OK;
}

static void write_events(writer *w, int n)
{
    for (int i = 0; i < n; i += 5) {
        int rc = write_tx(w, 5);
        if (rc != SQLITE_OK)
            fail_msg("writer: %s", sqlite3_errstr(rc));
    }
}

/* ---- the relay ------------------------------------------------------- */

typedef struct fx {
    char *dir;
    char disk[4096], db[4200], filler[4200], fifo[4200], conf[4200], log[4200];
    int port;
    pid_t pid;
    bool mounted;
    reader rd;
    writer wr;
    sqlite3 *pin; /* a read snapshot that keeps the WAL from restarting */
    long long filled;
    long while_filling;
} fx;

static long delivered(fx *f)
{
    long n = 0;
    pthread_mutex_lock(&f->rd.mu);
    for (long s = 0; s < f->wr.next_seq; s++)
        n += f->wr.committed[s] && f->rd.seen[s] > 0;
    pthread_mutex_unlock(&f->rd.mu);
    return n;
}

static void wait_delivered(fx *f, int timeout_ms, const char *when)
{
    for (int t = 0; delivered(f) < f->wr.n_committed; t += 20) {
        if (t >= timeout_ms) {
            char *log = slurp(f->log);
            fail_msg("%s: %ld of %ld committed events delivered after %d ms; "
                     "relay log:\n%s",
                     when, delivered(f), f->wr.n_committed, timeout_ms,
                     log ? log : "");
        }
        sleep_ms(20);
    }
}

static void wait_log(fx *f, const char *needle, int timeout_ms)
{
    for (int t = 0; count_in_file(f->log, needle) == 0; t += 20) {
        if (t >= timeout_ms) {
            char *log = slurp(f->log);
            fail_msg("no '%s' in the relay log after %d ms:\n%s", needle,
                     timeout_ms, log ? log : "");
        }
        sleep_ms(20);
    }
}

static void assert_running(fx *f)
{
    int st;
    if (waitpid(f->pid, &st, WNOHANG) == f->pid) {
        f->pid = 0;
        char *log = slurp(f->log);
        fail_msg("the relay %s %d on a full disk:\n%s",
                 WIFEXITED(st) ? "exited" : "was killed by signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                 log ? log : "");
    }
}

/* user + system CPU seconds the relay has used */
static double cpu_seconds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    char s[1024];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, s, sizeof s - 1) : -1;
    if (fd >= 0)
        close(fd);
    s[n > 0 ? n : 0] = '\0';
    const char *p = strrchr(s, ')');
    unsigned long long ut = 0, stime = 0;
    /* after "pid (comm)": state and 10 more fields, then utime stime */
    if (!p || sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                     "%llu %llu",
                     &ut, &stime) != 2)
        fail_msg("cannot read %s", path);
    return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

static int enter_namespace(void **state)
{
    (void)state;
    /* before any thread exists: see private_mount_namespace */
    private_mount_namespace();
    return 0;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = obx_test_tmpdir();
    snprintf(f->disk, sizeof f->disk, "%s/disk", f->dir);
    snprintf(f->db, sizeof f->db, "%s/outbox.db", f->disk);
    snprintf(f->filler, sizeof f->filler, "%s/filler", f->disk);
    snprintf(f->fifo, sizeof f->fifo, "%s/out.fifo", f->dir);
    snprintf(f->conf, sizeof f->conf, "%s/relay.conf", f->dir);
    snprintf(f->log, sizeof f->log, "%s/relay.log", f->dir);
    f->port = free_port();
    *state = f;
    mount_tmpfs(f->disk);
    f->mounted = true;
    reader_start(&f->rd, f->fifo);
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        proc_wait(f->pid, 5000);
    }
    if (f->rd.fd > 0)
        reader_stop(&f->rd);
    if (f->pin)
        sqlite3_close(f->pin);
    if (f->wr.db)
        sqlite3_close(f->wr.db);
    if (f->mounted)
        umount2(f->disk, MNT_DETACH);
    obx_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* /readyz's status; its body in *why (caller frees). */
static int readyz(fx *f, char **why)
{
    *why = NULL;
    return http_get(f->port, "/readyz", why);
}

/* Start a relay logging to `log`, with `extra` config lines; wait until
 * it serves `until` (200). */
static void start_relay(fx *f, const char *log, const char *until,
                        const char *extra)
{
    FILE *fp = fopen(f->conf, "w");
    assert_non_null(fp);
    /* a short lease: a relay stopped on a full disk leaves its claims
     * leased, and its successor takes them back soon */
    fprintf(fp,
            "[relay]\nlog_level = info\nmetrics_listen = 127.0.0.1:%d\n"
            "[pipeline p]\nstore = sqlite\nstore.path = %s\n"
            "store.lease = 2s\nbroker = stdout\nbroker.output = %s\n"
            "batch_size = 20\npoll_interval = 20ms\n"
            "retry.backoff = 10ms..100ms\ncircuit.backoff = 50ms..500ms\n%s",
            f->port, f->db, f->fifo, extra);
    fclose(fp);
    snprintf(f->log, sizeof f->log, "%s", log);
    char *argv[] = {BIN, "run", "-c", f->conf, NULL};
    f->pid = proc_start(argv, NULL, f->log);
    char *body = NULL;
    for (int t = 0; http_get(f->port, until, &body) != 200; t += 20) {
        free(body);
        body = NULL;
        assert_running(f);
        if (t > 10000)
            fail_msg("the relay did not answer 200 on %s", until);
        sleep_ms(20);
    }
    free(body);
}

static void stop_relay(fx *f)
{
    kill(f->pid, SIGTERM);
    int rc = proc_wait(f->pid, 20000);
    f->pid = 0;
    if (rc != 0) {
        char *log = slurp(f->log);
        fail_msg("the relay exited %d on SIGTERM:\n%s", rc, log ? log : "");
    }
}

/* Fill the disk so that no write to the database fits. A reader's
 * snapshot pins the WAL, so no checkpoint can let it start over at its
 * beginning; the writer then uses up what room the WAL file had (its
 * events count as committed). */
static void fill_disk(fx *f)
{
    assert_int_equal(sqlite3_open(f->db, &f->pin), SQLITE_OK);
    assert_int_equal(sqlite3_exec(f->pin, "BEGIN; SELECT count(*) FROM outbox",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    f->filled = fill(f->filler);
    long before = f->wr.n_committed;
    int rc = SQLITE_OK;
    for (int i = 0; i < 20000 && rc == SQLITE_OK; i++)
        rc = write_tx(&f->wr, 1);
    if ((rc & 0xff) != SQLITE_FULL)
        fail_msg("the writer got '%s', not SQLITE_FULL, on a full disk "
                 "(filler %lld bytes)",
                 sqlite3_errstr(rc), f->filled);
    f->while_filling = f->wr.n_committed - before;
}

static void free_disk(fx *f)
{
    sqlite3_exec(f->pin, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(f->pin);
    f->pin = NULL;
    if (unlink(f->filler) != 0)
        fail_msg("unlink %s: %s", f->filler, strerror(errno));
}

/* While the disk is full: the relay runs, paused with backoff (not
 * spinning on the failing write), /readyz says why, and the log has one
 * line naming the database and the full disk (not one per probe), and at
 * most one more from retention (which has its own schedule). */
static void assert_paused_on_full_disk(fx *f, const char *what)
{
    char needle[64];
    snprintf(needle, sizeof needle, "%s: database or disk is full", what);
    wait_log(f, needle, 10000);
    double cpu0 = cpu_seconds(f->pid);
    sleep_ms(2000);
    assert_running(f);
    double cpu = cpu_seconds(f->pid) - cpu0;
    if (cpu > 0.5)
        fail_msg("the relay used %.2f s of CPU in 2 s on a full disk", cpu);
    char *why = NULL;
    int code = readyz(f, &why);
    if (code != 503 || !why || !strstr(why, "circuit open") ||
        !strstr(why, f->db) || !strstr(why, needle))
        fail_msg("/readyz on a full disk: %d %s", code, why ? why : "");
    free(why);
    char *log = slurp(f->log);
    const char *line = strstr(log, needle);
    while (line > log && line[-1] != '\n')
        line--;
    const char *eol = strchr(line, '\n');
    const char *db = strstr(line, f->db);
    size_t retention =
        count_in_file(f->log, "retention: database or disk is full");
    if (!db || (eol && db > eol) || retention > 1 ||
        count_in_file(f->log, "circuit open: ") != 1 ||
        count_in_file(f->log, "database or disk is full") != 1 + retention)
        fail_msg("expected one line naming %s and '%s':\n%s", f->db, needle,
                 log);
    free(log);
}

/* Space is back: everything committed arrives, new events too, and the
 * relay is ready again, all by itself. */
static void assert_recovers(fx *f)
{
    free_disk(f);
    wait_delivered(f, 20000, "after the disk was freed");
    write_events(&f->wr, 100);
    wait_delivered(f, 10000, "events written after the disk was freed");
    wait_log(f, "circuit closed", 5000);
    char *why = NULL;
    for (int t = 0; readyz(f, &why) != 200; t += 50) {
        if (t > 5000)
            fail_msg("/readyz after recovery: %s", why ? why : "");
        free(why);
        sleep_ms(50);
    }
    free(why);
}

/* Nothing lost, nothing invented, order kept (read from the broker's
 * output); no attempt burned, nothing dead, every row published (and
 * still there, unless `retention` deleted published rows). */
static void assert_outcome(fx *f, bool retention)
{
    reader_stop(&f->rd);
    f->rd.fd = 0;
    long lost = 0, phantoms = 0;
    for (long s = 0; s < MAX_SEQ; s++) {
        bool c = s < f->wr.next_seq && f->wr.committed[s];
        lost += c && !f->rd.seen[s];
        phantoms += !c && f->rd.seen[s];
    }
    if (lost || phantoms || f->rd.order_breaks)
        fail_msg("lost %ld, phantoms %ld, order breaks %ld of %ld committed",
                 lost, phantoms, f->rd.order_breaks, f->wr.n_committed);
    sqlite3_stmt *st;
    assert_int_equal(
        sqlite3_prepare_v2(f->wr.db,
                           "SELECT count(*), sum(published_at IS NOT NULL), "
                           "sum(dead_at IS NOT NULL), sum(attempts) "
                           "FROM outbox",
                           -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long rows = (long)sqlite3_column_int64(st, 0);
    long published = (long)sqlite3_column_int64(st, 1);
    long dead = (long)sqlite3_column_int64(st, 2);
    long attempts = (long)sqlite3_column_int64(st, 3);
    sqlite3_finalize(st);
    if ((retention ? rows > f->wr.n_committed : rows != f->wr.n_committed) ||
        published != rows || dead || attempts)
        fail_msg("rows %ld (committed %ld), published %ld, dead %ld, "
                 "attempts %ld",
                 rows, f->wr.n_committed, published, dead, attempts);
    printf("%ld events committed (%ld while the disk filled), %ld lines "
           "delivered, filler %lld bytes\n",
           f->wr.n_committed, f->while_filling, f->rd.lines, f->filled);
}

/* The disk fills between a publish and its ack: the ack must wait for
 * space, not give the events up. */
static void test_ack_on_full_disk_waits_for_space(void **state)
{
    fx *f = *state;
    char log[4300];
    snprintf(log, sizeof log, "%s/relay.log", f->dir);
    start_relay(f, log, "/readyz", "");
    writer_open(&f->wr, f->db);
    write_events(&f->wr, 100);
    wait_delivered(f, 10000, "before the disk filled");

    /* the relay blocks inside publish with a claimed batch: 400 events do
     * not fit in the pipe, so once its fill stops growing the relay is
     * stuck writing */
    atomic_store(&f->rd.paused, 1);
    write_events(&f->wr, 400);
    int queued = 0, stable = 0;
    for (int t = 0; stable < 30; t += 10) {
        if (t > 10000)
            fail_msg("the relay did not fill the pipe (%d bytes)", queued);
        int now = 0;
        ioctl(f->rd.fd, FIONREAD, &now);
        stable = now > 0 && now == queued ? stable + 1 : 0;
        queued = now;
        sleep_ms(10);
    }
    fill_disk(f);
    atomic_store(&f->rd.paused, 0);
    assert_paused_on_full_disk(f, "ack");
    assert_recovers(f);
    stop_relay(f);
    assert_outcome(f, false);
}

/* The disk fills while the relay waits for work: its claim fails, it
 * survives a restart on the full disk, and the new relay recovers.
 * Retention has published rows to delete: on the full disk it fails on
 * its own schedule (every 5 s) and says so once, not every time. */
static void test_claim_and_restart_on_full_disk(void **state)
{
    fx *f = *state;
    char log1[4300], log2[4300];
    snprintf(log1, sizeof log1, "%s/relay1.log", f->dir);
    snprintf(log2, sizeof log2, "%s/relay2.log", f->dir);
    const char *retention = "store.retention = 1s\n";
    start_relay(f, log1, "/readyz", retention);
    writer_open(&f->wr, f->db);
    write_events(&f->wr, 100);
    wait_delivered(f, 10000, "before the disk filled");

    /* stopped while idle, the relay's next write is a claim */
    kill(f->pid, SIGSTOP);
    write_events(&f->wr, 200);
    fill_disk(f);
    kill(f->pid, SIGCONT);
    assert_paused_on_full_disk(f, "claim");

    stop_relay(f);
    start_relay(f, log2, "/healthz", retention);
    assert_paused_on_full_disk(f, "claim");
    sleep_ms(4000); /* retention's second run fails too, quietly */
    if (count_in_file(f->log, "retention: database or disk is full") != 1) {
        char *log = slurp(f->log);
        fail_msg("expected one retention line in 6 s on the full disk:\n%s",
                 log);
    }
    assert_recovers(f);
    stop_relay(f);
    assert_outcome(f, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ack_on_full_disk_waits_for_space,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_and_restart_on_full_disk,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, enter_namespace, NULL);
}
