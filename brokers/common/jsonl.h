/* The JSON-lines event writer shared by the stdout and chaos brokers.
 *
 * One implementation, compiled into a small static library that each
 * plugin links (plugins never link the core). Nothing here is exported from
 * the plugin: the library is built with hidden visibility.
 *
 * An event becomes one JSON object on one line with exactly the fields
 * event_id, topic, key, event_type, aggregate_type, headers, payload. The
 * payload is embedded as JSON when its bytes are valid JSON (as jansson
 * reads them), else written as a JSON string. Every line is valid UTF-8 JSON
 * whatever the input bytes: invalid UTF-8 in any field becomes U+FFFD.
 *
 * Not thread-safe: a sink belongs to one plugin instance, which the engine
 * drives from one thread.
 */
#ifndef OBC_JSONL_H
#define OBC_JSONL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <outbox/plugin.h>

/* A growing byte buffer, reused across events and batches so the hot path
 * stops allocating once it has reached its working size. */
typedef struct obc_jbuf {
    char *data;
    size_t len;
    size_t cap;
} obc_jbuf;

/* Make room for `extra` more bytes past len. 0, or -1 when out of memory
 * (the buffer is then unchanged). */
int obc_jbuf_reserve(obc_jbuf *b, size_t extra);

/* Release the memory; the buffer is then empty and reusable. */
void obc_jbuf_free(obc_jbuf *b);

/* Append `ev` to `out` as one compact JSON object followed by '\n'.
 * Reads the event only (borrowed). Returns 0, or -1 when out of memory
 * (out->len is then unchanged). */
int obc_jsonl_format(obc_jbuf *out, const obx_event *ev);

/* Append the JSON text json[0..len) to `out` re-indented for humans (two
 * spaces per level, "key": value), followed by '\n'. The input must be
 * valid JSON (whitespace outside strings is dropped, strings are copied
 * byte for byte). Returns 0, or -1 when out of memory. */
int obc_jsonl_reindent(obc_jbuf *out, const char *json, size_t len);

/* Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no
 * overlongs, no surrogates, nothing past U+10FFFF), or 0 when there is
 * none. */
size_t obc_utf8_len(const unsigned char *s, size_t n);

/* What a scan without allocation can tell about bytes being JSON as
 * jansson's json_loadb(JSON_DECODE_ANY) reads them. */
typedef enum obc_json_verdict {
    OBC_JSON_NO = 0,
    OBC_JSON_YES = 1,
    OBC_JSON_ASK_JANSSON = 2, /* near one of jansson's limits: ask it */
} obc_json_verdict;

obc_json_verdict obc_json_quick_check(const void *data, size_t n);

/* Whether data[0..n) is valid JSON (any value at top level) by jansson's
 * judgement: the quick check, then json_loadb when it is unsure. */
bool obc_json_valid(const void *data, size_t n);

/* The output options both brokers share; filled by the core from the
 * option rows below. Strings are owned by the core and outlive the
 * instance. */
typedef struct obc_jsonl_config {
    char *output; /* "-" or NULL: standard output; else a file (append) */
    bool pretty;  /* indented multi-line objects: no longer JSON lines */
    bool fsync;   /* fsync a regular output file after each batch */
} obc_jsonl_config;

/* Option rows for an obc_jsonl_config at `member` of config struct `type`;
 * put them in the plugin's option table so help and validation match. */
#define OBC_JSONL_OPTIONS(type, member)                                        \
    OBX_OPT_STRING(type, member.output, "output", "-",                         \
                   "Where the JSON lines go: '-' for standard output, or a "   \
                   "file path, created if missing and opened for append."),    \
        OBX_OPT_BOOL(type, member.pretty, "pretty", "false",                   \
                     "Indent each object over several lines, for humans "      \
                     "reading a terminal. Breaks the JSON-lines format (one "  \
                     "object per line): leave it off for anything that "       \
                     "parses the output."),                                    \
        OBX_OPT_BOOL(type, member.fsync, "fsync", "false",                     \
                     "fsync the output file after each batch, so an event is " \
                     "on disk before it is reported published. Ignored "       \
                     "unless the output is a regular file.")

/* An output stream plus the reusable buffers of one plugin instance. */
typedef struct obc_jsonl_sink {
    const obx_host *host;
    FILE *fp;
    bool own_fp; /* a file we opened (closed at the end), not stdout */
    bool pretty;
    bool fsync;      /* requested and the output is a regular file */
    bool is_pipe;    /* FIFO or socket: writes may raise SIGPIPE */
    bool failing;    /* the last batch failed: log state changes only */
    bool maybe_torn; /* a failed write may have left half a line behind */
    char name[256];  /* "stdout" or the path, for messages */
    obc_jbuf batch;  /* formatted lines not yet handed to stdio */
    obc_jbuf pretty_buf;
} obc_jsonl_sink;

/* Check the options without side effects: when `connect` is true, also
 * that the output file (or its directory) is writable. OBX_OK or
 * OBX_CONFIG with errstr filled. */
obx_status obc_jsonl_validate(const obc_jsonl_config *conf, bool connect,
                              char *errstr, size_t errlen);

/* Open the output described by conf into *s (caller-owned memory, zeroed
 * or not). `host` is borrowed for the sink's lifetime. OBX_OK, or
 * OBX_CONFIG when the file cannot be opened (errstr names the path and
 * strerror). Close with obc_jsonl_sink_close() in every case. */
obx_status obc_jsonl_sink_open(obc_jsonl_sink *s, const obx_host *host,
                               const obc_jsonl_config *conf, char *errstr,
                               size_t errlen);

/* Flush and close the file (stdout is flushed, never closed); free the
 * buffers. Safe on a sink whose open failed. */
void obc_jsonl_sink_close(obc_jsonl_sink *s);

/* Start a batch: drop anything formatted but not committed. */
void obc_jsonl_sink_begin(obc_jsonl_sink *s);

/* Format one event into the batch. The event is borrowed for the call.
 * Large batches are handed to stdio in chunks, so this may write.
 * OBX_OK; OBX_UNAVAILABLE on an I/O error or when out of memory (errstr
 * says which, and the error is logged); OBX_FATAL on EPIPE (the reader of
 * the pipe is gone for good); the batch is then abandoned. */
obx_status obc_jsonl_sink_add(obc_jsonl_sink *s, const obx_event *ev,
                              char *errstr, size_t errlen);

/* Write the rest of the batch, fflush once, fsync when asked. OBX_OK, or
 * OBX_UNAVAILABLE with errstr "write to PATH: strerror" (logged on the
 * first failure and on recovery only), OBX_FATAL on EPIPE. Some lines of a
 * failed batch may have reached the output: at-least-once, never a torn line
 * followed by more output in a regular file. */
obx_status obc_jsonl_sink_commit(obc_jsonl_sink *s, char *errstr,
                                 size_t errlen);

/* fflush the stream. OBX_OK or OBX_UNAVAILABLE. */
obx_status obc_jsonl_sink_flush(obc_jsonl_sink *s);

#endif
