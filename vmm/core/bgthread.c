/* bgthread.c: set-up threads that leave the main thread its CPU (bgthread.h). */
#include "bgthread.h"

#include <sched.h>
#include <stdlib.h>

struct bgthread_start {
	void *(*fn)(void *);
	void *arg;
};

static void *bgthread_main(void *p)
{
	struct bgthread_start s = *(struct bgthread_start *)p;
	struct sched_param sp = { .sched_priority = 0 };

	free(p);
	/* glibc's thread attributes take no SCHED_BATCH: set it here, and give
	 * back the CPU this new thread may have taken from its creator. */
	if (sched_setscheduler(0, SCHED_BATCH, &sp) == 0)
		sched_yield();
	return s.fn(s.arg);
}

int bgthread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
	struct bgthread_start *s = malloc(sizeof(*s));
	int ret;

	if (!s)
		return pthread_create(t, NULL, fn, arg);
	s->fn = fn;
	s->arg = arg;
	ret = pthread_create(t, NULL, bgthread_main, s);
	if (ret)
		free(s);
	return ret;
}
