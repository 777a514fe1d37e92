/* mtext.c: see mtext.h. */
#include "mtext.h"

#include <stdarg.h>
#include <stdlib.h>

void mtext_open(struct mtext *t)
{
	t->p = NULL;
	t->len = 0;
	t->f = open_memstream(&t->p, &t->len);
	t->failed = !t->f;
}

void mtext_printf(struct mtext *t, const char *fmt, ...)
{
	va_list ap;

	if (t->failed)
		return;
	va_start(ap, fmt);
	if (vfprintf(t->f, fmt, ap) < 0)
		t->failed = true;
	va_end(ap);
}

char *mtext_close(struct mtext *t)
{
	if (t->f && fclose(t->f))
		t->failed = true;
	t->f = NULL;
	if (t->failed) {
		free(t->p);
		t->p = NULL;
		return NULL;
	}
	return t->p;
}
