/* Running the outbox-relay binary from tests. */
#ifndef OBX_TEST_PROC_H
#define OBX_TEST_PROC_H

#include <stddef.h>
#include <sys/types.h>

/* Start argv (NULL-terminated) with stdout/stderr redirected to files (NULL:
 * inherit). Returns the pid; fails the test when it cannot start. */
pid_t proc_start(char *const argv[], const char *out, const char *err);

/* Wait for pid up to timeout_ms; returns the exit code, 128+signal when
 * killed, or -1 on timeout (the process is then killed). */
int proc_wait(pid_t pid, int timeout_ms);

/* Start and wait: the exit code. */
int proc_run(char *const argv[], const char *out, const char *err,
             int timeout_ms);

/* Read a whole file into a NUL-terminated heap string (NULL if missing). */
char *slurp(const char *path);

/* Lines in a file. */
size_t count_lines(const char *path);

/* Occurrences of needle in a file (0 when it is missing). */
size_t count_in_file(const char *path, const char *needle);

/* GET http://127.0.0.1:port/path; returns the status code and the body
 * (heap) in *body, or -1 when the connection fails. */
int http_get(int port, const char *path, char **body);

/* A free TCP port on 127.0.0.1. */
int free_port(void);

void sleep_ms(int ms);

#endif
