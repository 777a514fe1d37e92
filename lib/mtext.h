/* mtext.h: a text built by printf calls in memory (open_memstream), for
 * the /metrics series that several owners write (pool, replication). */
#pragma once
#include <stdbool.h>
#include <stdio.h>

struct mtext {
	FILE *f;
	char *p;
	size_t len;
	bool failed;
};

/* Starts t (zeroed or not). */
void mtext_open(struct mtext *t);
void mtext_printf(struct mtext *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Ends t: the text (the caller frees it), or NULL when any step failed. */
char *mtext_close(struct mtext *t);
