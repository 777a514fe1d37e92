/* bgthread.h: threads that do set-up work beside the worker's main thread
 * (the supported CPUID, the TLS module) without taking its CPU from it. */
#pragma once
#include <pthread.h>

/* pthread_create of a thread that makes itself SCHED_BATCH and yields
 * before it runs fn: a new thread usually preempts its creator (on the
 * creator's CPU when no other is free, measured here: 0.5 ms of work meant
 * to run beside the main thread ran before it instead); this one runs on a
 * free CPU, or while the main thread waits in the kernel, at normal weight
 * (SCHED_BATCH only gives up preempting on wake-up). Where the policy is
 * refused it runs as a plain thread. 0 or an error number, as
 * pthread_create. */
int bgthread_create(pthread_t *t, void *(*fn)(void *), void *arg);
