/* Two relay processes on one database file: each opens its own instance
 * after fork() and claims and acks in a loop while the parent keeps
 * writing. No event may be claimed by both, every event must be claimed,
 * and per key the claims must follow the ids.
 *
 * Each child writes the ids it claimed to its own file; triggers added by
 * the test also log every claim (row id, owner, lease end) and every ack
 * inside the transaction that made it, so the log is in commit order. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sqlite_testlib.h"
#include "support.h"

#define N_PROCS 2
#define N_KEYS 37
#define N_BEFORE 3000 /* rows written before the children start */
#define N_DURING 1000 /* rows written while they run */
#define N_ROWS (N_BEFORE + N_DURING)

static void insert_rows(sqt *t, int from, int n, int per_txn)
{
    char key[16];
    for (int i = 0; i < n; i++) {
        if (i % per_txn == 0)
            sqt_exec(t, "BEGIN");
        snprintf(key, sizeof key, "k%d", (from + i) % N_KEYS);
        sqt_insert(t, key, "payload");
        if (i % per_txn == per_txn - 1 || i == n - 1)
            sqt_exec(t, "COMMIT");
    }
}

/* The child's loop. Returns the exit code: 0 ok, >0 a failure. */
static int child_run(sqt *t, int idx, const char *done_flag)
{
    char owner[32], file[4200];
    snprintf(owner, sizeof owner, "relay-%d", idx);
    snprintf(file, sizeof file, "%s/claims-%d.txt", t->dir, idx);
    sq_config c = t->conf;
    c.owner = owner;
    void *s = NULL;
    char err[OBX_ERRSTR_LEN];
    if (t->ops->open(t->host, &c, &s, err, sizeof err) != OBX_OK)
        return 10;
    FILE *out = fopen(file, "w");
    if (!out)
        return 11;
    unsigned seed = (unsigned)getpid();
    obx_event *ev[16];
    int rc = 0;
    for (int rounds = 0; rc == 0 && rounds < 1000000; rounds++) {
        size_t n = 0, max = 1 + (size_t)(rand_r(&seed) % 16);
        obx_status st = t->ops->claim(s, ev, max, &n, 10, err, sizeof err);
        if (st == OBX_UNAVAILABLE)
            continue;
        if (st != OBX_OK) {
            fprintf(stderr, "child %d: claim: %s\n", idx, err);
            rc = 12;
            break;
        }
        for (size_t i = 0; i < n; i++)
            fprintf(out, "%llu\n", (unsigned long long)ev[i]->pos.seq);
        if (n) /* "publish": let the other relay in, as real ones do */
            usleep((useconds_t)(rand_r(&seed) % 1500));
        while (n &&
               (st = t->ops->ack(s, ev, n, err, sizeof err)) == OBX_UNAVAILABLE)
            ;
        if (st != OBX_OK) {
            fprintf(stderr, "child %d: ack: %s\n", idx, err);
            rc = 13;
        }
        if (n)
            continue;
        obx_store_stats ss = {.struct_size = sizeof ss};
        if (t->ops->stats(s, &ss, err, sizeof err) == OBX_OK &&
            ss.pending == 0 && access(done_flag, F_OK) == 0)
            break;
    }
    fclose(out);
    t->ops->close(s);
    return rc;
}

static void read_claims(sqt *t, int idx, int *owner_of)
{
    char file[4200];
    snprintf(file, sizeof file, "%s/claims-%d.txt", t->dir, idx);
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    unsigned long long id;
    int n = 0;
    while (fscanf(f, "%llu", &id) == 1) {
        assert_true(id >= 1 && id <= N_ROWS);
        if (owner_of[id] != -1)
            fail_msg("row %llu claimed by process %d and by process %d", id,
                     owner_of[id], idx);
        owner_of[id] = idx;
        n++;
    }
    fclose(f);
    print_message("process %d claimed %d events\n", idx, n);
    /* both did real work, or the test proves little */
    assert_true(n > N_ROWS / 20);
}

/* Per key, what is claimed and not yet published: how many rows and the
 * claim (owner + lease end) they came in. */
typedef struct key_state {
    int64_t last_id;
    int outstanding;
    char batch[64];
} key_state;

/* One claim-log entry, in commit order. A row may be claimed while an
 * earlier row of its key is unpublished only in the same claim. */
