/* report.c: kvm-unit-tests style check reporting and the exit path. */
#include "libtest.h"

static unsigned checks, failures;

void exit(int code)
{
	outl(DEBUG_EXIT_PORT, (uint32_t)code);
	/* No debug-exit device: park the CPU rather than spin. */
	for (;;)
		ring0_request(REQ_HALT, 0, 0);
}

void fail(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	printf("FAIL %s: %s\n", test_name, buf);
	exit(1);
}

bool report(bool cond, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	checks++;
	if (!cond)
		failures++;
	printf("%s: %s\n", cond ? "ok" : "not ok", buf);
	return cond;
}

void report_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("info: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

int report_summary(void)
{
	printf("SUMMARY: %u checks, %u failures\n", checks, failures);
	if (failures) {
		printf("FAIL %s: %u of %u checks failed\n", test_name, failures, checks);
		return 1;
	}
	printf("PASS %s\n", test_name);
	return 0;
}
