/* log_tail.h: the end of a worker's log as JSON lines (log_tail.c). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* At most this much of a log's end is read for one request. */
#define LOG_TAIL_MAX_BYTES (256u << 10)
/* At most this many lines are asked for. */
#define LOG_TAIL_MAX_LINES 5000

/* The last max_lines lines of buf[0..n) as a JSON array of strings (bytes
 * that are not UTF-8, and NULs, become U+FFFD). whole: buf starts at the
 * file's start (else its first, cut line is left out). *more: lines before
 * these were left out. NULL when out of memory. */
json_t *log_tail_lines(const char *buf, size_t n, unsigned max_lines, bool whole, bool *more);

/* The figure of the last "restore: vCPUs ..., X ms after the restore
 * began" line in the last 8 KiB of the worker log at path (vmm/core/vm.c),
 * or -1 if there is none. */
double log_restore_ms(const char *path);