static void check_entry(key_state *k, int64_t id, const char *kind,
                        const char *owner, int64_t token, int key,
                        const int *owner_of)
{
    char batch[64];
    snprintf(batch, sizeof batch, "%s/%lld", owner, (long long)token);
    if (strcmp(kind, "ack") == 0) {
        k->outstanding--;
        return;
    }
    char want[32];
    snprintf(want, sizeof want, "relay-%d", owner_of[id]);
    assert_string_equal(owner, want);
    if (id <= k->last_id)
        fail_msg("key k%d: row %lld claimed after row %lld", key, (long long)id,
                 (long long)k->last_id);
    if (k->outstanding > 0 && strcmp(batch, k->batch) != 0)
        fail_msg("key k%d: row %lld claimed by %s while %d earlier rows "
                 "were in flight in %s",
                 key, (long long)id, batch, k->outstanding, k->batch);
    k->last_id = id;
    k->outstanding++;
    snprintf(k->batch, sizeof k->batch, "%s", batch);
}

/* The claim log in commit order: every row claimed once, by the owner
 * that says so in its file, per key in id order and never while an
 * earlier row of the key was in flight elsewhere. */
static void check_claim_log(sqt *t, const int *owner_of)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(sqt_db(t),
                                        "SELECT row_id, kind, owner, token, "
                                        "key FROM claim_log ORDER BY seq",
                                        -1, &st, NULL),
                     SQLITE_OK);
    key_state keys[N_KEYS];
    memset(keys, 0, sizeof keys);
    int claims = 0, acks = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *kind = (const char *)sqlite3_column_text(st, 1);
        int key = atoi((const char *)sqlite3_column_text(st, 4) + 1);
        check_entry(&keys[key], sqlite3_column_int64(st, 0), kind,
                    (const char *)sqlite3_column_text(st, 2),
                    sqlite3_column_int64(st, 3), key, owner_of);
        claims += strcmp(kind, "claim") == 0;
        acks += strcmp(kind, "ack") == 0;
    }
    sqlite3_finalize(st);
    assert_int_equal(claims, N_ROWS);
    assert_int_equal(acks, N_ROWS);
}

static void test_two_processes(void **state)
{
    (void)state;
    sqt *t = sqt_new();
    void *s = sqt_open(t, NULL); /* creates the schema */
    t->ops->close(s);
    sqt_exec(t, "CREATE TABLE claim_log (seq INTEGER PRIMARY KEY "
                "AUTOINCREMENT, row_id INTEGER, kind TEXT, owner TEXT, "
                "token INTEGER, key TEXT);"
                "CREATE TRIGGER log_claims AFTER INSERT ON outbox_claims "
                "BEGIN INSERT INTO claim_log (row_id, kind, owner, token, "
                "key) SELECT o.id, 'claim', NEW.owner, NEW.claim_id, "
                "o.aggregate_id FROM json_each(NEW.ids) AS j JOIN outbox AS "
                "o ON o.id = j.value ORDER BY o.id; END;"
                "CREATE TRIGGER log_acks AFTER UPDATE OF published_at ON "
                "outbox WHEN NEW.published_at IS NOT NULL AND "
                "OLD.published_at IS NULL BEGIN "
                "INSERT INTO claim_log (row_id, kind, key) VALUES "
                "(NEW.id, 'ack', NEW.aggregate_id); END");
    insert_rows(t, 0, N_BEFORE, 100);
    char done_flag[4200];
    snprintf(done_flag, sizeof done_flag, "%s/writer-done", t->dir);

    /* no connection may cross fork() */
    sqlite3_close(t->db);
    t->db = NULL;
    fflush(NULL);
    pid_t pids[N_PROCS];
    for (int i = 0; i < N_PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0)
            _exit(child_run(t, i, done_flag));
    }
    insert_rows(t, N_BEFORE, N_DURING, 7);
    FILE *f = fopen(done_flag, "w");
    assert_non_null(f);
    fclose(f);
    for (int i = 0; i < N_PROCS; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }

    int *owner_of = malloc((N_ROWS + 1) * sizeof *owner_of);
    for (int i = 0; i <= N_ROWS; i++)
        owner_of[i] = -1;
    for (int i = 0; i < N_PROCS; i++)
        read_claims(t, i, owner_of);
    for (int id = 1; id <= N_ROWS; id++)
        if (owner_of[id] == -1)
            fail_msg("row %d was never claimed", id);
    check_claim_log(t, owner_of);
    assert_int_equal(sqt_int(t, -1,
                             "SELECT count(*) FROM outbox WHERE "
                             "published_at IS NOT NULL"),
                     N_ROWS);
    assert_int_equal(sqt_int(t, -1, "SELECT count(*) FROM outbox_claims"), 0);
    free(owner_of);
    sqt_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_processes),
    };
    return cmocka_run_group_tests_name("sqlite_multiproc", tests, NULL, NULL);
}
