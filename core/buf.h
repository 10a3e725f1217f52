/* A growable byte buffer for building text (metrics pages, messages). */
#ifndef OBX_CORE_BUF_H
#define OBX_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include <outbox/host.h>

typedef struct obx_buf {
    char *data; /* NUL-terminated when len > 0; owned */
    size_t len;
    size_t cap;
    int oom; /* set once an allocation failed; further appends are dropped */
} obx_buf;

/* Append formatted text. Out of memory sets b->oom instead of failing. */
void obx_buf_printf(obx_buf *b, const char *fmt, ...) OBX_PRINTF(2, 3);
void obx_buf_free(obx_buf *b);

#endif
