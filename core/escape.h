/* Escaping for what the relay writes: log lines and CLI messages carry
 * text from configs, paths, databases and brokers, which may hold control
 * bytes (a terminal escape sequence) or bytes that are not UTF-8. */
#ifndef OBX_CORE_ESCAPE_H
#define OBX_CORE_ESCAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Length of the valid UTF-8 sequence at s[0..n) (1 to 4), or 0 when the
 * bytes there are not UTF-8 (overlong forms, surrogates and values past
 * U+10FFFF included). */
size_t obx_utf8_seq_len(const unsigned char *s, size_t n);

/* Write s as the body of a JSON string: valid UTF-8 as is, '"' and '\\'
 * escaped, control bytes as \u00XX, every byte that is not UTF-8 as the
 * six characters \\xNN (a visible backslash), so the line stays valid
 * JSON and the byte can still be read. */
void obx_put_json_escaped(FILE *f, const char *s);

/* Write s for a terminal or a text log: control bytes and DEL as \xNN,
 * bytes that are not UTF-8 as \xNN, a backslash as is. With keep_newlines,
 * '\n' and '\t' pass through (multi-line CLI messages). */
void obx_put_text_escaped(FILE *f, const char *s, bool keep_newlines);

/* fprintf for messages to a person (CLI errors, check output): the
 * formatted text goes through obx_put_text_escaped with newlines kept,
 * never cut however long it is. */
void obx_eprintf(FILE *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
